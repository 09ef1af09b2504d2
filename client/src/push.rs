//! The push client: the push API's routes ([`PUSH_ROUTES`]) as methods, their bodies and
//! answers as the types the server uses, so the two cannot disagree on a field.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wsstack_routes::push_api::{
    PUSH_ROUTES, Presence, PushAnswer, PushError, PushOperation, PushRequest, PushRoute,
};

use crate::sign::Signer;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why a push API call failed.
#[derive(Debug, thiserror::Error)]
pub enum PushClientError {
    #[error("push API URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "no AWS region for signing: set AWS_REGION, or use a https://{{api}}.execute-api.{{region}}.amazonaws.com URL"
    )]
    NoRegion,
    #[error("no AWS credentials for signing: {0}")]
    Credentials(String),
    #[error("signing the request failed: {0}")]
    Signing(String),
    #[error("the system's root certificates could not be loaded: {0}")]
    Tls(String),
    #[error("{method} {path}: the request failed: {reason}")]
    Transport {
        method: &'static str,
        path: String,
        reason: String,
    },
    /// The push API answered with an error (`410` for a gone connection, `400` naming the
    /// field, `403` for a missing `execute-api:Invoke` grant, ...).
    #[error("{method} {path}: {status} {}: {}", .error.error, .error.message)]
    Refused {
        method: &'static str,
        path: String,
        status: u16,
        error: PushError,
    },
    #[error("{method} {path}: unexpected answer {status}: {body}")]
    Unexpected {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
}

impl PushClientError {
    /// The status the push API answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PushClientError::Refused { status, .. }
            | PushClientError::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the connection is gone (410): closed, or never was.
    pub fn is_gone(&self) -> bool {
        self.status() == Some(410)
    }

    /// Whether API Gateway throttled the call (429, past the stage's `[push_api]` throttling or
    /// the account's quota) on every attempt the client's [`RetryPolicy`] allowed.
    pub fn is_throttled(&self) -> bool {
        self.status() == Some(429)
    }
}

/// How often a call throttled with 429 is sent again. API Gateway answers 429 before the
/// push-api function runs, so nothing was delivered and sending again is safe for every route
/// ("the client can resubmit the failed requests in a way that is rate limiting":
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html>).
/// The wait's ceiling doubles from `first_delay` up to `max_delay`, and each wait is drawn at
/// random below it ("full jitter", so that backends throttled together do not all come back at
/// the same instant: <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>);
/// other statuses are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// What [`PushClient`] starts with: 4 attempts, waiting at most 100, 200 and 400 ms (0.7 s in all).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    };

    /// One attempt: a 429 is the caller's to handle.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        first_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The longest wait before attempt `attempt + 1` (`attempt` from 1).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        doubled.min(self.max_delay)
    }

    /// The wait before attempt `attempt + 1`: uniform between zero and [`Self::delay_after`].
    pub fn jittered_delay_after(&self, attempt: u32) -> Duration {
        self.delay_after(attempt).mul_f64(fastrand::f64())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

/// What a push came to: delivered now (`queued == false`), or handed to the stage's fan-out
/// queue (202: its deliveries happen after the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub answer: PushAnswer,
    pub queued: bool,
}

/// A client of one stage's push API.
#[derive(Debug, Clone)]
pub struct PushClient {
    base: String,
    signer: Option<Signer>,
    http: Client<Https, Full<Bytes>>,
    retry: RetryPolicy,
}

impl PushClient {
    /// Signs with the default credential chain and region (environment, profile, SSO, the
    /// Lambda function's role, ...); the region of an `execute-api` URL wins over the default.
    pub async fn from_env(base_url: &str) -> Result<PushClient, PushClientError> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // The SDK crates are built without their default HTTPS client: rustls on ring, as
            // every SDK client of the workspace.
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .load()
            .await;
        let region = region_of_url(base_url)
            .map(str::to_owned)
            .or_else(|| config.region().map(ToString::to_string))
            .ok_or(PushClientError::NoRegion)?;
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| PushClientError::Credentials("no credential provider".into()))?;
        PushClient::with_signer(base_url, Some(Signer::new(credentials, region)))
    }

    /// No signature: the local gateway's push API (`http://127.0.0.1:3003`).
    pub fn unsigned(base_url: &str) -> Result<PushClient, PushClientError> {
        PushClient::with_signer(base_url, None)
    }

    /// With a signer of one's own (`None`: unsigned).
    pub fn with_signer(
        base_url: &str,
        signer: Option<Signer>,
    ) -> Result<PushClient, PushClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let bad = |reason: &str| PushClientError::Url {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = base
            .parse()
            .map_err(|_| bad("not a URL: use http:// or https:// and a host"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad("use http:// or https:// and a host"));
        }
        if uri.query().is_some() {
            return Err(bad("no query string"));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| PushClientError::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(PushClient {
            base,
            signer,
            http,
            retry: RetryPolicy::DEFAULT,
        })
    }

    /// Retries throttled calls (429) as `retry` says instead of [`RetryPolicy::DEFAULT`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> PushClient {
        self.retry = retry;
        self
    }

    /// `POST /connections/{connectionId}/messages`.
    pub async fn to_connection(
        &self,
        connection_id: &str,
        data: Value,
        reply_to: Option<&str>,
    ) -> Result<PushOutcome, PushClientError> {
        self.post(
            PushOperation::PostToConnection,
            &[connection_id],
            data,
            reply_to,
        )
        .await
    }

    /// `POST /users/{userId}/messages`: every open connection of the user.
    pub async fn to_user(
        &self,
        user_id: &str,
        data: Value,
        reply_to: Option<&str>,
    ) -> Result<PushOutcome, PushClientError> {
        self.post(PushOperation::PostToUser, &[user_id], data, reply_to)
            .await
    }

    /// `POST /rooms/{room}/messages`.
    pub async fn to_room(
        &self,
        room: &str,
        data: Value,
        reply_to: Option<&str>,
    ) -> Result<PushOutcome, PushClientError> {
        self.post(PushOperation::PostToRoom, &[room], data, reply_to)
            .await
    }

    /// `POST /messages`: everyone.
    pub async fn to_everyone(
        &self,
        data: Value,
        reply_to: Option<&str>,
    ) -> Result<PushOutcome, PushClientError> {
        self.post(PushOperation::PostToEveryone, &[], data, reply_to)
            .await
    }

    /// `GET /users/{userId}/connections`: the user's open connections.
    pub async fn presence(&self, user_id: &str) -> Result<Presence, PushClientError> {
        let (_, body) = self
            .call(PushOperation::ListUserConnections, &[user_id], Bytes::new())
            .await?;
        parse(PushOperation::ListUserConnections, &body)
    }

    /// `DELETE /connections/{connectionId}`: closes the client's connection.
    pub async fn disconnect(&self, connection_id: &str) -> Result<(), PushClientError> {
        self.call(
            PushOperation::DeleteConnection,
            &[connection_id],
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    async fn post(
        &self,
        operation: PushOperation,
        params: &[&str],
        data: Value,
        reply_to: Option<&str>,
    ) -> Result<PushOutcome, PushClientError> {
        let request = PushRequest {
            data,
            reply_to: reply_to.map(str::to_owned),
        };
        // A struct of a JSON value and a string: serializing cannot fail.
        let body = Bytes::from(serde_json::to_vec(&request).unwrap_or_default());
        let (status, answer) = self.call(operation, params, body).await?;
        Ok(PushOutcome {
            answer: parse(operation, &answer)?,
            queued: status == 202,
        })
    }

    /// Sends the request, again after a 429 as the retry policy allows; a 2xx answer's status
    /// and body, else the error it names.
    async fn call(
        &self,
        operation: PushOperation,
        params: &[&str],
        body: Bytes,
    ) -> Result<(u16, Bytes), PushClientError> {
        let route = route(operation);
        let path = route.path_with(params);
        let mut attempt = 1;
        let (status, answer) = loop {
            let (status, answer) = self.send_once(route, &path, body.clone()).await?;
            if status != 429 || attempt >= self.retry.max_attempts.max(1) {
                break (status, answer);
            }
            tokio::time::sleep(self.retry.jittered_delay_after(attempt)).await;
            attempt += 1;
        };
        if (200..300).contains(&status) {
            return Ok((status, answer));
        }
        Err(match serde_json::from_slice::<PushError>(&answer) {
            Ok(error) => PushClientError::Refused {
                method: route.method,
                path,
                status,
                error,
            },
            // API Gateway's own answers (403 for a missing grant, 429 when throttled) are
            // {"message": ...}.
            Err(_) => PushClientError::Unexpected {
                method: route.method,
                path,
                status,
                body: String::from_utf8_lossy(&answer).into_owned(),
            },
        })
    }

    /// One attempt, signed now: the answer's status and body, whatever the status.
    async fn send_once(
        &self,
        route: &PushRoute,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), PushClientError> {
        let transport = |reason: String| PushClientError::Transport {
            method: route.method,
            path: path.to_owned(),
            reason,
        };
        let mut request = http::Request::builder()
            .method(route.method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| transport(e.to_string()))?;
        if let Some(signer) = &self.signer {
            signer.sign(&mut request, SystemTime::now()).await?;
        }
        let response = self
            .http
            .request(request.map(Full::new))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        Ok((status, answer))
    }
}

fn route(operation: PushOperation) -> &'static PushRoute {
    // Every operation has its route: the table is the declaration of the operations.
    PUSH_ROUTES
        .iter()
        .find(|r| r.operation == operation)
        .unwrap_or(&PUSH_ROUTES[0])
}

fn parse<T: DeserializeOwned>(operation: PushOperation, body: &[u8]) -> Result<T, PushClientError> {
    let route = route(operation);
    serde_json::from_slice(body).map_err(|e| PushClientError::Unexpected {
        method: route.method,
        path: route.path.to_owned(),
        status: 200,
        body: format!("{e}: {}", String::from_utf8_lossy(body)),
    })
}

/// The region of an `https://{api}.execute-api.{region}.amazonaws.com` URL.
pub fn region_of_url(url: &str) -> Option<&str> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let rest = host.split_once(".execute-api.")?.1;
    let region = rest.split('.').next()?;
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_of_an_execute_api_url() {
        assert_eq!(
            region_of_url("https://abc123.execute-api.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_url("http://127.0.0.1:3003"), None);
        assert_eq!(region_of_url("https://push.example.com/x"), None);
    }

    #[test]
    fn bad_urls_are_refused_naming_why() {
        for (url, reason) in [
            ("not a url", "http:// or https://"),
            ("ftp://x", "http:// or https://"),
            ("http://x/?a=1", "no query string"),
        ] {
            let err = PushClient::unsigned(url).expect_err(url);
            assert!(err.to_string().contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn the_retry_waits_double_up_to_the_cap() {
        let p = RetryPolicy::DEFAULT;
        let waits: Vec<u64> = (1..p.max_attempts)
            .map(|a| p.delay_after(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400]);
        assert_eq!(p.delay_after(10), p.max_delay);
        assert_eq!(p.delay_after(u32::MAX), p.max_delay);
    }

    #[test]
    fn each_wait_is_drawn_below_its_ceiling_and_they_differ() {
        let p = RetryPolicy::DEFAULT;
        let waits: Vec<Duration> = (0..200).map(|_| p.jittered_delay_after(3)).collect();
        assert!(waits.iter().all(|w| *w <= p.delay_after(3)), "{waits:?}");
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "waits are not spread: {distinct:?}");
        assert_eq!(RetryPolicy::NONE.jittered_delay_after(1), Duration::ZERO);
    }

    #[test]
    fn every_operation_has_its_route() {
        for r in &PUSH_ROUTES {
            assert_eq!(route(r.operation).path, r.path);
        }
    }
}
