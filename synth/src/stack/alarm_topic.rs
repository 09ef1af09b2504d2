//! The SNS topic the stage's alarms notify: created by the stack (with an email subscription
//! when `[alarms] email` is set), or an existing one named by `[alarms] topic_arn`. Nothing
//! where `[alarms] enabled = false`.

use super::{checks, ids};
use crate::cfn::resources::sns::{Subscription, SubscriptionProtocol, Topic};
use crate::cfn::{Expr, Resource, Template};
use crate::stage::{AlarmTarget, Stage};

/// The topic's display name, the sender name of its emails: `wsstack {stage} alarms`.
pub fn display_name(stage: &Stage) -> String {
    format!("wsstack {} alarms", stage.name)
}

/// Adds the topic (unless the stage names an existing one) and returns the ARN the alarms
/// notify, or `None` where alarms are off.
pub fn add(t: &mut Template, stage: &Stage) -> Option<Expr> {
    if !stage.alarms.enabled {
        return None;
    }
    match &stage.alarms.notify {
        AlarmTarget::ExistingTopic(arn) => Some(Expr::from(arn.as_str())),
        AlarmTarget::NewTopic { email } => {
            let topic = t.add(
                ids::ALARM_TOPIC,
                checks::skip(
                    Resource::new(Topic {
                        display_name: Some(display_name(stage)),
                    }),
                    &[checks::ALARM_TOPIC_UNENCRYPTED],
                ),
            );
            if let Some(email) = email {
                t.add(
                    ids::ALARM_EMAIL_SUBSCRIPTION,
                    Resource::new(Subscription {
                        topic_arn: Expr::r#ref(&topic),
                        protocol: SubscriptionProtocol::Email,
                        endpoint: email.clone(),
                    }),
                );
            }
            Some(Expr::r#ref(topic))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn added(toml: &str) -> (Option<Expr>, serde_json::Value) {
        let mut t = Template::new("test");
        let arn = add(&mut t, &test_stage(toml));
        (arn, serde_json::to_value(&t).expect("serializes"))
    }

    #[test]
    fn nothing_when_alarms_are_off() {
        let (arn, t) = added("[alarms]\nemail = \"ops@example.com\"\n");
        assert_eq!(arn, None);
        assert!(t["Resources"].as_object().expect("Resources").is_empty());
    }

    #[test]
    fn a_new_topic_with_its_email_subscription() {
        let (arn, t) = added("[alarms]\nenabled = true\nemail = \"ops@example.com\"\n");
        assert_eq!(arn, Some(Expr::r#ref(ids::ALARM_TOPIC)));
        assert_eq!(t["Resources"][ids::ALARM_TOPIC]["Type"], "AWS::SNS::Topic");
        let s = &t["Resources"][ids::ALARM_EMAIL_SUBSCRIPTION]["Properties"];
        assert_eq!(s["Protocol"], "email");
        assert_eq!(s["Endpoint"], "ops@example.com");
        assert_eq!(s["TopicArn"]["Ref"], ids::ALARM_TOPIC);
    }

    #[test]
    fn an_existing_topic_adds_nothing() {
        let arn_text = "arn:aws:sns:eu-west-1:123456789012:ops";
        let (arn, t) = added(&format!(
            "[alarms]\nenabled = true\ntopic_arn = \"{arn_text}\"\n"
        ));
        assert_eq!(arn, Some(Expr::from(arn_text)));
        assert!(t["Resources"].as_object().expect("Resources").is_empty());
    }
}
