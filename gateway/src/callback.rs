//! How the handlers inside the gateway reach its `@connections` API.
//!
//! In AWS a Lambda reaches `@connections` over the network through the SDK
//! (`aws-sdk-apigatewaymanagement`: serialization, SigV4 signing, retries, error mapping). The
//! local gateway runs the same handler code in its own process, and offers three paths:
//!
//! - **sdk-in-process** (the default): the production path, the SDK client, with its transport
//!   the gateway's router called in process: every answer (200, 400, 403, 410, 413, 429, with
//!   `x-amzn-ErrorType`) is the port's answer, through the SDK's deserialization. A plain
//!   `POST /{stage}/@connections/{id}`, every post of a broadcast, is answered as its route
//!   answers it without going through the router.
//! - **sdk-tcp**: the SDK client over a loopback TCP connection to the port, as an outside
//!   client.
//! - **direct** (opt-in): a call to the gateway's own endpoint goes straight to the code that
//!   serves `@connections` on the port (`connections_api`): the same checks in the
//!   same order (size limit, connection id, 410 for unknown, closing and still-connecting
//!   connections, 429 for a client that is not reading), without the SDK's per-request work,
//!   which is nearly all of a local broadcast's CPU: for load tests with many local clients.
//!   Calls to any other endpoint take the SDK over TCP. `tests/tests/gateway_callback.rs`
//!   checks every answer against the SDK's over the port.
//!
//! Clients outside the process (the `push` CLI, the AWS CLI, backends) always come through the
//! port.

use std::sync::{Arc, OnceLock, RwLock, Weak};

use async_trait::async_trait;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use axum::Router;
use bytes::Bytes;
use chrono::DateTime;
use tower::ServiceExt;
use wsstack_handlers::management::{
    ConnectionInfo, ManagementApi, ManagementError, SdkManagementApi,
};

use crate::connections_api::{self, ApiError, Target};
use crate::state::Shared;

/// How the handlers' `@connections` calls reach this gateway (`--callback-transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CallbackTransport {
    /// The AWS SDK client, its requests answered by the gateway's router in process (no
    /// socket).
    #[default]
    SdkInProcess,
    /// The AWS SDK client over a loopback TCP connection to the gateway's port.
    SdkTcp,
    /// Straight to the gateway's connections, checked as the port checks them (no SDK, no
    /// HTTP).
    Direct,
}

/// The handlers' `@connections` client for [`CallbackTransport::Direct`]: calls to the
/// gateway's own endpoint are served from its connection registry; calls to any other endpoint
/// go through `other`, the SDK over the network.
pub(crate) struct DirectManagementApi {
    own_endpoint: String,
    /// Set once the gateway's state exists (the state holds the handlers, which hold this);
    /// weak so that the two do not keep each other alive.
    shared: OnceLock<Weak<Shared>>,
    other: Arc<SdkManagementApi>,
}

impl DirectManagementApi {
    pub(crate) fn new(own_endpoint: String, other: Arc<SdkManagementApi>) -> Self {
        DirectManagementApi {
            own_endpoint,
            shared: OnceLock::new(),
            other,
        }
    }

    /// Connects this client to the gateway it serves; later calls are ignored.
    pub(crate) fn serve(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    /// The gateway's state when `endpoint` is this gateway's and it is still serving.
    fn own(&self, endpoint: &str) -> Option<Result<Arc<Shared>, ManagementError>> {
        (endpoint == self.own_endpoint).then(|| {
            self.shared
                .get()
                .and_then(Weak::upgrade)
                // As a refused connection would be: the gateway is not serving (yet, or any more).
                .ok_or_else(|| ManagementError::Other("the gateway is not serving".to_owned()))
        })
    }
}

impl std::fmt::Debug for DirectManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectManagementApi")
            .field("own_endpoint", &self.own_endpoint)
            .finish_non_exhaustive()
    }
}

/// The connection id as a target without a stage: the endpoint was this gateway's, stage and
/// all.
fn target(connection_id: &str) -> Target {
    Ok((None, connection_id.to_owned()))
}

/// What the SDK makes of the port's answer for the same error ([`SdkManagementApi`]'s mapping).
impl From<ApiError> for ManagementError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Gone => ManagementError::Gone,
            ApiError::PayloadTooLarge { .. } => ManagementError::PayloadTooLarge,
            ApiError::LimitExceeded => ManagementError::Throttled,
            ApiError::Forbidden => ManagementError::Forbidden("Forbidden".to_owned()),
            ApiError::InvalidId(id) => ManagementError::Other(format!(
                "HTTP 400: BadRequestException: Invalid connectionId: {id}"
            )),
        }
    }
}

#[async_trait]
impl ManagementApi for DirectManagementApi {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError> {
        match self.own(endpoint) {
            Some(shared) => Ok(connections_api::post_data(
                &*shared?,
                target(connection_id),
                data,
            )?),
            None => {
                self.other
                    .post_to_connection(endpoint, connection_id, data)
                    .await
            }
        }
    }

    async fn get_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<ConnectionInfo, ManagementError> {
        let Some(shared) = self.own(endpoint) else {
            return self.other.get_connection(endpoint, connection_id).await;
        };
        let conn = connections_api::lookup(&*shared?, target(connection_id))?;
        Ok(ConnectionInfo {
            connected_at: DateTime::from_timestamp_millis(conn.info.connected_at),
            last_active_at: DateTime::from_timestamp_millis(conn.last_active()),
            source_ip: Some(conn.info.source_ip.to_string()),
            user_agent: conn.info.user_agent.as_deref().map(str::to_owned),
        })
    }

    async fn delete_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<(), ManagementError> {
        match self.own(endpoint) {
            Some(shared) => Ok(connections_api::delete(&*shared?, target(connection_id))?),
            None => self.other.delete_connection(endpoint, connection_id).await,
        }
    }
}

/// The port as the SDK's in-process transport reaches it: its router, and the state it serves,
/// from which [`InProcessClient`] answers a plain post without the router.
#[derive(Debug, Clone)]
struct InProcessPort {
    router: Router,
    shared: Arc<Shared>,
}

/// The slot for the port the SDK's in-process transport calls: filled once the gateway's state
/// exists (which holds the handlers, which hold this transport), emptied when the gateway
/// stops so that the state and the router do not keep each other alive.
#[derive(Debug, Clone, Default)]
pub struct PortSlot(Arc<RwLock<Option<InProcessPort>>>);

impl PortSlot {
    pub(crate) fn fill(&self, router: Router, shared: Arc<Shared>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(InProcessPort { router, shared });
    }

    pub fn empty(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn port(&self) -> Option<InProcessPort> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An SDK HTTP client whose every request is answered by the port in `slot`.
#[derive(Debug, Clone)]
pub struct InProcessClient {
    slot: PortSlot,
}

impl InProcessClient {
    pub fn new(slot: PortSlot) -> Self {
        InProcessClient { slot }
    }

    pub fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }
}

impl HttpClient for InProcessClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for InProcessClient {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        // Like a refused connection: the gateway is not serving (yet, or any more).
        let Some(port) = self.slot.port() else {
            return HttpConnectorFuture::ready(Err(ConnectorError::io(
                "the gateway is not serving".into(),
            )));
        };
        // A post to a plain `/{stage}/@connections/{id}` with its body in memory, as every
        // post of a broadcast is, needs nothing of the router: it is answered here, from the
        // registry, as its route answers it, and the SDK has its answer at its first poll.
        // Without the router and a task per post, a local broadcast through the SDK takes about
        // a tenth less time and CPU (docs/benchmarks.md). (`uri_mut` is the request's only
        // accessor for its parsed URI.)
        if request.method() == "POST"
            && let Some(target) = connections_api::plain_staged_target(request.uri_mut().path())
            && let Some(data) = request.body().bytes().map(Bytes::copy_from_slice)
        {
            let response = connections_api::post_answer(&port.shared, Ok(target), data);
            return HttpConnectorFuture::new(into_sdk_response(response));
        }
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?
                .map(axum::body::Body::new);
            // A task of its own, as a connection's task serves a request that comes over the
            // port. The SDK call making this request is a task of its own too
            // (`SdkManagementApi`); serving the router inside it instead made a broadcast cost
            // more CPU, not less (its future grows by the router's).
            let router = port.router;
            let served = tokio::spawn(async move {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                into_sdk_response(response).await
            });
            served.await.map_err(|e| ConnectorError::io(e.into()))?
        })
    }
}

/// The port's answer as the SDK takes it.
async fn into_sdk_response(
    response: axum::response::Response,
) -> Result<HttpResponse, ConnectorError> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ConnectorError::io(e.into()))?;
    HttpResponse::try_from(http::Response::from_parts(parts, SdkBody::from(bytes)))
        .map_err(|e| ConnectorError::other(e.into(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no router in the slot, a call fails as a connection error the SDK can retry,
    /// never a panic.
    #[tokio::test]
    async fn an_empty_slot_answers_a_connection_error() {
        let client = InProcessClient::new(PortSlot::default());
        let request = HttpRequest::get("http://127.0.0.1:1/dev/@connections/x").unwrap();
        let err = client.call(request).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }
}
