//! Per-environment settings: one TOML file per stage in `stages/` (`dev.toml`, `prod.toml`, ...).
//!
//! The file name is the stage name. Every field is optional and has a default, so a stage file
//! says only what differs. A bad file is an error naming the file, line, column and field, and
//! what is allowed.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wsstack_routes::{Handler, Invocation, ROUTES};

use lambda::{FunctionFields, LambdaSection};

/// `[fanout] mode`: the routes crate's, the one type every crate uses.
pub use wsstack_routes::FanoutMode;

pub use alarms::{ALARM_PERIOD_SECONDS, AlarmSettings, AlarmTarget};
pub use auth::{AuthSettings, IdentityProvider, JwtSettings};
pub use example_backend::ExampleBackendSettings;

mod alarms;
mod auth;
mod custom_domain;
pub mod example_backend;
mod lambda;
pub mod manifest;

/// What a signed-in user may change on themselves: settings that nobody else sees and nothing
/// trusts. Not `preferred_username` (the name others see), nor `email` (the sign-in name), nor
/// any other name (`name`, `nickname`, `given_name`, ...). The app client's `WriteAttributes` in
/// stages that create the user pool; a stage may not take the username from one of them.
pub const USER_WRITABLE_ATTRIBUTES: [&str; 2] = ["locale", "zoneinfo"];

/// Where the stage files live, relative to the workspace root.
pub const DEFAULT_STAGES_DIR: &str = "stages";

/// An error in a stage file or in finding one.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{}: cannot read stage file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no stage `{stage}`: {} does not exist (stages found: {found})", path.display())]
    Missing {
        stage: String,
        path: PathBuf,
        found: String,
    },
    #[error("{}: no stage files (*.toml) in this folder", dir.display())]
    NoStages { dir: PathBuf },
    #[error("{}: invalid stage name `{name}`: use 1 to 64 lowercase letters, digits and hyphens, starting with a letter", path.display())]
    InvalidName { path: PathBuf, name: String },
    #[error("{}:{line}:{column}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the field, e.g. `lambda.memory_mb`.
        field: String,
        message: String,
    },
}

/// A stage, resolved: every default applied and every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The stage name: the file stem, used as the API Gateway stage name.
    pub name: String,
    /// The CloudFormation stack name, `wsstack-{name}` unless the file says otherwise.
    pub stack_name: String,
    /// The AWS account to pin the stack to, if any (otherwise environment-agnostic).
    pub account: Option<String>,
    /// The AWS region to pin the stack to, if any.
    pub region: Option<String>,
    /// Function settings, per handler (defaults with the handler's overrides applied).
    pub functions: Vec<(Handler, FunctionSettings)>,
    pub table: TableSettings,
    pub api: ApiSettings,
    /// Whether stack outputs are exported (`Fn::ImportValue`-able) as `{StackName}-{Output}`.
    pub export_outputs: bool,
    /// A custom domain for the API's stage, if the stage file has `[domain]`.
    pub domain: Option<DomainSettings>,
    /// How a broadcast reaches everyone (`[fanout]`).
    pub fanout: FanoutSettings,
    /// Whether CloudFormation refuses to delete the stack (set in the cloud assembly manifest
    /// and applied by `scripts/deploy.py`).
    pub termination_protection: bool,
    /// `[auth]`: who may connect.
    pub auth: AuthSettings,
    /// `[alarms]`: CloudWatch alarms and where they notify.
    pub alarms: AlarmSettings,
    /// `[push_api]`: the backends' HTTP API.
    pub push_api: PushApiSettings,
    /// `[example_backend]`: the example backend service in this stage's stack, where
    /// `enabled = true`; `None` (the default) adds nothing.
    pub example_backend: Option<ExampleBackendSettings>,
}

/// `[push_api]`: the throttling of the push API's `$default` stage, every route
/// (`DefaultRouteSettings`). Past it API Gateway answers 429 before the function runs
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html>).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushApiSettings {
    /// Requests per second, sustained (`ThrottlingRateLimit`).
    pub throttling_rate_limit: f64,
    /// Requests at once: the token bucket's size (`ThrottlingBurstLimit`).
    pub throttling_burst_limit: u32,
}

/// `[fanout]`: how `sendMessage` reaches everyone, and the queue's limits.
///
/// The fan-out queue, its dead-letter queue and the worker exist in both modes: in inline mode
/// `sendMessage` posts itself and hands to the worker, through the queue, what its deadline
/// leaves; in queue mode it only enqueues one job per Scan segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutSettings {
    pub mode: FanoutMode,
    /// Scan segments (= jobs, = parallel workers) a broadcast to everyone is split into.
    pub segments: u32,
    /// Jobs the event source hands the worker per invocation (`BatchSize`).
    pub batch_size: u32,
    /// Receives of a job before SQS moves it to the dead-letter queue (`maxReceiveCount`).
    pub max_receive_count: u32,
    /// The most worker invocations the event source runs at once
    /// (`ScalingConfig.MaximumConcurrency`); `None`: unset, up to 1,000 (Lambda's limit for an
    /// SQS event source). At most the worker's reserved concurrency, which SQS event sources
    /// do not respect on their own
    /// (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html>).
    pub max_concurrency: Option<u32>,
    /// The oldest a fan-out job may be, counted from its message's first enqueue across every
    /// continuation, before the worker drops it (`FANOUT_MAX_JOB_AGE_SECONDS`).
    pub max_job_age_seconds: u32,
}

/// `[domain]`: a Regional custom domain name mapped to this stage
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-custom-domain-names.html>).
#[derive(Debug, Clone, PartialEq)]
pub struct DomainSettings {
    /// The domain name clients connect to, e.g. `chat.example.com`.
    pub name: String,
    /// The ARN of a Regional ACM certificate for `name`, in the stack's region.
    pub certificate_arn: String,
    /// The API mapping key: clients connect to `wss://{name}/{base_path}`; none maps the root.
    pub base_path: Option<String>,
}

impl Stage {
    /// What deploying this stage asks of the account, as `scripts/deploy.py check` reads it
    /// (`synth --stage NAME --account-needs`): the functions' reserved concurrency together,
    /// and whether the stage writes access logs (which need API Gateway's CloudWatch role).
    /// Computed here, from the resolved stage, so the preflight never re-implements the
    /// stage file's defaults and per-handler overrides.
    pub fn account_needs(&self) -> serde_json::Value {
        let reserved: u32 = self
            .functions
            .iter()
            .filter_map(|(_, f)| f.reserved_concurrency)
            .sum();
        serde_json::json!({
            "stage": self.name,
            "stack_name": self.stack_name,
            "reserved": reserved,
            "access_logs": self.api.access_logs,
        })
    }

    /// The settings of one handler's function.
    pub fn function(&self, handler: Handler) -> &FunctionSettings {
        // `parse` fills in every handler of `Handler::ALL`, so the fallback is never taken.
        self.functions
            .iter()
            .find(|(h, _)| *h == handler)
            .map(|(_, s)| s)
            .unwrap_or(&self.functions[0].1)
    }
}

/// A function's instruction set: the stage file's `architecture`, and the function's
/// `Architectures` in the template (the same spelling, so one type serves both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Architecture {
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

/// Lambda's application log levels (`LoggingConfig.ApplicationLogLevel`): the stage file's
/// `log_level` and the template's, one type for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSettings {
    pub memory_mb: u32,
    pub timeout_seconds: u32,
    pub architecture: Architecture,
    pub log_level: LogLevel,
    pub log_retention_days: u32,
    pub reserved_concurrency: Option<u32>,
    /// How many `@connections` posts a broadcast keeps in flight.
    pub broadcast_concurrency: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    PayPerRequest,
    Provisioned,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableSettings {
    pub billing_mode: BillingMode,
    /// Read and write capacity units, set exactly when `billing_mode` is `PROVISIONED`.
    pub capacity: Option<(u32, u32)>,
    pub point_in_time_recovery: bool,
    /// Keep the table (and its data) when the stack deletes or replaces it.
    pub retain: bool,
    pub deletion_protection: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub throttling_burst_limit: u32,
    pub throttling_rate_limit: f64,
    pub detailed_metrics: bool,
    /// Access logs of the stage to their own log group. WebSocket APIs need API Gateway's
    /// account-level CloudWatch role for this (set once per account and region).
    pub access_logs: bool,
    /// Retention of the access log group: the stage's `[lambda] log_retention_days`.
    pub access_log_retention_days: u32,
    /// Each connection's sustained request rate, per second, on every client route.
    pub message_rate: u32,
    /// How many requests a connection may send at once after being quiet.
    pub message_burst: u32,
    /// Each user's (verified `sub`) request rate across their connections, per second; applies
    /// in stages with `[auth] mode = "jwt"`.
    pub user_message_rate: u32,
    /// How many requests a user may send at once across their connections.
    pub user_message_burst: u32,
    /// The stage's broadcast deliveries (posts to `@connections`) per second.
    pub broadcast_budget: u32,
}

/// The most a route's function may run: API Gateway stops waiting for a WebSocket integration
/// after 29 s, a quota that cannot be raised. A longer function runs on after the client got
/// its error.
pub const ROUTE_TIMEOUT_MAX_SECONDS: u32 = 29;
/// The page that states the integration timeout quota.
pub const WEBSOCKET_QUOTAS_PAGE: &str = "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html";

/// The most the push API's function may run: an HTTP API's integration timeout is at most 30 s,
/// a quota that cannot be raised.
pub const HTTP_API_TIMEOUT_MAX_SECONDS: u32 = 30;
/// The page that states the HTTP API quotas.
pub const HTTP_API_QUOTAS_PAGE: &str =
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html";

/// The most a stage's functions may reserve together: Lambda keeps 100 of an account's
/// concurrency unreserved, and the default quota is 1,000. Accounts with a lower quota (new
/// accounts often have 10) are caught by `scripts/deploy.py check`, which reads the account.
pub const RESERVED_CONCURRENCY_MAX: u32 = 900;
/// The page that states the reserved concurrency rule.
pub const RESERVED_CONCURRENCY_PAGE: &str =
    "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html";

/// The retention periods CloudWatch Logs accepts, in days.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

// ---- The file format. Ranged numbers are checked while parsing, so the error carries the
// ---- position of the offending value.

macro_rules! ranged {
    ($name:ident, $ty:ty, $lo:expr, $hi:expr, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
        #[serde(try_from = "i64")]
        struct $name($ty);

        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(v: i64) -> Result<Self, String> {
                if ($lo as i64..=$hi as i64).contains(&v) {
                    Ok($name(v as $ty))
                } else {
                    Err(format!(
                        "{v} is out of range: allowed {}..={} {}",
                        $lo, $hi, $what
                    ))
                }
            }
        }
    };
}

ranged!(MemoryMb, u32, 128, 10240, "MiB");
ranged!(TimeoutSeconds, u32, 1, 900, "seconds");
ranged!(
    ReservedConcurrency,
    u32,
    1,
    RESERVED_CONCURRENCY_MAX,
    "concurrent executions (Lambda keeps 100 of the default account quota of 1,000 unreserved: https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)"
);
// The upper bound follows from Lambda's 1,024 file-descriptor quota (see the constant).
ranged!(
    BroadcastConcurrency,
    u32,
    1,
    wsstack_routes::limits::MAX_BROADCAST_CONCURRENCY,
    "posts in flight (Lambda's 1,024 file descriptors allow no more)"
);
ranged!(
    BurstLimit,
    u32,
    0,
    5000,
    "requests (the account's default burst quota)"
);
ranged!(
    MessageRate,
    u32,
    1,
    1000,
    "messages (per second for message_rate, at once for message_burst)"
);
ranged!(
    UserMessageRate,
    u32,
    1,
    1000,
    "requests (per second for user_message_rate, at once for user_message_burst)"
);
// The account's whole @connections quota (10,000 requests/s per account and Region, shared by
// every API: https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
ranged!(
    BroadcastBudget,
    u32,
    1,
    10000,
    "deliveries per second (the account's 10,000 requests/s, shared by every API of the account and Region)"
);
ranged!(CapacityUnits, u32, 1, 40000, "capacity units");
ranged!(
    FanoutSegments,
    u32,
    1,
    wsstack_routes::limits::MAX_FANOUT_SEGMENTS,
    "segments (more parallel workers than the account's 10,000 @connections requests/s can feed only add 429s)"
);
// Without a batching window an SQS event source takes at most 10 messages per batch
// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
ranged!(
    FanoutBatchSize,
    u32,
    1,
    10,
    "jobs per invocation (an SQS event source without a batching window takes at most 10)"
);
// An SQS event source's ScalingConfig.MaximumConcurrency takes 2..=1000
// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
ranged!(
    FanoutMaxConcurrency,
    u32,
    2,
    1000,
    "concurrent worker invocations (an SQS event source's MaximumConcurrency)"
);
// SQS's redrive policy accepts 1..=1000 (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html).
// The bounds and their reasons live with the worker that enforces them.
ranged!(
    MaxJobAgeSeconds,
    u32,
    wsstack_routes::limits::MIN_MAX_JOB_AGE_SECONDS,
    wsstack_routes::limits::MAX_MAX_JOB_AGE_SECONDS,
    "seconds (past 2 h, API Gateway's longest connection, nobody who was connected when the message was sent is left)"
);
ranged!(
    MaxReceiveCount,
    u32,
    1,
    1000,
    "receives before the dead-letter queue"
);

// An HTTP API stage takes the account's quota at most: 10,000 requests per second, a burst of
// 5,000, shared by every API of the account and Region
// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html). Zero,
// which API Gateway accepts, would answer every push 429: a backend could never reply.
ranged!(
    PushBurstLimit,
    u32,
    1,
    5000,
    "requests at once (0 would refuse every push; 5,000 is the account's default burst quota, shared by every API of the account and Region)"
);

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
struct PushRateLimit(f64);

impl TryFrom<f64> for PushRateLimit {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (1.0..=10000.0).contains(&v) {
            Ok(PushRateLimit(v))
        } else {
            Err(format!(
                "{v} is out of range: allowed 1..=10000 requests per second (less than 1 refuses pushes most of the time; 10,000 is the account's default rate quota, shared by every API of the account and Region)"
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "i64")]
struct RetentionDays(u32);

impl TryFrom<i64> for RetentionDays {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        u32::try_from(v)
            .ok()
            .filter(|d| LOG_RETENTION_DAYS.contains(d))
            .map(RetentionDays)
            .ok_or_else(|| {
                let allowed: Vec<String> = LOG_RETENTION_DAYS.iter().map(u32::to_string).collect();
                format!(
                    "{v} days is not a retention CloudWatch Logs accepts; allowed: {}",
                    allowed.join(", ")
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
struct RateLimit(f64);

impl TryFrom<f64> for RateLimit {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=10000.0).contains(&v) {
            Ok(RateLimit(v))
        } else {
            Err(format!(
                "{v} is out of range: allowed 0..=10000 requests per second (the account's default rate quota)"
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    stack_name: Option<String>,
    account: Option<String>,
    region: Option<String>,
    #[serde(default)]
    lambda: LambdaSection,
    #[serde(default)]
    table: TableSection,
    #[serde(default)]
    api: ApiSection,
    #[serde(default)]
    outputs: OutputsSection,
    #[serde(default)]
    fanout: FanoutSection,
    domain: Option<DomainSection>,
    termination_protection: Option<bool>,
    auth: Option<auth::AuthSection>,
    #[serde(default)]
    alarms: alarms::AlarmsSection,
    #[serde(default)]
    push_api: PushApiSection,
    #[serde(default)]
    example_backend: example_backend::ExampleBackendSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushApiSection {
    throttling_rate_limit: Option<PushRateLimit>,
    throttling_burst_limit: Option<PushBurstLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainSection {
    name: toml::Spanned<String>,
    certificate_arn: toml::Spanned<String>,
    base_path: Option<toml::Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSection {
    billing_mode: Option<BillingMode>,
    read_capacity: Option<toml::Spanned<CapacityUnits>>,
    write_capacity: Option<toml::Spanned<CapacityUnits>>,
    point_in_time_recovery: Option<bool>,
    retain: Option<bool>,
    deletion_protection: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    throttling_burst_limit: Option<BurstLimit>,
    throttling_rate_limit: Option<RateLimit>,
    detailed_metrics: Option<bool>,
    access_logs: Option<bool>,
    message_rate: Option<MessageRate>,
    message_burst: Option<MessageRate>,
    user_message_rate: Option<UserMessageRate>,
    user_message_burst: Option<UserMessageRate>,
    broadcast_budget: Option<BroadcastBudget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FanoutSection {
    mode: Option<FanoutMode>,
    segments: Option<FanoutSegments>,
    batch_size: Option<FanoutBatchSize>,
    max_receive_count: Option<MaxReceiveCount>,
    max_concurrency: Option<toml::Spanned<FanoutMaxConcurrency>>,
    max_job_age_seconds: Option<MaxJobAgeSeconds>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputsSection {
    export: Option<bool>,
}

/// The defaults a stage file overrides.
const DEFAULT_FUNCTION: FunctionSettings = FunctionSettings {
    memory_mb: 256,
    timeout_seconds: 10,
    architecture: Architecture::Arm64,
    log_level: LogLevel::Info,
    log_retention_days: 14,
    reserved_concurrency: None,
    broadcast_concurrency: 64,
};

/// Reads every `*.toml` stage in `dir`, sorted by name.
pub fn load_all(dir: &Path) -> Result<Vec<Stage>, StageError> {
    let names = stage_names(dir)?;
    if names.is_empty() {
        return Err(StageError::NoStages {
            dir: dir.to_owned(),
        });
    }
    names.iter().map(|n| load(dir, n)).collect()
}

/// Reads `{dir}/{name}.toml`.
pub fn load(dir: &Path, name: &str) -> Result<Stage, StageError> {
    let path = dir.join(format!("{name}.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let found = stage_names(dir).unwrap_or_default();
            return Err(StageError::Missing {
                stage: name.to_owned(),
                path,
                found: if found.is_empty() {
                    "none".to_owned()
                } else {
                    found.join(", ")
                },
            });
        }
        Err(source) => return Err(StageError::Read { path, source }),
    };
    parse(&path, name, &text)
}

/// The stage names (file stems) of the `*.toml` files in `dir`, sorted.
pub fn stage_names(dir: &Path) -> Result<Vec<String>, StageError> {
    let read = |source| StageError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `name` is usable as a stage name: in the API Gateway stage, the stack name and the
/// cloud assembly artifact ID alike.
pub fn is_valid_stage_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `id` has the form of an AWS account ID: 12 digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A stage file error before it is located in the text: the value's span (if known), the
/// field, the message.
type FieldError = (Option<Range<usize>>, String, String);

/// Parses and resolves a stage file's text. `path` is only for messages.
pub fn parse(path: &Path, name: &str, text: &str) -> Result<Stage, StageError> {
    if !is_valid_stage_name(name) {
        return Err(StageError::InvalidName {
            path: path.to_owned(),
            name: name.to_owned(),
        });
    }
    let invalid = |span: Option<Range<usize>>, field: String, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        StageError::Invalid {
            path: path.to_owned(),
            line,
            column,
            field,
            message,
        }
    };
    let spanned = |(span, field, message): (Range<usize>, String, String)| {
        invalid(Some(span), field, message)
    };

    let file = deserialize(text).map_err(|(span, field, message)| invalid(span, field, message))?;
    let auth = match &file.auth {
        None => AuthSettings::None,
        Some(a) => auth::check(a).map_err(spanned)?,
    };
    let alarms = alarms::check(&file.alarms).map_err(spanned)?;
    let defaults = apply(&DEFAULT_FUNCTION, &file.lambda.defaults);
    let example_backend =
        example_backend::check(&file.example_backend, &defaults).map_err(spanned)?;
    let functions = stage_functions(&file.lambda, &auth);
    check_functions(&file.lambda, &functions)
        .map_err(|(span, field, message)| invalid(span, field, message))?;
    let table = table_settings(&file.table)
        .map_err(|(span, field, message)| invalid(span, field, message))?;

    let mut stage = Stage {
        name: name.to_owned(),
        stack_name: file
            .stack_name
            .clone()
            .unwrap_or_else(|| format!("wsstack-{name}")),
        account: file.account.clone(),
        region: file.region.clone(),
        functions,
        table,
        api: api_settings(&file.api, &defaults),
        export_outputs: file.outputs.export.unwrap_or(false),
        domain: None,
        fanout: fanout_settings(&file.fanout),
        termination_protection: file.termination_protection.unwrap_or(false),
        auth,
        alarms,
        push_api: push_api_settings(&file.push_api),
        example_backend,
    };
    stage.fanout.max_concurrency = fanout_max_concurrency(&file.fanout, &stage).map_err(spanned)?;
    let mut stage = check_names(path, text, &file, stage)?;
    if let Some(d) = &file.domain {
        stage.domain = Some(custom_domain::check(d, stage.region.as_deref()).map_err(spanned)?);
    }
    Ok(stage)
}

/// The stage file's TOML, deserialized: a syntax error or the path of the field serde refused,
/// with its span.
fn deserialize(text: &str) -> Result<StageFile, FieldError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| (e.span(), "(syntax)".to_owned(), e.message().to_owned()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = FieldPath(e.path()).to_string();
        let inner = e.into_inner();
        (inner.span(), field, inner.message().to_owned())
    })
}

/// The stage's functions with their settings (the defaults under each one's own): a function
/// per route handler, the fan-out worker, the forwarded actions and the push API, and the
/// authorizer's and the token sweeper's where the stage authenticates.
fn stage_functions(
    lambda: &LambdaSection,
    auth: &AuthSettings,
) -> Vec<(Handler, FunctionSettings)> {
    Handler::ALL
        .iter()
        .filter(|h| match h.invocation() {
            Invocation::Route
            | Invocation::FanoutQueue
            | Invocation::ForwardedActions
            | Invocation::PushApi => true,
            Invocation::ConnectAuthorizer | Invocation::Schedule => auth.jwt().is_some(),
        })
        .map(|&h| (h, apply(&DEFAULT_FUNCTION, &lambda.fields(h))))
        .collect()
}

/// `[table]`, resolved: capacity is required with `PROVISIONED` and refused with
/// `PAY_PER_REQUEST` (the default), as DynamoDB does.
fn table_settings(t: &TableSection) -> Result<TableSettings, FieldError> {
    let billing_mode = t.billing_mode.unwrap_or(BillingMode::PayPerRequest);
    let capacity = match (billing_mode, &t.read_capacity, &t.write_capacity) {
        (BillingMode::Provisioned, Some(r), Some(w)) => Some((r.get_ref().0, w.get_ref().0)),
        (BillingMode::Provisioned, r, w) => {
            let (field, span) = if r.is_none() {
                ("table.read_capacity", w.as_ref().map(|s| s.span()))
            } else {
                ("table.write_capacity", r.as_ref().map(|s| s.span()))
            };
            return Err((
                span,
                field.to_owned(),
                "billing_mode = \"PROVISIONED\" needs both read_capacity and write_capacity"
                    .to_owned(),
            ));
        }
        (BillingMode::PayPerRequest, Some(c), _) | (BillingMode::PayPerRequest, None, Some(c)) => {
            let field = if t.read_capacity.is_some() {
                "table.read_capacity"
            } else {
                "table.write_capacity"
            };
            return Err((
                Some(c.span()),
                field.to_owned(),
                "capacity is only allowed with billing_mode = \"PROVISIONED\"".to_owned(),
            ));
        }
        (BillingMode::PayPerRequest, None, None) => None,
    };
    Ok(TableSettings {
        billing_mode,
        capacity,
        point_in_time_recovery: t.point_in_time_recovery.unwrap_or(false),
        retain: t.retain.unwrap_or(false),
        deletion_protection: t.deletion_protection.unwrap_or(false),
    })
}

/// `[api]`, with its defaults; the access logs are kept as long as the functions' logs.
fn api_settings(api: &ApiSection, defaults: &FunctionSettings) -> ApiSettings {
    ApiSettings {
        throttling_burst_limit: api.throttling_burst_limit.map_or(500, |v| v.0),
        throttling_rate_limit: api.throttling_rate_limit.map_or(1000.0, |v| v.0),
        detailed_metrics: api.detailed_metrics.unwrap_or(false),
        access_logs: api.access_logs.unwrap_or(false),
        access_log_retention_days: defaults.log_retention_days,
        message_rate: api.message_rate.map_or(10, |v| v.0),
        message_burst: api.message_burst.map_or(20, |v| v.0),
        user_message_rate: api.user_message_rate.map_or(20, |v| v.0),
        user_message_burst: api.user_message_burst.map_or(40, |v| v.0),
        broadcast_budget: api.broadcast_budget.map_or(5000, |v| v.0),
    }
}

/// `[push_api]`, with its defaults: the `[api]` defaults, 1,000 requests per second and 500 at
/// once; each push costs at least one `@connections` post from the account's 10,000 per second.
fn push_api_settings(push_api: &PushApiSection) -> PushApiSettings {
    PushApiSettings {
        throttling_rate_limit: push_api.throttling_rate_limit.map_or(1000.0, |v| v.0),
        throttling_burst_limit: push_api.throttling_burst_limit.map_or(500, |v| v.0),
    }
}

/// `[fanout]`, with its defaults; `max_concurrency` is resolved later, against the worker's
/// reserved concurrency ([`fanout_max_concurrency`]).
fn fanout_settings(fanout: &FanoutSection) -> FanoutSettings {
    FanoutSettings {
        mode: fanout.mode.unwrap_or(FanoutMode::Inline),
        segments: fanout.segments.map_or(8, |v| v.0),
        batch_size: fanout.batch_size.map_or(1, |v| v.0),
        max_receive_count: fanout.max_receive_count.map_or(5, |v| v.0),
        max_concurrency: None,
        max_job_age_seconds: fanout
            .max_job_age_seconds
            .map_or(wsstack_routes::limits::DEFAULT_MAX_JOB_AGE_SECONDS, |v| v.0),
    }
}

/// `[fanout] max_concurrency`, resolved: the stage's value, at most the worker's reserved
/// concurrency; by default that reservation (where it is at least 2, the least the event source
/// takes), else unset. An SQS event source does not respect reserved concurrency: past it Lambda
/// throttles, and the throttled jobs go back to the queue counting toward `maxReceiveCount`
/// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
fn fanout_max_concurrency(
    fanout: &FanoutSection,
    stage: &Stage,
) -> Result<Option<u32>, (Range<usize>, String, String)> {
    let reserved = stage.function(Handler::FanoutWorker).reserved_concurrency;
    match (&fanout.max_concurrency, reserved) {
        (Some(v), Some(r)) if v.get_ref().0 > r => Err((
            v.span(),
            "fanout.max_concurrency".to_owned(),
            format!(
                "{} is more than the fanout-worker's reserved concurrency, {r}: an SQS event source does not respect reserved concurrency, so past it Lambda throttles and the throttled jobs count toward max_receive_count (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html); {}",
                v.get_ref().0,
                if r >= 2 {
                    format!("set at most {r}, or reserve more")
                } else {
                    "the event source takes at least 2: reserve at least 2, or leave max_concurrency out".to_owned()
                }
            ),
        )),
        (Some(v), _) => Ok(Some(v.get_ref().0)),
        (None, r) => Ok(r.filter(|r| *r >= 2)),
    }
}

/// What AWS would refuse of the functions together, as (span, field, message): a route's
/// function timing out after API Gateway gave up, or more reserved concurrency than an account
/// can give.
fn check_functions(
    lambda: &LambdaSection,
    functions: &[(Handler, FunctionSettings)],
) -> Result<(), FieldError> {
    for (h, settings) in functions {
        check_integration_timeout(lambda, *h, settings)?;
    }
    check_reserved_concurrency(lambda, functions)
}

/// A function behind an API Gateway integration (a WebSocket route's, the forwarded actions',
/// the push API's) must not time out after API Gateway gave up on it: the integration timeout
/// quota cannot be raised, so a function that runs longer runs on for nobody.
fn check_integration_timeout(
    lambda: &LambdaSection,
    h: Handler,
    settings: &FunctionSettings,
) -> Result<(), FieldError> {
    // API Gateway gives up on an integration after its timeout quota, which cannot be
    // raised: a WebSocket route's (the route table's and the forwarded actions') or the
    // push API's (an HTTP API). A function that runs longer runs on for nobody.
    let is_route =
        ROUTES.iter().any(|r| r.handler == h) || h.invocation() == Invocation::ForwardedActions;
    let (max, what, quota) = if is_route {
        (
            ROUTE_TIMEOUT_MAX_SECONDS,
            "a route integration",
            format!(
                "API Gateway's WebSocket integration timeout quota is 50 ms to {ROUTE_TIMEOUT_MAX_SECONDS} s and cannot be raised ({WEBSOCKET_QUOTAS_PAGE})"
            ),
        )
    } else if h.invocation() == Invocation::PushApi {
        (
            HTTP_API_TIMEOUT_MAX_SECONDS,
            "the push API's integration",
            format!(
                "API Gateway's HTTP API integration timeout quota is at most {HTTP_API_TIMEOUT_MAX_SECONDS} s and cannot be raised ({HTTP_API_QUOTAS_PAGE})"
            ),
        )
    } else {
        return Ok(());
    };
    if settings.timeout_seconds > max {
        let (field, span) = lambda
            .origin(h, "timeout_seconds", |f| f.timeout_seconds.as_ref())
            .map_or(
                (format!("lambda.{}.timeout_seconds", h.name()), None),
                |(f, s)| (f, Some(s)),
            );
        return Err((
            span,
            field,
            format!(
                "{} s is too long for the {} function, {what}: {quota}; set at most {max}",
                settings.timeout_seconds,
                h.name()
            ),
        ));
    }
    Ok(())
}

/// The functions together must not reserve more concurrency than the default account quota
/// leaves reservable; the error points at the last setting that adds to the total.
fn check_reserved_concurrency(
    lambda: &LambdaSection,
    functions: &[(Handler, FunctionSettings)],
) -> Result<(), FieldError> {
    let reserved: Vec<(Handler, u32)> = functions
        .iter()
        .filter_map(|(h, s)| s.reserved_concurrency.map(|r| (*h, r)))
        .collect();
    let total: u32 = reserved.iter().map(|(_, r)| r).sum();
    if total > RESERVED_CONCURRENCY_MAX {
        // Point at the last setting that adds to the total.
        let (field, span) = reserved
            .iter()
            .rev()
            .find_map(|(h, _)| {
                lambda.origin(*h, "reserved_concurrency", |f| {
                    f.reserved_concurrency.as_ref()
                })
            })
            .map_or(
                ("lambda.reserved_concurrency".to_owned(), None),
                |(f, s)| (f, Some(s)),
            );
        let parts: Vec<String> = reserved
            .iter()
            .map(|(h, r)| format!("{} {r}", h.name()))
            .collect();
        return Err((
            span,
            field,
            format!(
                "the functions together reserve {total} concurrent executions ({}); at most {RESERVED_CONCURRENCY_MAX} fit the default account quota of 1,000, of which Lambda keeps 100 unreserved ({RESERVED_CONCURRENCY_PAGE})",
                parts.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Checks the free-form names (stack name, account, region) against what AWS accepts.
fn check_names(
    path: &Path,
    text: &str,
    file: &StageFile,
    stage: Stage,
) -> Result<Stage, StageError> {
    let bad = |field: &str, message: String| {
        // Point at the key's line: these strings are plain values, not spanned.
        let offset = text
            .lines()
            .scan(0, |pos, l| {
                let start = *pos;
                *pos += l.len() + 1;
                Some((start, l))
            })
            .find(|(_, l)| l.trim_start().starts_with(field))
            .map_or(0, |(start, _)| start);
        let (line, column) = line_column(text, offset);
        Err(StageError::Invalid {
            path: path.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
        })
    };
    let s = &stage.stack_name;
    if file.stack_name.is_some()
        && !(s.len() <= 128
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return bad(
            "stack_name",
            format!(
                "`{s}` is not a CloudFormation stack name: letters, digits and hyphens, starting with a letter, at most 128"
            ),
        );
    }
    if let Some(a) = &stage.account
        && !is_account_id(a)
    {
        return bad(
            "account",
            format!("`{a}` is not an AWS account ID (12 digits)"),
        );
    }
    if let Some(r) = &stage.region
        && !(r.split('-').count() >= 3
            && r.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return bad(
            "region",
            format!("`{r}` is not an AWS region name (such as eu-west-1)"),
        );
    }
    Ok(stage)
}

fn apply(defaults: &FunctionSettings, o: &FunctionFields) -> FunctionSettings {
    FunctionSettings {
        memory_mb: o.memory_mb.map_or(defaults.memory_mb, |v| v.0),
        timeout_seconds: o
            .timeout_seconds
            .as_ref()
            .map_or(defaults.timeout_seconds, |v| v.get_ref().0),
        architecture: o.architecture.unwrap_or(defaults.architecture),
        log_level: o.log_level.unwrap_or(defaults.log_level),
        log_retention_days: o
            .log_retention_days
            .map_or(defaults.log_retention_days, |v| v.0),
        reserved_concurrency: o
            .reserved_concurrency
            .as_ref()
            .map(|v| v.get_ref().0)
            .or(defaults.reserved_concurrency),
        broadcast_concurrency: o
            .broadcast_concurrency
            .map_or(defaults.broadcast_concurrency, |v| v.0),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// A serde path as a dotted TOML key path (`lambda.memory_mb`, `lambda.send-message.timeout_seconds`).
struct FieldPath<'a>(&'a serde_path_to_error::Path);

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use serde_path_to_error::Segment;
        let mut first = true;
        for seg in self.0.iter() {
            let s = match seg {
                // `toml::Spanned` reads its value through a private key; it is no field.
                Segment::Map { key } if key.starts_with("$__") => continue,
                Segment::Map { key } | Segment::Enum { variant: key } => key.clone(),
                Segment::Seq { index } => format!("[{index}]"),
                Segment::Unknown => continue,
            };
            if !first {
                f.write_str(".")?;
            }
            f.write_str(&s)?;
            first = false;
        }
        if first {
            f.write_str("(top level)")?;
        }
        Ok(())
    }
}
