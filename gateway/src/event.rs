//! The Lambda events API Gateway sends for WebSocket routes, built field by field.
//!
//! Typed handlers deserialize `connectedAt` and `requestTimeEpoch` as required numbers, and
//! read `connectionId`, `domainName`, `stage` and the identity, so every field API Gateway
//! fills in is filled in here too.

use std::collections::HashMap;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::query_map::QueryMap;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::id;
use crate::registry::ClientInfo;

/// Where the API runs: the parts of every event that do not depend on the client.
#[derive(Debug, Clone)]
pub struct ApiContext {
    pub stage: String,
    pub api_id: String,
    /// The port clients connect to, for `X-Forwarded-Port`.
    pub port: u16,
}

/// The `eventType` of each kind of event.
pub const EVENT_CONNECT: &str = "CONNECT";
pub const EVENT_MESSAGE: &str = "MESSAGE";
pub const EVENT_DISCONNECT: &str = "DISCONNECT";

/// API Gateway's `requestTime` format, e.g. `26/Nov/2026:14:27:06 +0000`.
fn request_time(at: DateTime<Utc>) -> String {
    at.format("%d/%b/%Y:%H:%M:%S %z").to_string()
}

fn base_event(
    api: &ApiContext,
    client: &ClientInfo,
    route_key: &str,
    event_type: &str,
    now: DateTime<Utc>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    let ctx = &mut event.request_context;
    ctx.route_key = Some(route_key.to_owned());
    ctx.event_type = Some(event_type.to_owned());
    ctx.message_direction = Some("IN".to_owned());
    ctx.connection_id = Some(client.id.as_str().to_owned());
    ctx.connected_at = client.connected_at;
    ctx.request_time_epoch = now.timestamp_millis();
    ctx.request_time = Some(request_time(now));
    ctx.request_id = Some(id::request_id());
    ctx.extended_request_id = ctx.request_id.clone();
    ctx.domain_name = Some(client.domain_name.to_string());
    ctx.stage = Some(api.stage.clone());
    ctx.apiid = Some(api.api_id.clone());
    ctx.identity.source_ip = Some(client.source_ip.to_string());
    ctx.identity.user_agent = client.user_agent.as_deref().map(str::to_owned);
    if let Some(fields) = &client.authorizer {
        ctx.authorizer.fields = fields.as_ref().clone();
    }
    event
}

/// The `$connect` event: the handshake's headers (plus the `X-Forwarded-*` headers API Gateway
/// adds) and its query string, decoded.
pub fn connect_event(
    api: &ApiContext,
    client: &ClientInfo,
    route_key: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    now: DateTime<Utc>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = base_event(api, client, route_key, EVENT_CONNECT, now);
    let mut headers = headers.clone();
    for (name, value) in [
        ("x-forwarded-for", client.source_ip.to_string()),
        ("x-forwarded-port", api.port.to_string()),
        ("x-forwarded-proto", "http".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    event.multi_value_headers = headers.clone();
    event.headers = headers;
    let query = parse_query(query.unwrap_or_default());
    if !query.is_empty() {
        // The single-valued map holds the last value of a repeated key, as API Gateway's does.
        let single: HashMap<String, String> = query
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.last()?.clone())))
            .collect();
        event.query_string_parameters = QueryMap::from(single);
        event.multi_value_query_string_parameters = QueryMap::from(query);
    }
    event
}

/// A `MESSAGE` event for a client's text message (binary frames are refused before routing, so
/// `isBase64Encoded` is always false).
pub fn message_event(
    api: &ApiContext,
    client: &ClientInfo,
    route_key: &str,
    body: String,
    now: DateTime<Utc>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = base_event(api, client, route_key, EVENT_MESSAGE, now);
    event.request_context.message_id = Some(id::request_id());
    event.body = Some(body);
    event
}

/// The headers API Gateway puts on a `$disconnect` event: `Host` and, empty, `x-api-key`,
/// `X-Forwarded-For` and `x-restapi`, as in AWS's own example event
/// (`example-apigw-websocket-request-disconnect-route.json` of aws-lambda-rust-runtime's
/// `aws_lambda_events`, the crate the handlers deserialize with).
fn disconnect_headers(client: &ClientInfo) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(host) = HeaderValue::from_str(&client.domain_name) {
        headers.insert(http::header::HOST, host);
    }
    for name in ["x-api-key", "x-forwarded-for", "x-restapi"] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(""));
    }
    headers
}

/// The `$disconnect` event, with the close status and reason.
pub fn disconnect_event(
    api: &ApiContext,
    client: &ClientInfo,
    route_key: &str,
    status_code: u16,
    reason: &str,
    now: DateTime<Utc>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = base_event(api, client, route_key, EVENT_DISCONNECT, now);
    let headers = disconnect_headers(client);
    event.multi_value_headers = headers.clone();
    event.headers = headers;
    event.request_context.disconnect_status_code = Some(i64::from(status_code));
    event.request_context.disconnect_reason = Some(reason.to_owned());
    event
}

/// Decodes `%XX` escapes; invalid escapes stay as written, invalid UTF-8 is replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i + 1..i + 3) {
            Some(hex) if bytes[i] == b'%' => std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Splits a query string into decoded parameters, keeping repeated keys in order. `+` stays a
/// plus: API Gateway decodes only percent escapes.
pub fn parse_query(query: &str) -> HashMap<String, Vec<String>> {
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params
            .entry(percent_decode(key))
            .or_default()
            .push(percent_decode(value));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ConnectionId;
    use chrono::TimeZone;
    use std::net::{IpAddr, Ipv4Addr};

    fn api() -> ApiContext {
        ApiContext {
            stage: "dev".into(),
            api_id: "wsstacklcl".into(),
            port: 3001,
        }
    }

    fn client() -> ClientInfo {
        ClientInfo {
            id: ConnectionId::generate(),
            connected_at: 1_764_167_226_000,
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: Some("test-agent".into()),
            domain_name: "127.0.0.1:3001".into(),
            authorizer: None,
        }
    }

    #[test]
    fn connect_event_has_every_field_api_gateway_sends() {
        let now = Utc.timestamp_millis_opt(1_764_167_226_123).unwrap();
        let c = client();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:3001"));
        let e = connect_event(
            &api(),
            &c,
            "$connect",
            &headers,
            Some("username=Zo%C3%AB%20B.&x=1&x=2&plus=a+b"),
            now,
        );
        let json = serde_json::to_value(&e).unwrap();
        let ctx = &json["requestContext"];
        assert_eq!(ctx["routeKey"], "$connect");
        assert_eq!(ctx["eventType"], "CONNECT");
        assert_eq!(ctx["connectionId"], c.id.as_str());
        assert_eq!(ctx["connectedAt"], 1_764_167_226_000_i64);
        assert_eq!(ctx["requestTimeEpoch"], 1_764_167_226_123_i64);
        assert_eq!(ctx["requestTime"], "26/Nov/2025:14:27:06 +0000");
        assert_eq!(ctx["domainName"], "127.0.0.1:3001");
        assert_eq!(ctx["stage"], "dev");
        assert_eq!(ctx["apiId"], "wsstacklcl");
        assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(ctx["identity"]["userAgent"], "test-agent");
        assert_eq!(ctx["requestId"].as_str().map(str::len), Some(16));
        assert_eq!(json["headers"]["host"], "127.0.0.1:3001");
        assert_eq!(json["headers"]["x-forwarded-for"], "127.0.0.1");
        let q = &e.query_string_parameters;
        assert_eq!(q.first("username"), Some("Zoë B."));
        assert_eq!(q.first("plus"), Some("a+b"));
        assert_eq!(q.all("x"), Some(vec!["2"]));
        assert_eq!(
            e.multi_value_query_string_parameters.all("x"),
            Some(vec!["1", "2"])
        );
    }

    #[test]
    fn message_and_disconnect_events() {
        let now = Utc::now();
        let c = client();
        let m = message_event(&api(), &c, "$default", "hi".into(), now);
        assert!(!m.is_base64_encoded);
        assert_eq!(m.body.as_deref(), Some("hi"));
        assert_eq!(m.request_context.event_type.as_deref(), Some("MESSAGE"));
        assert!(m.request_context.message_id.is_some());
        let d = disconnect_event(&api(), &c, "$disconnect", 1001, "Going away", now);
        assert_eq!(d.request_context.disconnect_status_code, Some(1001));
        assert_eq!(
            d.request_context.disconnect_reason.as_deref(),
            Some("Going away")
        );
        assert_eq!(d.request_context.event_type.as_deref(), Some("DISCONNECT"));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["headers"]["host"], "127.0.0.1:3001");
        for empty in ["x-api-key", "x-forwarded-for", "x-restapi"] {
            assert_eq!(json["headers"][empty], "", "{empty}");
            assert_eq!(
                json["multiValueHeaders"][empty],
                serde_json::json!([""]),
                "{empty}"
            );
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("CqEs4dW0DoECJ1g%3D"), "CqEs4dW0DoECJ1g=");
        assert_eq!(percent_decode("a%2Fb%2bc"), "a/b+c");
        assert_eq!(percent_decode("bad%zz%3"), "bad%zz%3");
    }
}
