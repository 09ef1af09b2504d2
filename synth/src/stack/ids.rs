//! The logical IDs of the stack, spelled once.
//!
//! Logical IDs are an API: renaming one makes CloudFormation replace the live resource (a new
//! table, with none of the old data). `synth/tests/templates.rs` pins them.

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
    }
}
