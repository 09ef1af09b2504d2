//! How the handlers inside the gateway reach its `@connections` API: the real SDK client
//! (`aws-sdk-apigatewaymanagement`: serialization, SigV4 signing, retries, error mapping), with
//! its HTTP transport either the loopback TCP socket or, by default, the gateway's own
//! `@connections` router called in process.
//!
//! In AWS a Lambda reaches `@connections` over the network; the local gateway runs the same
//! handler code in its own process, where the TCP hop adds an HTTP encode and parse and four
//! system calls per post without exercising anything of the handlers. The in-process transport
//! hands the SDK's signed request to the same router the port serves, so every answer (200,
//! 400, 403, 410, 413, 429, with `x-amzn-ErrorType`) is the port's answer. Clients outside the
//! process (the `push` CLI, the AWS CLI, backends) always come through the port.

use std::sync::{Arc, RwLock};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use axum::Router;
use tower::ServiceExt;

/// The transport of the handlers' `@connections` calls into this gateway
/// (`--callback-transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CallbackTransport {
    /// The gateway's router, called in process (no socket).
    #[default]
    InProcess,
    /// HTTP over a loopback TCP connection to the gateway's port, as an outside client.
    Tcp,
}

/// The slot for the router the in-process transport calls: filled once the gateway's state
/// exists (which holds the handlers, which hold this transport), emptied when the gateway
/// stops so that the state and the router do not keep each other alive.
#[derive(Debug, Clone, Default)]
pub struct RouterSlot(Arc<RwLock<Option<Router>>>);

impl RouterSlot {
    pub fn fill(&self, router: Router) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(router);
    }

    pub fn empty(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn router(&self) -> Option<Router> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An SDK HTTP client whose every request is answered by the router in `slot`.
#[derive(Debug, Clone)]
pub struct InProcessClient {
    slot: RouterSlot,
}

impl InProcessClient {
    pub fn new(slot: RouterSlot) -> Self {
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
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let router = self.slot.router();
        HttpConnectorFuture::new(async move {
            // Like a refused connection: the gateway is not serving (yet, or any more).
            let router =
                router.ok_or_else(|| ConnectorError::io("the gateway is not serving".into()))?;
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?
                .map(axum::body::Body::new);
            // A task of its own, as a connection's task serves a request that comes over the
            // port: the caller (a fan-out polling 64 posts in one task) keeps signing the next
            // requests while another worker thread serves this one.
            let served = tokio::spawn(async move {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                let (parts, body) = response.into_parts();
                axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map(|bytes| http::Response::from_parts(parts, SdkBody::from(bytes)))
            });
            let response = served
                .await
                .map_err(|e| ConnectorError::io(e.into()))?
                .map_err(|e| ConnectorError::io(e.into()))?;
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no router in the slot, a call fails as a connection error the SDK can retry,
    /// never a panic.
    #[tokio::test]
    async fn an_empty_slot_answers_a_connection_error() {
        let client = InProcessClient::new(RouterSlot::default());
        let request = HttpRequest::get("http://127.0.0.1:1/dev/@connections/x").unwrap();
        let err = client.call(request).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }
}
