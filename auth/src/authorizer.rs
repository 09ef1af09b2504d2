//! The Lambda REQUEST authorizer of the `$connect` route.
//!
//! Input and output follow the API Gateway developer guide, "Control access to WebSocket APIs
//! with AWS Lambda REQUEST authorizers"
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html>):
//! the event has `type: REQUEST`, a `methodArn` ending in `/{stage}/$connect`, the handshake's
//! headers and query string, and a WebSocket `requestContext`. The answer is an IAM policy
//! (`execute-api:Invoke` on the `methodArn`, Allow or Deny), a `principalId`, and a flat
//! `context` map that API Gateway hands to the integration as `requestContext.authorizer`.
//! Missing or empty identity sources never reach the function (API Gateway answers 401); a
//! Deny policy gives 403.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jwks::JwksSource;
use crate::jwt::{Identity, TokenError, TokenVerifier};

/// Where the token travels: `query:NAME` (the default `query:token`) or `header:NAME`.
/// Browsers cannot set headers on a WebSocket handshake, hence the query-string default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Query(String),
    Header(String),
}

impl Default for TokenSource {
    fn default() -> Self {
        Self::Query("token".into())
    }
}

/// A bad `token_source` value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "{value:?} is not a token source: use query:NAME or header:NAME, NAME of letters, digits, '.', '_' or '-'"
)]
pub struct TokenSourceError {
    pub value: String,
}

impl std::str::FromStr for TokenSource {
    type Err = TokenSourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TokenSourceError {
            value: s.to_owned(),
        };
        let (kind, name) = s.split_once(':').ok_or_else(err)?;
        // The identity source pattern API Gateway accepts for request parameters.
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        match kind {
            "query" if valid_name => Ok(Self::Query(name.to_owned())),
            "header" if valid_name => Ok(Self::Header(name.to_owned())),
            _ => Err(err()),
        }
    }
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Query(n) => write!(f, "query:{n}"),
            Self::Header(n) => write!(f, "header:{n}"),
        }
    }
}

impl TokenSource {
    /// The authorizer's `IdentitySource` expression.
    pub fn identity_source(&self) -> String {
        match self {
            Self::Query(n) => format!("route.request.querystring.{n}"),
            Self::Header(n) => format!("route.request.header.{n}"),
        }
    }

    /// The token in a request, if present and not empty. Headers match case-insensitively; a
    /// `Bearer ` prefix is dropped.
    pub fn find<'a>(&self, request: &'a AuthorizerRequest) -> Option<&'a str> {
        let raw = match self {
            Self::Query(name) => request
                .query_string_parameters
                .as_ref()?
                .get(name)
                .map(String::as_str),
            Self::Header(name) => request
                .headers
                .as_ref()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        }?;
        let token = match raw.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => &raw[7..],
            _ => raw,
        }
        .trim();
        (!token.is_empty()).then_some(token)
    }
}

/// The REQUEST authorizer's input for a WebSocket `$connect`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequest {
    #[serde(rename = "type")]
    pub kind: String,
    pub method_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_value_headers: Option<HashMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string_parameters: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_value_query_string_parameters: Option<HashMap<String, Vec<String>>>,
    #[serde(default)]
    pub stage_variables: HashMap<String, String>,
    #[serde(default)]
    pub request_context: AuthorizerRequestContext,
}

/// `requestContext` of the authorizer's input, as in the developer guide's example.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequestContext {
    #[serde(default)]
    pub route_key: String,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub extended_request_id: String,
    #[serde(default)]
    pub request_time: String,
    #[serde(default)]
    pub message_direction: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub connected_at: i64,
    #[serde(default)]
    pub request_time_epoch: i64,
    #[serde(default)]
    pub identity: RequestIdentity,
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub domain_name: String,
    #[serde(default)]
    pub connection_id: String,
    #[serde(default)]
    pub api_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestIdentity {
    #[serde(default)]
    pub source_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub principal_id: String,
    pub policy_document: PolicyDocument,
    /// Flat: strings, numbers and booleans only (API Gateway drops nested values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: String,
    pub statement: Vec<PolicyStatement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyStatement {
    pub action: String,
    pub effect: String,
    pub resource: String,
}

impl AuthorizerResponse {
    fn policy(principal_id: String, effect: &str, method_arn: &str) -> Self {
        Self {
            principal_id,
            policy_document: PolicyDocument {
                version: "2012-10-17".into(),
                statement: vec![PolicyStatement {
                    action: "execute-api:Invoke".into(),
                    effect: effect.into(),
                    resource: method_arn.into(),
                }],
            },
            context: BTreeMap::new(),
        }
    }

    /// Whether the policy allows the connection.
    pub fn allows(&self) -> bool {
        !self.policy_document.statement.is_empty()
            && self
                .policy_document
                .statement
                .iter()
                .all(|s| s.effect == "Allow")
    }
}

/// What the authorizer decided, with the reason when it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Identity),
    /// No token where the token source says (API Gateway answers 401 itself, without invoking
    /// the function; the function answers Deny if it ever sees one).
    Unauthorized,
    Deny(TokenError),
}

impl Verdict {
    /// The HTTP status API Gateway answers the handshake with when the verdict refuses it.
    pub fn refusal_status(&self) -> Option<u16> {
        match self {
            Self::Allow(_) => None,
            Self::Unauthorized => Some(401),
            Self::Deny(_) => Some(403),
        }
    }

    /// The authorizer's answer for this verdict. Allow carries `context` with `sub`,
    /// `username` and `tokenExpiresAt` (epoch seconds) for the handlers.
    pub fn response(&self, method_arn: &str) -> AuthorizerResponse {
        match self {
            Self::Allow(id) => {
                let mut r = AuthorizerResponse::policy(id.sub.clone(), "Allow", method_arn);
                r.context.insert("sub".into(), Value::from(id.sub.clone()));
                r.context
                    .insert("username".into(), Value::from(id.username.clone()));
                r.context
                    .insert("tokenExpiresAt".into(), Value::from(id.expires_at));
                r
            }
            Self::Unauthorized | Self::Deny(_) => {
                AuthorizerResponse::policy("anonymous".into(), "Deny", method_arn)
            }
        }
    }
}

/// Token source plus verifier: the whole authorizer, runnable in Lambda or in-process.
pub struct Authorizer<S> {
    token_source: TokenSource,
    verifier: TokenVerifier<S>,
}

impl<S: JwksSource> Authorizer<S> {
    pub fn new(token_source: TokenSource, verifier: TokenVerifier<S>) -> Self {
        Self {
            token_source,
            verifier,
        }
    }

    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    pub fn verifier(&self) -> &TokenVerifier<S> {
        &self.verifier
    }

    /// Decides on one request and logs why it refused (never the token).
    pub async fn decide(&self, request: &AuthorizerRequest) -> Verdict {
        let connection_id = &request.request_context.connection_id;
        let Some(token) = self.token_source.find(request) else {
            tracing::info!(
                connection_id,
                token_source = %self.token_source,
                "denied: no token"
            );
            return Verdict::Unauthorized;
        };
        match self.verifier.verify(token).await {
            Ok(identity) => {
                tracing::debug!(connection_id, sub = identity.sub, "allowed");
                Verdict::Allow(identity)
            }
            Err(reason) => {
                tracing::info!(connection_id, %reason, "denied");
                Verdict::Deny(reason)
            }
        }
    }

    /// [`Self::decide`], answered as the Lambda function answers API Gateway.
    pub async fn authorize(&self, request: &AuthorizerRequest) -> AuthorizerResponse {
        self.decide(request).await.response(&request.method_arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_parse_and_name_their_identity_source() {
        let q: TokenSource = "query:token".parse().expect("query");
        assert_eq!(q.identity_source(), "route.request.querystring.token");
        let h: TokenSource = "header:Auth".parse().expect("header");
        assert_eq!(h.identity_source(), "route.request.header.Auth");
        assert_eq!(h.to_string(), "header:Auth");
        for bad in ["token", "query:", "cookie:x", "header:a b", "query:a/b", ""] {
            assert!(bad.parse::<TokenSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_match_case_insensitively_and_drop_bearer() {
        let request = AuthorizerRequest {
            headers: Some(HashMap::from([(
                "authorization".into(),
                "Bearer abc".into(),
            )])),
            ..Default::default()
        };
        let h = TokenSource::Header("Authorization".into());
        assert_eq!(h.find(&request), Some("abc"));
        let empty = AuthorizerRequest {
            query_string_parameters: Some(HashMap::from([("token".into(), "".into())])),
            ..Default::default()
        };
        assert_eq!(TokenSource::default().find(&empty), None);
    }

    #[test]
    fn the_developer_guide_example_input_parses() {
        // Shape of the example in the developer guide page cited at the top of this module.
        let json = r#"{"type":"REQUEST","methodArn":"arn:aws:execute-api:us-east-1:123456789012:abcdef123/default/$connect",
            "headers":{"Connection":"upgrade","HeaderAuth1":"headerValue1"},
            "multiValueHeaders":{"Connection":["upgrade"]},
            "queryStringParameters":{"QueryString1":"queryValue1"},
            "multiValueQueryStringParameters":{"QueryString1":["queryValue1"]},
            "stageVariables":{},
            "requestContext":{"routeKey":"$connect","eventType":"CONNECT","extendedRequestId":"x",
              "requestTime":"19/Jan/2023:21:13:26 +0000","messageDirection":"IN","stage":"default",
              "connectedAt":1674162806344,"requestTimeEpoch":1674162806345,
              "identity":{"sourceIp":"127.0.0.1"},"requestId":"r","domainName":"d",
              "connectionId":"c","apiId":"a"}}"#;
        let r: AuthorizerRequest = serde_json::from_str(json).expect("parses");
        assert_eq!(r.request_context.route_key, "$connect");
        assert_eq!(r.request_context.connected_at, 1674162806344);
    }

    #[test]
    fn deny_and_allow_policies_are_on_the_method_arn() {
        let arn = "arn:aws:execute-api:eu-west-1:1:api/prod/$connect";
        let deny = Verdict::Unauthorized.response(arn);
        assert!(!deny.allows());
        assert!(deny.context.is_empty());
        let allow = Verdict::Allow(Identity {
            sub: "s".into(),
            username: "ada".into(),
            expires_at: 5,
        })
        .response(arn);
        assert!(allow.allows());
        assert_eq!(allow.principal_id, "s");
        assert_eq!(allow.policy_document.statement[0].resource, arn);
        assert_eq!(allow.context["username"], "ada");
        let json = serde_json::to_value(&allow).expect("json");
        assert_eq!(
            json["policyDocument"]["Statement"][0]["Action"],
            "execute-api:Invoke"
        );
    }
}
