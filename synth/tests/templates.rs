//! The synthesized templates: a snapshot per stage, and focused assertions on what must hold
//! whatever the snapshot says (least privilege, SourceArn scoping, retention, wiring, IDs).

use std::path::Path;

use serde_json::Value;
use wsstack_routes::{Handler, ROUTES, Table};
use wsstack_synth::assets::{self, AssetSource};
use wsstack_synth::stack::{self, ids};
use wsstack_synth::stage::manifest::{self, Manifest};
use wsstack_synth::stage::{self, Stage};

fn stages() -> Vec<Stage> {
    stage::load_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages")).expect("stage files")
}

/// The shipped app manifest (`wsstack.toml`).
fn manifest() -> Manifest {
    manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsstack.toml"))
        .expect("the app manifest")
}

fn stage_named(name: &str) -> Stage {
    stages()
        .into_iter()
        .find(|s| s.name == name)
        .expect("stage exists")
}

fn template(stage: &Stage) -> Value {
    let asset = assets::Assets::resolve(&AssetSource::StandIn, true).expect("stand-in");
    let t = stack::build(stage, &manifest(), &asset).expect("valid stack");
    serde_json::to_value(&t).expect("serializes")
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

#[test]
fn snapshot_of_every_stage() {
    for stage in stages() {
        // Asset hashes change with every handler edit; they are checked by the assembly tests.
        insta::assert_json_snapshot!(format!("template_{}", stage.name), template(&stage), {
            ".Resources.*.Properties.Code.S3Key" => "[asset hash].zip",
            ".Resources.*.Metadata[\"aws:asset:path\"]" => "asset.[asset hash].zip",
        });
    }
}

/// Renaming a logical ID replaces the live resource (for the table: a new, empty table). This
/// list changes only on purpose.
#[test]
fn logical_ids_are_pinned() {
    let t = template(&stage_named("dev"));
    let got: Vec<&str> = resources(&t).keys().map(String::as_str).collect();
    assert_eq!(
        got,
        [
            "ConnectionsTable",
            "RoomsTable",
            "WebSocketApi",
            "ConnectLogGroup",
            "ConnectRole",
            "ConnectFunction",
            "ConnectIntegration",
            "ConnectRoute",
            "ConnectPermission",
            "DisconnectLogGroup",
            "DisconnectRole",
            "DisconnectFunction",
            "DisconnectIntegration",
            "DisconnectRoute",
            "DisconnectPermission",
            "SendMessageLogGroup",
            "SendMessageRole",
            "SendMessageFunction",
            "SendMessageIntegration",
            "SendMessageRoute",
            "SendMessagePermission",
            "DefaultLogGroup",
            "DefaultRole",
            "DefaultFunction",
            "DefaultIntegration",
            "DefaultRoute",
            "DefaultPermission",
            "ListConnectionsLogGroup",
            "ListConnectionsRole",
            "ListConnectionsFunction",
            "ListConnectionsIntegration",
            "ListConnectionsRoute",
            "ListConnectionsPermission",
            "JoinLogGroup",
            "JoinRole",
            "JoinFunction",
            "JoinIntegration",
            "JoinRoute",
            "JoinPermission",
            "LeaveLogGroup",
            "LeaveRole",
            "LeaveFunction",
            "LeaveIntegration",
            "LeaveRoute",
            "LeavePermission",
            // The fan-out worker is a function but not a route: no integration, route or
            // permission. Then the fan-out queue and the worker's event source.
            "FanoutWorkerLogGroup",
            "FanoutWorkerRole",
            "FanoutWorkerFunction",
            // Issue 17: the forward handler (the manifest forwards actions) and the push API's
            // handler, functions but not routes of the route table.
            "ForwardLogGroup",
            "ForwardRole",
            "ForwardFunction",
            "PushApiLogGroup",
            "PushApiRole",
            "PushApiFunction",
            "FanoutDeadLetterQueue",
            "FanoutQueue",
            "FanoutWorkerEventSource",
            // The forwarded actions' two-way routes (the manifest's submitJob), one integration.
            "ForwardIntegration",
            "ForwardSubmitJobRoute",
            "ForwardSubmitJobRouteResponse",
            "ForwardSubmitJobPermission",
            // The bus, the rule that sends replies to the fan-out queue, the queue's policy.
            "EventBus",
            "PushReplyRule",
            "FanoutQueuePolicy",
            // The push API.
            "PushApi",
            "PushApiIntegration",
            "PushApiPostToConnectionRoute",
            "PushApiPostToUserRoute",
            "PushApiPostToRoomRoute",
            "PushApiPostToEveryoneRoute",
            "PushApiListUserConnectionsRoute",
            "PushApiDeleteConnectionRoute",
            "PushApiStage",
            "PushApiPermission",
            "PushPolicy",
            // The example backend (dev's `[example_backend] enabled = true`).
            "JobBackendLogGroup",
            "JobBackendRole",
            "JobBackendFunction",
            "JobBackendRule",
            "JobBackendPermission",
            "WebSocketStage",
            // Issue 19: the stage's dashboard (dev has no alarms: `[alarms] enabled = false`).
            "Dashboard",
        ]
    );
    let outputs: Vec<&str> = t["Outputs"]
        .as_object()
        .expect("Outputs")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        outputs,
        [
            "WebSocketUrl",
            "CallbackUrl",
            "ConnectionsTableName",
            "RoomsTableName",
            "WebSocketApiId",
            "PushApiUrl",
            "PushPolicyArn",
            "EventBusName",
            "EventBusArn"
        ]
    );
}

fn statements(t: &Value, handler: Handler) -> Vec<(String, Value, Value)> {
    let role = &resources(t)[&ids::role(handler)];
    let mut out = Vec::new();
    for policy in role["Properties"]["Policies"].as_array().expect("policies") {
        for s in policy["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
        {
            assert_eq!(s["Effect"], "Allow");
            out.push((
                policy["PolicyName"].as_str().expect("name").to_owned(),
                s["Action"].clone(),
                s["Resource"].clone(),
            ));
        }
    }
    out
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn every_role_is_least_privilege() {
    for stage in stages() {
        let t = template(&stage);
        // The authorizer's function exists only in stages that authenticate.
        let present = Handler::ALL
            .into_iter()
            .filter(|h| resources(&t).contains_key(&ids::role(*h)));
        for h in present {
            let mut table_actions = Vec::new();
            let mut rooms_table_actions = Vec::new();
            let mut manage = false;
            let mut queue_actions = Vec::new();
            let mut index_resources = Vec::new();
            let mut bus_actions = Vec::new();
            for (policy, action, resource) in statements(&t, h) {
                let actions = as_list(&action);
                let resources = as_list(&resource);
                for a in &actions {
                    let a = a.as_str().expect("action is a string");
                    assert!(
                        !a.contains('*'),
                        "{}: {h:?} has wildcard action {a}",
                        stage.name
                    );
                }
                for r in &resources {
                    assert_ne!(r, "*", "{}: {h:?} has a * resource", stage.name);
                }
                match policy.as_str() {
                    "WriteOwnLogs" => {
                        assert_eq!(
                            resources,
                            [serde_json::json!({"Fn::GetAtt": [ids::log_group(h), "Arn"]})]
                        );
                        assert_eq!(actions, ["logs:CreateLogStream", "logs:PutLogEvents"]);
                    }
                    "ConnectionsTable" => {
                        assert_eq!(
                            resources,
                            [serde_json::json!({"Fn::GetAtt": [ids::TABLE, "Arn"]})]
                        );
                        table_actions.extend(
                            actions
                                .iter()
                                .map(|a| a.as_str().unwrap_or_default().to_owned()),
                        );
                    }
                    "RoomsTable" => {
                        assert_eq!(
                            resources,
                            [serde_json::json!({"Fn::GetAtt": [ids::ROOMS_TABLE, "Arn"]})]
                        );
                        rooms_table_actions.extend(
                            actions
                                .iter()
                                .map(|a| a.as_str().unwrap_or_default().to_owned()),
                        );
                    }
                    "ManageConnections" => {
                        manage = true;
                        assert_eq!(actions, ["execute-api:ManageConnections"]);
                        let want: Vec<Value> = h
                            .management_operations()
                            .iter()
                            .map(|op| serde_json::json!({"Fn::Sub": format!(
                                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/{}/{}/@connections/*",
                                stage.name,
                                op.http_method()
                            )}))
                            .collect();
                        assert_eq!(resources, want);
                    }
                    "FanoutQueue" => {
                        assert_eq!(
                            resources,
                            [serde_json::json!({"Fn::GetAtt": [ids::FANOUT_QUEUE, "Arn"]})]
                        );
                        queue_actions.extend(
                            actions
                                .iter()
                                .map(|a| a.as_str().unwrap_or_default().to_owned()),
                        );
                    }
                    // Issue 17: Query on the indexes the spec lists, on their ARNs only.
                    "ConnectionsTableIndexes" => {
                        assert_eq!(actions, ["dynamodb:Query"]);
                        index_resources.extend(resources);
                    }
                    // Issue 17: the bus actions the spec lists, on the stage's bus only.
                    "EventBus" => {
                        assert_eq!(
                            resources,
                            [serde_json::json!({"Fn::GetAtt": [ids::EVENT_BUS, "Arn"]})]
                        );
                        bus_actions.extend(
                            actions
                                .iter()
                                .map(|a| a.as_str().unwrap_or_default().to_owned()),
                        );
                    }
                    other => panic!("unexpected policy {other} on {h:?}"),
                }
            }
            let expected = |table| -> Vec<String> {
                h.table_actions(table)
                    .iter()
                    .map(|a| a.iam_action().to_owned())
                    .collect()
            };
            assert_eq!(
                table_actions,
                expected(Table::Connections),
                "{}: {h:?}",
                stage.name
            );
            assert_eq!(
                rooms_table_actions,
                expected(Table::Rooms),
                "{}: {h:?}",
                stage.name
            );
            assert_eq!(
                manage,
                !h.management_operations().is_empty(),
                "{}: {h:?}",
                stage.name
            );
            // Exactly the spec's queue actions (receive and delete for the worker only: checked
            // in `fanout_queue`'s unit tests).
            let want_queue: Vec<&str> = h.queue_actions().iter().map(|a| a.iam_action()).collect();
            assert_eq!(queue_actions, want_queue, "{}: {h:?}", stage.name);
            let want_indexes: Vec<Value> = h
                .index_queries()
                .iter()
                .map(|i| {
                    serde_json::json!({"Fn::Sub": format!(
                        "${{{}.Arn}}/index/{}",
                        ids::table(i.table()),
                        i.name()
                    )})
                })
                .collect();
            assert_eq!(index_resources, want_indexes, "{}: {h:?}", stage.name);
            let want_bus: Vec<&str> = h.bus_actions().iter().map(|a| a.iam_action()).collect();
            assert_eq!(bus_actions, want_bus, "{}: {h:?}", stage.name);
        }
    }
    // The handlers' promises, spelled out: connect only writes, disconnect only deletes (the
    // record's delete answers with its rooms), join may delete the membership it just wrote
    // (its connection left meanwhile); every client route charges its rate limits (issue 18:
    // a conditional UpdateItem, a GetItem where the failure carries no item), so leave and
    // default read and update the connections table and nothing else.
    let t = template(&stage_named("dev"));
    let actions = |h, table: &str| {
        statements(&t, h)
            .into_iter()
            .filter(|(p, ..)| p == table)
            .flat_map(|(_, a, _)| as_list(&a))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actions(Handler::Connect, "ConnectionsTable"),
        ["dynamodb:PutItem"]
    );
    assert!(actions(Handler::Connect, "RoomsTable").is_empty());
    assert_eq!(
        actions(Handler::Disconnect, "ConnectionsTable"),
        ["dynamodb:DeleteItem"]
    );
    assert_eq!(
        actions(Handler::Join, "RoomsTable"),
        ["dynamodb:PutItem", "dynamodb:DeleteItem"]
    );
    assert_eq!(
        actions(Handler::Disconnect, "RoomsTable"),
        ["dynamodb:DeleteItem"]
    );
    assert_eq!(
        actions(Handler::Leave, "ConnectionsTable"),
        ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    );
    assert_eq!(
        actions(Handler::Leave, "RoomsTable"),
        ["dynamodb:DeleteItem"]
    );
    assert_eq!(
        actions(Handler::SendMessage, "RoomsTable"),
        ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"]
    );
    assert_eq!(
        actions(Handler::Default, "ConnectionsTable"),
        ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    );
    assert!(actions(Handler::Default, "RoomsTable").is_empty());
    assert_eq!(
        actions(Handler::ListConnections, "ConnectionsTable"),
        ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Scan"]
    );
}

#[test]
fn every_route_is_wired_to_its_function_and_scoped() {
    for stage in stages() {
        let t = template(&stage);
        let r = resources(&t);
        assert_eq!(r[ids::API]["Properties"]["ProtocolType"], "WEBSOCKET");
        assert_eq!(
            r[ids::API]["Properties"]["RouteSelectionExpression"],
            "$request.body.action"
        );
        for route in ROUTES {
            let h = route.handler;
            let api_route = &r[&ids::route(h)]["Properties"];
            assert_eq!(api_route["RouteKey"], route.key);
            // Only $connect, and only where the stage authenticates, has the authorizer.
            if route.key == wsstack_routes::CONNECT && stage.auth.jwt().is_some() {
                assert_eq!(api_route["AuthorizationType"], "CUSTOM", "{}", stage.name);
                assert_eq!(
                    api_route["AuthorizerId"],
                    serde_json::json!({"Ref": ids::CONNECT_AUTHORIZER})
                );
            } else {
                assert_eq!(api_route["AuthorizationType"], "NONE", "{}", stage.name);
                assert!(api_route.get("AuthorizerId").is_none());
            }
            assert_eq!(api_route["ApiId"], serde_json::json!({"Ref": ids::API}));
            assert_eq!(
                api_route["Target"],
                serde_json::json!({"Fn::Join": ["/", ["integrations", {"Ref": ids::integration(h)}]]})
            );
            let integration = &r[&ids::integration(h)]["Properties"];
            assert_eq!(integration["IntegrationType"], "AWS_PROXY");
            assert_eq!(
                integration["IntegrationUri"],
                serde_json::json!({"Fn::Sub": format!(
                    "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{}.Arn}}/invocations",
                    ids::function(h)
                )})
            );
            let permission = &r[&ids::permission(h)]["Properties"];
            assert_eq!(permission["Action"], "lambda:InvokeFunction");
            assert_eq!(permission["Principal"], "apigateway.amazonaws.com");
            assert_eq!(
                permission["FunctionName"],
                serde_json::json!({"Fn::GetAtt": [ids::function(h), "Arn"]})
            );
            assert_eq!(
                permission["SourceArn"],
                serde_json::json!({"Fn::Sub": format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/{}/{}",
                    stage.name, route.key
                )})
            );
            let f = &r[&ids::function(h)]["Properties"];
            let settings = stage.function(h);
            assert_eq!(f["Runtime"], "provided.al2023");
            // The one `bootstrap` binary dispatches on this (`_HANDLER`).
            assert_eq!(f["Handler"], h.name());
            assert_eq!(f["Architectures"], serde_json::json!(["arm64"]));
            assert_eq!(f["MemorySize"], settings.memory_mb);
            assert_eq!(f["Timeout"], settings.timeout_seconds);
            assert_eq!(
                f["Environment"]["Variables"]["TABLE_NAME"],
                serde_json::json!({"Ref": ids::TABLE})
            );
            assert_eq!(
                f["LoggingConfig"]["LogGroup"],
                serde_json::json!({"Ref": ids::log_group(h)})
            );
            assert_eq!(f["LoggingConfig"]["LogFormat"], "JSON");
            assert_eq!(
                r[&ids::log_group(h)]["Properties"]["RetentionInDays"],
                settings.log_retention_days
            );
        }
        let s = &r[ids::STAGE]["Properties"];
        assert_eq!(s["StageName"], stage.name.as_str());
        assert_eq!(s["AutoDeploy"], true);
        assert_eq!(
            s["DefaultRouteSettings"]["ThrottlingBurstLimit"],
            stage.api.throttling_burst_limit
        );
        assert_eq!(
            s["DefaultRouteSettings"]["DetailedMetricsEnabled"],
            stage.api.detailed_metrics
        );
    }
}

#[test]
fn prod_retains_its_data_and_dev_does_not() {
    let prod = template(&stage_named("prod"));
    let table = &resources(&prod)[ids::TABLE];
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    assert_eq!(
        table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true);
    // The rooms table keeps its data the same way.
    let rooms = &resources(&prod)[ids::ROOMS_TABLE];
    assert_eq!(rooms["DeletionPolicy"], "Retain");
    assert_eq!(rooms["UpdateReplacePolicy"], "Retain");
    assert_eq!(rooms["Properties"]["DeletionProtectionEnabled"], true);
    assert!(prod["Outputs"]["WebSocketUrl"]["Export"].is_object());
    // Access logs go to their own retained log group.
    let stage = &resources(&prod)[ids::STAGE]["Properties"];
    assert_eq!(
        stage["AccessLogSettings"]["DestinationArn"],
        serde_json::json!({"Fn::GetAtt": [ids::ACCESS_LOG_GROUP, "Arn"]})
    );
    assert_eq!(
        resources(&prod)[ids::ACCESS_LOG_GROUP]["DeletionPolicy"],
        "Retain"
    );

    let dev = template(&stage_named("dev"));
    let table = &resources(&dev)[ids::TABLE];
    assert_eq!(table["DeletionPolicy"], "Delete");
    assert_eq!(table["UpdateReplacePolicy"], "Delete");
    assert_eq!(
        table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        false
    );
    assert!(
        table["Properties"]
            .get("DeletionProtectionEnabled")
            .is_none()
    );
    assert!(dev["Outputs"]["WebSocketUrl"].get("Export").is_none());
    assert!(
        resources(&dev)[ids::STAGE]["Properties"]
            .get("AccessLogSettings")
            .is_none()
    );
}

#[test]
fn the_table_matches_what_the_handlers_write() {
    for stage in stages() {
        let t = template(&stage);
        let p = &resources(&t)[ids::TABLE]["Properties"];
        assert_eq!(
            p["KeySchema"],
            serde_json::json!([{"AttributeName": "connectionId", "KeyType": "HASH"}])
        );
        assert_eq!(
            p["TimeToLiveSpecification"],
            serde_json::json!({"AttributeName": "expiresAt", "Enabled": true})
        );
        assert_eq!(p["SSESpecification"]["SSEEnabled"], true);
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    }
}

#[test]
fn building_twice_gives_the_same_template() {
    for stage in stages() {
        assert_eq!(
            serde_json::to_string(&template(&stage)).expect("json"),
            serde_json::to_string(&template(&stage)).expect("json")
        );
    }
}

/// Every checkov suppression the stack writes is listed, with its reason, in docs/security-gates.md, so a
/// reader sees what the security gate lets through and why.
#[test]
fn every_checkov_suppression_is_documented() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security-gates.md"),
    )
    .expect("docs/security-gates.md");
    let mut seen = std::collections::BTreeSet::new();
    for stage in stages() {
        let t = template(&stage);
        for (id, r) in resources(&t) {
            for skip in r["Metadata"]["checkov"]["skip"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let check = skip["id"].as_str().expect("id");
                let comment = skip["comment"].as_str().expect("comment");
                assert!(!comment.is_empty(), "{id}: {check} has no reason");
                seen.insert((check.to_owned(), comment.to_owned()));
            }
        }
    }
    assert!(!seen.is_empty());
    for (check, comment) in &seen {
        assert!(
            readme.contains(check),
            "docs/security-gates.md does not list {check}"
        );
        assert!(
            readme.contains(comment.as_str()),
            "docs/security-gates.md does not give the reason for {check}: {comment}"
        );
    }
}

/// Stages with `[auth] mode = "jwt"` close connections whose token has expired: the
/// `token-sweeper` function on an EventBridge schedule, invocable by that rule only, allowed to
/// Scan and DeleteItem the connections table and to DELETE `@connections` of its stage only.
/// Stages without authentication have none of it.
#[test]
fn the_token_sweep_runs_where_the_stage_authenticates() {
    for stage in stages() {
        let t = template(&stage);
        let r = resources(&t);
        let h = Handler::TokenSweeper;
        let Some(jwt) = stage.auth.jwt() else {
            assert!(!r.contains_key(&ids::function(h)), "{}", stage.name);
            assert!(!r.contains_key(ids::TOKEN_SWEEP_SCHEDULE), "{}", stage.name);
            continue;
        };
        let rule = &r[ids::TOKEN_SWEEP_SCHEDULE];
        assert_eq!(rule["Type"], "AWS::Events::Rule");
        assert_eq!(
            rule["Properties"]["ScheduleExpression"],
            format!("rate({} minutes)", jwt.sweep_interval_minutes)
        );
        assert_eq!(
            rule["Properties"]["Targets"][0]["Arn"],
            serde_json::json!({"Fn::GetAtt": ["TokenSweeperFunction", "Arn"]})
        );
        let permission = &r[&ids::permission(h)]["Properties"];
        assert_eq!(permission["Principal"], "events.amazonaws.com");
        assert_eq!(
            permission["SourceArn"],
            serde_json::json!({"Fn::GetAtt": [ids::TOKEN_SWEEP_SCHEDULE, "Arn"]})
        );
        let f = &r[&ids::function(h)]["Properties"];
        assert_eq!(f["Handler"], "token-sweeper");
        assert_eq!(
            f["Environment"]["Variables"]["CALLBACK_URL"]["Fn::Sub"],
            format!(
                "https://${{WebSocketApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{}",
                stage.name
            )
        );
        let grants: Vec<(String, Vec<Value>, Vec<Value>)> = statements(&t, h)
            .into_iter()
            .map(|(p, a, r)| (p, as_list(&a), as_list(&r)))
            .collect();
        let names: Vec<&str> = grants.iter().map(|(p, ..)| p.as_str()).collect();
        assert_eq!(
            names,
            ["WriteOwnLogs", "ConnectionsTable", "ManageConnections"],
            "{}",
            stage.name
        );
        assert_eq!(
            grants[1].1,
            [
                serde_json::json!("dynamodb:Scan"),
                serde_json::json!("dynamodb:DeleteItem")
            ]
        );
        assert_eq!(
            grants[2].2,
            [serde_json::json!({"Fn::Sub": format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/{}/DELETE/@connections/*",
                stage.name
            )})]
        );
    }
}

/// Issue 17, in every shipped stage and derived from the declarations (the manifest, the push
/// routes, the specs): each forwarded action is a two-way route to the forward function; each
/// push route is IAM-authorized and the managed policy grants exactly those routes; replies on
/// the bus reach the fan-out queue, which only that rule may send to.
#[test]
fn the_bridge_is_wired_in_every_stage() {
    use wsstack_routes::push_api::PUSH_ROUTES;
    let manifest = manifest();
    assert!(manifest.has_forwarded_actions(), "the shipped manifest");
    for stage in stages() {
        let t = template(&stage);
        let r = resources(&t);
        let name = &stage.name;
        for action in &manifest.forward {
            let route = &r[&ids::forward_route(&action.name)]["Properties"];
            assert_eq!(route["RouteKey"], action.name.as_str(), "{name}");
            assert_eq!(route["RouteResponseSelectionExpression"], "$default");
            let response = &r[&ids::forward_route_response(&action.name)]["Properties"];
            assert_eq!(response["RouteResponseKey"], "$default", "{name}");
            assert_eq!(
                response["RouteId"]["Ref"],
                ids::forward_route(&action.name).as_str()
            );
            let stage_deps = r[ids::STAGE]["DependsOn"].as_array().expect("DependsOn");
            assert!(
                stage_deps.contains(&Value::from(ids::forward_route(&action.name))),
                "{name}: the stage deploys before {}",
                action.name
            );
        }
        let forward_env =
            &r[&ids::function(Handler::Forward)]["Properties"]["Environment"]["Variables"];
        let actions: Vec<wsstack_routes::bridge::ForwardedAction> =
            serde_json::from_str(forward_env["FORWARDED_ACTIONS"].as_str().expect("a string"))
                .expect("json");
        assert_eq!(actions, manifest.forward, "{name}");
        assert_eq!(
            forward_env["EVENT_SOURCE"],
            wsstack_routes::bridge::event_source(name)
        );

        let mut invoke = Vec::new();
        for route in &PUSH_ROUTES {
            let p = &r[&ids::push_route(route)]["Properties"];
            assert_eq!(p["AuthorizationType"], "AWS_IAM", "{name}: {route:?}");
            assert_eq!(p["RouteKey"], route.route_key());
            invoke.push(serde_json::json!({"Fn::Sub": format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{PushApi}}/*/{}{}",
                route.method,
                route.iam_path()
            )}));
        }
        let policy = &r[ids::PUSH_POLICY]["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(policy.as_array().map(Vec::len), Some(1), "{name}");
        assert_eq!(policy[0]["Action"], "execute-api:Invoke");
        assert_eq!(as_list(&policy[0]["Resource"]), invoke, "{name}");

        let rule = &r[ids::PUSH_REPLY_RULE]["Properties"];
        assert_eq!(
            rule["Targets"][0]["Arn"],
            serde_json::json!({"Fn::GetAtt": [ids::FANOUT_QUEUE, "Arn"]})
        );
        let statement = &r[ids::FANOUT_QUEUE_POLICY]["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(statement.as_array().map(Vec::len), Some(1), "{name}");
        assert_eq!(
            statement[0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            serde_json::json!({"Fn::GetAtt": [ids::PUSH_REPLY_RULE, "Arn"]}),
            "{name}"
        );
        // The GSI a user's connections are queried by.
        let gsi = &r[ids::TABLE]["Properties"]["GlobalSecondaryIndexes"][0];
        assert_eq!(gsi["IndexName"], wsstack_routes::table::USER_INDEX);
        assert_eq!(
            gsi["KeySchema"][0]["AttributeName"],
            wsstack_routes::table::USER_ID_ATTRIBUTE
        );
    }
}

/// The alarms of a template, by logical ID.
fn alarms_of(t: &Value) -> Vec<(&String, &Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .collect()
}

/// The handlers whose function is in the template.
fn functions_in(t: &Value) -> Vec<Handler> {
    Handler::ALL
        .into_iter()
        .filter(|h| resources(t).contains_key(&ids::function(*h)))
        .collect()
}

/// `[(name, value)]` of an alarm's dimensions.
fn dimensions(alarm: &Value) -> Vec<(String, Value)> {
    alarm["Properties"]["Dimensions"]
        .as_array()
        .expect("Dimensions")
        .iter()
        .map(|d| {
            (
                d["Name"].as_str().expect("Name").to_owned(),
                d["Value"].clone(),
            )
        })
        .collect()
}

/// A stage with alarms on and every part: jwt auth (the authorizer), a subscribed email.
fn stage_with_every_alarm() -> Stage {
    stage::parse(
        Path::new("stages/alarmed.toml"),
        "alarmed",
        "[alarms]\nenabled = true\nemail = \"ops@example.com\"\nfunction_errors = 2\nauthorizer_errors = 9\nforward_failures = 4\n[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n",
    )
    .expect("valid stage")
}

/// An alarm as the stage file implies it: logical ID, namespace, metric, dimensions, threshold.
type Expected = (
    String,
    &'static str,
    &'static str,
    Vec<(String, Value)>,
    u32,
);

fn dims(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}

/// Every alarm a template of `stage` must have, from the parsed stage file and the functions
/// the template has: per function, per broadcasting function, the API's, the queue's.
fn expected_alarms(stage: &Stage, t: &Value) -> Vec<Expected> {
    let a = &stage.alarms;
    let r = |id: &str| serde_json::json!({"Ref": id});
    let handlers = functions_in(t);
    let mut out: Vec<Expected> = Vec::new();
    for h in &handlers {
        let f = dims(&[("FunctionName", r(&ids::function(*h)))]);
        let errors = if *h == Handler::Authorizer {
            a.authorizer_errors
        } else {
            a.function_errors
        };
        out.push((
            ids::errors_alarm(*h),
            "AWS/Lambda",
            "Errors",
            f.clone(),
            errors,
        ));
        out.push((
            ids::throttles_alarm(*h),
            "AWS/Lambda",
            "Throttles",
            f,
            a.function_throttles,
        ));
    }
    for h in wsstack_routes::metrics::broadcasting_handlers().filter(|h| handlers.contains(h)) {
        let d = dims(&[("Stage", r(ids::STAGE)), ("Handler", r(&ids::function(h)))]);
        out.push((
            ids::throttled_deliveries_alarm(h),
            "wsstack",
            "Throttled",
            d.clone(),
            a.throttled_deliveries,
        ));
        out.push((
            ids::cut_off_alarm(h),
            "wsstack",
            "CutOffAtDeadline",
            d,
            a.cut_off_deliveries,
        ));
    }
    for h in wsstack_routes::metrics::forwarding_handlers().filter(|h| handlers.contains(h)) {
        out.push((
            ids::forward_failed_alarm(h),
            "wsstack",
            "ForwardFailed",
            dims(&[("Stage", r(ids::STAGE)), ("Handler", r(&ids::function(h)))]),
            a.forward_failures,
        ));
    }
    let api = dims(&[("ApiId", r(ids::API)), ("Stage", r(ids::STAGE))]);
    out.push((
        ids::API_INTEGRATION_ERRORS_ALARM.to_owned(),
        "AWS/ApiGateway",
        "IntegrationError",
        api.clone(),
        a.integration_errors,
    ));
    out.push((
        ids::API_EXECUTION_ERRORS_ALARM.to_owned(),
        "AWS/ApiGateway",
        "ExecutionError",
        api,
        a.execution_errors,
    ));
    let queue = |q: &str| {
        dims(&[(
            "QueueName",
            serde_json::json!({"Fn::GetAtt": [q, "QueueName"]}),
        )])
    };
    out.push((
        ids::FANOUT_DEAD_LETTER_ALARM.to_owned(),
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        queue(ids::FANOUT_DEAD_LETTER_QUEUE),
        0,
    ));
    out.push((
        ids::FANOUT_OLDEST_JOB_ALARM.to_owned(),
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        queue(ids::FANOUT_QUEUE),
        a.oldest_job_age_seconds,
    ));
    out
}

/// Each alarm's metric, dimensions and threshold are the stage file's (read from the parsed
/// stage files, not copies), and there is no other; every alarm notifies the topic on ALARM and
/// OK and treats missing data as not breaching. Stages with `[alarms] enabled = false` have no
/// alarm and no topic.
#[test]
fn alarms_follow_the_stage_file() {
    let mut all = stages();
    all.push(stage_with_every_alarm());
    for stage in all {
        let t = template(&stage);
        let r = resources(&t);
        if !stage.alarms.enabled {
            assert!(alarms_of(&t).is_empty(), "{}: alarms while off", stage.name);
            assert!(!r.contains_key(ids::ALARM_TOPIC));
            continue;
        }
        let expected = expected_alarms(&stage, &t);
        assert_eq!(alarms_of(&t).len(), expected.len(), "{}", stage.name);
        let topic = serde_json::json!([{"Ref": ids::ALARM_TOPIC}]);
        for (id, namespace, metric, dims, threshold) in expected {
            let alarm = r
                .get(&id)
                .unwrap_or_else(|| panic!("{}: no {id}", stage.name));
            let p = &alarm["Properties"];
            assert_eq!(p["Namespace"], namespace, "{id}");
            assert_eq!(p["MetricName"], metric, "{id}");
            assert_eq!(dimensions(alarm), dims, "{id}");
            assert_eq!(p["Threshold"].as_f64(), Some(f64::from(threshold)), "{id}");
            assert_eq!(p["AlarmActions"], topic, "{id}");
            assert_eq!(p["OKActions"], topic, "{id}");
            assert_eq!(p["TreatMissingData"], "notBreaching", "{id}");
            assert_eq!(p["Period"], 300, "{id}");
            assert!(
                p["AlarmDescription"]
                    .as_str()
                    .is_some_and(|d| d.contains("Look first") || d.contains("look first")),
                "{id}"
            );
            let over = if threshold == 0 {
                "GreaterThanThreshold"
            } else {
                "GreaterThanOrEqualToThreshold"
            };
            assert_eq!(p["ComparisonOperator"], over, "{id}");
        }
        let email = match &stage.alarms.notify {
            stage::AlarmTarget::NewTopic { email } => email.clone(),
            stage::AlarmTarget::ExistingTopic(_) => None,
        };
        assert_eq!(
            r.contains_key(ids::ALARM_EMAIL_SUBSCRIPTION),
            email.is_some()
        );
    }
}

/// Every dimension of every alarm is a `Ref` or `Fn::GetAtt` of a resource of the stack.
#[test]
fn every_alarm_dimension_is_a_resource_of_the_stack() {
    let mut all = stages();
    all.push(stage_with_every_alarm());
    let mut checked = 0;
    for stage in all {
        let t = template(&stage);
        let r = resources(&t);
        for (id, alarm) in alarms_of(&t) {
            for (name, value) in dimensions(alarm) {
                let target = value["Ref"]
                    .as_str()
                    .or_else(|| value["Fn::GetAtt"][0].as_str())
                    .unwrap_or_else(|| panic!("{id}.{name}: {value} is not a Ref or GetAtt"));
                assert!(
                    r.contains_key(target),
                    "{id}.{name}: {target} is not in the stack"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

/// The dashboard's body, its `Fn::Sub` placeholders replaced by names, parses as JSON; every
/// placeholder names a resource of the stack (or the region); every widget has what the
/// dashboard body structure requires; every function of the stack has its graph.
#[test]
fn the_dashboard_body_is_json_with_complete_widgets() {
    for stage in stages() {
        let t = template(&stage);
        let r = resources(&t);
        let body = r[ids::DASHBOARD]["Properties"]["DashboardBody"]["Fn::Sub"]
            .as_str()
            .expect("DashboardBody is a Fn::Sub of a string");
        let mut resolved = String::new();
        let mut rest = body;
        while let Some(start) = rest.find("${") {
            resolved.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed placeholder") + start;
            let var = &rest[start + 2..end];
            let resource = var.split('.').next().expect("name");
            assert!(
                var == "AWS::Region" || r.contains_key(resource),
                "{}: the dashboard names {var}, not in the stack",
                stage.name
            );
            resolved.push_str("placeholder");
            rest = &rest[end + 1..];
        }
        resolved.push_str(rest);
        let v: Value = serde_json::from_str(&resolved).expect("the body is JSON");
        let widgets = v["widgets"].as_array().expect("widgets");
        // The body structure's limits: at most 500 widgets, 100 metrics a graph, 24 columns.
        assert!(!widgets.is_empty() && widgets.len() <= 500);
        for w in widgets {
            for key in ["type", "x", "y", "width", "height", "properties"] {
                assert!(
                    !w[key].is_null(),
                    "{}: a widget without {key}: {w}",
                    stage.name
                );
            }
            assert!(w["width"].as_u64().expect("width") + w["x"].as_u64().expect("x") <= 24);
            if w["type"] == "metric" {
                let p = &w["properties"];
                assert_eq!(p["region"], "placeholder");
                assert!(p["title"].is_string() && p["view"].is_string());
                let lines = p["metrics"].as_array().expect("metrics");
                assert!(
                    !lines.is_empty(),
                    "{}: {} has no metric",
                    stage.name,
                    p["title"]
                );
                assert!(
                    lines.len() <= 100,
                    "{}: {} has too many metrics",
                    stage.name,
                    p["title"]
                );
                for l in lines {
                    let l = l.as_array().expect("a metric line is an array");
                    let (options, names) = l.split_last().expect("not empty");
                    assert!(options.is_object());
                    assert!(names.len() >= 2 && names.len() % 2 == 0, "{l:?}");
                    assert!(names.iter().all(Value::is_string));
                }
            } else {
                assert_eq!(w["type"], "text");
            }
        }
        for h in functions_in(&t) {
            let title = format!("{} function", h.name());
            assert!(
                widgets
                    .iter()
                    .any(|w| w["properties"]["title"] == title.as_str()),
                "{}: no graph for {}",
                stage.name,
                h.name()
            );
        }
    }
}
