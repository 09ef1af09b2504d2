//! The `$connect` authorizer, run in-process before the `$connect` handler exactly where API
//! Gateway runs a Lambda REQUEST authorizer (developer guide, "Control access to WebSocket APIs
//! with AWS Lambda REQUEST authorizers",
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html>):
//! a missing or empty identity source is refused with 401 without invoking it, a Deny with 403,
//! an authorizer that fails with 500; an Allow hands its `principalId` and `context` to the
//! integration as `requestContext.authorizer`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::Value;
use wsstack_auth::authorizer::{AuthorizerRequestContext, RequestIdentity};
use wsstack_auth::http_source::HttpJwksSource;
use wsstack_auth::{AuthorizerRequest, Verdict};

use crate::event::{ApiContext, parse_query};
use crate::registry::ClientInfo;

/// The authorizer the gateway runs: JWKS over HTTP (the local issuer, or any issuer).
pub type ConnectAuthorizer = wsstack_auth::Authorizer<HttpJwksSource>;

/// What the authorizer decided about a handshake.
#[derive(Debug)]
pub(crate) enum Check {
    /// `requestContext.authorizer` for the integration: `principalId`, the context, and
    /// `integrationLatency` (ms), as API Gateway passes them.
    Allowed(HashMap<String, Value>),
    Refused(StatusCode),
}

/// The REQUEST event API Gateway sends the authorizer for this handshake.
pub(crate) fn request(
    api: &ApiContext,
    client: &ClientInfo,
    headers: &HeaderMap,
    query: Option<&str>,
    now: DateTime<Utc>,
) -> AuthorizerRequest {
    let mut single = HashMap::new();
    let mut multi: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            single.insert(name.as_str().to_owned(), v.to_owned());
            multi
                .entry(name.as_str().to_owned())
                .or_default()
                .push(v.to_owned());
        }
    }
    let query = parse_query(query.unwrap_or_default());
    let query_single: HashMap<String, String> = query
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.last()?.clone())))
        .collect();
    let request_id = crate::id::request_id();
    AuthorizerRequest {
        kind: "REQUEST".to_owned(),
        method_arn: format!(
            "arn:aws:execute-api:us-east-1:000000000000:{}/{}/$connect",
            api.api_id, api.stage
        ),
        headers: Some(single),
        multi_value_headers: Some(multi),
        query_string_parameters: (!query_single.is_empty()).then_some(query_single),
        multi_value_query_string_parameters: (!query.is_empty()).then_some(query),
        stage_variables: HashMap::new(),
        request_context: AuthorizerRequestContext {
            route_key: wsstack_routes::CONNECT.to_owned(),
            event_type: "CONNECT".to_owned(),
            extended_request_id: request_id.clone(),
            request_time: now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            message_direction: "IN".to_owned(),
            stage: api.stage.clone(),
            connected_at: client.connected_at,
            request_time_epoch: now.timestamp_millis(),
            identity: RequestIdentity {
                source_ip: client.source_ip.to_string(),
                user_agent: client.user_agent.as_deref().map(str::to_owned),
            },
            request_id,
            domain_name: client.domain_name.to_string(),
            connection_id: client.id.as_str().to_owned(),
            api_id: api.api_id.clone(),
        },
    }
}

/// Runs the authorizer on `request`.
pub(crate) async fn check(
    authorizer: &Arc<ConnectAuthorizer>,
    request: AuthorizerRequest,
) -> Check {
    // API Gateway checks the identity source itself and never invokes the function without it.
    if authorizer.token_source().find(&request).is_none() {
        return Check::Refused(StatusCode::UNAUTHORIZED);
    }
    let started = std::time::Instant::now();
    let run = {
        let authorizer = Arc::clone(authorizer);
        let method_arn = request.method_arn.clone();
        // A task of its own: a panic in the authorizer is its failure (500), not the gateway's.
        tokio::spawn(async move { authorizer.decide(&request).await.response(&method_arn) })
    };
    let response = match run.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the authorizer failed");
            return Check::Refused(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if !response.allows() {
        return Check::Refused(StatusCode::FORBIDDEN);
    }
    let mut fields: HashMap<String, Value> = response.context.into_iter().collect();
    fields.insert("principalId".to_owned(), Value::from(response.principal_id));
    let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    fields.insert("integrationLatency".to_owned(), Value::from(latency));
    Check::Allowed(fields)
}

/// A verdict's status, for callers that decided themselves.
pub fn refusal_status(verdict: &Verdict) -> Option<u16> {
    verdict.refusal_status()
}
