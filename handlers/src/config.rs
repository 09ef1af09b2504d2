//! Configuration of the handlers, read from the environment once at start.
//!
//! Synth sets these variables on every function; a missing or bad value fails the Lambda init
//! (so the deployment's first invocation shows the variable by name) instead of failing each
//! request later.

use std::time::Duration;

use wsstack_routes::bridge::{ForwardedAction, MAX_MAX_DATA_BYTES};
use wsstack_routes::{EnvVar, FanoutMode, Handler};

use crate::store::MessageRate;

/// The function's `Handler` setting, which names the route handler the `bootstrap` binary runs.
/// Lambda sets it from the function's `Handler` property ("Defined runtime environment
/// variables": `_HANDLER`, "the handler location configured on the function",
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>).
pub const HANDLER: &str = "_HANDLER";
/// The connections table (required).
pub const TABLE_NAME: &str = EnvVar::TableName.name();
/// The rooms table (required by the handlers the route table lets use it).
pub const ROOMS_TABLE_NAME: &str = EnvVar::RoomsTableName.name();
/// How many `PostToConnection` calls a broadcast keeps in flight (optional).
pub const BROADCAST_CONCURRENCY: &str = EnvVar::BroadcastConcurrency.name();
/// Overrides the `@connections` endpoint otherwise derived from the event (optional); the local
/// gateway and the push tests point it at `http://127.0.0.1:{port}/{stage}`.
pub const CALLBACK_URL: &str = EnvVar::CallbackUrl.name();

/// `inline` (the sendMessage function posts itself) or `queue` (it enqueues fan-out jobs for
/// the worker) (optional, default `inline`).
pub const FANOUT_MODE: &str = EnvVar::FanoutMode.name();
/// The SQS queue of fan-out jobs (required when [`FANOUT_MODE`] is `queue`).
pub const FANOUT_QUEUE_URL: &str = EnvVar::FanoutQueueUrl.name();
/// Scan segments (= jobs, = parallel workers) a broadcast to everyone is split into
/// (optional, default [`DEFAULT_FANOUT_SEGMENTS`]).
pub const FANOUT_SEGMENTS: &str = EnvVar::FanoutSegments.name();
/// Default of [`FANOUT_SEGMENTS`].
pub const DEFAULT_FANOUT_SEGMENTS: u32 = 8;
/// Upper bound of [`FANOUT_SEGMENTS`]: more parallel workers than the account's 10,000
/// `@connections` requests/s can feed (each posts a few thousand per second) only adds 429s.
pub const MAX_FANOUT_SEGMENTS: u32 = wsstack_routes::limits::MAX_FANOUT_SEGMENTS;
/// The oldest a fan-out job may be, in seconds, before the worker drops it (optional, default
/// [`DEFAULT_MAX_JOB_AGE`]; synth sets it from `[fanout] max_job_age_seconds`).
pub const FANOUT_MAX_JOB_AGE_SECONDS: &str = EnvVar::FanoutMaxJobAgeSeconds.name();
/// Default of [`FANOUT_MAX_JOB_AGE_SECONDS`].
pub const DEFAULT_MAX_JOB_AGE: Duration =
    Duration::from_secs(wsstack_routes::limits::DEFAULT_MAX_JOB_AGE_SECONDS as u64);
/// `jwt` when an authorizer guards `$connect` (the username then comes from the verified
/// token, never the query string); `none` or unset otherwise.
pub const AUTH_MODE: &str = EnvVar::AuthMode.name();
/// A connection's sustained request rate on every client route, requests per second
/// (optional).
pub const MESSAGE_RATE: &str = EnvVar::MessageRate.name();
/// How many requests a connection may send at once after being quiet (optional).
pub const MESSAGE_BURST: &str = EnvVar::MessageBurst.name();
/// A user's (verified `sub`) sustained request rate across all of their connections
/// (optional; applies to connections whose record carries a `sub`, i.e. authenticated stages).
pub const USER_MESSAGE_RATE: &str = EnvVar::UserMessageRate.name();
/// How many requests a user may send at once across their connections (optional).
pub const USER_MESSAGE_BURST: &str = EnvVar::UserMessageBurst.name();
/// The stage's budget of broadcast deliveries (posts to `@connections`) per second, shared by
/// every sender (optional).
pub const BROADCAST_BUDGET: &str = EnvVar::BroadcastBudget.name();

/// The stage's EventBridge bus, which forwarded actions go to (the `forward` handler; when
/// set, [`EVENT_SOURCE`] and [`FORWARDED_ACTIONS`] are required).
pub const EVENT_BUS_NAME: &str = EnvVar::EventBusName.name();
/// The `source` of the forwarded actions' events ([`wsstack_routes::bridge::event_source`]).
pub const EVENT_SOURCE: &str = EnvVar::EventSource.name();
/// The app manifest's forwarded actions, a JSON array of
/// [`wsstack_routes::bridge::ForwardedAction`] (`[{"name": "doThing", "maxDataBytes": 4096}]`).
pub const FORWARDED_ACTIONS: &str = EnvVar::ForwardedActions.name();
/// Longest forwarded action name: it is the event's `DetailType`, 1 to 128 characters
/// ("PutEventsRequestEntry",
/// <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEventsRequestEntry.html>).
pub const MAX_ACTION_NAME_CHARS: usize = 128;

/// Default of [`MESSAGE_RATE`] and [`MESSAGE_BURST`].
pub const DEFAULT_MESSAGE_RATE: MessageRate = MessageRate {
    per_second: 10,
    burst: 20,
};
/// Default of [`USER_MESSAGE_RATE`] and [`USER_MESSAGE_BURST`]: two connections' worth, so a
/// second tab is not starved and fifty tabs do not get fifty times the rate.
pub const DEFAULT_USER_MESSAGE_RATE: MessageRate = MessageRate {
    per_second: 20,
    burst: 40,
};
/// Upper bound of the request rates and bursts.
pub const MAX_MESSAGE_RATE: u32 = 1000;
/// Default of [`BROADCAST_BUDGET`]: half the account's 10,000 `@connections` requests per
/// second, which every REST, HTTP and WebSocket API of the account and region shares
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html>, "API Gateway
/// quotas for configuring and running a REST API": throttle quota per account per Region).
pub const DEFAULT_BROADCAST_BUDGET: u32 = 5_000;
/// Upper bound of [`BROADCAST_BUDGET`]: the account's whole quota.
pub const MAX_BROADCAST_BUDGET: u32 = 10_000;

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

/// How a broadcast reaches everyone: the [`FanoutMode`] ([`FANOUT_MODE`]) with what that mode
/// needs at run time (the queue, the segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fanout {
    /// The sendMessage function posts to every connection itself, within its deadline; with a
    /// queue ([`FANOUT_QUEUE_URL`] set), what the deadline leaves is handed to the worker.
    Inline { handoff_queue_url: Option<String> },
    /// sendMessage enqueues one job per Scan segment; the fan-out worker posts.
    Queue { queue_url: String, segments: u32 },
}

impl Fanout {
    /// The mode these settings are for.
    pub fn mode(&self) -> FanoutMode {
        match self {
            Fanout::Inline { .. } => FanoutMode::Inline,
            Fanout::Queue { .. } => FanoutMode::Queue,
        }
    }
}

/// The handlers' configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The DynamoDB table holding one record per open connection.
    pub table_name: String,
    /// The DynamoDB table of room memberships, where the handler uses rooms.
    pub rooms_table_name: Option<String>,
    /// `PostToConnection` calls in flight during a broadcast (1..=[`MAX_BROADCAST_CONCURRENCY`]).
    pub broadcast_concurrency: usize,
    /// The `@connections` endpoint (`http(s)://host[:port]/{stage}`); when `None` it is derived
    /// from each event as `https://{domainName}/{stage}`.
    pub callback_url: Option<String>,
    /// Lifetime of a connection record (`expiresAt` = connect time + this).
    pub connection_ttl: Duration,
    pub fanout: Fanout,
    /// Whether `$connect` sits behind the JWT authorizer ([`AUTH_MODE`]` = jwt`).
    pub authenticated: bool,
    /// Each connection's request rate limit, on every client route.
    pub message_rate: MessageRate,
    /// The oldest a fan-out job may be (counted from its message's first enqueue) before the
    /// worker drops it instead of posting.
    pub max_job_age: Duration,
    /// Each user's request rate limit across their connections (connections with a `sub`).
    pub user_rate: MessageRate,
    /// The stage's broadcast deliveries per second (a bucket of one second's worth).
    pub broadcast_budget: MessageRate,
    /// The app manifest's forwarded actions ([`FORWARDED_ACTIONS`]), which `unknown_action`
    /// lists after the built-in ones.
    pub forwarded_actions: Vec<String>,
}

impl Config {
    /// A configuration with defaults for everything but the table name (for embedders such as
    /// the local gateway, which do not read the environment).
    pub fn new(table_name: impl Into<String>) -> Self {
        Config {
            table_name: table_name.into(),
            rooms_table_name: None,
            broadcast_concurrency: DEFAULT_BROADCAST_CONCURRENCY,
            callback_url: None,
            connection_ttl: CONNECTION_TTL,
            fanout: Fanout::Inline {
                handoff_queue_url: None,
            },
            authenticated: false,
            message_rate: DEFAULT_MESSAGE_RATE,
            max_job_age: DEFAULT_MAX_JOB_AGE,
            user_rate: DEFAULT_USER_MESSAGE_RATE,
            broadcast_budget: budget(DEFAULT_BROADCAST_BUDGET),
            forwarded_actions: Vec::new(),
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
        validate_table_name(TABLE_NAME, &table_name)?;
        let rooms_table_name = match lookup(ROOMS_TABLE_NAME) {
            None => None,
            Some(v) => {
                validate_table_name(ROOMS_TABLE_NAME, &v)?;
                Some(v)
            }
        };

        let broadcast_concurrency = match lookup(BROADCAST_CONCURRENCY) {
            None => DEFAULT_BROADCAST_CONCURRENCY,
            Some(v) => parse_concurrency(&v)?,
        };

        let callback_url = match lookup(CALLBACK_URL) {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(validate_callback_url(v)?),
        };

        let fanout = parse_fanout(&lookup)?;
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
        let user_rate = MessageRate {
            per_second: parse_rate(USER_MESSAGE_RATE, lookup(USER_MESSAGE_RATE))?
                .unwrap_or(DEFAULT_USER_MESSAGE_RATE.per_second),
            burst: parse_rate(USER_MESSAGE_BURST, lookup(USER_MESSAGE_BURST))?
                .unwrap_or(DEFAULT_USER_MESSAGE_RATE.burst),
        };
        let broadcast_budget = parse_broadcast_budget(lookup(BROADCAST_BUDGET))?;
        // `$default` lists them in `unknown_action`; the `forward` handler reads them again
        // with its bus ([`ForwardConfig`]).
        let forwarded_actions = match lookup(FORWARDED_ACTIONS) {
            None => Vec::new(),
            Some(raw) => parse_forwarded_actions(&raw)?
                .into_iter()
                .map(|a| a.name)
                .collect(),
        };

        let max_job_age = match lookup(FANOUT_MAX_JOB_AGE_SECONDS) {
            None => DEFAULT_MAX_JOB_AGE,
            Some(v) => parse_max_job_age(&v)?,
        };

        Ok(Config {
            table_name,
            rooms_table_name,
            broadcast_concurrency,
            callback_url,
            connection_ttl: CONNECTION_TTL,
            fanout,
            authenticated,
            message_rate,
            max_job_age,
            user_rate,
            broadcast_budget: budget(broadcast_budget),
            forwarded_actions,
        })
    }
}

/// [`BROADCAST_BUDGET`], [`DEFAULT_BROADCAST_BUDGET`] when unset.
fn parse_broadcast_budget(value: Option<String>) -> Result<u32, ConfigError> {
    let Some(v) = value else {
        return Ok(DEFAULT_BROADCAST_BUDGET);
    };
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_BROADCAST_BUDGET).contains(&n) => Ok(n),
        _ => Err(invalid(
            BROADCAST_BUDGET,
            &v,
            format!("must be an integer from 1 to {MAX_BROADCAST_BUDGET} (deliveries per second)"),
        )),
    }
}

/// The broadcast budget's bucket: `per_second` deliveries a second, one second's worth at once.
pub fn budget(per_second: u32) -> MessageRate {
    MessageRate {
        per_second,
        burst: per_second,
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
fn validate_table_name(name: &'static str, value: &str) -> Result<(), ConfigError> {
    if !(3..=255).contains(&value.len()) {
        return Err(invalid(name, value, "must be 3 to 255 characters long"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            name,
            value,
            "may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

fn parse_max_job_age(value: &str) -> Result<Duration, ConfigError> {
    use wsstack_routes::limits::{MAX_MAX_JOB_AGE_SECONDS, MIN_MAX_JOB_AGE_SECONDS};
    match value.trim().parse::<u32>() {
        Ok(n) if (MIN_MAX_JOB_AGE_SECONDS..=MAX_MAX_JOB_AGE_SECONDS).contains(&n) => {
            Ok(Duration::from_secs(u64::from(n)))
        }
        _ => Err(invalid(
            FANOUT_MAX_JOB_AGE_SECONDS,
            value,
            format!(
                "must be an integer from {MIN_MAX_JOB_AGE_SECONDS} to {MAX_MAX_JOB_AGE_SECONDS} (seconds)"
            ),
        )),
    }
}

fn parse_concurrency(value: &str) -> Result<usize, ConfigError> {
    let reason = format!("must be an integer from 1 to {MAX_BROADCAST_CONCURRENCY}");
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BROADCAST_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(invalid(BROADCAST_CONCURRENCY, value, reason)),
    }
}

fn parse_fanout(lookup: &impl Fn(&str) -> Option<String>) -> Result<Fanout, ConfigError> {
    let queue_url = match lookup(FANOUT_QUEUE_URL) {
        None => None,
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
        Some(u) => {
            return Err(invalid(
                FANOUT_QUEUE_URL,
                &u,
                "must be the queue's http(s) URL",
            ));
        }
    };
    let mode = match lookup(FANOUT_MODE).as_deref().map(str::trim) {
        None | Some("") => FanoutMode::Inline,
        Some(value) => FanoutMode::from_name(value)
            .ok_or_else(|| invalid(FANOUT_MODE, value, "must be `inline` or `queue`"))?,
    };
    match mode {
        FanoutMode::Inline => Ok(Fanout::Inline {
            handoff_queue_url: queue_url,
        }),
        FanoutMode::Queue => {
            let Some(queue_url) = queue_url else {
                return Err(ConfigError::Missing {
                    name: FANOUT_QUEUE_URL,
                });
            };
            let segments = match lookup(FANOUT_SEGMENTS) {
                None => DEFAULT_FANOUT_SEGMENTS,
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if (1..=MAX_FANOUT_SEGMENTS).contains(&n) => n,
                    _ => {
                        return Err(invalid(
                            FANOUT_SEGMENTS,
                            &v,
                            format!("must be an integer from 1 to {MAX_FANOUT_SEGMENTS}"),
                        ));
                    }
                },
            };
            Ok(Fanout::Queue {
                queue_url,
                segments,
            })
        }
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

/// Where and what the `forward` handler puts on the stage's bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    pub event_bus_name: String,
    /// Every event's `source`.
    pub event_source: String,
    /// The actions forwarded, each with its `data` limit.
    pub actions: Vec<ForwardedAction>,
}

impl ForwardConfig {
    /// Reads [`EVENT_BUS_NAME`], [`EVENT_SOURCE`] and [`FORWARDED_ACTIONS`]: `Ok(None)` when no
    /// bus is set (every handler but `forward`).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ForwardConfig>, ConfigError> {
        let Some(event_bus_name) = lookup(EVENT_BUS_NAME).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        if event_bus_name.len() > 1600 || event_bus_name.chars().any(char::is_whitespace) {
            return Err(invalid(
                EVENT_BUS_NAME,
                &event_bus_name,
                "must be a bus name or ARN without white space",
            ));
        }
        let event_source =
            lookup(EVENT_SOURCE).ok_or(ConfigError::Missing { name: EVENT_SOURCE })?;
        if !(1..=256).contains(&event_source.len()) || event_source.starts_with("aws.") {
            return Err(invalid(
                EVENT_SOURCE,
                &event_source,
                "must be 1 to 256 characters, not starting with `aws.` (EventBridge reserves it)",
            ));
        }
        let raw = lookup(FORWARDED_ACTIONS).ok_or(ConfigError::Missing {
            name: FORWARDED_ACTIONS,
        })?;
        let actions = parse_forwarded_actions(&raw)?;
        Ok(Some(ForwardConfig {
            event_bus_name,
            event_source,
            actions,
        }))
    }

    /// The configured action `name`.
    pub fn action(&self, name: &str) -> Option<&ForwardedAction> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// [`FORWARDED_ACTIONS`]' JSON, checked by [`check_forwarded_actions`].
fn parse_forwarded_actions(raw: &str) -> Result<Vec<ForwardedAction>, ConfigError> {
    let actions: Vec<ForwardedAction> = serde_json::from_str(raw).map_err(|e| {
        invalid(
            FORWARDED_ACTIONS,
            raw,
            format!("must be a JSON array of {{\"name\", \"maxDataBytes\"?}}: {e}"),
        )
    })?;
    check_forwarded_actions(&actions).map_err(|reason| invalid(FORWARDED_ACTIONS, raw, reason))?;
    Ok(actions)
}

/// The rules of a list of forwarded actions (the Lambda's [`FORWARDED_ACTIONS`], the local
/// gateway's options): names unique, not a built-in route, 1 to [`MAX_ACTION_NAME_CHARS`]
/// printable ASCII characters without spaces; `maxDataBytes` from 1 to
/// [`MAX_MAX_DATA_BYTES`]. `Err` says which action breaks which rule.
pub fn check_forwarded_actions(actions: &[ForwardedAction]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for a in actions {
        let printable = a.name.bytes().all(|b| b.is_ascii_graphic());
        if !(1..=MAX_ACTION_NAME_CHARS).contains(&a.name.len()) || !printable {
            return Err(format!(
                "action {:?}: a name is 1 to {MAX_ACTION_NAME_CHARS} printable ASCII characters without spaces",
                a.name
            ));
        }
        if wsstack_routes::route(&a.name).is_some() {
            return Err(format!("action {:?} is a built-in route", a.name));
        }
        if a.name.starts_with('$') {
            return Err(format!(
                "action {:?}: API Gateway reserves route keys starting with `$`",
                a.name
            ));
        }
        if !seen.insert(a.name.as_str()) {
            return Err(format!("action {:?} is listed twice", a.name));
        }
        if !(1..=MAX_MAX_DATA_BYTES).contains(&a.max_data_bytes) {
            return Err(format!(
                "action {:?}: maxDataBytes must be from 1 to {MAX_MAX_DATA_BYTES}",
                a.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_forwarded_actions_names_are_read_when_set() {
        let read = |vars: &[(&str, &str)]| {
            Config::from_lookup(|name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let table = (TABLE_NAME, "Connections");
        assert!(read(&[table]).expect("config").forwarded_actions.is_empty());
        let config = read(&[
            table,
            (
                FORWARDED_ACTIONS,
                r#"[{"name":"submitJob","maxDataBytes":10}]"#,
            ),
        ])
        .expect("config");
        assert_eq!(config.forwarded_actions, ["submitJob"]);
        // The same rules as the forward handler's: a built-in route is refused, named.
        let err = read(&[
            table,
            (FORWARDED_ACTIONS, r#"[{"name":"join","maxDataBytes":10}]"#),
        ])
        .expect_err("a built-in route");
        assert!(err.to_string().contains("FORWARDED_ACTIONS"), "{err}");
        assert!(err.to_string().contains("built-in route"), "{err}");
    }

    fn forward_config(vars: &[(&str, &str)]) -> Result<Option<ForwardConfig>, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ForwardConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn forwarding_is_read_when_a_bus_is_set() {
        assert_eq!(forward_config(&[(FORWARDED_ACTIONS, "[]")]), Ok(None));
        let c = forward_config(&[
            (EVENT_BUS_NAME, "wsstack-dev"),
            (EVENT_SOURCE, "wsstack.dev"),
            (
                FORWARDED_ACTIONS,
                r#"[{"name": "doThing", "maxDataBytes": 4096}, {"name": "ping"}]"#,
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.event_bus_name, "wsstack-dev");
        assert_eq!(c.event_source, "wsstack.dev");
        assert_eq!(c.action("doThing").map(|a| a.max_data_bytes), Some(4096));
        assert_eq!(
            c.action("ping").map(|a| a.max_data_bytes),
            Some(wsstack_routes::bridge::DEFAULT_MAX_DATA_BYTES)
        );
        assert_eq!(c.action("sendMessage"), None);
    }

    #[test]
    fn bad_forwarding_values_name_the_variable() {
        let long_name = format!(
            r#"[{{"name": "{}"}}]"#,
            "a".repeat(MAX_ACTION_NAME_CHARS + 1)
        );
        let bus = (EVENT_BUS_NAME, "bus");
        let source = (EVENT_SOURCE, "wsstack.dev");
        assert_eq!(
            forward_config(&[bus, (FORWARDED_ACTIONS, "[]")]),
            Err(ConfigError::Missing { name: EVENT_SOURCE })
        );
        assert_eq!(
            forward_config(&[bus, source]),
            Err(ConfigError::Missing {
                name: FORWARDED_ACTIONS
            })
        );
        let source_err = forward_config(&[bus, (EVENT_SOURCE, "aws.x")]).unwrap_err();
        assert!(
            matches!(
                &source_err,
                ConfigError::Invalid {
                    name: EVENT_SOURCE,
                    ..
                }
            ),
            "{source_err}"
        );
        assert!(source_err.to_string().contains("aws."), "{source_err}");
        for (actions, says) in [
            ("[{", "line 1 column 2"),
            (r#"[{"nom": "x"}]"#, "name"),
            (r#"[{"name": ""}]"#, "printable"),
            (r#"[{"name": "a b"}]"#, "printable"),
            (long_name.as_str(), "printable"),
            (r#"[{"name": "join"}]"#, "built-in"),
            (r#"[{"name": "$ping"}]"#, "reserves"),
            (r#"[{"name": "x"}, {"name": "x"}]"#, "twice"),
            (r#"[{"name": "x", "maxDataBytes": 0}]"#, "maxDataBytes"),
            (r#"[{"name": "x", "maxDataBytes": 131073}]"#, "maxDataBytes"),
        ] {
            let err = forward_config(&[bus, source, (FORWARDED_ACTIONS, actions)]).unwrap_err();
            assert!(
                matches!(
                    &err,
                    ConfigError::Invalid {
                        name: FORWARDED_ACTIONS,
                        ..
                    }
                ),
                "{actions}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(FORWARDED_ACTIONS) && text.contains(says),
                "{text}"
            );
        }
    }

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
        let c = config(&[
            (TABLE_NAME, "Tbl"),
            (AUTH_MODE, "jwt"),
            (MESSAGE_RATE, "5"),
            (MESSAGE_BURST, "7"),
            (USER_MESSAGE_RATE, "750"),
            (USER_MESSAGE_BURST, "9"),
            (BROADCAST_BUDGET, "2500"),
        ])
        .unwrap();
        assert_eq!(
            c.user_rate,
            MessageRate {
                per_second: 750,
                burst: 9
            }
        );
        assert_eq!(c.broadcast_budget, budget(2500));
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
    fn queue_mode_reads_its_queue_and_segments() {
        let c = config(&[
            (TABLE_NAME, "Tbl"),
            (FANOUT_MODE, "queue"),
            (FANOUT_QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/1/q"),
            (FANOUT_SEGMENTS, "16"),
        ])
        .unwrap();
        assert_eq!(
            c.fanout,
            Fanout::Queue {
                queue_url: "https://sqs.eu-west-1.amazonaws.com/1/q".into(),
                segments: 16
            }
        );
        assert_eq!(c.fanout.mode(), FanoutMode::Queue);
        let inline = config(&[
            (TABLE_NAME, "Tbl"),
            (FANOUT_QUEUE_URL, "http://127.0.0.1:1/q"),
        ])
        .unwrap();
        assert_eq!(
            inline.fanout,
            Fanout::Inline {
                handoff_queue_url: Some("http://127.0.0.1:1/q".into())
            },
            "inline mode hands off to the queue when it has one"
        );
        assert_eq!(inline.fanout.mode(), FanoutMode::Inline);
        assert_eq!(inline.max_job_age, DEFAULT_MAX_JOB_AGE);
        let aged = config(&[(TABLE_NAME, "Tbl"), (FANOUT_MAX_JOB_AGE_SECONDS, "120")]).unwrap();
        assert_eq!(aged.max_job_age, Duration::from_secs(120));
        let missing = config(&[(TABLE_NAME, "Tbl"), (FANOUT_MODE, "queue")]).unwrap_err();
        assert_eq!(
            missing,
            ConfigError::Missing {
                name: FANOUT_QUEUE_URL
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
        // Every handler of the route table, in its order (derived: a new handler is listed
        // without editing this test).
        let valid = Handler::names().collect::<Vec<_>>().join(", ");
        assert!(valid.starts_with("connect, disconnect, send-message"));
        assert_eq!(
            err.to_string(),
            format!(
                "environment variable _HANDLER=\"bootstrap\" names no handler: valid names are {valid}"
            )
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
                vec![(TABLE_NAME, "Tbl"), (ROOMS_TABLE_NAME, "r")],
                ROOMS_TABLE_NAME,
            ),
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
                vec![(TABLE_NAME, "Tbl"), (USER_MESSAGE_RATE, "0")],
                USER_MESSAGE_RATE,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (USER_MESSAGE_BURST, "1001")],
                USER_MESSAGE_BURST,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_BUDGET, "10001")],
                BROADCAST_BUDGET,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (BROADCAST_BUDGET, "0")],
                BROADCAST_BUDGET,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (CALLBACK_URL, "ftp://x/dev")],
                CALLBACK_URL,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (FANOUT_MODE, "fast")],
                FANOUT_MODE,
            ),
            (
                vec![
                    (TABLE_NAME, "Tbl"),
                    (FANOUT_MODE, "queue"),
                    (FANOUT_QUEUE_URL, "my-queue"),
                ],
                FANOUT_QUEUE_URL,
            ),
            (
                vec![
                    (TABLE_NAME, "Tbl"),
                    (FANOUT_MODE, "queue"),
                    (FANOUT_QUEUE_URL, "http://127.0.0.1:1/q"),
                    (FANOUT_SEGMENTS, "0"),
                ],
                FANOUT_SEGMENTS,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (CALLBACK_URL, "https:///dev")],
                CALLBACK_URL,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (FANOUT_MAX_JOB_AGE_SECONDS, "59")],
                FANOUT_MAX_JOB_AGE_SECONDS,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (FANOUT_MAX_JOB_AGE_SECONDS, "7201")],
                FANOUT_MAX_JOB_AGE_SECONDS,
            ),
            (
                vec![(TABLE_NAME, "Tbl"), (FANOUT_MAX_JOB_AGE_SECONDS, "1h")],
                FANOUT_MAX_JOB_AGE_SECONDS,
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
