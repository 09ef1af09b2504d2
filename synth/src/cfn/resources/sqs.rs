//! `AWS::SQS::Queue`: dead-letter queues for asynchronously invoked functions.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Queue {
    /// Seconds, 60..=1209600.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_retention_period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqs_managed_sse_enabled: Option<bool>,
}
