//! `AWS::Events::Rule`: an EventBridge rule, here a schedule that invokes a function
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-rule.html>).

use serde::Serialize;

use crate::cfn::Expr;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `rate(N minutes)` or `cron(...)`; see [`rate_minutes`].
    pub schedule_expression: String,
    pub state: RuleState,
    pub targets: Vec<Target>,
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
            schedule_expression: rate_minutes(5),
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
