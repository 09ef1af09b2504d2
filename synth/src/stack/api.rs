//! The WebSocket API and its stage.

use wsstack_routes::{ROUTE_SELECTION_EXPRESSION, ROUTES};

use super::{checks, ids, logs};
use crate::cfn::resources::apigatewayv2::{
    AccessLogSettings, Api, ProtocolType, RouteSettings, Stage as ApiStage,
};
use crate::cfn::{Expr, Resource, Template};
use crate::stage::Stage;

/// One JSON line per WebSocket event in the access log: who, which route, what came of it.
pub const ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","connectionId":"$context.connectionId","eventType":"$context.eventType","routeKey":"$context.routeKey","status":"$context.status","sourceIp":"$context.identity.sourceIp","requestTime":"$context.requestTime","integrationError":"$context.integration.error"}"#;

/// Adds the WebSocket API, routing on the `action` field of each message.
pub fn add_api(t: &mut Template, stage: &Stage) {
    t.add(
        ids::API,
        Api {
            name: Expr::from(stage.stack_name.as_str()),
            protocol_type: ProtocolType::Websocket,
            route_selection_expression: Some(ROUTE_SELECTION_EXPRESSION.to_owned()),
            description: Some(format!("wsstack WebSocket API ({})", stage.name)),
        },
    );
}

/// Adds the API's stage (auto-deployed, throttled, with access logs where the stage says so),
/// once every route exists: those of the route table and `more` (the forwarded actions').
pub fn add_stage(t: &mut Template, stage: &Stage, more: &[String]) {
    let access_log_settings = stage.api.access_logs.then(|| {
        let group = t.add(
            ids::ACCESS_LOG_GROUP,
            logs::log_group(stage, stage.api.access_log_retention_days),
        );
        AccessLogSettings {
            destination_arn: Expr::get_att(group, "Arn"),
            format: ACCESS_LOG_FORMAT.to_owned(),
        }
    });
    let mut resource = Resource::new(ApiStage {
        api_id: Expr::r#ref(ids::API),
        stage_name: stage.name.clone(),
        auto_deploy: Some(true),
        description: Some(format!("wsstack stage {}", stage.name)),
        default_route_settings: Some(RouteSettings {
            detailed_metrics_enabled: Some(stage.api.detailed_metrics),
            throttling_burst_limit: Some(stage.api.throttling_burst_limit),
            throttling_rate_limit: Some(stage.api.throttling_rate_limit),
            logging_level: None,
            data_trace_enabled: None,
        }),
        access_log_settings,
    });
    if !stage.api.access_logs {
        resource = checks::skip(resource, &[checks::STAGE_ACCESS_LOGS_OFF]);
    }
    // Auto-deploy the stage only once every route exists, so the first deployment is complete.
    for route in ROUTES {
        resource = resource.depends_on(ids::route(route.handler));
    }
    for id in more {
        resource = resource.depends_on(id);
    }
    t.add(ids::STAGE, resource);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn stage_json(stage_toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        add_stage(
            &mut t,
            &test_stage(stage_toml),
            &["ForwardSubmitJobRoute".to_owned()],
        );
        serde_json::to_value(&t).expect("serializes")["Resources"].clone()
    }

    #[test]
    fn the_stage_waits_for_every_route() {
        let r = stage_json("");
        let deps = r[ids::STAGE]["DependsOn"].as_array().expect("DependsOn");
        assert_eq!(deps.len(), ROUTES.len() + 1);
        assert_eq!(deps[ROUTES.len()], "ForwardSubmitJobRoute");
        assert!(r.get(ids::ACCESS_LOG_GROUP).is_none());
    }

    #[test]
    fn access_logs_get_their_own_log_group() {
        let r = stage_json("[api]\naccess_logs = true\n");
        assert_eq!(r[ids::ACCESS_LOG_GROUP]["Type"], "AWS::Logs::LogGroup");
        assert_eq!(
            r[ids::STAGE]["Properties"]["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0],
            ids::ACCESS_LOG_GROUP
        );
    }

    #[test]
    fn the_api_routes_on_the_action_field() {
        let mut t = Template::new("test");
        add_api(&mut t, &test_stage(""));
        let v = serde_json::to_value(&t).expect("serializes");
        assert_eq!(
            v["Resources"][ids::API]["Properties"]["RouteSelectionExpression"],
            ROUTE_SELECTION_EXPRESSION
        );
    }
}
