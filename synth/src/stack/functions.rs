//! Per handler: its log group, its least-privilege role and its Lambda function; and the
//! bucket the functions' code is read from.

use std::collections::BTreeMap;

use serde_json::json;
use wsstack_routes::{Handler, Route};

use super::{checks, ids, logs};
use crate::assets::Asset;
use crate::cfn::policy::{PolicyDocument, Statement};
use crate::cfn::resources::iam::{InlinePolicy, Role};
use crate::cfn::resources::lambda::{
    Architecture as CfnArchitecture, Code, Environment, Function, LogFormat, LoggingConfig,
};
use crate::cfn::{Condition, Expr, Parameter, Resource, Template};
use crate::stage::{Architecture, Stage};

/// The Lambda runtime for Rust binaries named `bootstrap`.
pub const RUNTIME: &str = "provided.al2023";
/// The CDK bootstrap bucket that `cdk deploy` publishes file assets to, by default.
pub const BOOTSTRAP_BUCKET: &str = "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}";

/// Adds the `AssetsBucket` parameter and returns the bucket the functions' code is read from:
/// the CDK bootstrap bucket (what `cdk deploy` publishes to) unless the parameter names another
/// (what `make deploy ASSETS_BUCKET=...` uploads to).
pub fn code_bucket(t: &mut Template) -> Expr {
    let param = t.add_parameter(
        ids::ASSETS_BUCKET,
        Parameter {
            default: Some(String::new()),
            allowed_pattern: Some("^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$".to_owned()),
            constraint_description: Some("an S3 bucket name, or empty for the CDK bootstrap bucket".to_owned()),
            ..Parameter::string(
                "S3 bucket holding the handlers' zips; empty means the CDK bootstrap bucket (cdk-hnb659fds-assets-ACCOUNT-REGION)",
            )
        },
    );
    let condition = t.add_condition(
        ids::USE_BOOTSTRAP_BUCKET,
        Condition::Equals(Expr::r#ref(&param), "".into()),
    );
    Expr::if_(condition, Expr::sub(BOOTSTRAP_BUCKET), Expr::r#ref(param))
}

/// Adds a handler's log group, role and function, its code read from `asset` in `bucket`.
pub fn add(t: &mut Template, stage: &Stage, route: &Route, asset: &Asset, bucket: &Expr) {
    let h = route.handler;
    let settings = stage.function(h);

    let log_group = t.add(
        ids::log_group(h),
        logs::log_group(stage, settings.log_retention_days),
    );

    let role = t.add(
        ids::role(h),
        Role {
            description: Some(format!(
                "wsstack {} handler ({}): least privilege",
                h.binary(),
                stage.name
            )),
            assume_role_policy_document: PolicyDocument::new(vec![
                Statement::assume_role_by_service("lambda.amazonaws.com"),
            ]),
            policies: role_policies(stage, h, &log_group),
        },
    );

    let mut variables = BTreeMap::new();
    variables.insert("TABLE_NAME".to_owned(), Expr::r#ref(ids::TABLE));
    if h.posts_to_connections() {
        variables.insert(
            "BROADCAST_CONCURRENCY".to_owned(),
            Expr::from(settings.broadcast_concurrency.to_string()),
        );
    }

    let function = Function {
        description: Some(format!(
            "wsstack {} handler for the {} route ({})",
            h.binary(),
            route.key,
            stage.name
        )),
        runtime: RUNTIME.to_owned(),
        handler: "bootstrap".to_owned(),
        architectures: vec![match settings.architecture {
            Architecture::Arm64 => CfnArchitecture::Arm64,
            Architecture::X86_64 => CfnArchitecture::X86_64,
        }],
        code: Code {
            s3_bucket: bucket.clone(),
            s3_key: Expr::from(asset.object_key()),
        },
        role: Expr::get_att(&role, "Arn"),
        memory_size: settings.memory_mb,
        timeout: settings.timeout_seconds,
        reserved_concurrent_executions: settings.reserved_concurrency,
        environment: Some(Environment { variables }),
        logging_config: Some(LoggingConfig {
            log_format: LogFormat::Json,
            application_log_level: Some(settings.log_level.as_str().to_owned()),
            system_log_level: Some("WARN".to_owned()),
            log_group: Some(Expr::r#ref(&log_group)),
        }),
        dead_letter_config: None,
        tracing_config: None,
    };

    // The same keys the CDK writes, so tools that read them (SAM CLI, cdk) find the code.
    let mut resource = checks::skip(Resource::new(function), checks::FUNCTION)
        .metadata("aws:asset:path", json!(asset.file_name()))
        .metadata("aws:asset:is-bundled", json!(false))
        .metadata("aws:asset:property", json!("Code"));
    if asset.is_stand_in() {
        resource = resource.metadata(
            "wsstack:stand-in",
            json!("STAND-IN code that refuses to run: synthesized with --stand-in-assets; build with `make handlers` and synth again before deploying"),
        );
    }
    t.add(ids::function(h), resource);
}

/// Exactly what the handler does: write its own logs, the table actions it calls, and
/// `@connections` posts on this API's stage if it pushes to clients.
fn role_policies(stage: &Stage, h: Handler, log_group: &str) -> Vec<InlinePolicy> {
    let mut policies = vec![InlinePolicy {
        policy_name: "WriteOwnLogs".to_owned(),
        policy_document: PolicyDocument::new(vec![Statement::allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            // The log group's `Arn` attribute ends in `:*`, which covers its streams.
            vec![Expr::get_att(log_group, "Arn")],
        )]),
    }];
    let actions = h.table_actions();
    if !actions.is_empty() {
        policies.push(InlinePolicy {
            policy_name: "ConnectionsTable".to_owned(),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                actions.iter().map(|a| a.iam_action()),
                vec![Expr::get_att(ids::TABLE, "Arn")],
            )]),
        });
    }
    if h.posts_to_connections() {
        policies.push(InlinePolicy {
            policy_name: "PostToConnections".to_owned(),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                ["execute-api:ManageConnections"],
                vec![Expr::sub(format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/{stage}/POST/@connections/*",
                    api = ids::API,
                    stage = stage.name
                ))],
            )]),
        });
    }
    policies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{self, AssetSource};
    use crate::stack::test_stage;
    use wsstack_routes::ROUTES;

    fn with_function(stage_toml: &str, handler: Handler) -> serde_json::Value {
        let stage = test_stage(stage_toml);
        let route = ROUTES.iter().find(|r| r.handler == handler).expect("route");
        let asset = assets::resolve(handler, &AssetSource::StandIn).expect("stand-in");
        let mut t = Template::new("test");
        let bucket = code_bucket(&mut t);
        add(&mut t, &stage, route, &asset, &bucket);
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn a_handler_gets_a_log_group_a_role_and_a_function() {
        let t = with_function("", Handler::Connect);
        let ids: Vec<&String> = t["Resources"].as_object().expect("map").keys().collect();
        assert_eq!(ids, ["ConnectLogGroup", "ConnectRole", "ConnectFunction"]);
        let f = &t["Resources"]["ConnectFunction"]["Properties"];
        assert_eq!(f["Runtime"], RUNTIME);
        assert_eq!(f["LoggingConfig"]["LogGroup"]["Ref"], "ConnectLogGroup");
        assert_eq!(f["Role"]["Fn::GetAtt"][0], "ConnectRole");
    }

    #[test]
    fn the_code_bucket_defaults_to_the_cdk_bootstrap_bucket() {
        let t = with_function("", Handler::Connect);
        assert_eq!(t["Parameters"][ids::ASSETS_BUCKET]["Default"], "");
        let bucket = &t["Resources"]["ConnectFunction"]["Properties"]["Code"]["S3Bucket"];
        assert_eq!(bucket["Fn::If"][0], ids::USE_BOOTSTRAP_BUCKET);
        assert_eq!(bucket["Fn::If"][1]["Fn::Sub"], BOOTSTRAP_BUCKET);
    }

    #[test]
    fn only_handlers_that_push_may_manage_connections() {
        for h in [Handler::Connect, Handler::SendMessage] {
            let t = with_function("", h);
            let policies = t["Resources"][ids::role(h)]["Properties"]["Policies"]
                .as_array()
                .expect("policies")
                .clone();
            let names: Vec<&str> = policies
                .iter()
                .filter_map(|p| p["PolicyName"].as_str())
                .collect();
            assert_eq!(
                names.contains(&"PostToConnections"),
                h.posts_to_connections(),
                "{h:?}: {names:?}"
            );
        }
    }

    #[test]
    fn per_handler_overrides_reach_the_function() {
        let t = with_function(
            "[lambda]\nmemory_mb = 256\n[lambda.send-message]\nmemory_mb = 1024\n",
            Handler::SendMessage,
        );
        assert_eq!(
            t["Resources"]["SendMessageFunction"]["Properties"]["MemorySize"],
            1024
        );
    }
}
