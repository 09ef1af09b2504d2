//! `[alarms]`: CloudWatch alarms for the stage, sent to an SNS topic, and the thresholds they
//! fire at. Off unless `enabled = true` (the shipped staging and prod turn it on). Every
//! threshold counts per 5-minute period; the defaults suit a small stage, where one error is
//! already worth a look.

use std::ops::Range;

use serde::Deserialize;

use super::is_account_id;

/// An `[alarms]` error: the value's span, the field, the message.
type AlarmsError = (Range<usize>, String, String);

/// The period every alarm evaluates, in seconds.
pub const ALARM_PERIOD_SECONDS: u32 = 300;

/// `[alarms]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSettings {
    /// Whether the stack has alarms (and their topic) at all. Default: false.
    pub enabled: bool,
    /// Where the alarms notify. Default: a topic the stack creates, with no subscription.
    pub notify: AlarmTarget,
    /// Errors of one function per 5 minutes (Lambda `Errors`, Sum) at which its alarm fires.
    /// Default: 1.
    pub function_errors: u32,
    /// Throttled invocations of one function per 5 minutes (Lambda `Throttles`). Default: 1.
    pub function_throttles: u32,
    /// The API's integration errors per 5 minutes (`IntegrationError`: the integration, a
    /// handler, answered with an error). Default: 5.
    pub integration_errors: u32,
    /// The API's execution errors per 5 minutes (`ExecutionError`: API Gateway failed to call
    /// the integration). Default: 1.
    pub execution_errors: u32,
    /// Age of the oldest fan-out job, in seconds (SQS `ApproximateAgeOfOldestMessage`, Maximum).
    /// Default: 300.
    pub oldest_job_age_seconds: u32,
    /// The authorizer function's errors per 5 minutes, in stages with `[auth] mode = "jwt"`
    /// (replaces `function_errors` for it). Default: 5.
    pub authorizer_errors: u32,
    /// Deliveries answered 429 per 5 minutes, per delivering handler (custom metric
    /// `Throttled`). Default: 100.
    pub throttled_deliveries: u32,
    /// Deliveries cut off at a broadcast's deadline per 5 minutes, per delivering handler
    /// (custom metric `CutOffAtDeadline`). Default: 1.
    pub cut_off_deliveries: u32,
    /// Forwarded actions answered `backend_unavailable` per 5 minutes, per forwarding handler
    /// (custom metric `ForwardFailed`: a client's action that never reached the bus). Default: 1.
    pub forward_failures: u32,
}

/// Where the alarms send their notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmTarget {
    /// A topic the stack creates, subscribed by `email` when given.
    NewTopic { email: Option<String> },
    /// An existing topic, by ARN.
    ExistingTopic(String),
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            enabled: false,
            notify: AlarmTarget::NewTopic { email: None },
            function_errors: 1,
            function_throttles: 1,
            integration_errors: 5,
            execution_errors: 1,
            oldest_job_age_seconds: 300,
            authorizer_errors: 5,
            throttled_deliveries: 100,
            cut_off_deliveries: 1,
            forward_failures: 1,
        }
    }
}

/// The most any count threshold may be: a small stage alarms on a handful; past this an alarm
/// never fires.
pub const COUNT_THRESHOLD_MAX: u32 = 1_000_000;
/// The oldest-job threshold's bounds: at least a minute (SQS reports the metric per minute), at
/// most the queue's retention of a day (an older job is gone).
pub const JOB_AGE_THRESHOLD_SECONDS: (u32, u32) = (60, 86_400);

/// A count threshold, 1..=[`COUNT_THRESHOLD_MAX`] per 5 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "i64")]
pub(super) struct CountThreshold(u32);

impl TryFrom<i64> for CountThreshold {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (1..=i64::from(COUNT_THRESHOLD_MAX)).contains(&v) {
            Ok(CountThreshold(v as u32))
        } else {
            Err(format!(
                "{v} is out of range: allowed 1..={COUNT_THRESHOLD_MAX} per 5 minutes"
            ))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "i64")]
pub(super) struct JobAgeThreshold(u32);

impl TryFrom<i64> for JobAgeThreshold {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        let (lo, hi) = JOB_AGE_THRESHOLD_SECONDS;
        if (i64::from(lo)..=i64::from(hi)).contains(&v) {
            Ok(JobAgeThreshold(v as u32))
        } else {
            Err(format!(
                "{v} is out of range: allowed {lo}..={hi} seconds (the fan-out queue keeps a job a day)"
            ))
        }
    }
}

/// `[alarms]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlarmsSection {
    enabled: Option<bool>,
    email: Option<toml::Spanned<String>>,
    topic_arn: Option<toml::Spanned<String>>,
    function_errors: Option<CountThreshold>,
    function_throttles: Option<CountThreshold>,
    integration_errors: Option<CountThreshold>,
    execution_errors: Option<CountThreshold>,
    oldest_job_age_seconds: Option<JobAgeThreshold>,
    authorizer_errors: Option<CountThreshold>,
    throttled_deliveries: Option<CountThreshold>,
    cut_off_deliveries: Option<CountThreshold>,
    forward_failures: Option<CountThreshold>,
}

/// Checks `[alarms]` and applies the defaults.
pub(super) fn check(a: &AlarmsSection) -> Result<AlarmSettings, AlarmsError> {
    let notify = match (&a.email, &a.topic_arn) {
        (Some(_), Some(arn)) => {
            return Err((
                arn.span(),
                "alarms.topic_arn".to_owned(),
                "give either email (the stack creates a topic and subscribes it) or topic_arn (an existing topic), not both".to_owned(),
            ));
        }
        (None, Some(arn)) if is_topic_arn(arn.get_ref()) => {
            AlarmTarget::ExistingTopic(arn.get_ref().clone())
        }
        (None, Some(arn)) => {
            return Err((
                arn.span(),
                "alarms.topic_arn".to_owned(),
                format!(
                    "`{}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME, the name 1 to 256 letters, digits, `-` and `_`)",
                    arn.get_ref()
                ),
            ));
        }
        (Some(email), None) if is_email(email.get_ref()) => AlarmTarget::NewTopic {
            email: Some(email.get_ref().clone()),
        },
        (Some(email), None) => {
            return Err((
                email.span(),
                "alarms.email".to_owned(),
                format!(
                    "`{}` is not an email address (one `@`, no spaces, a domain with a dot)",
                    email.get_ref()
                ),
            ));
        }
        (None, None) => AlarmTarget::NewTopic { email: None },
    };
    let d = AlarmSettings::default();
    let count = |v: Option<CountThreshold>, default: u32| v.map_or(default, |c| c.0);
    Ok(AlarmSettings {
        enabled: a.enabled.unwrap_or(d.enabled),
        notify,
        function_errors: count(a.function_errors, d.function_errors),
        function_throttles: count(a.function_throttles, d.function_throttles),
        integration_errors: count(a.integration_errors, d.integration_errors),
        execution_errors: count(a.execution_errors, d.execution_errors),
        oldest_job_age_seconds: a
            .oldest_job_age_seconds
            .map_or(d.oldest_job_age_seconds, |v| v.0),
        authorizer_errors: count(a.authorizer_errors, d.authorizer_errors),
        throttled_deliveries: count(a.throttled_deliveries, d.throttled_deliveries),
        cut_off_deliveries: count(a.cut_off_deliveries, d.cut_off_deliveries),
        forward_failures: count(a.forward_failures, d.forward_failures),
    })
}

/// Whether `arn` is a standard SNS topic's ARN (`arn:PARTITION:sns:REGION:ACCOUNT:NAME`). FIFO
/// topics (`.fifo`) are refused: CloudWatch alarms publish only to standard topics.
fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, name] = parts.as_slice() else {
        return false;
    };
    *prefix == "arn"
        && matches!(*partition, "aws" | "aws-cn" | "aws-us-gov")
        && *service == "sns"
        && region.split('-').count() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && is_account_id(account)
        && (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A plausible email address: SNS sends it a confirmation, which is the real check.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_arns() {
        assert!(is_topic_arn(
            "arn:aws:sns:eu-west-1:123456789012:ops-alarms"
        ));
        for bad in [
            "arn:aws:sqs:eu-west-1:123456789012:ops",
            "arn:aws:sns:eu-west-1:1234:ops",
            "arn:aws:sns:eu-west-1:123456789012:",
            "arn:aws:sns:eu-west-1:123456789012:ops.fifo",
            "arn:aws:sns:eu-west-1:123456789012:a:b",
            "ops-alarms",
        ] {
            assert!(!is_topic_arn(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_email("ops@example.com"));
        for bad in [
            "ops",
            "@example.com",
            "ops@example",
            "o ps@example.com",
            "a@b@c.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
