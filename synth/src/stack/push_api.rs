//! The push API (issue 17): the HTTP API a backend calls, IAM-signed, to reach connections,
//! users, rooms or everyone ([`wsstack_routes::push_api::PUSH_ROUTES`]). Its `$default` stage
//! auto-deploys; every route is `AWS_IAM` and integrated with the `push-api` handler's function
//! (payload format 2.0, set explicitly as CloudFormation requires); a permission lets this API
//! invoke the function; and a managed policy grants `execute-api:Invoke` on exactly these
//! routes, for backend roles to attach (HTTP APIs have no resource policies: another account
//! assumes a role of this one).
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html>,
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html>)
//!
//! The function, role and log group are the `PushApi` handler's, added like every function.

use wsstack_routes::Handler;
use wsstack_routes::push_api::{PUSH_ROUTES, PushRoute};

use super::{checks, ids, logs, outputs};
use crate::cfn::policy::{PolicyDocument, Statement};
use crate::cfn::resources::apigatewayv2::{
    AccessLogSettings, Api, AuthorizationType, Integration, IntegrationType, ProtocolType,
    Route as ApiRoute, RouteSettings, Stage as ApiStage,
};
use crate::cfn::resources::iam::ManagedPolicy;
use crate::cfn::resources::lambda::Permission;
use crate::cfn::{Expr, Resource, Template};
use crate::stage::Stage;

/// The stage of an HTTP API that is served at the API's root URL.
pub const DEFAULT_STAGE: &str = "$default";
/// The Lambda event format the `push-api` handler reads (`lambda_http`, API Gateway v2).
pub const PAYLOAD_FORMAT_VERSION: &str = "2.0";
/// One JSON line per request in the access log: who called, which route, what came of it.
pub const ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","routeKey":"$context.routeKey","status":"$context.status","caller":"$context.identity.caller","userArn":"$context.identity.userArn","sourceIp":"$context.identity.sourceIp","requestTime":"$context.requestTime","integrationError":"$context.integrationErrorMessage"}"#;

/// The `execute-api:Invoke` resource of a route: any stage, its method, its path with each
/// parameter a `*`.
pub fn invoke_arn(route: &PushRoute) -> Expr {
    Expr::sub(format!(
        "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/*/{method}{path}",
        api = ids::PUSH_API,
        method = route.method,
        path = route.iam_path()
    ))
}

/// Adds the HTTP API, its integration, routes, stage, invoke permission and managed policy.
pub fn add(t: &mut Template, stage: &Stage) {
    let h = Handler::PushApi;
    let function = ids::function(h);
    let api = t.add(
        ids::PUSH_API,
        Api {
            name: Expr::from(format!("{}-push", stage.stack_name)),
            protocol_type: ProtocolType::Http,
            route_selection_expression: None,
            description: Some(format!(
                "wsstack push API ({}): backends reach connections, users, rooms and everyone, IAM-signed",
                stage.name
            )),
        },
    );
    let integration = t.add(
        ids::integration(h),
        Integration {
            api_id: Expr::r#ref(&api),
            integration_type: IntegrationType::AwsProxy,
            integration_uri: Expr::get_att(&function, "Arn"),
            description: None,
            timeout_in_millis: None,
            payload_format_version: Some(PAYLOAD_FORMAT_VERSION.to_owned()),
        },
    );
    let route_ids = add_routes(t, &api, &integration);
    add_stage(t, stage, &api, &route_ids);
    add_permission(t, &function, &api);
    t.add(
        ids::PUSH_POLICY,
        ManagedPolicy {
            description: Some(format!(
                "wsstack ({}): call the push API (execute-api:Invoke on its routes); attach to a backend's role",
                stage.name
            )),
            policy_document: PolicyDocument::new(vec![Statement::allow(
                ["execute-api:Invoke"],
                PUSH_ROUTES.iter().map(invoke_arn).collect(),
            )]),
        },
    );
}

/// One route per [`PUSH_ROUTES`] entry, each IAM-authorized, all to the one integration; their
/// logical IDs.
fn add_routes(t: &mut Template, api: &str, integration: &str) -> Vec<String> {
    let mut route_ids = Vec::with_capacity(PUSH_ROUTES.len());
    for route in &PUSH_ROUTES {
        route_ids.push(t.add(
            ids::push_route(route),
            ApiRoute {
                api_id: Expr::r#ref(api),
                route_key: route.route_key(),
                authorization_type: AuthorizationType::AwsIam,
                authorizer_id: None,
                operation_name: None,
                target: Some(Expr::join(
                    "/",
                    vec!["integrations".into(), Expr::r#ref(integration)],
                )),
                route_response_selection_expression: None,
            },
        ));
    }
    route_ids
}

/// The `$default` stage, auto-deployed once every route exists, with access logs where the
/// stage file turns them on.
fn add_stage(t: &mut Template, stage: &Stage, api: &str, route_ids: &[String]) {
    let access_log_settings = stage.api.access_logs.then(|| {
        let group = t.add(
            ids::PUSH_API_ACCESS_LOG_GROUP,
            logs::log_group(stage, stage.api.access_log_retention_days),
        );
        AccessLogSettings {
            destination_arn: Expr::get_att(group, "Arn"),
            format: ACCESS_LOG_FORMAT.to_owned(),
        }
    });
    let mut resource = Resource::new(ApiStage {
        api_id: Expr::r#ref(api),
        stage_name: DEFAULT_STAGE.to_owned(),
        auto_deploy: Some(true),
        description: Some(format!("wsstack push API, stage {}", stage.name)),
        // Every route's throttling (the stage file's `[push_api]`). HTTP APIs take the
        // throttling fields of RouteSettings; its logging fields are WebSocket-only
        // (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-apigatewayv2-stage-routesettings.html,
        // https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html).
        default_route_settings: Some(RouteSettings {
            detailed_metrics_enabled: None,
            throttling_burst_limit: Some(stage.push_api.throttling_burst_limit),
            throttling_rate_limit: Some(stage.push_api.throttling_rate_limit),
            logging_level: None,
            data_trace_enabled: None,
        }),
        access_log_settings,
    });
    if !stage.api.access_logs {
        resource = checks::skip(resource, &[checks::PUSH_STAGE_ACCESS_LOGS_OFF]);
    }
    // The first auto-deployment carries every route.
    for id in route_ids {
        resource = resource.depends_on(id);
    }
    t.add(ids::PUSH_API_STAGE, resource);
}

/// API Gateway may invoke the function for this API only (any stage and route: the function
/// serves them all). Without it the API answers 500 "does not have permissions to call the
/// integration" (https://repost.aws/knowledge-center/api-gateway-http-lambda-integrations).
fn add_permission(t: &mut Template, function: &str, api: &str) {
    t.add(
        ids::permission(Handler::PushApi),
        Permission {
            action: "lambda:InvokeFunction".to_owned(),
            function_name: Expr::get_att(function, "Arn"),
            principal: "apigateway.amazonaws.com".to_owned(),
            source_arn: Some(Expr::sub(format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/*/*"
            ))),
            source_account: None,
        },
    );
}

/// The push API's URL: its `$default` stage is served at the root of its execute-api domain
/// (what its `ApiEndpoint` attribute says, spelled like the WebSocket API's URLs, as a `Sub`
/// that tools reading outputs without ApiGatewayV2 support, such as moto, can resolve).
pub fn push_api_url() -> Expr {
    Expr::sub(format!(
        "https://${{{api}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}",
        api = ids::PUSH_API
    ))
}

/// Adds the outputs `PushApiUrl` and `PushPolicyArn`.
pub fn add_outputs(t: &mut Template, stage: &Stage) {
    outputs::add_one(
        t,
        stage,
        "PushApiUrl",
        "The push API's URL (HTTP, IAM-signed with SigV4, service execute-api)",
        push_api_url(),
    );
    outputs::add_one(
        t,
        stage,
        "PushPolicyArn",
        "The managed policy that lets a role call the push API: attach it to your backend's role",
        Expr::r#ref(ids::PUSH_POLICY),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn added(toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        let stage = test_stage(toml);
        add(&mut t, &stage);
        add_outputs(&mut t, &stage);
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn an_http_api_with_an_auto_deployed_default_stage() {
        let v = added("");
        let r = &v["Resources"];
        assert_eq!(r[ids::PUSH_API]["Type"], "AWS::ApiGatewayV2::Api");
        assert_eq!(r[ids::PUSH_API]["Properties"]["ProtocolType"], "HTTP");
        assert!(
            r[ids::PUSH_API]["Properties"]
                .get("RouteSelectionExpression")
                .is_none()
        );
        let s = &r[ids::PUSH_API_STAGE];
        assert_eq!(s["Properties"]["StageName"], "$default");
        assert_eq!(s["Properties"]["AutoDeploy"], true);
        let deps = s["DependsOn"].as_array().expect("DependsOn");
        assert_eq!(deps.len(), PUSH_ROUTES.len());
        assert!(r.get(ids::PUSH_API_ACCESS_LOG_GROUP).is_none());
        let i = &r[ids::integration(Handler::PushApi)]["Properties"];
        assert_eq!(i["IntegrationType"], "AWS_PROXY");
        assert_eq!(i["PayloadFormatVersion"], "2.0");
        assert_eq!(
            i["IntegrationUri"]["Fn::GetAtt"],
            serde_json::json!(["PushApiFunction", "Arn"])
        );
    }

    /// The stage throttles every route as `[push_api]` says, with the throttling fields only
    /// (the logging ones are WebSocket-only); defaults without the section.
    #[test]
    fn the_stage_throttles_every_route_as_the_stage_file_says() {
        let settings = |toml: &str| {
            added(toml)["Resources"][ids::PUSH_API_STAGE]["Properties"]["DefaultRouteSettings"]
                .clone()
        };
        assert_eq!(
            settings(""),
            serde_json::json!({"ThrottlingBurstLimit": 500, "ThrottlingRateLimit": 1000.0})
        );
        assert_eq!(
            settings("[push_api]\nthrottling_rate_limit = 25.5\nthrottling_burst_limit = 40\n"),
            serde_json::json!({"ThrottlingBurstLimit": 40, "ThrottlingRateLimit": 25.5})
        );
    }

    /// Every route of `PUSH_ROUTES` exists, keyed `METHOD path`, IAM-authorized, on the one
    /// integration.
    #[test]
    fn every_push_route_is_aws_iam() {
        let v = added("");
        let r = &v["Resources"];
        for route in &PUSH_ROUTES {
            let p = &r[ids::push_route(route)]["Properties"];
            assert_eq!(p["RouteKey"], route.route_key(), "{route:?}");
            assert_eq!(p["AuthorizationType"], "AWS_IAM", "{route:?}");
            assert_eq!(p["ApiId"]["Ref"], ids::PUSH_API);
            assert_eq!(
                p["Target"]["Fn::Join"][1][1]["Ref"],
                ids::integration(Handler::PushApi)
            );
        }
        let routes = r
            .as_object()
            .expect("map")
            .values()
            .filter(|x| x["Type"] == "AWS::ApiGatewayV2::Route")
            .count();
        assert_eq!(routes, PUSH_ROUTES.len());
    }

    /// The managed policy grants `execute-api:Invoke` on exactly the routes, nothing else.
    #[test]
    fn the_policy_resources_are_the_routes() {
        let v = added("");
        let p = &v["Resources"][ids::PUSH_POLICY];
        assert_eq!(p["Type"], "AWS::IAM::ManagedPolicy");
        let statements = p["Properties"]["PolicyDocument"]["Statement"]
            .as_array()
            .expect("list");
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0]["Action"], "execute-api:Invoke");
        let got: Vec<&str> = statements[0]["Resource"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["Fn::Sub"].as_str())
            .collect();
        let want: Vec<String> = PUSH_ROUTES
            .iter()
            .map(|route| {
                format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{PushApi}}/*/{}{}",
                    route.method,
                    route.path.split('/').map(|s| if s.starts_with('{') { "*" } else { s }).collect::<Vec<_>>().join("/")
                )
            })
            .collect();
        assert_eq!(got, want);
        // No path parameter is left as such: IAM matches them with `*`.
        assert!(got.iter().all(|r| !r.contains("/{")), "{got:?}");
        assert_eq!(
            v["Outputs"]["PushPolicyArn"]["Value"]["Ref"],
            ids::PUSH_POLICY
        );
        assert_eq!(
            v["Outputs"]["PushApiUrl"]["Value"]["Fn::Sub"],
            "https://${PushApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
        );
    }

    #[test]
    fn only_this_api_may_invoke_the_function() {
        let v = added("");
        let p = &v["Resources"][ids::permission(Handler::PushApi)]["Properties"];
        assert_eq!(p["Principal"], "apigateway.amazonaws.com");
        assert_eq!(
            p["SourceArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${PushApi}/*/*"
        );
    }

    #[test]
    fn access_logs_follow_the_stage_file() {
        let v = added("[api]\naccess_logs = true\n");
        let r = &v["Resources"];
        assert_eq!(
            r[ids::PUSH_API_ACCESS_LOG_GROUP]["Type"],
            "AWS::Logs::LogGroup"
        );
        assert_eq!(
            r[ids::PUSH_API_STAGE]["Properties"]["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"]
                [0],
            ids::PUSH_API_ACCESS_LOG_GROUP
        );
    }
}
