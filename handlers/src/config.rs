//! Configuration of the handlers, read from the environment once at start.
//!
//! Synth sets these variables on every function; a missing or bad value fails the Lambda init
//! (so the deployment's first invocation shows the variable by name) instead of failing each
//! request later.

use std::time::Duration;

use wsstack_routes::Handler;

use crate::store::MessageRate;

/// The function's `Handler` setting, which names the route handler the `bootstrap` binary runs.
/// Lambda sets it from the function's `Handler` property ("Defined runtime environment
/// variables": `_HANDLER`, "the handler location configured on the function",
/// https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime).
pub const HANDLER: &str = "_HANDLER";
/// The connections table (required).
pub const TABLE_NAME: &str = "TABLE_NAME";
/// How many `PostToConnection` calls a broadcast keeps in flight (optional).
pub const BROADCAST_CONCURRENCY: &str = "BROADCAST_CONCURRENCY";
/// Overrides the `@connections` endpoint otherwise derived from the event (optional); the local
/// gateway and the push tests point it at `http://127.0.0.1:{port}/{stage}`.
pub const CALLBACK_URL: &str = "CALLBACK_URL";

/// `jwt` when an authorizer guards `$connect` (the username then comes from the verified
/// token, never the query string); `none` or unset otherwise.
pub const AUTH_MODE: &str = "AUTH_MODE";
/// A connection's sustained message rate, messages per second (optional).
pub const MESSAGE_RATE: &str = "MESSAGE_RATE";
/// How many messages a connection may send at once after being quiet (optional).
pub const MESSAGE_BURST: &str = "MESSAGE_BURST";

/// Default of [`MESSAGE_RATE`] and [`MESSAGE_BURST`].
pub const DEFAULT_MESSAGE_RATE: MessageRate = MessageRate {
    per_second: 10,
    burst: 20,
};
/// Upper bound of [`MESSAGE_RATE`] and [`MESSAGE_BURST`]: the GCRA works in milliseconds.
pub const MAX_MESSAGE_RATE: u32 = 1000;

/// Default of [`BROADCAST_CONCURRENCY`].
pub const DEFAULT_BROADCAST_CONCURRENCY: usize = 64;
/// Upper bound of [`BROADCAST_CONCURRENCY`]: beyond this a Lambda runs out of sockets and the
/// management API throttles (429) long before any gain.
pub const MAX_BROADCAST_CONCURRENCY: usize = 1024;
/// How long a connection record lives before the table's TTL may remove it. API Gateway closes
/// every WebSocket after 2 hours, so a record older than that is stale for sure.
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// A missing or invalid configuration value, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required but not set")]
    Missing { name: &'static str },
    #[error("environment variable {HANDLER} is not set: set the function's Handler property to one of {valid}", valid = valid_handler_names())]
    MissingHandler,
    #[error("environment variable {HANDLER}={value:?} names no handler: valid names are {valid}", valid = valid_handler_names())]
    UnknownHandler { value: String },
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
    /// `PostToConnection` calls in flight during a broadcast (1..=1024).
    pub broadcast_concurrency: usize,
    /// The `@connections` endpoint (`http(s)://host[:port]/{stage}`); when `None` it is derived
    /// from each event as `https://{domainName}/{stage}`.
    pub callback_url: Option<String>,
    /// Lifetime of a connection record (`expiresAt` = connect time + this).
    pub connection_ttl: Duration,
    /// Whether `$connect` sits behind the JWT authorizer ([`AUTH_MODE`]` = jwt`).
    pub authenticated: bool,
    /// Each connection's message rate limit.
    pub message_rate: MessageRate,
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
            authenticated: false,
            message_rate: DEFAULT_MESSAGE_RATE,
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

        let authenticated = match lookup(AUTH_MODE).as_deref() {
            None | Some("") | Some("none") => false,
            Some("jwt") => true,
            Some(other) => return Err(invalid(AUTH_MODE, other, "must be `none` or `jwt`")),
        };
        let message_rate = MessageRate {
            per_second: parse_rate(MESSAGE_RATE, lookup(MESSAGE_RATE))?
                .unwrap_or(DEFAULT_MESSAGE_RATE.per_second),
            burst: parse_rate(MESSAGE_BURST, lookup(MESSAGE_BURST))?
                .unwrap_or(DEFAULT_MESSAGE_RATE.burst),
        };

        Ok(Config {
            table_name,
            broadcast_concurrency,
            callback_url,
            connection_ttl: CONNECTION_TTL,
            authenticated,
            message_rate,
        })
    }
}

fn parse_rate(name: &'static str, value: Option<String>) -> Result<Option<u32>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_MESSAGE_RATE).contains(&n) => Ok(Some(n)),
        _ => Err(invalid(
            name,
            &value,
            format!("must be an integer from 1 to {MAX_MESSAGE_RATE}"),
        )),
    }
}

/// The handler the function's `Handler` setting ([`HANDLER`]) names.
pub fn handler_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Handler, ConfigError> {
    let value = lookup(HANDLER).ok_or(ConfigError::MissingHandler)?;
    Handler::from_name(&value).ok_or(ConfigError::UnknownHandler { value })
}

/// The handler names, as an error message lists them: `connect, disconnect, ...`.
fn valid_handler_names() -> String {
    Handler::names().collect::<Vec<_>>().join(", ")
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
            (BROADCAST_CONCURRENCY, "1024"),
            (CALLBACK_URL, "http://127.0.0.1:3001/dev/"),
        ])
        .unwrap();
        assert_eq!(c.table_name, "wsstack-dev.Connections_1");
        assert_eq!(c.broadcast_concurrency, 1024);
        assert_eq!(c.callback_url.as_deref(), Some("http://127.0.0.1:3001/dev"));
        let c = config(&[
            (TABLE_NAME, "Tbl"),
            (AUTH_MODE, "jwt"),
            (MESSAGE_RATE, "5"),
            (MESSAGE_BURST, "7"),
        ])
        .unwrap();
        assert!(c.authenticated);
        assert_eq!(
            c.message_rate,
            MessageRate {
                per_second: 5,
                burst: 7
            }
        );
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
    fn the_handler_setting_picks_the_handler() {
        let lookup =
            |value: &'static str| move |name: &str| (name == HANDLER).then(|| value.to_owned());
        assert_eq!(
            handler_from_lookup(lookup("send-message")),
            Ok(Handler::SendMessage)
        );
        assert_eq!(handler_from_lookup(lookup("connect")), Ok(Handler::Connect));
        assert_eq!(
            handler_from_lookup(|_| None),
            Err(ConfigError::MissingHandler)
        );
        let err = handler_from_lookup(lookup("bootstrap")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable _HANDLER=\"bootstrap\" names no handler: valid names are \
             connect, disconnect, send-message, default, list-connections, authorizer"
        );
        assert_eq!(
            handler_from_lookup(lookup("authorizer")),
            Ok(Handler::Authorizer)
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
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_CONCURRENCY, "1025")],
                BROADCAST_CONCURRENCY,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_CONCURRENCY, "many")],
                BROADCAST_CONCURRENCY,
            ),
            (vec![(TABLE_NAME, "Tbl"), (AUTH_MODE, "cognito")], AUTH_MODE),
            (vec![(TABLE_NAME, "Tbl"), (MESSAGE_RATE, "0")], MESSAGE_RATE),
            (
                vec![(TABLE_NAME, "Tbl"), (MESSAGE_BURST, "1001")],
                MESSAGE_BURST,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (MESSAGE_BURST, "lots")],
                MESSAGE_BURST,
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
