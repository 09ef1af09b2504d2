//! `AWS::SQS::Queue`: the fan-out job queue and its dead-letter queue.

use serde::Serialize;

use crate::cfn::Expr;
use crate::cfn::policy::PolicyDocument;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Queue {
    /// Seconds a received message stays hidden from other consumers, 0..=43200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_policy: Option<RedrivePolicy>,
    /// Seconds, 60..=1209600.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_retention_period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqs_managed_sse_enabled: Option<bool>,
}

/// `RedrivePolicy`: after `max_receive_count` receives, SQS moves a message to the dead-letter
/// queue (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html>).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: Expr,
    pub max_receive_count: u32,
}

/// `AWS::SQS::QueuePolicy`: the resource policy of queues (by URL: `Ref` of a queue); it
/// replaces any policy the queues had.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueuePolicy {
    pub policy_document: PolicyDocument,
    pub queues: Vec<Expr>,
}
