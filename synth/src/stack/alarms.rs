//! The stage's CloudWatch alarms, where `[alarms] enabled = true`: per function its errors and
//! throttles, the API's integration and execution errors, the fan-out queue's dead letters and
//! oldest job, per broadcasting handler the deliveries answered 429 and cut off at a
//! deadline, and per forwarding handler the forwarded actions that failed (wsstack's own
//! metrics, [`wsstack_routes::metrics`]). Every alarm evaluates one
//! 5-minute period, treats missing data as not breaching (no errors were counted), and notifies
//! the alarm topic on `ALARM` and on `OK`. Every dimension is a `Ref`/`Fn::GetAtt` of a
//! resource of the stack.
//!
//! WebSocket API metrics and their dimensions (`ApiId`, `Stage`):
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-logging.html>;
//! Lambda's: <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html>;
//! SQS's: <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html>.

use wsstack_routes::Handler;
use wsstack_routes::metrics::{self, Metric};

use super::{handlers_in, ids};
use crate::cfn::resources::cloudwatch::{
    Alarm, ComparisonOperator, Dimension, Statistic, TreatMissingData,
};
use crate::cfn::{Expr, Resource, Template};
use crate::stage::{ALARM_PERIOD_SECONDS, Stage};

/// CloudWatch namespaces of the metrics alarmed on.
pub const LAMBDA_NAMESPACE: &str = "AWS/Lambda";
pub const API_GATEWAY_NAMESPACE: &str = "AWS/ApiGateway";
pub const SQS_NAMESPACE: &str = "AWS/SQS";

/// One alarm, before it is a resource: every field but the topic, which all alarms share.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmProps {
    /// The logical ID.
    pub id: String,
    /// What fired and what to look at first.
    pub description: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    /// Name and value (a `Ref`/`Fn::GetAtt`) of each dimension.
    pub dimensions: Vec<(&'static str, Expr)>,
    /// `Sum` for counts, `Maximum` for depths and ages.
    pub statistic: Statistic,
    pub threshold: u32,
    /// `>=` the threshold, except where the threshold is 0 (the dead-letter queue: `> 0`).
    pub comparison: ComparisonOperator,
}

impl AlarmProps {
    /// The alarm resource, notifying `topic` on `ALARM` and `OK`.
    pub fn resource(&self, topic: &Expr) -> Resource {
        Resource::new(Alarm {
            alarm_description: self.description.clone(),
            namespace: self.namespace.to_owned(),
            metric_name: self.metric.to_owned(),
            dimensions: self
                .dimensions
                .iter()
                .map(|(name, value)| Dimension {
                    name: (*name).to_owned(),
                    value: value.clone(),
                })
                .collect(),
            statistic: self.statistic,
            period: ALARM_PERIOD_SECONDS,
            evaluation_periods: 1,
            threshold: f64::from(self.threshold),
            comparison_operator: self.comparison,
            treat_missing_data: TreatMissingData::NotBreaching,
            alarm_actions: vec![topic.clone()],
            ok_actions: vec![topic.clone()],
        })
    }
}

/// Adds every alarm of the stage, notifying `topic`; nothing where `topic` is `None` (alarms
/// off). Call after every function, the queues and the API's stage are in `t`.
pub fn add(t: &mut Template, stage: &Stage, topic: Option<&Expr>) {
    let Some(topic) = topic else {
        return;
    };
    for props in alarms(t, stage) {
        t.add(props.id.clone(), props.resource(topic));
    }
}

/// The stage's alarms, in template order: per function, then the API's, then the queue's.
pub fn alarms(t: &Template, stage: &Stage) -> Vec<AlarmProps> {
    let mut out = Vec::new();
    for h in handlers_in(t) {
        out.extend(function_alarms(stage, h));
    }
    out.extend(api_alarms(stage));
    out.extend(queue_alarms(stage));
    out
}

fn count(
    id: String,
    description: String,
    namespace: &'static str,
    metric: &'static str,
    dimensions: Vec<(&'static str, Expr)>,
    threshold: u32,
) -> AlarmProps {
    AlarmProps {
        id,
        description,
        namespace,
        metric,
        dimensions,
        statistic: Statistic::Sum,
        threshold,
        comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
    }
}

/// A function's errors and throttles; for a broadcasting handler, its 429s and cut-offs.
fn function_alarms(stage: &Stage, h: Handler) -> Vec<AlarmProps> {
    let a = &stage.alarms;
    let name = h.name();
    let log_group = ids::log_group(h);
    let function = || vec![("FunctionName", Expr::r#ref(ids::function(h)))];
    let (errors, errors_hint) = if h == Handler::Authorizer {
        (
            a.authorizer_errors,
            "the authorizer failed (not a refused token, which is a Deny, not an error): clients cannot connect. Look first at its log group (AuthorizerLogGroup) for the JWKS fetch (the issuer's keys) and the timeout",
        )
    } else {
        (
            a.function_errors,
            "look first at its log group for ERROR lines and the request ID, then at its Duration against its timeout",
        )
    };
    let mut out = vec![
        count(
            ids::errors_alarm(h),
            format!(
                "{name}: {errors} or more errors in 5 minutes (Lambda Errors); {errors_hint} ({log_group})."
            ),
            LAMBDA_NAMESPACE,
            "Errors",
            function(),
            errors,
        ),
        count(
            ids::throttles_alarm(h),
            format!(
                "{name}: {} or more throttled invocations in 5 minutes (Lambda Throttles): the function hit its reserved concurrency or the account's. Look first at ConcurrentExecutions and the stage file's [lambda.{name}] reserved_concurrency.",
                a.function_throttles
            ),
            LAMBDA_NAMESPACE,
            "Throttles",
            function(),
            a.function_throttles,
        ),
    ];
    if metrics::broadcasting_handlers().any(|d| d == h) {
        out.extend(delivery_alarms(stage, h));
    }
    if metrics::forwarding_handlers().any(|f| f == h) {
        out.push(forward_alarm(stage, h));
    }
    out
}

/// The dimensions of wsstack's own metrics for handler `h`: the stage and its function.
fn wsstack_dims(h: Handler) -> Vec<(&'static str, Expr)> {
    vec![
        (metrics::STAGE_DIMENSION, Expr::r#ref(ids::STAGE)),
        (metrics::HANDLER_DIMENSION, Expr::r#ref(ids::function(h))),
    ]
}

/// A forwarding handler's alarm on forwarded actions that never reached the bus (wsstack's
/// `ForwardFailed`): the client was told `backend_unavailable`, the backend saw nothing.
fn forward_alarm(stage: &Stage, h: Handler) -> AlarmProps {
    let threshold = stage.alarms.forward_failures;
    count(
        ids::forward_failed_alarm(h),
        format!(
            "{}: {threshold} or more forwarded actions answered backend_unavailable in 5 minutes (wsstack ForwardFailed): they never reached the event bus. Look first at the \"could not forward\" lines of its log group ({}): AccessDeniedException is the role's events:PutEvents grant, ResourceNotFoundException the bus, ThrottlingException the account's PutEvents quota (the ForwardRetried metric rises first).",
            h.name(),
            ids::log_group(h)
        ),
        metrics::NAMESPACE,
        Metric::ForwardFailed.name(),
        wsstack_dims(h),
        threshold,
    )
}

/// A broadcasting handler's alarms on wsstack's own metrics (emitted in embedded metric format).
fn delivery_alarms(stage: &Stage, h: Handler) -> Vec<AlarmProps> {
    let a = &stage.alarms;
    let name = h.name();
    let dims = || wsstack_dims(h);
    vec![
        count(
            ids::throttled_deliveries_alarm(h),
            format!(
                "{name}: {} or more deliveries answered 429 by @connections in 5 minutes (wsstack Throttled): the account's API Gateway throttle (10,000 requests/s, shared by every API of the account and region). Look first at the size of the broadcasts and [api] broadcast_budget.",
                a.throttled_deliveries
            ),
            metrics::NAMESPACE,
            Metric::Throttled.name(),
            dims(),
            a.throttled_deliveries,
        ),
        count(
            ids::cut_off_alarm(h),
            format!(
                "{name}: {} or more deliveries cut off at a broadcast's deadline in 5 minutes (wsstack CutOffAtDeadline): some connections did not get a message. Look first at the Throttled metric and the fan-out queue's oldest job.",
                a.cut_off_deliveries
            ),
            metrics::NAMESPACE,
            Metric::CutOffAtDeadline.name(),
            dims(),
            a.cut_off_deliveries,
        ),
    ]
}

/// The WebSocket API's integration and execution errors, on its stage.
fn api_alarms(stage: &Stage) -> Vec<AlarmProps> {
    let a = &stage.alarms;
    let dims = || {
        vec![
            ("ApiId", Expr::r#ref(ids::API)),
            ("Stage", Expr::r#ref(ids::STAGE)),
        ]
    };
    vec![
        count(
            ids::API_INTEGRATION_ERRORS_ALARM.to_owned(),
            format!(
                "WebSocket API, stage {}: {} or more integration errors in 5 minutes (IntegrationError): a handler answered with an error or timed out. Look first at the functions' Errors alarms and Duration, then the access log.",
                stage.name, a.integration_errors
            ),
            API_GATEWAY_NAMESPACE,
            "IntegrationError",
            dims(),
            a.integration_errors,
        ),
        count(
            ids::API_EXECUTION_ERRORS_ALARM.to_owned(),
            format!(
                "WebSocket API, stage {}: {} or more execution errors in 5 minutes (ExecutionError): API Gateway could not call an integration. Look first at the access log's integration status and the functions' invoke permissions and Throttles.",
                stage.name, a.execution_errors
            ),
            API_GATEWAY_NAMESPACE,
            "ExecutionError",
            dims(),
            a.execution_errors,
        ),
    ]
}

/// The fan-out queue's: a job in the dead-letter queue, and the oldest job's age.
fn queue_alarms(stage: &Stage) -> Vec<AlarmProps> {
    let queue_name = |q: &str| vec![("QueueName", Expr::get_att(q, "QueueName"))];
    vec![
        AlarmProps {
            id: ids::FANOUT_DEAD_LETTER_ALARM.to_owned(),
            description: format!(
                "A fan-out job reached the dead-letter queue (ApproximateNumberOfMessagesVisible > 0): the worker failed it {} times. Look first at the fanout-worker's log group (FanoutWorkerLogGroup) for the job's errors, then read the message in the dead-letter queue.",
                stage.fanout.max_receive_count
            ),
            namespace: SQS_NAMESPACE,
            metric: "ApproximateNumberOfMessagesVisible",
            dimensions: queue_name(ids::FANOUT_DEAD_LETTER_QUEUE),
            statistic: Statistic::Maximum,
            threshold: 0,
            comparison: ComparisonOperator::GreaterThanThreshold,
        },
        AlarmProps {
            id: ids::FANOUT_OLDEST_JOB_ALARM.to_owned(),
            description: format!(
                "The oldest fan-out job has waited {} s or more (ApproximateAgeOfOldestMessage): the worker falls behind. Look first at the fanout-worker's Throttles and Errors and the event source's MaximumConcurrency ([fanout] max_concurrency).",
                stage.alarms.oldest_job_age_seconds
            ),
            namespace: SQS_NAMESPACE,
            metric: "ApproximateAgeOfOldestMessage",
            dimensions: queue_name(ids::FANOUT_QUEUE),
            statistic: Statistic::Maximum,
            threshold: stage.alarms.oldest_job_age_seconds,
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    #[test]
    fn nothing_without_a_topic() {
        let mut t = Template::new("test");
        add(&mut t, &test_stage("[alarms]\nenabled = true\n"), None);
        assert!(t.resources.is_empty());
    }

    /// Per function from its stem; the authorizer's errors at `authorizer_errors`; the dead
    /// letters at `> 0`.
    #[test]
    fn ids_thresholds_and_comparisons() {
        let stage = test_stage(
            "[alarms]\nenabled = true\nfunction_errors = 2\nauthorizer_errors = 7\n[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n",
        );
        let alarms = function_alarms(&stage, Handler::Authorizer);
        assert_eq!(alarms[0].id, "AuthorizerErrorsAlarm");
        assert_eq!(alarms[0].threshold, 7);
        assert_eq!(alarms.len(), 2, "the authorizer does not broadcast");
        let send = function_alarms(&stage, Handler::SendMessage);
        let ids: Vec<&str> = send.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "SendMessageErrorsAlarm",
                "SendMessageThrottlesAlarm",
                "SendMessageThrottledDeliveriesAlarm",
                "SendMessageCutOffAtDeadlineAlarm"
            ]
        );
        assert_eq!(send[0].threshold, 2);
        let forward = function_alarms(&stage, Handler::Forward);
        let last = forward.last().expect("alarms");
        assert_eq!(
            (last.id.as_str(), last.metric, last.threshold),
            ("ForwardForwardFailedAlarm", "ForwardFailed", 1)
        );
        assert!(
            last.description.contains("ForwardLogGroup"),
            "{}",
            last.description
        );
        let queue = queue_alarms(&stage);
        assert_eq!(
            (queue[0].threshold, queue[0].comparison),
            (0, ComparisonOperator::GreaterThanThreshold)
        );
    }
}
