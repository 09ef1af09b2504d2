//! How a route's handler is invoked: the seam between the gateway and the code behind a route.
//!
//! By default the handlers' [`App`] runs in-process, as Lambda would run it. [`Integration`] lets
//! a test put other code behind the routes (a stub that answers with chosen headers, a slow
//! handler), and an [`EventLog`] records every event the gateway sends, so a test can check them
//! field by field. Every invocation is bounded by the integration timeout, as API Gateway bounds
//! it, and a panic is caught: to the client it is an integration failure like any other, and the
//! gateway lives on.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use futures::FutureExt;
use futures::future::BoxFuture;
use wsstack_handlers::App;
use wsstack_routes::Handler;

/// API Gateway's integration timeout: 50 ms to 29 s, 29 s at most and not raisable
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>).
pub const MAX_INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
/// The shortest integration timeout API Gateway accepts (same page).
pub const MIN_INTEGRATION_TIMEOUT: Duration = Duration::from_millis(50);

/// Code behind the routes.
pub trait Integration: Send + Sync + 'static {
    /// Runs `handler` on `event`; an `Err` is a failed invocation (the text says why).
    fn invoke(
        &self,
        handler: Handler,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> BoxFuture<'_, Result<ApiGatewayProxyResponse, String>>;
}

impl Integration for App {
    fn invoke(
        &self,
        handler: Handler,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> BoxFuture<'_, Result<ApiGatewayProxyResponse, String>> {
        Box::pin(async move {
            self.handle(handler, event)
                .await
                .map_err(|e| format!("handler error: {e}"))
        })
    }
}

/// Every event the gateway sent to a handler, in order. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<Vec<(Handler, ApiGatewayWebsocketProxyRequest)>>>,
}

impl EventLog {
    pub fn new() -> Self {
        EventLog::default()
    }

    fn push(&self, handler: Handler, event: &ApiGatewayWebsocketProxyRequest) {
        // A push cannot leave the vector half-updated: a poisoned lock is still good.
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((handler, event.clone()));
    }

    /// A copy of the events recorded so far, with the handler each went to.
    pub fn events(&self) -> Vec<(Handler, ApiGatewayWebsocketProxyRequest)> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long each handler may run: API Gateway's integration timeout, lowered to a function's
/// own timeout where that is shorter (Lambda stops the function then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// API Gateway's integration timeout (default and maximum: 29 s).
    pub integration: Duration,
    /// Each function's timeout (`timeout_seconds` of the stage file), where known.
    pub functions: BTreeMap<Handler, Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            integration: MAX_INTEGRATION_TIMEOUT,
            functions: BTreeMap::new(),
        }
    }
}

impl Timeouts {
    /// min(integration timeout, the function's timeout).
    pub fn for_handler(&self, handler: Handler) -> Duration {
        match self.functions.get(&handler) {
            Some(function) => self.integration.min(*function),
            None => self.integration,
        }
    }
}

/// What came of an invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(Box<ApiGatewayProxyResponse>),
    /// The handler returned an error or panicked (the text says which).
    Failed(String),
    /// The handler did not answer within its timeout.
    TimedOut(Duration),
}

/// The gateway's way to run handlers: the integration, its timeouts and the event log.
pub(crate) struct Invoker {
    pub integration: Arc<dyn Integration>,
    pub timeouts: Timeouts,
    pub log: Option<EventLog>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("timeouts", &self.timeouts)
            .field("log", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl Invoker {
    /// Runs `handler` on `event`, bounded by its timeout, catching a panic.
    pub async fn invoke(
        &self,
        handler: Handler,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Outcome {
        if let Some(log) = &self.log {
            log.push(handler, &event);
        }
        let limit = self.timeouts.for_handler(handler);
        let call = AssertUnwindSafe(self.integration.invoke(handler, event)).catch_unwind();
        match tokio::time::timeout(limit, call).await {
            Err(_) => Outcome::TimedOut(limit),
            Ok(Ok(Ok(response))) => Outcome::Response(Box::new(response)),
            Ok(Ok(Err(e))) => Outcome::Failed(e),
            Ok(Err(panic)) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                Outcome::Failed(format!("handler panicked: {text}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_timeout_shortens_the_integration_timeout_never_lengthens_it() {
        let t = Timeouts {
            integration: MAX_INTEGRATION_TIMEOUT,
            functions: BTreeMap::from([
                (Handler::Connect, Duration::from_secs(3)),
                (Handler::SendMessage, Duration::from_secs(900)),
            ]),
        };
        assert_eq!(t.for_handler(Handler::Connect), Duration::from_secs(3));
        assert_eq!(t.for_handler(Handler::SendMessage), MAX_INTEGRATION_TIMEOUT);
        assert_eq!(t.for_handler(Handler::Default), MAX_INTEGRATION_TIMEOUT);
    }
}
