//! The example backend service (`examples/job-backend`, issue 17) in the stage's own stack,
//! where the stage file says `[example_backend] enabled = true` (the shipped `dev`): the
//! `job-backend` binary as a Lambda function, from its own zip, behind a rule on the stage's
//! bus that matches the stage's `submitJob` events; it pushes each job's progress through the
//! stage's push API (`PUSH_API_URL`), with a role that attaches the stage's push policy
//! ([`ids::PUSH_POLICY`]) and writes its own logs.
//!
//! The rule's pattern is the forwarded action's `detail-type` and the stage's `source`
//! ([`wsstack_routes::bridge::event_source`], what the `forward` handler writes), so another
//! stage's events, or a reply put on the bus, never reach it ("Amazon EventBridge event
//! patterns": <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html>).
//! EventBridge invokes the function through its resource-based policy, scoped to the rule's
//! ARN ("Using resource-based policies for Amazon EventBridge", AWS Lambda permissions:
//! <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions>).

use serde_json::json;
use wsstack_routes::bridge::event_source;

use super::{checks, event_bus, functions, ids, logs, push_api};
use crate::assets::Asset;
use crate::cfn::policy::{PolicyDocument, Statement};
use crate::cfn::resources::events::{Rule, RuleState, Target};
use crate::cfn::resources::iam::{InlinePolicy, Role};
use crate::cfn::resources::lambda::{
    Code, Environment, Function, LogFormat, LoggingConfig, Permission, SystemLogLevel,
};
use crate::cfn::{Expr, Resource, Template};
use crate::stage::manifest::Manifest;
use crate::stage::{Architecture, ExampleBackendSettings, Stage};

/// The forwarded action the example runs (the example crate's `ACTION`, checked equal by
/// `tests/tests/example_backend.rs`); the app manifest must forward it.
pub const ACTION: &str = "submitJob";
/// The variable the example reads the push API's URL from (the example crate's
/// `PUSH_API_URL_VAR`).
pub const PUSH_API_URL_VAR: &str = "PUSH_API_URL";
/// The rule's target ID.
pub const TARGET_ID: &str = "JobBackend";

/// Why the example backend cannot be added to a stage.
#[derive(Debug, thiserror::Error)]
pub enum ExampleBackendError {
    #[error(
        "[example_backend] enabled = true, but the app manifest does not forward `{ACTION}`: the example runs that action's events; add it to wsstack.toml's [[forward]] or turn the example off"
    )]
    ActionNotForwarded,
    /// A caller of [`crate::stack::build`] left the zip out ([`crate::assets::Assets::resolve`]
    /// resolves it for the stages that turn the example on).
    #[error(
        "[example_backend] enabled = true, but synth was given no {} zip",
        crate::assets::EXAMPLE_BACKEND_BINARY
    )]
    NoAsset,
}

/// Adds the example's log group, role, function, rule and invoke permission, where the stage
/// turns it on; its code is `asset` in `bucket`. Call after the bus and the push API.
pub fn add(
    t: &mut Template,
    stage: &Stage,
    manifest: &Manifest,
    asset: Option<&Asset>,
    bucket: &Expr,
) -> Result<(), ExampleBackendError> {
    let Some(settings) = &stage.example_backend else {
        return Ok(());
    };
    if !manifest.forward.iter().any(|a| a.name == ACTION) {
        return Err(ExampleBackendError::ActionNotForwarded);
    }
    let asset = asset.ok_or(ExampleBackendError::NoAsset)?;
    let log_group = t.add(
        ids::EXAMPLE_BACKEND_LOG_GROUP,
        logs::log_group(stage, settings.log_retention_days),
    );
    let role = t.add(ids::EXAMPLE_BACKEND_ROLE, role(stage, &log_group));
    let function = t.add(
        ids::EXAMPLE_BACKEND_FUNCTION,
        function(stage, settings, asset, bucket, &role, &log_group),
    );
    let rule = t.add(
        ids::EXAMPLE_BACKEND_RULE,
        Rule {
            description: Some(format!(
                "wsstack example backend ({}): the stage's {ACTION} events, to the job backend",
                stage.name
            )),
            // The bus's `Name` attribute, as the reply rule reads it (moto resolves only that).
            event_bus_name: Some(event_bus::name()),
            event_pattern: Some(pattern(stage)),
            schedule_expression: None,
            state: RuleState::Enabled,
            targets: vec![Target {
                arn: Expr::get_att(&function, "Arn"),
                id: TARGET_ID.to_owned(),
            }],
        },
    );
    t.add(
        ids::EXAMPLE_BACKEND_PERMISSION,
        Permission::for_events_rule(&function, &rule),
    );
    Ok(())
}

/// The events the rule matches: the stage's forwarded `submitJob` actions.
pub fn pattern(stage: &Stage) -> serde_json::Value {
    json!({"source": [event_source(&stage.name)], "detail-type": [ACTION]})
}

/// Writes its own logs (inline, like every function's role) and calls the push API: the
/// stage's push policy, the one a backend's role attaches.
fn role(stage: &Stage, log_group: &str) -> Role {
    Role {
        description: Some(format!(
            "wsstack example backend ({}): its logs and the push API",
            stage.name
        )),
        assume_role_policy_document: PolicyDocument::new(vec![Statement::assume_role_by_service(
            "lambda.amazonaws.com",
        )]),
        policies: vec![InlinePolicy {
            policy_name: functions::WRITE_OWN_LOGS_POLICY.to_owned(),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                vec![Expr::get_att(log_group, "Arn")],
            )]),
        }],
        managed_policy_arns: vec![Expr::r#ref(ids::PUSH_POLICY)],
    }
}

/// The function: the `job-backend` binary's zip, arm64 as `make handlers` builds it.
fn function(
    stage: &Stage,
    settings: &ExampleBackendSettings,
    asset: &Asset,
    bucket: &Expr,
    role: &str,
    log_group: &str,
) -> Resource {
    let function = Function {
        description: Some(format!(
            "wsstack example backend ({}): runs {ACTION} and pushes the progress to the user's devices",
            stage.name
        )),
        runtime: functions::RUNTIME,
        // The binary reads no `_HANDLER`; the value names it (and a stand-in says so).
        handler: crate::assets::EXAMPLE_BACKEND_BINARY.to_owned(),
        architectures: vec![Architecture::Arm64],
        code: Code {
            s3_bucket: bucket.clone(),
            s3_key: Expr::from(asset.object_key()),
        },
        role: Expr::get_att(role, "Arn"),
        memory_size: settings.memory_mb,
        timeout: settings.timeout_seconds,
        reserved_concurrent_executions: None,
        environment: Some(Environment {
            variables: [(PUSH_API_URL_VAR.to_owned(), push_api::push_api_url())]
                .into_iter()
                .collect(),
        }),
        logging_config: Some(LoggingConfig {
            log_format: LogFormat::Json,
            application_log_level: Some(settings.log_level),
            system_log_level: Some(SystemLogLevel::Warn),
            log_group: Some(Expr::r#ref(log_group)),
        }),
        dead_letter_config: None,
        tracing_config: None,
    };
    let mut skips = checks::EXAMPLE_BACKEND_FUNCTION.to_vec();
    skips.push(functions::concurrency_skip(stage));
    functions::with_asset_metadata(checks::skip(Resource::new(function), &skips), asset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{self, AssetSource};
    use crate::stack::{test_manifest, test_stage};

    fn added(toml: &str, manifest: &Manifest) -> Result<serde_json::Value, ExampleBackendError> {
        let mut t = Template::new("test");
        let asset = assets::resolve(&AssetSource::StandIn).expect("stand-in");
        let bucket = functions::code_bucket(&mut t);
        add(&mut t, &test_stage(toml), manifest, Some(&asset), &bucket)?;
        Ok(serde_json::to_value(&t).expect("serializes"))
    }

    const ON: &str = "[example_backend]\nenabled = true\n";

    #[test]
    fn nothing_unless_the_stage_turns_it_on() {
        for toml in ["", "[example_backend]\nenabled = false\n"] {
            let v = added(toml, &test_manifest()).expect("added");
            assert!(
                v["Resources"].as_object().is_none_or(|r| r.is_empty()),
                "{v}"
            );
        }
    }

    #[test]
    fn a_rule_for_the_stages_submit_job_events_invokes_the_function_and_only_it_may() {
        let v = added(ON, &test_manifest()).expect("added");
        let r = &v["Resources"];
        let rule = &r[ids::EXAMPLE_BACKEND_RULE]["Properties"];
        assert_eq!(
            rule["EventPattern"],
            json!({"source": ["wsstack.dev"], "detail-type": ["submitJob"]})
        );
        assert_eq!(
            rule["EventBusName"],
            json!({"Fn::GetAtt": ["EventBus", "Name"]})
        );
        assert_eq!(
            rule["Targets"],
            json!([{"Arn": {"Fn::GetAtt": ["JobBackendFunction", "Arn"]}, "Id": "JobBackend"}])
        );
        let p = &r[ids::EXAMPLE_BACKEND_PERMISSION]["Properties"];
        assert_eq!(p["Principal"], "events.amazonaws.com");
        assert_eq!(p["Action"], "lambda:InvokeFunction");
        assert_eq!(
            p["FunctionName"],
            json!({"Fn::GetAtt": ["JobBackendFunction", "Arn"]})
        );
        assert_eq!(
            p["SourceArn"],
            json!({"Fn::GetAtt": ["JobBackendRule", "Arn"]})
        );
    }

    #[test]
    fn the_function_pushes_through_the_push_api_with_the_push_policy() {
        let v = added(ON, &test_manifest()).expect("added");
        let r = &v["Resources"];
        let f = &r[ids::EXAMPLE_BACKEND_FUNCTION]["Properties"];
        assert_eq!(
            f["Environment"]["Variables"],
            json!({"PUSH_API_URL": {"Fn::Sub": "https://${PushApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}})
        );
        assert_eq!(
            f["Environment"]["Variables"]["PUSH_API_URL"],
            serde_json::to_value(push_api::push_api_url()).expect("json")
        );
        assert_eq!(
            (f["MemorySize"].clone(), f["Timeout"].clone()),
            (json!(128), json!(30))
        );
        assert_eq!(f["Architectures"], json!(["arm64"]));
        assert_eq!(f["Handler"], "job-backend");
        assert_eq!(f["LoggingConfig"]["LogGroup"]["Ref"], "JobBackendLogGroup");
        assert_eq!(f["Role"], json!({"Fn::GetAtt": ["JobBackendRole", "Arn"]}));
        let role = &r[ids::EXAMPLE_BACKEND_ROLE]["Properties"];
        assert_eq!(role["ManagedPolicyArns"], json!([{"Ref": "PushPolicy"}]));
        let logs = &role["Policies"][0]["PolicyDocument"]["Statement"][0];
        assert_eq!(
            logs["Resource"],
            json!({"Fn::GetAtt": ["JobBackendLogGroup", "Arn"]})
        );
        assert_eq!(
            r[ids::EXAMPLE_BACKEND_LOG_GROUP]["Properties"]["RetentionInDays"],
            14
        );
    }

    #[test]
    fn sizes_and_logs_follow_the_stage_file() {
        let toml = "[lambda]\nlog_level = \"DEBUG\"\nlog_retention_days = 7\n[example_backend]\nenabled = true\nmemory_mb = 256\ntimeout_seconds = 60\n";
        let v = added(toml, &test_manifest()).expect("added");
        let f = &v["Resources"][ids::EXAMPLE_BACKEND_FUNCTION]["Properties"];
        assert_eq!(
            (f["MemorySize"].clone(), f["Timeout"].clone()),
            (json!(256), json!(60))
        );
        assert_eq!(f["LoggingConfig"]["ApplicationLogLevel"], "DEBUG");
        assert_eq!(
            v["Resources"][ids::EXAMPLE_BACKEND_LOG_GROUP]["Properties"]["RetentionInDays"],
            7
        );
    }

    #[test]
    fn the_manifest_must_forward_submit_job() {
        let e = added(ON, &Manifest::default()).expect_err("no submitJob");
        assert_eq!(
            e.to_string(),
            "[example_backend] enabled = true, but the app manifest does not forward `submitJob`: the example runs that action's events; add it to wsstack.toml's [[forward]] or turn the example off"
        );
    }
}
