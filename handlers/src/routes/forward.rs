//! `forward`: a forwarded action (issue 17 item 1), one of the app manifest's actions, put on
//! the stage's EventBridge bus as one event, and answered in the route's response (a two-way
//! route: API Gateway sends the Lambda proxy result's `body` to the client, "Set up a WebSocket
//! API route response",
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-response.html>),
//! never through `@connections`.
//!
//! The answer is `{"type": "accepted", "action", "requestId"?, "eventId"}` once the event is
//! on the bus, or an error frame; nothing is acknowledged that is not on the bus
//! (`backend_unavailable` when the bus refused it or retries ran out). Each outcome is counted
//! ([`crate::metrics`]): `Forwarded`, `ForwardFailed`, and the `PutEvents` retries
//! (`ForwardRetried`).

use wsstack_routes::bridge::ForwardedDetail;

use wsstack_routes::metrics::Metric;

use super::prelude::*;
use crate::bus::{self, BusEntry};
use crate::config;
use crate::forwarded::{self, Forwarded};

impl App {
    pub(crate) async fn forward(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
        deadline: Option<fanout::Deadline>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let fwd = self.forwarding.as_ref().ok_or(HandlerError::NoBus)?;
        // Parsed first (no I/O) so that every answer can name the client's requestId; charged
        // before any answer, as `sendMessage` does: a flood of malformed messages counts too.
        let parsed = forwarded::parse_forwarded(
            event.body.as_deref(),
            event.is_base64_encoded,
            &fwd.config.actions,
        );
        let request_id = match &parsed {
            Ok(m) => m.request_id.clone(),
            Err(r) => r.request_id.clone(),
        };
        let sender = match self.admit(connection_id, event).await? {
            Ok(Some(sender)) => sender,
            Ok(None) => return Ok(refuse(InputError::UnknownSender, request_id.as_deref())),
            Err(e) => return Ok(refuse(e, request_id.as_deref())),
        };
        let msg = match parsed {
            Ok(m) => m,
            Err(r) => return Ok(refuse(r.error, r.request_id.as_deref())),
        };
        let entry = forwarded_entry(&fwd.config, &msg, &sender, connection_id, event)?;
        let (put, retries) =
            bus::put_one_counting_retries(fwd.bus.as_ref(), &entry, deadline).await;
        self.count(event, Metric::ForwardRetried, retries as usize);
        match put {
            Ok(event_id) => {
                tracing::info!(action = msg.action, event_id, "forwarded");
                self.count(event, Metric::Forwarded, 1);
                let frame = Frame::Accepted {
                    action: msg.action,
                    request_id: msg.request_id,
                    event_id,
                };
                Ok(answer(&frame))
            }
            Err(e) => {
                // The service's text goes to the log only, under the reference the client gets.
                let reference = correlation_id(event);
                tracing::warn!(action = msg.action, reference, error = %e, "could not forward");
                self.count(event, Metric::ForwardFailed, 1);
                let err = InputError::BackendUnavailable {
                    action: msg.action,
                    reference: reference.to_owned(),
                };
                Ok(refuse(err, msg.request_id.as_deref()))
            }
        }
    }
}

/// The event of a valid, admitted forwarded action: `Source` the stage's, `DetailType` the
/// action, `Detail` a [`ForwardedDetail`].
fn forwarded_entry(
    config: &config::ForwardConfig,
    msg: &Forwarded,
    sender: &Connection,
    connection_id: &str,
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<BusEntry, HandlerError> {
    let ctx = &event.request_context;
    let message_id = ctx
        .message_id
        .as_deref()
        .or(ctx.request_id.as_deref())
        .unwrap_or(connection_id);
    let detail = ForwardedDetail {
        connection_id: connection_id.to_owned(),
        user_id: sender.user_id().to_owned(),
        username: sender.username.clone(),
        request_id: msg.request_id.clone(),
        message_id: message_id.to_owned(),
        data: msg.data.clone(),
        received_at: domain::iso8601(event_time(ctx.request_time_epoch)),
    };
    Ok(BusEntry {
        event_bus_name: config.event_bus_name.clone(),
        source: config.event_source.clone(),
        detail_type: msg.action.clone(),
        detail: serde_json::to_string(&detail)?,
    })
}

/// The route's response carrying `frame` (what API Gateway sends the client).
fn answer(frame: &Frame) -> ApiGatewayProxyResponse {
    response(200, Some(frame.to_json()))
}

/// The error frame as the route's response.
fn refuse(err: InputError, request_id: Option<&str>) -> ApiGatewayProxyResponse {
    tracing::info!(code = err.code(), error = %err, "refusing forwarded action");
    answer(&Frame::error_answering(&err, request_id))
}
