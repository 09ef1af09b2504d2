//! The logical IDs of the stack, spelled once.
//!
//! Logical IDs are an API: renaming one makes CloudFormation replace the live resource (a new
//! table, with none of the old data). `synth/tests/templates.rs` pins them.

use wsstack_routes::push_api::PushRoute;
use wsstack_routes::{Handler, Table};

pub const TABLE: &str = "ConnectionsTable";
/// The room memberships table.
pub const ROOMS_TABLE: &str = "RoomsTable";
pub const API: &str = "WebSocketApi";
pub const STAGE: &str = "WebSocketStage";
/// The stage's access log group, where the stage file turns access logs on.
pub const ACCESS_LOG_GROUP: &str = "AccessLogGroup";
/// Parameter: a bucket to take the code from instead of the CDK bootstrap bucket.
pub const ASSETS_BUCKET: &str = "AssetsBucket";
pub const USE_BOOTSTRAP_BUCKET: &str = "UseBootstrapBucket";
/// The custom domain name and its mapping, where the stage file has `[domain]`.
pub const DOMAIN_NAME: &str = "CustomDomainName";
pub const API_MAPPING: &str = "CustomDomainApiMapping";
/// The `$connect` route's Lambda REQUEST authorizer, where the stage file has `[auth] mode =
/// "jwt"` (its function, role, log group and permission are the `Authorizer` handler's).
pub const CONNECT_AUTHORIZER: &str = "ConnectAuthorizer";
/// The Cognito user pool and its app client, where `[auth] create_user_pool = true`.
pub const USER_POOL: &str = "UserPool";
pub const USER_POOL_CLIENT: &str = "UserPoolClient";
/// The queue of fan-out jobs, its dead-letter queue, and the worker's event source mapping.
/// (The worker's function, role and log group follow from its handler's stem, `FanoutWorker`.)
pub const FANOUT_QUEUE: &str = "FanoutQueue";
pub const FANOUT_DEAD_LETTER_QUEUE: &str = "FanoutDeadLetterQueue";
pub const FANOUT_EVENT_SOURCE: &str = "FanoutWorkerEventSource";
/// The EventBridge schedule that runs the token sweep, where the stage file has `[auth] mode =
/// "jwt"`. (The sweeper's function, role, log group and invoke permission follow from its
/// handler's stem, `TokenSweeper`.)
pub const TOKEN_SWEEP_SCHEDULE: &str = "TokenSweepSchedule";

/// The bridge (issue 17), where the app manifest forwards actions: the stage's EventBridge bus,
/// the rule that sends replies put on it (`detail-type` `Push`) to the fan-out queue, and the
/// queue's policy that lets exactly that rule send. (The `forward` handler's function, role, log
/// group and integration follow from its stem, `Forward`; its routes from [`forward_route`].)
pub const EVENT_BUS: &str = "EventBus";
pub const PUSH_REPLY_RULE: &str = "PushReplyRule";
pub const FANOUT_QUEUE_POLICY: &str = "FanoutQueuePolicy";
/// The HTTP push API, its `$default` stage, its access log group (where the stage has access
/// logs) and the managed policy a backend's role attaches to call it. (The `push-api`
/// handler's function, role, log group, integration and permission follow from its stem,
/// `PushApi`; its routes from [`push_route`].)
pub const PUSH_API: &str = "PushApi";
pub const PUSH_API_STAGE: &str = "PushApiStage";
pub const PUSH_API_ACCESS_LOG_GROUP: &str = "PushApiAccessLogGroup";
pub const PUSH_POLICY: &str = "PushPolicy";

/// The example backend service, where `[example_backend] enabled = true`: its log group, role
/// and function, the rule on the stage's bus that sends it the stage's `submitJob` events, and
/// the permission that lets exactly that rule invoke it.
pub const EXAMPLE_BACKEND_LOG_GROUP: &str = "JobBackendLogGroup";
pub const EXAMPLE_BACKEND_ROLE: &str = "JobBackendRole";
pub const EXAMPLE_BACKEND_FUNCTION: &str = "JobBackendFunction";
pub const EXAMPLE_BACKEND_RULE: &str = "JobBackendRule";
pub const EXAMPLE_BACKEND_PERMISSION: &str = "JobBackendPermission";

/// The SNS topic alarms notify, where `[alarms] enabled = true` and no `topic_arn` is given,
/// and its email subscription, where `email` is.
pub const ALARM_TOPIC: &str = "AlarmTopic";
pub const ALARM_EMAIL_SUBSCRIPTION: &str = "AlarmTopicEmailSubscription";
/// The API's alarms (`IntegrationError`, `ExecutionError`) and the fan-out queue's (a job in
/// the dead-letter queue, the oldest job's age), where `[alarms] enabled = true`.
pub const API_INTEGRATION_ERRORS_ALARM: &str = "ApiIntegrationErrorsAlarm";
pub const API_EXECUTION_ERRORS_ALARM: &str = "ApiExecutionErrorsAlarm";
pub const FANOUT_DEAD_LETTER_ALARM: &str = "FanoutDeadLetterQueueAlarm";
pub const FANOUT_OLDEST_JOB_ALARM: &str = "FanoutOldestJobAgeAlarm";
/// The stage's CloudWatch dashboard.
pub const DASHBOARD: &str = "Dashboard";

/// The stem of a forwarded action's logical IDs: its name with the first letter upper-cased
/// (`submitJob` -> `SubmitJob`; names are ASCII letters and digits starting with a lowercase
/// letter, so two names never share a stem).
pub fn action_stem(action: &str) -> String {
    let mut chars = action.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
/// A forwarded action's route, route response and invoke permission.
pub fn forward_route(action: &str) -> String {
    format!("Forward{}Route", action_stem(action))
}
pub fn forward_route_response(action: &str) -> String {
    format!("Forward{}RouteResponse", action_stem(action))
}
pub fn forward_permission(action: &str) -> String {
    format!("Forward{}Permission", action_stem(action))
}
/// A push API route: `PushApi{stem}Route`.
pub fn push_route(route: &PushRoute) -> String {
    format!("PushApi{}Route", route.logical_id_stem)
}

/// The logical ID of a table of the route table's model.
pub const fn table(table: Table) -> &'static str {
    match table {
        Table::Connections => TABLE,
        Table::Rooms => ROOMS_TABLE,
    }
}

pub fn function(h: Handler) -> String {
    format!("{}Function", h.logical_id_stem())
}
pub fn role(h: Handler) -> String {
    format!("{}Role", h.logical_id_stem())
}
pub fn log_group(h: Handler) -> String {
    format!("{}LogGroup", h.logical_id_stem())
}
pub fn integration(h: Handler) -> String {
    format!("{}Integration", h.logical_id_stem())
}
pub fn route(h: Handler) -> String {
    format!("{}Route", h.logical_id_stem())
}
pub fn permission(h: Handler) -> String {
    format!("{}Permission", h.logical_id_stem())
}
/// A function's alarms: its errors and throttles (Lambda's metrics), and for the handlers that
/// deliver, deliveries answered 429 and cut off at the deadline (wsstack's metrics).
pub fn errors_alarm(h: Handler) -> String {
    format!("{}ErrorsAlarm", h.logical_id_stem())
}
pub fn throttles_alarm(h: Handler) -> String {
    format!("{}ThrottlesAlarm", h.logical_id_stem())
}
pub fn throttled_deliveries_alarm(h: Handler) -> String {
    format!("{}ThrottledDeliveriesAlarm", h.logical_id_stem())
}
pub fn cut_off_alarm(h: Handler) -> String {
    format!("{}CutOffAtDeadlineAlarm", h.logical_id_stem())
}
/// A forwarding handler's alarm: forwarded actions answered `backend_unavailable`
/// (wsstack's `ForwardFailed`).
pub fn forward_failed_alarm(h: Handler) -> String {
    format!("{}ForwardFailedAlarm", h.logical_id_stem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_handler_ids_are_the_stem_and_the_part() {
        let h = Handler::SendMessage;
        assert_eq!(function(h), "SendMessageFunction");
        assert_eq!(role(h), "SendMessageRole");
        assert_eq!(log_group(h), "SendMessageLogGroup");
        assert_eq!(integration(h), "SendMessageIntegration");
        assert_eq!(route(h), "SendMessageRoute");
        assert_eq!(permission(h), "SendMessagePermission");
        assert_eq!(errors_alarm(h), "SendMessageErrorsAlarm");
        assert_eq!(throttles_alarm(h), "SendMessageThrottlesAlarm");
        assert_eq!(
            throttled_deliveries_alarm(h),
            "SendMessageThrottledDeliveriesAlarm"
        );
        assert_eq!(cut_off_alarm(h), "SendMessageCutOffAtDeadlineAlarm");
        assert_eq!(
            forward_failed_alarm(Handler::Forward),
            "ForwardForwardFailedAlarm"
        );
    }

    #[test]
    fn forwarded_actions_and_push_routes_take_their_stems() {
        assert_eq!(forward_route("submitJob"), "ForwardSubmitJobRoute");
        assert_eq!(
            forward_route_response("submitJob"),
            "ForwardSubmitJobRouteResponse"
        );
        assert_eq!(forward_permission("a1"), "ForwardA1Permission");
        assert_eq!(
            push_route(&wsstack_routes::push_api::PUSH_ROUTES[0]),
            "PushApiPostToConnectionRoute"
        );
    }
}
