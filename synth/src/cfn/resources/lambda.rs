//! `AWS::Lambda::Function` and `AWS::Lambda::Permission`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cfn::Expr;

/// The stage file's types, serialized as the template spells them.
pub use wsstack_stage::{Architecture, LogLevel};

/// Where the deployment package lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Code {
    pub s3_bucket: Expr,
    pub s3_key: Expr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    pub variables: BTreeMap<String, Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LogFormat {
    #[serde(rename = "JSON")]
    Json,
    Text,
}

/// The runtimes the model knows: Rust binaries named `bootstrap` on Amazon Linux (OS-only
/// runtimes; <https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Runtime {
    #[serde(rename = "provided.al2023")]
    ProvidedAl2023,
    #[serde(rename = "provided.al2")]
    ProvidedAl2,
}

/// `LoggingConfig.SystemLogLevel`: the levels of Lambda's own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SystemLogLevel {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    pub log_format: LogFormat,
    /// Only with `LogFormat: JSON`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_log_level: Option<LogLevel>,
    /// Only with `LogFormat: JSON`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_log_level: Option<SystemLogLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfig {
    pub target_arn: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TracingMode {
    Active,
    PassThrough,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracingConfig {
    pub mode: TracingMode,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Function {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub runtime: Runtime,
    pub handler: String,
    pub architectures: Vec<Architecture>,
    pub code: Code,
    pub role: Expr,
    pub memory_size: u32,
    pub timeout: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging_config: Option<LoggingConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing_config: Option<TracingConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permission {
    pub action: String,
    pub function_name: Expr,
    pub principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<Expr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_account: Option<Expr>,
}

impl Permission {
    /// EventBridge may invoke `function` for `rule` and no other: the function's resource-based
    /// policy scoped by the rule's ARN ("Using resource-based policies for Amazon EventBridge",
    /// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions>).
    pub fn for_events_rule(function: &str, rule: &str) -> Permission {
        Permission {
            action: "lambda:InvokeFunction".to_owned(),
            function_name: Expr::get_att(function, "Arn"),
            principal: "events.amazonaws.com".to_owned(),
            source_arn: Some(Expr::get_att(rule, "Arn")),
            source_account: None,
        }
    }
}

/// `AWS::Lambda::EventSourceMapping`: Lambda polls a queue and invokes the function with
/// batches of its messages
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-eventsourcemapping.html>).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSourceMapping {
    pub event_source_arn: Expr,
    pub function_name: Expr,
    /// Records per invocation; for SQS without a batching window, 1..=10.
    pub batch_size: u32,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub function_response_types: Vec<FunctionResponseType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_config: Option<ScalingConfig>,
}

/// `ScalingConfig` (SQS only): the most concurrent invocations the event source makes, 2..=1000
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-eventsourcemapping-scalingconfig.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingConfig {
    pub maximum_concurrency: u32,
}

/// `FunctionResponseTypes`: what the function's response may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FunctionResponseType {
    /// The response names the failed records in `batchItemFailures`; the others are deleted
    /// (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>).
    ReportBatchItemFailures,
}
