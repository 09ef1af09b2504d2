//! The token sweep (stages with `[auth] mode = "jwt"`): an EventBridge schedule that invokes
//! the `token-sweeper` function every `[auth] sweep_interval_minutes`, and the permission that
//! lets exactly that rule invoke it. The function, its role (a Scan and DeleteItem on the
//! connections table, `@connections` DELETE on this stage) and log group are the
//! `TokenSweeper` handler's, added like every other function.
//!
//! CloudFormation, `AWS::Events::Rule`:
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-rule.html>;
//! EventBridge invokes a Lambda target through the function's resource-based policy, scoped by
//! the rule's ARN ("Using resource-based policies for Amazon EventBridge", AWS Lambda
//! permissions: <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html>).

use wsstack_routes::Handler;

use super::ids;
use crate::cfn::resources::events::{Rule, RuleState, Target, rate_minutes};
use crate::cfn::resources::lambda::Permission;
use crate::cfn::{Expr, Template};
use crate::stage::Stage;

/// Adds the schedule and the sweeper's invoke permission, where the stage authenticates.
pub fn add(t: &mut Template, stage: &Stage) {
    let Some(jwt) = stage.auth.jwt() else {
        return;
    };
    let h = Handler::TokenSweeper;
    let function = ids::function(h);
    let rule = t.add(
        ids::TOKEN_SWEEP_SCHEDULE,
        Rule {
            description: Some(format!(
                "wsstack ({}): closes the connections whose token has expired",
                stage.name
            )),
            event_bus_name: None,
            event_pattern: None,
            schedule_expression: Some(rate_minutes(jwt.sweep_interval_minutes)),
            state: RuleState::Enabled,
            targets: vec![Target {
                arn: Expr::get_att(&function, "Arn"),
                id: h.logical_id_stem().to_owned(),
            }],
        },
    );
    t.add(
        ids::permission(h),
        Permission::for_events_rule(&function, &rule),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    const JWT: &str =
        "[auth]\nmode = \"jwt\"\nissuer = \"https://issuer.example\"\naudience = \"a\"\n";

    fn added(toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(toml));
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn a_schedule_at_the_stage_interval_invokes_the_sweeper_and_only_it_may() {
        let v = added(&format!("{JWT}sweep_interval_minutes = 2\n"));
        let rule = &v["Resources"]["TokenSweepSchedule"];
        assert_eq!(rule["Type"], "AWS::Events::Rule");
        let p = &rule["Properties"];
        assert_eq!(p["ScheduleExpression"], "rate(2 minutes)");
        assert_eq!(p["State"], "ENABLED");
        assert_eq!(
            p["Targets"],
            serde_json::json!([{"Arn": {"Fn::GetAtt": ["TokenSweeperFunction", "Arn"]}, "Id": "TokenSweeper"}])
        );
        let perm = &v["Resources"]["TokenSweeperPermission"]["Properties"];
        assert_eq!(perm["Principal"], "events.amazonaws.com");
        assert_eq!(perm["Action"], "lambda:InvokeFunction");
        assert_eq!(
            perm["SourceArn"],
            serde_json::json!({"Fn::GetAtt": ["TokenSweepSchedule", "Arn"]})
        );
    }

    #[test]
    fn every_five_minutes_by_default() {
        let v = added(JWT);
        assert_eq!(
            v["Resources"]["TokenSweepSchedule"]["Properties"]["ScheduleExpression"],
            "rate(5 minutes)"
        );
    }

    #[test]
    fn nothing_without_auth() {
        let v = added("");
        assert!(
            v["Resources"].as_object().is_none_or(|r| r.is_empty()),
            "{v}"
        );
    }
}
