//! Each function's environment: the variables its handler's spec lists
//! ([`wsstack_routes::HandlerSpec::environment`]), with this stage's values. A variable the
//! stage gives no value (`AUTH_MODE` without authentication, an optional authorizer setting) is
//! left out. No variable name is written here: they are [`EnvVar::name`]s.

use std::collections::BTreeMap;

use wsstack_routes::bridge::event_source;
use wsstack_routes::{EnvVar, Handler};

use super::{authorizer, event_bus, ids, outputs};
use crate::cfn::Expr;
use crate::stage::Stage;
use crate::stage::manifest::Manifest;

/// The variables of `h`'s function in `stage`, by name.
pub fn environment(stage: &Stage, manifest: &Manifest, h: Handler) -> BTreeMap<String, Expr> {
    h.spec()
        .environment
        .iter()
        .filter_map(|&var| value(stage, manifest, h, var).map(|v| (var.name().to_owned(), v)))
        .collect()
}

/// The value of `var` on `h`'s function in `stage`, if the stage gives it one.
fn value(stage: &Stage, manifest: &Manifest, h: Handler, var: EnvVar) -> Option<Expr> {
    use EnvVar::*;
    let settings = stage.function(h);
    Some(match var {
        TableName => Expr::r#ref(ids::TABLE),
        RoomsTableName => Expr::r#ref(ids::ROOMS_TABLE),
        BroadcastConcurrency => Expr::from(settings.broadcast_concurrency.to_string()),
        // Always the execute-api endpoint of this API and stage: behind a custom domain the
        // event's `domainName` is that domain, and `@connections` calls to it fail.
        CallbackUrl => outputs::execute_api_endpoint(stage, "https"),
        FanoutMode => Expr::from(stage.fanout.mode.as_str()),
        // `Ref` of a queue is its URL.
        FanoutQueueUrl => Expr::r#ref(ids::FANOUT_QUEUE),
        FanoutSegments => Expr::from(stage.fanout.segments.to_string()),
        // The worker drops jobs older than this; sendMessage's jobs carry their enqueue time.
        FanoutMaxJobAgeSeconds => Expr::from(stage.fanout.max_job_age_seconds.to_string()),
        // The username then comes from the authorizer's context, never the query string.
        AuthMode => {
            stage.auth.jwt()?;
            Expr::from("jwt")
        }
        MessageRate => Expr::from(stage.api.message_rate.to_string()),
        MessageBurst => Expr::from(stage.api.message_burst.to_string()),
        // The user's bucket, only where connections carry a verified `sub`.
        UserMessageRate => {
            stage.auth.jwt()?;
            Expr::from(stage.api.user_message_rate.to_string())
        }
        UserMessageBurst => {
            stage.auth.jwt()?;
            Expr::from(stage.api.user_message_burst.to_string())
        }
        BroadcastBudget => Expr::from(stage.api.broadcast_budget.to_string()),
        AuthIssuer | AuthAudience | AuthJwksUrl | AuthTokenSource | AuthUsernameClaim => {
            return authorizer::environment(stage).remove(var.name());
        }
        // The bridge (issue 17): only where the manifest forwards actions, which is where the
        // stage has a bus.
        EventBusName => {
            manifest.has_forwarded_actions().then_some(())?;
            event_bus::name()
        }
        EventSource => {
            manifest.has_forwarded_actions().then_some(())?;
            Expr::from(event_source(&stage.name))
        }
        // The manifest's order, as JSON: the same text for the same manifest.
        ForwardedActions => {
            manifest.has_forwarded_actions().then_some(())?;
            Expr::from(serde_json::to_string(&manifest.forward).ok()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn names(stage: &Stage, h: Handler) -> Vec<String> {
        environment(stage, &crate::stack::test_manifest(), h)
            .into_keys()
            .collect()
    }

    #[test]
    fn every_variable_set_is_one_the_spec_lists() {
        let stage = test_stage(
            "[auth]\nmode = \"jwt\"\nissuer = \"https://issuer.example\"\naudience = [\"a\"]\njwks_url = \"https://issuer.example/keys\"\nusername_claim = \"email\"\n",
        );
        for h in Handler::ALL {
            let listed: Vec<&str> = h.spec().environment.iter().map(|v| v.name()).collect();
            for name in names(&stage, h) {
                assert!(listed.contains(&name.as_str()), "{h:?} sets {name}");
            }
            // With every optional setting given, every listed variable has a value.
            assert_eq!(names(&stage, h).len(), listed.len(), "{h:?}");
        }
    }

    #[test]
    fn send_message_learns_the_mode_the_queue_the_segments_and_its_rate() {
        let stage =
            test_stage("[fanout]\nmode = \"queue\"\nsegments = 16\n[api]\nmessage_rate = 7\n");
        let env = environment(&stage, &crate::stack::test_manifest(), Handler::SendMessage);
        let json = |name: &str| serde_json::to_value(&env[name]).expect("json");
        assert_eq!(json("FANOUT_SEGMENTS"), serde_json::json!("16"));
        assert_eq!(json("FANOUT_MODE"), serde_json::json!("queue"));
        assert_eq!(json("MESSAGE_RATE"), serde_json::json!("7"));
        assert_eq!(
            json("FANOUT_QUEUE_URL"),
            serde_json::json!({"Ref": "FanoutQueue"})
        );
        let worker = names(&stage, Handler::FanoutWorker);
        assert!(worker.contains(&"FANOUT_QUEUE_URL".to_owned()));
        assert!(!worker.contains(&"FANOUT_SEGMENTS".to_owned()));
        assert_eq!(names(&stage, Handler::Connect), ["TABLE_NAME"]);
        assert_eq!(
            json("FANOUT_MAX_JOB_AGE_SECONDS"),
            serde_json::json!("900"),
            "the default"
        );
        let aged = test_stage("[fanout]\nmax_job_age_seconds = 120\n");
        assert_eq!(
            serde_json::to_value(
                &environment(&aged, &crate::stack::test_manifest(), Handler::FanoutWorker)
                    ["FANOUT_MAX_JOB_AGE_SECONDS"]
            )
            .expect("json"),
            serde_json::json!("120")
        );
    }

    /// Issue 17: the forward handler learns the bus, the stage's source and the manifest's
    /// actions; without forwarded actions there is no bus, and no variable names one.
    #[test]
    fn the_forward_handler_learns_the_bus_the_source_and_the_actions() {
        let stage = test_stage("");
        let manifest = crate::stack::test_manifest();
        let env = environment(&stage, &manifest, Handler::Forward);
        let json = |name: &str| serde_json::to_value(&env[name]).expect("json");
        assert_eq!(
            json(EnvVar::EventBusName.name()),
            serde_json::json!({"Fn::GetAtt": ["EventBus", "Name"]})
        );
        assert_eq!(json(EnvVar::EventSource.name()), "wsstack.dev");
        let actions: Vec<wsstack_routes::bridge::ForwardedAction> = serde_json::from_str(
            json(EnvVar::ForwardedActions.name())
                .as_str()
                .expect("a string"),
        )
        .expect("the actions as JSON");
        assert_eq!(actions, manifest.forward);
        let none = environment(&stage, &Manifest::default(), Handler::Forward);
        for var in [
            EnvVar::EventBusName,
            EnvVar::EventSource,
            EnvVar::ForwardedActions,
        ] {
            assert!(!none.contains_key(var.name()), "{var:?}");
        }
    }

    #[test]
    fn auth_mode_only_where_the_stage_authenticates() {
        assert!(!names(&test_stage(""), Handler::Connect).contains(&"AUTH_MODE".to_owned()));
        assert!(names(&test_stage(""), Handler::Authorizer).is_empty());
    }
}
