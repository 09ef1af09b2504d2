//! Per route: the `AWS_PROXY` integration, the route, and the permission that lets exactly that
//! route of this API's stage invoke the handler's function.

use wsstack_routes::{CONNECT, Route};

use super::ids;
use crate::cfn::resources::apigatewayv2::{
    AuthorizationType, Integration, IntegrationType, Route as ApiRoute,
};
use crate::cfn::resources::lambda::Permission;
use crate::cfn::{Expr, Template};
use crate::stage::Stage;

/// The `IntegrationUri` of an `AWS_PROXY` integration with the function `function` (a logical
/// ID), as the CDK writes it.
pub fn lambda_integration_uri(function: &str) -> Expr {
    Expr::sub(format!(
        "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{function}.Arn}}/invocations"
    ))
}

/// Adds the integration, route and invoke permission that connect a route key to its function.
pub fn add(t: &mut Template, stage: &Stage, route: &Route) {
    let h = route.handler;
    let function = ids::function(h);
    let integration = t.add(
        ids::integration(h),
        Integration {
            api_id: Expr::r#ref(ids::API),
            integration_type: IntegrationType::AwsProxy,
            integration_uri: lambda_integration_uri(&function),
            description: None,
            timeout_in_millis: None,
            payload_format_version: None,
        },
    );
    // Only `$connect` can have an authorizer on a WebSocket API; it has one where the stage
    // authenticates.
    let authorized = route.key == CONNECT && stage.auth.jwt().is_some();
    t.add(
        ids::route(h),
        ApiRoute {
            api_id: Expr::r#ref(ids::API),
            route_key: route.key.to_owned(),
            authorization_type: if authorized {
                AuthorizationType::Custom
            } else {
                AuthorizationType::None
            },
            authorizer_id: authorized.then(|| Expr::r#ref(ids::CONNECT_AUTHORIZER)),
            operation_name: None,
            route_response_selection_expression: None,
            target: Some(Expr::join(
                "/",
                vec!["integrations".into(), Expr::r#ref(integration)],
            )),
        },
    );
    t.add(
        ids::permission(h),
        Permission {
            action: "lambda:InvokeFunction".to_owned(),
            function_name: Expr::get_att(&function, "Arn"),
            principal: "apigateway.amazonaws.com".to_owned(),
            // Only this route of this API's stage may invoke the function.
            source_arn: Some(Expr::sub(format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/{stage}/{key}",
                api = ids::API,
                stage = stage.name,
                key = route.key
            ))),
            source_account: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;
    use wsstack_routes::{Handler, SEND_MESSAGE};

    #[test]
    fn the_route_targets_its_integration_and_only_it_may_invoke() {
        let mut t = Template::new("test");
        let route = Route {
            key: SEND_MESSAGE,
            handler: Handler::SendMessage,
        };
        add(&mut t, &test_stage(""), &route);
        let v = serde_json::to_value(&t).expect("serializes");
        let r = &v["Resources"];
        assert_eq!(
            r["SendMessageRoute"]["Properties"]["RouteKey"],
            SEND_MESSAGE
        );
        assert_eq!(
            r["SendMessageRoute"]["Properties"]["Target"]["Fn::Join"][1][1]["Ref"],
            "SendMessageIntegration"
        );
        assert_eq!(
            r["SendMessagePermission"]["Properties"]["SourceArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/dev/sendMessage"
        );
    }
}
