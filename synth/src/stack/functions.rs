//! Per handler: its log group, its least-privilege role and its Lambda function; and the
//! bucket the functions' code is read from.

use serde_json::json;
use wsstack_routes::{Handler, Invocation, Table, TableAction};

use super::{checks, environment, fanout_queue, ids, logs};
use crate::assets::Asset;
use crate::cfn::policy::{PolicyDocument, Statement};
use crate::cfn::resources::iam::{InlinePolicy, Role};
use crate::cfn::resources::lambda::{
    Code, Environment, Function, LogFormat, LoggingConfig, Runtime, SystemLogLevel,
};
use crate::cfn::{Condition, Expr, Parameter, Resource, Template};
use crate::stage::Stage;
use crate::stage::manifest::Manifest;

/// The Lambda runtime for Rust binaries named `bootstrap`.
pub const RUNTIME: Runtime = Runtime::ProvidedAl2023;
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
pub fn add(
    t: &mut Template,
    stage: &Stage,
    manifest: &Manifest,
    h: Handler,
    asset: &Asset,
    bucket: &Expr,
) {
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
                h.name(),
                stage.name
            )),
            assume_role_policy_document: PolicyDocument::new(vec![
                Statement::assume_role_by_service("lambda.amazonaws.com"),
            ]),
            policies: role_policies(stage, h, &log_group),
            managed_policy_arns: Vec::new(),
        },
    );

    let variables = environment::environment(stage, manifest, h);
    let function = Function {
        description: Some(description(stage, h)),
        runtime: RUNTIME,
        // Every function runs the one `bootstrap` binary; Lambda hands it this value as
        // `_HANDLER` and the binary dispatches on it.
        handler: h.name().to_owned(),
        architectures: vec![settings.architecture],
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
            application_log_level: Some(settings.log_level),
            system_log_level: Some(SystemLogLevel::Warn),
            log_group: Some(Expr::r#ref(&log_group)),
        }),
        dead_letter_config: None,
        tracing_config: None,
    };

    let resource = checks::skip(Resource::new(function), &checkov_skips(stage, h));
    t.add(ids::function(h), with_asset_metadata(resource, asset));
}

/// A function's resource with the keys the CDK writes for its code, so tools that read them
/// (SAM CLI, cdk) find it; and a label where the code is a stand-in.
pub(crate) fn with_asset_metadata(resource: Resource, asset: &Asset) -> Resource {
    let resource = resource
        .metadata("aws:asset:path", json!(asset.file_name()))
        .metadata("aws:asset:is-bundled", json!(false))
        .metadata("aws:asset:property", json!("Code"));
    if asset.is_stand_in() {
        return resource.metadata(
            "wsstack:stand-in",
            json!("STAND-IN code that refuses to run: synthesized with --stand-in-assets; build with `make handlers` and synth again before deploying"),
        );
    }
    resource
}

/// The function's description: which handler, in which role, in which stage.
fn description(stage: &Stage, h: Handler) -> String {
    let what = match (h.invocation(), h.route()) {
        (Invocation::Route, Some(route)) => format!("handler for the {} route", route.key),
        (Invocation::ConnectAuthorizer, _) => "Lambda REQUEST authorizer of $connect".to_owned(),
        (Invocation::Schedule, _) => {
            "handler, not a route: closes connections whose token expired, on a schedule".to_owned()
        }
        (Invocation::ForwardedActions, _) => {
            "handler of the forwarded actions' routes: puts them on the stage's event bus"
                .to_owned()
        }
        (Invocation::PushApi, _) => "handler of the HTTP push API".to_owned(),
        _ => "handler, not a route: runs the fan-out queue's jobs".to_owned(),
    };
    format!("wsstack {} {what} ({})", h.name(), stage.name)
}

/// The checkov checks the function skips, each with its reason (`checks`).
fn checkov_skips(stage: &Stage, h: Handler) -> Vec<checks::Skip> {
    let mut skips = match h.invocation() {
        Invocation::Schedule => checks::SCHEDULED_FUNCTION.to_vec(),
        // Invoked synchronously by API Gateway, like a route's function.
        Invocation::ForwardedActions | Invocation::PushApi => checks::FUNCTION.to_vec(),
        _ if h.is_route() => checks::FUNCTION.to_vec(),
        _ => checks::QUEUE_WORKER_FUNCTION.to_vec(),
    };
    if stage.function(h).reserved_concurrency.is_none() {
        skips.push(concurrency_skip(stage));
    }
    skips
}

/// The reason a function without reserved concurrency has none: the stage reserves nothing,
/// or only for the handlers whose capacity must be guaranteed.
pub(crate) fn concurrency_skip(stage: &Stage) -> checks::Skip {
    let stage_reserves = stage
        .functions
        .iter()
        .any(|(_, f)| f.reserved_concurrency.is_some());
    if stage_reserves {
        checks::FUNCTION_SHARES_UNRESERVED_CONCURRENCY
    } else {
        checks::FUNCTION_NO_RESERVED_CONCURRENCY
    }
}

/// The inline policy that lets a function write its own log group.
pub const WRITE_OWN_LOGS_POLICY: &str = "WriteOwnLogs";
/// The inline policy that grants a handler its `@connections` operations.
pub const MANAGE_CONNECTIONS_POLICY: &str = "ManageConnections";
/// The inline policy that grants a handler its actions on the stage's event bus.
pub const EVENT_BUS_POLICY: &str = "EventBus";

/// The inline policy that grants a handler `dynamodb:Query` on the indexes of `table` it reads:
/// `{table's logical ID}Indexes`.
pub fn index_policy_name(table: Table) -> String {
    format!("{}Indexes", ids::table(table))
}

/// The ARN of an index of a table: `{table ARN}/index/{name}`, what IAM names a query of it by
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/iam-policy-specific-table-indexes.html>).
pub fn index_arn(index: wsstack_routes::Index) -> Expr {
    Expr::sub(format!(
        "${{{table}.Arn}}/index/{name}",
        table = ids::table(index.table()),
        name = index.name()
    ))
}

/// Exactly what the handler does: write its own logs, the table actions it calls, and the
/// `@connections` operations it calls on this API's stage.
fn role_policies(stage: &Stage, h: Handler, log_group: &str) -> Vec<InlinePolicy> {
    let mut policies = vec![InlinePolicy {
        policy_name: WRITE_OWN_LOGS_POLICY.to_owned(),
        policy_document: PolicyDocument::new(vec![Statement::allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            // The log group's `Arn` attribute ends in `:*`, which covers its streams.
            vec![Expr::get_att(log_group, "Arn")],
        )]),
    }];
    // One policy per table, named by the table's logical ID, on that table's ARN only.
    for table in Table::ALL {
        let actions = h.table_actions(table);
        if actions.is_empty() {
            continue;
        }
        policies.push(InlinePolicy {
            policy_name: ids::table(table).to_owned(),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                actions.iter().map(|a| a.iam_action()),
                vec![Expr::get_att(ids::table(table), "Arn")],
            )]),
        });
    }
    // Queries of the indexes it reads, one policy per table, on those indexes' ARNs only (a
    // grant on the table's ARN does not cover its indexes).
    for table in Table::ALL {
        let indexes: Vec<Expr> = h
            .index_queries()
            .iter()
            .filter(|i| i.table() == table)
            .map(|&i| index_arn(i))
            .collect();
        if indexes.is_empty() {
            continue;
        }
        policies.push(InlinePolicy {
            policy_name: index_policy_name(table),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                [TableAction::Query.iam_action()],
                indexes,
            )]),
        });
    }
    policies.extend(fanout_queue::queue_policy(h));
    // Its actions on the stage's bus, on that bus only.
    let bus = h.bus_actions();
    if !bus.is_empty() {
        policies.push(InlinePolicy {
            policy_name: EVENT_BUS_POLICY.to_owned(),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                bus.iter().map(|a| a.iam_action()),
                vec![Expr::get_att(ids::EVENT_BUS, "Arn")],
            )]),
        });
    }
    let operations = h.management_operations();
    if !operations.is_empty() {
        // One resource per method the handler calls: the ARN names the HTTP method
        // (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-control-access-iam.html).
        let resources = operations
            .iter()
            .map(|op| {
                Expr::sub(format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/{stage}/{method}/@connections/*",
                    api = ids::API,
                    stage = stage.name,
                    method = op.http_method()
                ))
            })
            .collect();
        policies.push(InlinePolicy {
            policy_name: MANAGE_CONNECTIONS_POLICY.to_owned(),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                ["execute-api:ManageConnections"],
                resources,
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
    use wsstack_routes::EnvVar;

    fn with_function(stage_toml: &str, handler: Handler) -> serde_json::Value {
        let stage = test_stage(stage_toml);
        let asset = assets::resolve(&AssetSource::StandIn).expect("stand-in");
        let mut t = Template::new("test");
        let bucket = code_bucket(&mut t);
        add(
            &mut t,
            &stage,
            &crate::stack::test_manifest(),
            handler,
            &asset,
            &bucket,
        );
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn a_handler_gets_a_log_group_a_role_and_a_function() {
        let t = with_function("", Handler::Connect);
        let ids: Vec<&String> = t["Resources"].as_object().expect("map").keys().collect();
        assert_eq!(ids, ["ConnectLogGroup", "ConnectRole", "ConnectFunction"]);
        let f = &t["Resources"]["ConnectFunction"]["Properties"];
        assert_eq!(f["Runtime"], "provided.al2023");
        assert_eq!(f["LoggingConfig"]["ApplicationLogLevel"], "INFO");
        assert_eq!(f["LoggingConfig"]["SystemLogLevel"], "WARN");
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
                names.contains(&MANAGE_CONNECTIONS_POLICY),
                !h.management_operations().is_empty(),
                "{h:?}: {names:?}"
            );
        }
    }

    #[test]
    fn each_table_policy_grants_exactly_the_route_tables_actions_on_that_table() {
        for h in Handler::ALL {
            let t = with_function("", h);
            let policies = t["Resources"][ids::role(h)]["Properties"]["Policies"]
                .as_array()
                .expect("policies")
                .clone();
            for table in Table::ALL {
                let want: Vec<&str> = h
                    .table_actions(table)
                    .iter()
                    .map(|a| a.iam_action())
                    .collect();
                let policy = policies
                    .iter()
                    .find(|p| p["PolicyName"] == ids::table(table));
                let Some(policy) = policy else {
                    assert!(want.is_empty(), "{h:?} {table:?}: no policy for {want:?}");
                    continue;
                };
                let statement = &policy["PolicyDocument"]["Statement"][0];
                let action = &statement["Action"];
                let got: Vec<&str> = match action.as_array() {
                    Some(list) => list.iter().filter_map(|a| a.as_str()).collect(),
                    None => action.as_str().into_iter().collect(),
                };
                assert_eq!(got, want, "{h:?} {table:?}");
                assert_eq!(
                    statement["Resource"]["Fn::GetAtt"][0],
                    ids::table(table),
                    "{h:?} {table:?}"
                );
            }
            let env = &t["Resources"][ids::function(h)]["Properties"]["Environment"]["Variables"];
            assert_eq!(
                env.get(EnvVar::RoomsTableName.name()).is_some(),
                !h.table_actions(Table::Rooms).is_empty(),
                "{h:?}"
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

    #[test]
    fn manage_connections_names_each_method_the_handler_calls() {
        for h in Handler::ALL {
            let ops = h.management_operations();
            if ops.is_empty() {
                continue;
            }
            let t = with_function("", h);
            let policy = t["Resources"][ids::role(h)]["Properties"]["Policies"]
                .as_array()
                .expect("policies")
                .iter()
                .find(|p| p["PolicyName"] == MANAGE_CONNECTIONS_POLICY)
                .expect("policy")
                .clone();
            // One resource is written as a value, more as a list.
            let resource = &policy["PolicyDocument"]["Statement"][0]["Resource"];
            let list = match resource.as_array() {
                Some(list) => list.clone(),
                None => vec![resource.clone()],
            };
            let resources: Vec<&str> = list.iter().filter_map(|r| r["Fn::Sub"].as_str()).collect();
            let want: Vec<String> = ops
                .iter()
                .map(|op| {
                    format!(
                        "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/dev/{}/@connections/*",
                        op.http_method()
                    )
                })
                .collect();
            assert_eq!(resources, want, "{h:?}");
        }
    }

    /// Issue 18: every client route charges the rate limits, so each needs them; the user's
    /// only where connections carry a verified `sub`; the broadcast budget only where
    /// broadcasts start.
    #[test]
    fn every_client_route_gets_its_rate_limits() {
        const JWT: &str = "[auth]\nmode = \"jwt\"\nissuer = \"https://issuer.example\"\naudience = \"a\"\n[api]\nmessage_rate = 7\nuser_message_rate = 750\nuser_message_burst = 9\nbroadcast_budget = 2500\n";
        for h in Handler::ALL {
            for (toml, jwt) in [("[api]\nmessage_rate = 7\n", false), (JWT, true)] {
                let t = with_function(toml, h);
                let env =
                    &t["Resources"][ids::function(h)]["Properties"]["Environment"]["Variables"];
                let var = |name: &str| env.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                if h.is_rate_limited() {
                    assert_eq!(var("MESSAGE_RATE").as_deref(), Some("7"), "{h:?}");
                    assert_eq!(var("MESSAGE_BURST").as_deref(), Some("20"), "{h:?}");
                } else {
                    assert_eq!(var("MESSAGE_RATE"), None, "{h:?}");
                }
                let user = (h.is_rate_limited() && jwt).then(|| "750".to_owned());
                assert_eq!(var("USER_MESSAGE_RATE"), user, "{h:?} jwt={jwt}");
                // Charged by what starts a broadcast (sendMessage, the push API) and by the
                // worker that lists its audience: the handlers that enqueue fan-out jobs.
                let budget =
                    h.reads(EnvVar::BroadcastBudget)
                        .then_some(if jwt { "2500" } else { "5000" });
                assert_eq!(var("BROADCAST_BUDGET").as_deref(), budget, "{h:?}");
            }
        }
    }

    /// Issue 17: `dynamodb:Query` on exactly the indexes a handler's spec lists, on the
    /// indexes' ARNs; nobody else gets an index policy.
    #[test]
    fn index_queries_are_granted_on_the_index_arns_only() {
        for h in Handler::ALL {
            let t = with_function("", h);
            let policies = t["Resources"][ids::role(h)]["Properties"]["Policies"]
                .as_array()
                .expect("policies")
                .clone();
            for table in Table::ALL {
                let want: Vec<serde_json::Value> = h
                    .index_queries()
                    .iter()
                    .filter(|i| i.table() == table)
                    .map(|&i| serde_json::to_value(index_arn(i)).expect("json"))
                    .collect();
                let policy = policies
                    .iter()
                    .find(|p| p["PolicyName"] == index_policy_name(table).as_str());
                let Some(policy) = policy else {
                    assert!(want.is_empty(), "{h:?} {table:?}: no index policy");
                    continue;
                };
                let statement = &policy["PolicyDocument"]["Statement"][0];
                assert_eq!(statement["Action"], "dynamodb:Query", "{h:?}");
                let resource = &statement["Resource"];
                let got = match resource.as_array() {
                    Some(list) => list.clone(),
                    None => vec![resource.clone()],
                };
                assert_eq!(got, want, "{h:?} {table:?}");
            }
        }
        assert_eq!(
            serde_json::to_value(index_arn(wsstack_routes::Index::ConnectionsByUser))
                .expect("json"),
            serde_json::json!({"Fn::Sub": "${ConnectionsTable.Arn}/index/byUser"})
        );
    }

    /// Issue 17: the bus actions a spec lists, on the stage's bus only.
    #[test]
    fn bus_actions_are_granted_on_the_bus_only() {
        for h in Handler::ALL {
            let t = with_function("", h);
            let policies = t["Resources"][ids::role(h)]["Properties"]["Policies"]
                .as_array()
                .expect("policies")
                .clone();
            let policy = policies
                .iter()
                .find(|p| p["PolicyName"] == EVENT_BUS_POLICY);
            let want: Vec<&str> = h.bus_actions().iter().map(|a| a.iam_action()).collect();
            let Some(policy) = policy else {
                assert!(want.is_empty(), "{h:?}");
                continue;
            };
            let statement = &policy["PolicyDocument"]["Statement"][0];
            let action = &statement["Action"];
            let got: Vec<&str> = match action.as_array() {
                Some(list) => list.iter().filter_map(|a| a.as_str()).collect(),
                None => action.as_str().into_iter().collect(),
            };
            assert_eq!(got, want, "{h:?}");
            assert_eq!(
                statement["Resource"],
                serde_json::json!({"Fn::GetAtt": [ids::EVENT_BUS, "Arn"]}),
                "{h:?}"
            );
        }
    }

    #[test]
    fn callback_url_is_the_execute_api_endpoint_of_this_stage() {
        for h in wsstack_routes::ROUTES.iter().map(|r| r.handler) {
            let t = with_function("", h);
            let env = &t["Resources"][ids::function(h)]["Properties"]["Environment"]["Variables"];
            if h.management_operations().is_empty() {
                assert!(env.get(EnvVar::CallbackUrl.name()).is_none(), "{h:?}");
            } else {
                assert_eq!(
                    env[EnvVar::CallbackUrl.name()]["Fn::Sub"],
                    "https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/dev",
                    "{h:?}"
                );
            }
        }
    }
}
