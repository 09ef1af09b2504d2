//! `AWS::ApiGateway::Account`: API Gateway's account-level settings in a region.

use serde::Serialize;

use crate::cfn::Expr;

/// The account's settings: the role API Gateway writes CloudWatch logs with, which WebSocket
/// access logs need. One per account and region; deleting the resource leaves the setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Account {
    /// A role API Gateway assumes (`apigateway.amazonaws.com`) with the managed policy
    /// `AmazonAPIGatewayPushToCloudWatchLogs`.
    pub cloud_watch_role_arn: Expr,
}
