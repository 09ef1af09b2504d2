//! The bridge's EventBridge side (issue 17), where the app manifest forwards actions: the
//! stage's bus, which the `forward` handler puts forwarded actions on and backends put replies
//! on; the rule that sends the replies (`detail-type` [`PUSH_DETAIL_TYPE`]) to the fan-out queue,
//! where the worker delivers them; and the queue policy that lets exactly that rule send.
//!
//! Every stage has the fan-out queue (`fanout_queue.rs`: both modes use it), so every stage
//! with a bus gets the rule. A stage without forwarded actions has no bus: backends reply
//! through the push API.
//!
//! The rule matches any `source` on purpose: EventBridge takes the `source` a caller writes, so
//! a filter on it would stop no producer that may put on the bus. Who may push is decided by
//! IAM, `events:PutEvents` on the bus (same account only: the bus has no resource policy),
//! narrowed where wanted with the `events:detail-type` and `events:source` condition keys
//! (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-conditions.html>);
//! docs/backend.md says so to backend authors.
//!
//! CloudFormation: `AWS::Events::EventBus`
//! (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-eventbus.html>),
//! `AWS::Events::Rule`; an SQS target needs a queue policy allowing `sqs:SendMessage` to
//! `events.amazonaws.com` with `aws:SourceArn` the rule's ARN
//! (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html>).

use std::collections::BTreeMap;

use wsstack_routes::QueueAction;
use wsstack_routes::bridge::PUSH_DETAIL_TYPE;

use super::{ids, outputs};
use crate::cfn::policy::{Effect, PolicyDocument, Principal, Statement};
use crate::cfn::resources::events::{EventBus, Rule, RuleState, Target};
use crate::cfn::resources::sqs::QueuePolicy;
use crate::cfn::{Expr, Template};
use crate::stage::Stage;
use crate::stage::manifest::Manifest;

/// The bus's name: the stack's, with `-bus`.
pub fn bus_name(stage: &Stage) -> String {
    format!("{}-bus", stage.stack_name)
}

/// The bus's name, as the template reads it: its `Name` attribute (the same as its `Ref`, but
/// moto, which the deploy rehearsal runs on, resolves only the attribute to the name).
pub fn name() -> Expr {
    Expr::get_att(ids::EVENT_BUS, "Name")
}

/// The pattern of the replies a backend puts on the bus. Forwarded actions never match it:
/// their `detail-type` is an action's name, which starts with a lowercase letter.
pub fn reply_pattern() -> serde_json::Value {
    serde_json::json!({ "detail-type": [PUSH_DETAIL_TYPE] })
}

/// Adds the bus, the reply rule and the queue's policy, where the manifest forwards actions.
pub fn add(t: &mut Template, stage: &Stage, manifest: &Manifest) {
    if !manifest.has_forwarded_actions() {
        return;
    }
    let bus = t.add(
        ids::EVENT_BUS,
        EventBus {
            name: bus_name(stage),
            description: None,
        },
    );
    let rule = t.add(
        ids::PUSH_REPLY_RULE,
        Rule {
            description: Some(format!(
                "wsstack ({}): replies a backend puts on the bus go to the fan-out queue",
                stage.name
            )),
            event_bus_name: Some(Expr::get_att(&bus, "Name")),
            event_pattern: Some(reply_pattern()),
            schedule_expression: None,
            state: RuleState::Enabled,
            targets: vec![Target {
                arn: Expr::get_att(ids::FANOUT_QUEUE, "Arn"),
                id: ids::FANOUT_QUEUE.to_owned(),
            }],
        },
    );
    let mut condition = BTreeMap::new();
    condition.insert(
        "ArnEquals".to_owned(),
        BTreeMap::from([("aws:SourceArn".to_owned(), Expr::get_att(&rule, "Arn"))]),
    );
    t.add(
        ids::FANOUT_QUEUE_POLICY,
        QueuePolicy {
            policy_document: PolicyDocument::new(vec![Statement {
                sid: Some("PushRepliesFromTheBus".to_owned()),
                effect: Effect::Allow,
                principal: Some(Principal::Service("events.amazonaws.com".to_owned())),
                action: vec![QueueAction::SendMessage.iam_action().to_owned()],
                resource: vec![Expr::get_att(ids::FANOUT_QUEUE, "Arn")],
                condition,
            }]),
            // `Ref` of a queue is its URL, what a queue policy names.
            queues: vec![Expr::r#ref(ids::FANOUT_QUEUE)],
        },
    );
}

/// Adds the outputs `EventBusName` and `EventBusArn`, where there is a bus.
pub fn add_outputs(t: &mut Template, stage: &Stage, manifest: &Manifest) {
    if !manifest.has_forwarded_actions() {
        return;
    }
    outputs::add_one(
        t,
        stage,
        "EventBusName",
        "The stage's EventBridge bus: forwarded actions arrive on it, replies (detail-type Push) go on it",
        name(),
    );
    outputs::add_one(
        t,
        stage,
        "EventBusArn",
        "The ARN of the stage's EventBridge bus",
        Expr::get_att(ids::EVENT_BUS, "Arn"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{test_manifest, test_stage};

    fn added(manifest: &Manifest) -> serde_json::Value {
        let mut t = Template::new("test");
        let stage = test_stage("[outputs]\nexport = true\n");
        add(&mut t, &stage, manifest);
        add_outputs(&mut t, &stage, manifest);
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn a_bus_named_after_the_stack() {
        let v = added(&test_manifest());
        let bus = &v["Resources"][ids::EVENT_BUS];
        assert_eq!(bus["Type"], "AWS::Events::EventBus");
        assert_eq!(bus["Properties"]["Name"], "wsstack-dev-bus");
        assert_eq!(
            v["Outputs"]["EventBusName"]["Value"]["Fn::GetAtt"],
            serde_json::json!([ids::EVENT_BUS, "Name"])
        );
        assert_eq!(
            v["Outputs"]["EventBusArn"]["Value"]["Fn::GetAtt"],
            serde_json::json!([ids::EVENT_BUS, "Arn"])
        );
        assert_eq!(
            v["Outputs"]["EventBusArn"]["Export"]["Name"]["Fn::Sub"],
            "${AWS::StackName}-EventBusArn"
        );
    }

    #[test]
    fn replies_on_the_bus_go_to_the_fanout_queue() {
        let v = added(&test_manifest());
        let rule = &v["Resources"][ids::PUSH_REPLY_RULE];
        assert_eq!(rule["Type"], "AWS::Events::Rule");
        let p = &rule["Properties"];
        assert_eq!(
            p["EventBusName"]["Fn::GetAtt"],
            serde_json::json!([ids::EVENT_BUS, "Name"])
        );
        // Any source: IAM on the bus decides who may push (the module's text says why).
        assert_eq!(
            p["EventPattern"],
            serde_json::json!({"detail-type": [PUSH_DETAIL_TYPE]})
        );
        assert!(p.get("ScheduleExpression").is_none());
        assert_eq!(
            p["Targets"],
            serde_json::json!([{"Arn": {"Fn::GetAtt": [ids::FANOUT_QUEUE, "Arn"]}, "Id": ids::FANOUT_QUEUE}])
        );
        // No action name can be the replies' detail-type.
        for a in &test_manifest().forward {
            assert_ne!(a.name, PUSH_DETAIL_TYPE);
        }
        assert!(!crate::stage::manifest::is_valid_action_name(
            PUSH_DETAIL_TYPE
        ));
    }

    /// Only the reply rule may send to the queue, and only `sqs:SendMessage`.
    #[test]
    fn the_queue_policy_lets_exactly_the_rule_send() {
        let v = added(&test_manifest());
        let qp = &v["Resources"][ids::FANOUT_QUEUE_POLICY];
        assert_eq!(qp["Type"], "AWS::SQS::QueuePolicy");
        let p = &qp["Properties"];
        assert_eq!(p["Queues"], serde_json::json!([{"Ref": ids::FANOUT_QUEUE}]));
        let statements = p["PolicyDocument"]["Statement"].as_array().expect("list");
        assert_eq!(statements.len(), 1);
        let s = &statements[0];
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(s["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(s["Action"], "sqs:SendMessage");
        assert_eq!(
            s["Resource"],
            serde_json::json!({"Fn::GetAtt": [ids::FANOUT_QUEUE, "Arn"]})
        );
        assert_eq!(
            s["Condition"],
            serde_json::json!({"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [ids::PUSH_REPLY_RULE, "Arn"]}}})
        );
    }

    #[test]
    fn nothing_without_forwarded_actions() {
        let v = added(&Manifest::default());
        assert!(
            v["Resources"].as_object().is_none_or(|r| r.is_empty()),
            "{v}"
        );
        assert!(v["Outputs"].as_object().is_none_or(|o| o.is_empty()), "{v}");
    }
}
