//! `AWS::CloudWatch::Alarm`: an alarm on one metric
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudwatch-alarm.html>);
//! `AWS::CloudWatch::Dashboard`: a dashboard, its body a JSON string
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudwatch-dashboard.html>).

use serde::Serialize;

use crate::cfn::Expr;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alarm {
    /// What fired and what to look at first.
    pub alarm_description: String,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<Dimension>,
    pub statistic: Statistic,
    /// Seconds: 10, 30 or a multiple of 60.
    pub period: u32,
    pub evaluation_periods: u32,
    pub threshold: f64,
    pub comparison_operator: ComparisonOperator,
    pub treat_missing_data: TreatMissingData,
    pub alarm_actions: Vec<Expr>,
    #[serde(rename = "OKActions")]
    pub ok_actions: Vec<Expr>,
}

/// A metric dimension: its name and value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    pub name: String,
    pub value: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Statistic {
    Sum,
    Maximum,
    Average,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ComparisonOperator {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
}

/// How the alarm reads a period without data
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-and-missing-data>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissingData {
    /// No data is good news: no errors were counted.
    NotBreaching,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dashboard {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_name: Option<Expr>,
    /// The body, a JSON string (`Fn::Sub` so resource names resolve).
    pub dashboard_body: Expr,
}
