//! The stack's outputs: what clients and the backend need to reach the API.

use super::ids;
use crate::cfn::{Export, Expr, Output, Template};
use crate::stage::Stage;

/// `https://` or `wss://` endpoint of this API's stage on its execute-api domain.
pub fn execute_api_endpoint(stage: &Stage, scheme: &str) -> Expr {
    Expr::sub(format!(
        "{scheme}://${{{api}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{stage}",
        api = ids::API,
        stage = stage.name
    ))
}

/// Adds one output, exported as `{StackName}-{Output}` where the stage says so.
pub fn add_one(t: &mut Template, stage: &Stage, name: &str, description: &str, value: Expr) {
    let export = stage.export_outputs.then(|| Export {
        name: Expr::sub(format!("${{AWS::StackName}}-{name}")),
    });
    t.add_output(
        name,
        Output {
            description: Some(description.to_owned()),
            value,
            export,
            condition: None,
        },
    );
}

/// Adds the outputs, exported as `{StackName}-{Output}` where the stage says so.
pub fn add(t: &mut Template, stage: &Stage) {
    let outputs = [
        (
            "WebSocketUrl",
            "The URL clients connect to",
            execute_api_endpoint(stage, "wss"),
        ),
        (
            "CallbackUrl",
            "The @connections endpoint (management API) for pushing to clients",
            execute_api_endpoint(stage, "https"),
        ),
        (
            "ConnectionsTableName",
            "The DynamoDB table of live connections",
            Expr::r#ref(ids::TABLE),
        ),
        (
            "RoomsTableName",
            "The DynamoDB table of room memberships",
            Expr::r#ref(ids::ROOMS_TABLE),
        ),
        (
            "WebSocketApiId",
            "The API Gateway API ID",
            Expr::r#ref(ids::API),
        ),
    ];
    for (name, description, value) in outputs {
        add_one(t, stage, name, description, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    #[test]
    fn urls_name_the_stage_and_exports_follow_the_stage_file() {
        let mut t = Template::new("test");
        add(&mut t, &test_stage("[outputs]\nexport = true\n"));
        let v = serde_json::to_value(&t).expect("serializes");
        assert_eq!(
            v["Outputs"]["WebSocketUrl"]["Value"]["Fn::Sub"],
            "wss://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/dev"
        );
        assert_eq!(
            v["Outputs"]["CallbackUrl"]["Export"]["Name"]["Fn::Sub"],
            "${AWS::StackName}-CallbackUrl"
        );
    }

    #[test]
    fn no_exports_unless_asked() {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(""));
        let v = serde_json::to_value(&t).expect("serializes");
        assert!(v["Outputs"]["WebSocketUrl"].get("Export").is_none());
    }
}
