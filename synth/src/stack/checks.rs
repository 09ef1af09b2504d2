//! checkov findings this stack does not fix, each with the reason, written into the resource's
//! `Metadata` the way checkov reads suppressions. docs/security-gates.md lists them. Everything else checkov
//! checks (reserved concurrency, retention, encryption at rest, no wildcard IAM, ...) is met.

use serde_json::json;

use crate::cfn::Resource;

/// A checkov check ID and why it does not apply.
pub type Skip = (&'static str, &'static str);

pub const TABLE_CMK: Skip = (
    "CKV_AWS_119",
    "Connection records live 2 hours and hold no secrets: encrypted with the AWS managed KMS key (SSEType KMS), not a customer managed key with its cost and key-policy upkeep",
);
pub const TABLE_PITR_OFF: Skip = (
    "CKV_AWS_28",
    "Point-in-time recovery is off in this stage by its stage file (table.point_in_time_recovery = false): connection records expire within 2 hours",
);
pub const ROOMS_TABLE_CMK: Skip = (
    "CKV_AWS_119",
    "Room memberships live as long as their connection (2 hours) and hold only room names and connection IDs: encrypted with the AWS managed KMS key (SSEType KMS), not a customer managed key with its cost and key-policy upkeep",
);
pub const ROOMS_TABLE_PITR_OFF: Skip = (
    "CKV_AWS_28",
    "Point-in-time recovery is off in this stage by its stage file (table.point_in_time_recovery = false): memberships expire with their connection within 2 hours",
);
pub const LOG_GROUP_CMK: Skip = (
    "CKV_AWS_158",
    "Encrypted at rest by CloudWatch Logs; the handlers log no secrets, so a customer managed key adds cost, not protection",
);
pub const FUNCTION: &[Skip] = &[
    (
        "CKV_AWS_116",
        "Invoked synchronously by API Gateway, which answers the client on failure; a dead-letter queue only receives failed asynchronous invocations and would never hold anything",
    ),
    (
        "CKV_AWS_117",
        "Reaches only DynamoDB, SQS, EventBridge and the API Gateway management API over AWS endpoints with IAM auth (the authorizer: the issuer's public JWKS over HTTPS); a VPC would add NAT or endpoints and cold-start time without protecting anything",
    ),
    (
        "CKV_AWS_173",
        "The environment holds only names, limits and URLs (tables, concurrency, rate, the fan-out queue, the callback URL, the authorizer's issuer and audience, the event bus and the forwarded actions), no secrets; Lambda encrypts it at rest with its AWS managed key",
    ),
];
/// The fan-out worker: what does not apply to it. Its failed jobs go to the fan-out queue's own
/// dead-letter queue (redrive policy), the place for messages of an SQS event source.
pub const QUEUE_WORKER_FUNCTION: &[Skip] = &[
    (
        "CKV_AWS_116",
        "Invoked synchronously by its SQS event source mapping; a job it fails returns to the queue and, after maxReceiveCount receives, goes to the queue's dead-letter queue (FanoutDeadLetterQueue). A function dead-letter queue only receives failed asynchronous invocations and would never hold anything",
    ),
    FUNCTION[1],
    FUNCTION[2],
];
/// The token sweeper: what does not apply to it.
pub const SCHEDULED_FUNCTION: &[Skip] = &[
    (
        "CKV_AWS_116",
        "Invoked asynchronously by its EventBridge schedule, whose events carry nothing: a failed sweep is redone in full by the next scheduled run minutes later, so a dead-letter queue would only collect empty schedule events",
    ),
    FUNCTION[1],
    FUNCTION[2],
];
/// The example backend service (`[example_backend]`): what does not apply to it.
pub const EXAMPLE_BACKEND_FUNCTION: &[Skip] = &[
    (
        "CKV_AWS_116",
        "The example backend, invoked asynchronously by its EventBridge rule: Lambda retries a failed event twice, and a job whose progress could not be pushed is not worth keeping for later (its client has moved on); a service of your own adds an on-failure destination or a dead-letter queue where its events must not be lost",
    ),
    (
        "CKV_AWS_117",
        "Reaches only the stage's push API over its AWS endpoint, signed with IAM; a VPC would add NAT or endpoints and cold-start time without protecting anything",
    ),
    (
        "CKV_AWS_173",
        "The environment holds only the push API's URL, no secrets; Lambda encrypts it at rest with its AWS managed key",
    ),
];
pub const FUNCTION_NO_RESERVED_CONCURRENCY: Skip = (
    "CKV_AWS_115",
    "No reserved concurrency in this stage by its stage file: a new account's concurrency quota is often 10, where any reservation fails the deploy (Lambda keeps 100 unreserved)",
);
pub const FUNCTION_SHARES_UNRESERVED_CONCURRENCY: Skip = (
    "CKV_AWS_115",
    "This handler draws on the account's unreserved concurrency by its stage file: the stage reserves only for the handlers whose capacity must be guaranteed, so the total stays under the 900 an account can reserve",
);
pub const QUEUE_SQS_MANAGED_SSE: Skip = (
    "CKV_AWS_27",
    "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled: true); this checkov check recognises only a KMS key (KmsMasterKeyId), whose cost and key-policy upkeep buy nothing for fan-out jobs that hold a chat frame for minutes",
);
pub const STAGE_ACCESS_LOGS_OFF: Skip = (
    "CKV_AWS_95",
    "Access logs are off in this stage by its stage file (api.access_logs = false): WebSocket access logs need API Gateway's account-level CloudWatch role, which a dev account may lack",
);

pub const PUSH_STAGE_ACCESS_LOGS_OFF: Skip = (
    "CKV_AWS_95",
    "Access logs are off in this stage by its stage file (api.access_logs = false), for the push API as for the WebSocket API; the push-api function logs every request it serves",
);

/// The alarm topic carries alarm state changes only (an alarm's name, its metric, a
/// threshold), no data; and CloudWatch cannot publish to a topic encrypted with the AWS managed
/// key `alias/aws/sns`, whose key policy cannot be changed to let it in
/// (<https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services>).
pub const ALARM_TOPIC_UNENCRYPTED: Skip = (
    "CKV_AWS_26",
    "Carries only alarm state changes (alarm name, metric, threshold), no data; CloudWatch alarms cannot publish to a topic encrypted with the AWS managed key alias/aws/sns (its key policy cannot grant cloudwatch.amazonaws.com), and a customer managed key adds cost and key-policy upkeep for nothing secret",
);

/// Adds checkov suppressions to a resource's metadata.
pub fn skip(resource: Resource, skips: &[Skip]) -> Resource {
    let list: Vec<_> = skips
        .iter()
        .map(|(id, comment)| json!({"id": id, "comment": comment}))
        .collect();
    resource.metadata("checkov", json!({"skip": list}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::resources::logs::LogGroup;

    #[test]
    fn skips_are_written_where_checkov_reads_them() {
        let r = skip(
            Resource::new(LogGroup {
                log_group_name: None,
                retention_in_days: Some(7),
                kms_key_id: None,
            }),
            &[LOG_GROUP_CMK],
        );
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["Metadata"]["checkov"]["skip"][0]["id"], "CKV_AWS_158");
        assert_eq!(
            v["Metadata"]["checkov"]["skip"][0]["comment"],
            LOG_GROUP_CMK.1
        );
    }
}
