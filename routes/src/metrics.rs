//! The custom metrics of wsstack, declared once: their CloudWatch namespace, names and
//! dimensions. Synth's alarms and dashboard read them here; the handlers emit them
//! (`wsstack_handlers::metrics`) in CloudWatch's embedded metric format (a JSON log line with
//! an `_aws` member, no `PutMetricData` call:
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//! Until a handler emits one, its metric does not exist in CloudWatch, and alarms on it stay
//! `OK` (they treat missing data as not breaching).

use crate::{BusAction, Handler, ManagementOperation};

/// The CloudWatch namespace of every custom metric.
pub const NAMESPACE: &str = "wsstack";

/// The dimension naming the API Gateway stage (the stage name, as `Ref` of the stage gives it).
pub const STAGE_DIMENSION: &str = "Stage";
/// The dimension naming the function that emitted the metric: its function name, as Lambda
/// sets `AWS_LAMBDA_FUNCTION_NAME` and `Ref` of the function gives it.
pub const HANDLER_DIMENSION: &str = "Handler";
/// Every custom metric is emitted with exactly these dimensions, in this order.
pub const DIMENSIONS: [&str; 2] = [STAGE_DIMENSION, HANDLER_DIMENSION];

/// A custom metric: a count, unit `Count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Posts to `@connections` that succeeded.
    Delivered,
    /// Posts to `@connections` answered 410: the connection is gone (its record is deleted).
    Gone,
    /// Posts to `@connections` answered 429 (`LimitExceededException`): the account's API
    /// Gateway throttle, shared by every API of the account and region.
    Throttled,
    /// Posts that failed for good (after their retries).
    Failed,
    /// Deliveries not attempted because the broadcast's deadline passed (handed to the fan-out
    /// queue or dropped).
    CutOffAtDeadline,
    /// Fan-out jobs handed to the queue: a queue-mode delivery, or what a deadline left.
    Queued,
    /// Fan-out jobs the worker dropped unrun for being older than the maximum job age.
    JobsExpired,
    /// Forwarded actions the stage's EventBridge bus accepted (the client was answered
    /// `accepted`).
    Forwarded,
    /// Forwarded actions answered `backend_unavailable`: the bus refused the event, or its
    /// retries ran out or the invocation's deadline came first. Nothing reached the bus.
    ForwardFailed,
    /// `PutEvents` attempts of a forwarded action that failed in a way worth a retry (a
    /// `ThrottlingException` or `InternalFailure` entry, a transient call error) and were
    /// retried: the bus is throttled or failing before any action is lost.
    ForwardRetried,
    /// Client messages refused over a rate limit: the connection's (`rate_limited`) or, on
    /// authenticated stages, the user's across their connections (`user_rate_limited`).
    RateLimited,
    /// Broadcasts refused because the stage's budget of deliveries per second was used up
    /// (`broadcast_budget_exceeded`).
    BroadcastBudgetExceeded,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::Delivered,
        Metric::Gone,
        Metric::Throttled,
        Metric::Failed,
        Metric::CutOffAtDeadline,
        Metric::Queued,
        Metric::JobsExpired,
        Metric::Forwarded,
        Metric::ForwardFailed,
        Metric::ForwardRetried,
        Metric::RateLimited,
        Metric::BroadcastBudgetExceeded,
    ];

    /// The metrics of one delivery's line, in its order.
    pub const DELIVERY: [Metric; 6] = [
        Metric::Delivered,
        Metric::Gone,
        Metric::Throttled,
        Metric::Failed,
        Metric::CutOffAtDeadline,
        Metric::Queued,
    ];

    /// The metric's name in CloudWatch.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Delivered => "Delivered",
            Metric::Gone => "Gone",
            Metric::Throttled => "Throttled",
            Metric::Failed => "Failed",
            Metric::CutOffAtDeadline => "CutOffAtDeadline",
            Metric::Queued => "Queued",
            Metric::JobsExpired => "JobsExpired",
            Metric::Forwarded => "Forwarded",
            Metric::ForwardFailed => "ForwardFailed",
            Metric::ForwardRetried => "ForwardRetried",
            Metric::RateLimited => "RateLimited",
            Metric::BroadcastBudgetExceeded => "BroadcastBudgetExceeded",
        }
    }

    /// The unit the handlers emit it with.
    pub const fn unit(self) -> &'static str {
        "Count"
    }
}

/// The handlers that broadcast, so emit the delivery metrics: those that post to
/// `@connections` and use the fan-out queue (a broadcast runs to a deadline and hands what is
/// left to the queue): `send-message`, `fanout-worker`, `push-api`. The handlers that only
/// answer their sender (`join`, `leave`, ...) post one message and have no deadline to cut at.
pub fn broadcasting_handlers() -> impl Iterator<Item = Handler> {
    Handler::ALL.into_iter().filter(|h| {
        h.management_operations()
            .contains(&ManagementOperation::Post)
            && !h.queue_actions().is_empty()
    })
}

/// The handlers that put client actions on the stage's EventBridge bus, so emit `Forwarded`,
/// `ForwardFailed` and `ForwardRetried`: `forward`.
pub fn forwarding_handlers() -> impl Iterator<Item = Handler> {
    Handler::ALL
        .into_iter()
        .filter(|h| h.bus_actions().contains(&BusAction::PutEvents))
}

/// The handlers that refuse a client's message over its rate limits, so emit `RateLimited`:
/// every rate-limited route ([`Handler::is_rate_limited`]).
pub fn rate_limited_handlers() -> impl Iterator<Item = Handler> {
    Handler::ALL.into_iter().filter(|h| h.is_rate_limited())
}

/// The handlers that refuse a broadcast over the stage's budget, so emit
/// `BroadcastBudgetExceeded`: the rate-limited routes that broadcast (`send-message`).
pub fn budgeted_handlers() -> impl Iterator<Item = Handler> {
    rate_limited_handlers().filter(|h| broadcasting_handlers().any(|b| b == *h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_the_broadcasters_emit_them() {
        let names: std::collections::BTreeSet<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
        let broadcasting: Vec<Handler> = broadcasting_handlers().collect();
        assert_eq!(
            broadcasting,
            [
                Handler::SendMessage,
                Handler::FanoutWorker,
                Handler::PushApi
            ]
        );
        assert_eq!(
            forwarding_handlers().collect::<Vec<_>>(),
            [Handler::Forward]
        );
        assert_eq!(
            budgeted_handlers().collect::<Vec<_>>(),
            [Handler::SendMessage]
        );
        let limited: Vec<Handler> = rate_limited_handlers().collect();
        assert!(limited.contains(&Handler::Forward), "{limited:?}");
        assert!(!limited.contains(&Handler::FanoutWorker), "{limited:?}");
    }
}
