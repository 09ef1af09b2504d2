//! `AWS::Events::Rule`: an EventBridge rule, a schedule or an event pattern on a bus
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-rule.html>);
//! `AWS::Events::EventBus`: a custom bus
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-eventbus.html>).

use serde::Serialize;

use crate::cfn::Expr;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The bus the rule watches (name or ARN); none: the account's default bus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_bus_name: Option<Expr>,
    /// The events the rule matches, e.g. `{"detail-type": ["Push"]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<serde_json::Value>,
    /// `rate(N minutes)` or `cron(...)`; see [`rate_minutes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    pub state: RuleState,
    pub targets: Vec<Target>,
}

/// `AWS::Events::EventBus`: a custom event bus; `Ref` is its name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventBus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `State`: whether the rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RuleState {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
}

/// A rule's target: a resource's ARN and an id unique within the rule (1 to 64 characters
/// of letters, digits, `.`, `-`, `_`). Lambda targets take no `RoleArn`: the function's
/// resource-based policy (an `AWS::Lambda::Permission`) lets EventBridge invoke it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub arn: Expr,
    pub id: String,
}

/// The rate expression for every `minutes` minutes: the unit is singular for 1 and plural
/// otherwise, or EventBridge refuses it ("Rate expressions reference",
/// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rate-expressions.html>).
pub fn rate_minutes(minutes: u32) -> String {
    if minutes == 1 {
        "rate(1 minute)".to_owned()
    } else {
        format!("rate({minutes} minutes)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minute_is_singular_more_are_plural() {
        assert_eq!(rate_minutes(1), "rate(1 minute)");
        assert_eq!(rate_minutes(5), "rate(5 minutes)");
    }

    #[test]
    fn a_rule_serializes_as_cloudformation_spells_it() {
        let r = Rule {
            description: None,
            event_bus_name: None,
            event_pattern: None,
            schedule_expression: Some(rate_minutes(5)),
            state: RuleState::Enabled,
            targets: vec![Target {
                arn: Expr::get_att("F", "Arn"),
                id: "F".to_owned(),
            }],
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["State"], "ENABLED");
        assert_eq!(v["ScheduleExpression"], "rate(5 minutes)");
        assert_eq!(v["Targets"][0]["Id"], "F");
        assert_eq!(v["Targets"][0]["Arn"]["Fn::GetAtt"][0], "F");
    }
}
