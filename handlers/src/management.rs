//! The API Gateway Management API (`@connections`): post to, look up and close a connection.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Why a management call failed, told apart the way a caller must react.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagementError {
    /// 410: the connection is closed or unknown; its record is stale.
    #[error("connection is gone (410)")]
    Gone,
    /// 413: the payload exceeds the 128 KB limit.
    #[error("payload too large (413)")]
    PayloadTooLarge,
    /// 429: too many requests, or the client's buffer is full.
    #[error("throttled (429)")]
    Throttled,
    /// 403: the caller may not manage connections of this API/stage. Carries the service's
    /// message, which says who was refused what on which resource (an IAM policy naming the
    /// wrong stage or method reads differently from a wrong endpoint), or is empty.
    #[error("forbidden (403): {}", if .0.is_empty() { "the service gave no message" } else { .0.as_str() })]
    Forbidden(String),
    /// Anything else: network failure, 5xx, an unexpected answer.
    #[error("management API call failed: {0}")]
    Other(String),
}

/// What `GetConnection` tells about a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    pub connected_at: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The `@connections` operations. `endpoint` is the callback URL including the stage, e.g.
/// `https://{domainName}/{stage}` or `http://127.0.0.1:3001/dev`.
#[async_trait]
pub trait ManagementApi: Send + Sync {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError>;
    async fn get_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<ConnectionInfo, ManagementError>;
    async fn delete_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<(), ManagementError>;
}

/// The production implementation over `aws-sdk-apigatewaymanagement`.
///
/// The SDK binds a client to one endpoint, and a Lambda may serve several stages or domains, so
/// it keeps one client per endpoint. Clients are cheap to clone and share their connection pool,
/// so a warm Lambda reuses TLS connections across invocations.
#[derive(Debug)]
pub struct SdkManagementApi {
    base: aws_sdk_apigatewaymanagement::config::Builder,
    clients: Mutex<HashMap<String, aws_sdk_apigatewaymanagement::Client>>,
}

impl SdkManagementApi {
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        SdkManagementApi {
            base: aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config),
            clients: Mutex::default(),
        }
    }

    fn client(&self, endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
        // The map only caches; a poisoned lock still holds valid clients.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                let config = self.base.clone().endpoint_url(endpoint).build();
                aws_sdk_apigatewaymanagement::Client::from_conf(config)
            })
            .clone()
    }
}

/// Maps an SDK error by the modeled error code (API Gateway sends it in `x-amzn-ErrorType`), or
/// failing that by the HTTP status, so a proxy that keeps the status but drops the header is
/// still understood.
fn map_sdk_error<E>(err: SdkError<E>) -> ManagementError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match (err.code(), status) {
        (Some("GoneException"), _) | (_, Some(410)) => ManagementError::Gone,
        (Some("PayloadTooLargeException"), _) | (_, Some(413)) => ManagementError::PayloadTooLarge,
        (Some("LimitExceededException" | "ThrottlingException"), _) | (_, Some(429)) => {
            ManagementError::Throttled
        }
        (Some("ForbiddenException"), _) | (_, Some(403)) => {
            ManagementError::Forbidden(err.message().unwrap_or_default().to_owned())
        }
        _ => {
            let mut text = match status {
                Some(s) => format!("HTTP {s}: {err}"),
                None => err.to_string(),
            };
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            ManagementError::Other(text)
        }
    }
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl ManagementApi for SdkManagementApi {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError> {
        self.client(endpoint)
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data.to_vec()))
            .send()
            .await
            .map_err(map_sdk_error)?;
        Ok(())
    }

    async fn get_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<ConnectionInfo, ManagementError> {
        let out = self
            .client(endpoint)
            .get_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map_err(map_sdk_error)?;
        Ok(ConnectionInfo {
            connected_at: to_chrono(out.connected_at()),
            last_active_at: to_chrono(out.last_active_at()),
            source_ip: out
                .identity()
                .and_then(|i| i.source_ip())
                .map(str::to_owned),
            user_agent: out
                .identity()
                .and_then(|i| i.user_agent())
                .map(str::to_owned),
        })
    }

    async fn delete_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<(), ManagementError> {
        self.client(endpoint)
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map_err(map_sdk_error)?;
        Ok(())
    }
}
