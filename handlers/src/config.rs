//! Configuration of the handlers, read from the environment once at start.
//!
//! Synth sets these variables on every function; a missing or bad value fails the Lambda init
//! (so the deployment's first invocation shows the variable by name) instead of failing each
//! request later.

use std::time::Duration;

/// The connections table (required).
pub const TABLE_NAME: &str = "TABLE_NAME";
/// How many `PostToConnection` calls a broadcast keeps in flight (optional).
pub const BROADCAST_CONCURRENCY: &str = "BROADCAST_CONCURRENCY";
/// Overrides the `@connections` endpoint otherwise derived from the event (optional); the local
/// gateway and the push tests point it at `http://127.0.0.1:{port}/{stage}`.
pub const CALLBACK_URL: &str = "CALLBACK_URL";

/// Default of [`BROADCAST_CONCURRENCY`].
pub const DEFAULT_BROADCAST_CONCURRENCY: usize = 64;
/// Upper bound of [`BROADCAST_CONCURRENCY`]: what Lambda's 1,024 file-descriptor quota allows
/// (see [`wsstack_routes::limits::MAX_BROADCAST_CONCURRENCY`] for the arithmetic and the source).
pub const MAX_BROADCAST_CONCURRENCY: usize =
    wsstack_routes::limits::MAX_BROADCAST_CONCURRENCY as usize;
/// How long a connection record lives before the table's TTL may remove it. API Gateway closes
/// every WebSocket after 2 hours, so a record older than that is stale for sure.
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// A missing or invalid configuration value, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required but not set")]
    Missing { name: &'static str },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// The handlers' configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The DynamoDB table holding one record per open connection.
    pub table_name: String,
    /// `PostToConnection` calls in flight during a broadcast (1..=[`MAX_BROADCAST_CONCURRENCY`]).
    pub broadcast_concurrency: usize,
    /// The `@connections` endpoint (`http(s)://host[:port]/{stage}`); when `None` it is derived
    /// from each event as `https://{domainName}/{stage}`.
    pub callback_url: Option<String>,
    /// Lifetime of a connection record (`expiresAt` = connect time + this).
    pub connection_ttl: Duration,
}

impl Config {
    /// A configuration with defaults for everything but the table name (for embedders such as
    /// the local gateway, which do not read the environment).
    pub fn new(table_name: impl Into<String>) -> Self {
        Config {
            table_name: table_name.into(),
            broadcast_concurrency: DEFAULT_BROADCAST_CONCURRENCY,
            callback_url: None,
            connection_ttl: CONNECTION_TTL,
        }
    }

    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads and validates configuration from `lookup` (the environment in production, a map in
    /// tests: mutating the real environment is unsafe in a multi-threaded test binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let table_name = match lookup(TABLE_NAME) {
            None => return Err(ConfigError::Missing { name: TABLE_NAME }),
            Some(v) => v,
        };
        validate_table_name(&table_name)?;

        let broadcast_concurrency = match lookup(BROADCAST_CONCURRENCY) {
            None => DEFAULT_BROADCAST_CONCURRENCY,
            Some(v) => parse_concurrency(&v)?,
        };

        let callback_url = match lookup(CALLBACK_URL) {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(validate_callback_url(v)?),
        };

        Ok(Config {
            table_name,
            broadcast_concurrency,
            callback_url,
            connection_ttl: CONNECTION_TTL,
        })
    }
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// DynamoDB's rules for table names: 3 to 255 of `[A-Za-z0-9_.-]`.
fn validate_table_name(value: &str) -> Result<(), ConfigError> {
    if !(3..=255).contains(&value.len()) {
        return Err(invalid(
            TABLE_NAME,
            value,
            "must be 3 to 255 characters long",
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            TABLE_NAME,
            value,
            "may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

fn parse_concurrency(value: &str) -> Result<usize, ConfigError> {
    let reason = format!("must be an integer from 1 to {MAX_BROADCAST_CONCURRENCY}");
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BROADCAST_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(invalid(BROADCAST_CONCURRENCY, value, reason)),
    }
}

fn validate_callback_url(value: String) -> Result<String, ConfigError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
            // The SDK appends `/@connections/{id}` to the endpoint, so a trailing slash would
            // produce `//@connections` and miss the route.
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(invalid(
            CALLBACK_URL,
            &value,
            "must be an http:// or https:// URL such as https://{domain}/{stage}",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_table_is_set() {
        assert_eq!(
            config(&[(TABLE_NAME, "Connections")]),
            Ok(Config::new("Connections"))
        );
    }

    #[test]
    fn all_values_are_read() {
        let c = config(&[
            (TABLE_NAME, "wsstack-dev.Connections_1"),
            (BROADCAST_CONCURRENCY, "480"),
            (CALLBACK_URL, "http://127.0.0.1:3001/dev/"),
        ])
        .unwrap();
        assert_eq!(c.table_name, "wsstack-dev.Connections_1");
        assert_eq!(c.broadcast_concurrency, 480);
        assert_eq!(c.callback_url.as_deref(), Some("http://127.0.0.1:3001/dev"));
    }

    #[test]
    fn missing_table_names_the_variable() {
        let err = config(&[]).unwrap_err();
        assert_eq!(err, ConfigError::Missing { name: TABLE_NAME });
        assert_eq!(
            err.to_string(),
            "environment variable TABLE_NAME is required but not set"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, name) in [
            (vec![(TABLE_NAME, "ab")], TABLE_NAME),
            (vec![(TABLE_NAME, "has space")], TABLE_NAME),
            (
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_CONCURRENCY, "0")],
                BROADCAST_CONCURRENCY,
            ),
            (
                // One past what the file-descriptor quota allows.
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_CONCURRENCY, "481")],
                BROADCAST_CONCURRENCY,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_CONCURRENCY, "many")],
                BROADCAST_CONCURRENCY,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (CALLBACK_URL, "ftp://x/dev")],
                CALLBACK_URL,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (CALLBACK_URL, "https:///dev")],
                CALLBACK_URL,
            ),
        ] {
            let err = config(&vars).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
                "{vars:?}: {err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
