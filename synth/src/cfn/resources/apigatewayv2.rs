//! `AWS::ApiGatewayV2::*`: the WebSocket API, its routes, integrations, stage and authorizer;
//! the HTTP push API.

use serde::Serialize;

use crate::cfn::Expr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProtocolType {
    Websocket,
    Http,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Api {
    pub name: Expr,
    pub protocol_type: ProtocolType,
    /// Required for WebSocket APIs, e.g. `$request.body.action`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_selection_expression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthorizationType {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AWS_IAM")]
    AwsIam,
    #[serde(rename = "CUSTOM")]
    Custom,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Route {
    pub api_id: Expr,
    pub route_key: String,
    pub authorization_type: AuthorizationType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorizer_id: Option<Expr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    /// `integrations/{IntegrationId}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Expr>,
    /// WebSocket: `$default` makes the route two-way (its integration's answer goes back to the
    /// client), with an [`RouteResponse`] keyed `$default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_response_selection_expression: Option<String>,
}

/// `AWS::ApiGatewayV2::RouteResponse`: makes a WebSocket route two-way; `$default` is the only
/// key (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-response.html>).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteResponse {
    pub api_id: Expr,
    pub route_id: Expr,
    pub route_response_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IntegrationType {
    #[serde(rename = "AWS_PROXY")]
    AwsProxy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Integration {
    pub api_id: Expr,
    pub integration_type: IntegrationType,
    pub integration_uri: Expr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 50..=29000 ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_millis: Option<u32>,
    /// HTTP APIs: the Lambda event format, set explicitly (`2.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_format_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detailed_metrics_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling_burst_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling_rate_limit: Option<f64>,
    /// Execution logging; needs the account's API Gateway CloudWatch role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging_level: Option<LoggingLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_trace_enabled: Option<bool>,
}

/// `RouteSettings.LoggingLevel`: execution logging of a WebSocket route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LoggingLevel {
    Error,
    Info,
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessLogSettings {
    pub destination_arn: Expr,
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stage {
    pub api_id: Expr,
    pub stage_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_route_settings: Option<RouteSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log_settings: Option<AccessLogSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthorizerType {
    Request,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorizer {
    pub api_id: Expr,
    pub name: String,
    pub authorizer_type: AuthorizerType,
    pub authorizer_uri: Expr,
    /// E.g. `route.request.querystring.token` or `route.request.header.Authorization`.
    pub identity_source: Vec<String>,
}

/// The endpoint type of a custom domain name. WebSocket APIs support only Regional ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointType {
    Regional,
}

/// The TLS policy of a custom domain name. WebSocket APIs support only TLS 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SecurityPolicy {
    #[serde(rename = "TLS_1_2")]
    Tls12,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainNameConfiguration {
    /// A Regional ACM certificate, in the API's region.
    pub certificate_arn: String,
    pub endpoint_type: EndpointType,
    pub security_policy: SecurityPolicy,
}

/// `AWS::ApiGatewayV2::DomainName`: a custom domain name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainName {
    pub domain_name: String,
    pub domain_name_configurations: Vec<DomainNameConfiguration>,
}

/// `AWS::ApiGatewayV2::ApiMapping`: maps a path of a custom domain name to an API's stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiMapping {
    pub api_id: Expr,
    pub domain_name: Expr,
    /// The stage's name; a `Ref` to the stage also orders the mapping after it.
    pub stage: Expr,
    /// The base path; none maps the domain's root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_mapping_key: Option<String>,
}
