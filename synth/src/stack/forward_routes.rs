//! The forwarded actions' routes (issue 17), where the app manifest declares some: one
//! WebSocket route per action (the route key is the action's name), all integrated with the
//! `forward` handler's function through one `AWS_PROXY` integration, each a two-way route
//! (`RouteResponseSelectionExpression: $default` and a route response keyed `$default`, so the
//! handler's answer goes back to the sender:
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-response.html>),
//! and an invoke permission scoped to that route of this stage.
//!
//! The function, role and log group are the `Forward` handler's, added like every function;
//! it charges the rate limits like `sendMessage` (its spec is `rate_limited`, so it reads the
//! stage's rates).

use wsstack_routes::Handler;

use super::{ids, routes};
use crate::cfn::resources::apigatewayv2::{
    AuthorizationType, Integration, IntegrationType, Route as ApiRoute, RouteResponse,
};
use crate::cfn::resources::lambda::Permission;
use crate::cfn::{Expr, Template};
use crate::stage::Stage;
use crate::stage::manifest::Manifest;

/// The only route response key of a WebSocket route, and the route response selection
/// expression that makes a route two-way.
pub const TWO_WAY: &str = "$default";

/// Adds the integration and, per forwarded action, its route, route response and permission.
/// Returns the routes' logical IDs (the API's stage waits for them).
pub fn add(t: &mut Template, stage: &Stage, manifest: &Manifest) -> Vec<String> {
    if !manifest.has_forwarded_actions() {
        return Vec::new();
    }
    let h = Handler::Forward;
    let function = ids::function(h);
    let integration = t.add(
        ids::integration(h),
        Integration {
            api_id: Expr::r#ref(ids::API),
            integration_type: IntegrationType::AwsProxy,
            integration_uri: routes::lambda_integration_uri(&function),
            description: Some("wsstack forwarded actions: the forward handler".to_owned()),
            timeout_in_millis: None,
            payload_format_version: None,
        },
    );
    let mut added = Vec::with_capacity(manifest.forward.len());
    for action in &manifest.forward {
        let route = t.add(
            ids::forward_route(&action.name),
            ApiRoute {
                api_id: Expr::r#ref(ids::API),
                route_key: action.name.clone(),
                // An authorizer is allowed on `$connect` only; the connection is authenticated.
                authorization_type: AuthorizationType::None,
                authorizer_id: None,
                operation_name: None,
                target: Some(Expr::join(
                    "/",
                    vec!["integrations".into(), Expr::r#ref(&integration)],
                )),
                route_response_selection_expression: Some(TWO_WAY.to_owned()),
            },
        );
        t.add(
            ids::forward_route_response(&action.name),
            RouteResponse {
                api_id: Expr::r#ref(ids::API),
                route_id: Expr::r#ref(&route),
                route_response_key: TWO_WAY.to_owned(),
            },
        );
        t.add(
            ids::forward_permission(&action.name),
            Permission {
                action: "lambda:InvokeFunction".to_owned(),
                function_name: Expr::get_att(&function, "Arn"),
                principal: "apigateway.amazonaws.com".to_owned(),
                // Only this route of this API's stage may invoke the function.
                source_arn: Some(Expr::sub(format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/{stage}/{key}",
                    api = ids::API,
                    stage = stage.name,
                    key = action.name
                ))),
                source_account: None,
            },
        );
        added.push(route);
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{test_manifest, test_stage};

    fn added(manifest: &Manifest) -> (Vec<String>, serde_json::Value) {
        let mut t = Template::new("test");
        let routes = add(&mut t, &test_stage(""), manifest);
        (routes, serde_json::to_value(&t).expect("serializes"))
    }

    fn two_actions() -> Manifest {
        crate::stage::manifest::parse(
            "[[forward]]\nname = \"submitJob\"\n[[forward]]\nname = \"cancelJob\"\nmax_data_bytes = 10\n",
            std::path::Path::new("wsstack.toml"),
        )
        .expect("valid")
    }

    /// Every action of the manifest is a two-way route to the forward handler, and only that
    /// route may invoke it.
    #[test]
    fn every_forwarded_action_is_a_two_way_route_to_the_forward_handler() {
        let manifest = two_actions();
        let (routes, v) = added(&manifest);
        let r = &v["Resources"];
        assert_eq!(routes.len(), manifest.forward.len());
        assert_eq!(
            r[ids::integration(Handler::Forward)]["Properties"]["IntegrationType"],
            "AWS_PROXY"
        );
        for (action, route_id) in manifest.forward.iter().zip(&routes) {
            assert_eq!(*route_id, ids::forward_route(&action.name));
            let route = &r[route_id]["Properties"];
            assert_eq!(route["RouteKey"], action.name.as_str());
            assert_eq!(route["AuthorizationType"], "NONE");
            assert_eq!(route["RouteResponseSelectionExpression"], "$default");
            assert_eq!(
                route["Target"]["Fn::Join"][1][1]["Ref"],
                ids::integration(Handler::Forward)
            );
            let response = &r[ids::forward_route_response(&action.name)];
            assert_eq!(response["Type"], "AWS::ApiGatewayV2::RouteResponse");
            assert_eq!(response["Properties"]["RouteResponseKey"], "$default");
            assert_eq!(response["Properties"]["RouteId"]["Ref"], route_id.as_str());
            let permission = &r[ids::forward_permission(&action.name)]["Properties"];
            assert_eq!(
                permission["FunctionName"]["Fn::GetAtt"][0],
                ids::function(Handler::Forward)
            );
            assert_eq!(
                permission["SourceArn"]["Fn::Sub"],
                format!(
                    "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/dev/{}",
                    action.name
                )
            );
        }
        // The integration, and three resources per action.
        assert_eq!(
            r.as_object().expect("map").len(),
            1 + 3 * manifest.forward.len()
        );
    }

    #[test]
    fn the_shipped_manifest_gives_the_submit_job_route() {
        let (routes, _) = added(&test_manifest());
        assert_eq!(routes, ["ForwardSubmitJobRoute"]);
    }

    #[test]
    fn nothing_without_forwarded_actions() {
        let (routes, v) = added(&Manifest::default());
        assert!(routes.is_empty());
        assert!(
            v["Resources"].as_object().is_none_or(|r| r.is_empty()),
            "{v}"
        );
    }
}
