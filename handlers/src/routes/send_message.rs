//! `sendMessage`: a message to everyone, to a room or to one connection, through the delivery
//! service (inline, or through the fan-out queue as the stage says).

use super::prelude::*;
use crate::delivery::{Audience, DeliveryReport, Parcel};
use crate::domain::SendMessage;

/// One valid message on its way out: where to post, who sent it, its id and frame.
struct Outgoing<'a> {
    /// The `@connections` endpoint.
    endpoint: String,
    /// The sender's connection id (error frames go back to it).
    sender: &'a str,
    /// The message's id: the frame's `id`, and what ties its fan-out jobs together.
    message_id: &'a str,
    /// The frame, as JSON text.
    frame: String,
    /// When an inline fan-out must stop (the invocation's deadline less a margin).
    deadline: Option<fanout::Deadline>,
}

impl App {
    pub(crate) async fn send_message(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
        deadline: Option<fanout::Deadline>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // The sender's record and its rate limits, before anything else: a flood of malformed
        // messages costs an invocation and an error frame each, and counts as well.
        let sender = match self.admit(connection_id, event).await? {
            Ok(Some(sender)) => sender,
            Ok(None) => {
                return self
                    .reply_error(&endpoint, connection_id, InputError::UnknownSender)
                    .await;
            }
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        let msg = match domain::parse_send_message(event.body.as_deref(), event.is_base64_encoded) {
            Ok(m) => m,
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        let ctx = &event.request_context;
        let message_id = ctx
            .message_id
            .as_deref()
            .or(ctx.request_id.as_deref())
            .unwrap_or(connection_id);
        let sent_at = event_time(ctx.request_time_epoch);
        let frame = match Frame::for_message(&msg, message_id, &sender.username, sent_at).to_wire()
        {
            Ok(f) => f,
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        let out = Outgoing {
            endpoint,
            sender: connection_id,
            message_id,
            frame,
            deadline,
        };
        self.deliver_message(&out, &msg, event).await
    }

    /// Sends a valid, admitted message to its recipients through the delivery service.
    async fn deliver_message(
        &self,
        out: &Outgoing<'_>,
        msg: &SendMessage,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        // A broadcast (everyone, a room) spends the stage's delivery budget: one unit to pass
        // now, the rest of its audience as the delivery lists it.
        if !matches!(msg.recipients(), Recipients::One(_))
            && let Err(e) = self.admit_broadcast(event).await?
        {
            return self.reply_error(&out.endpoint, out.sender, e).await;
        }
        let audience = match msg.recipients() {
            Recipients::Everyone => Audience::Everyone,
            Recipients::Room(room) => {
                if !self.memberships.is_member(&room, out.sender).await? {
                    let err = InputError::NotAMember(room.to_string());
                    return self.reply_error(&out.endpoint, out.sender, err).await;
                }
                Audience::Room(room)
            }
            Recipients::One(to) => {
                if self.store.get(&to).await?.is_none() {
                    let err = InputError::UnknownRecipient(to);
                    return self.reply_error(&out.endpoint, out.sender, err).await;
                }
                Audience::Connection(to)
            }
        };
        let parcel = Parcel {
            endpoint: out.endpoint.clone(),
            message_id: out.message_id.to_owned(),
            frame: out.frame.clone(),
        };
        let mut delivery = self.delivery();
        if !matches!(audience, Audience::Connection(_)) {
            // The unit the admission took.
            delivery.prepaid = 1;
        }
        let report = delivery.deliver(&audience, &parcel, out.deadline).await?;
        match audience {
            Audience::Connection(to) => self.answer_direct(out, to, &report, event).await,
            _ => Self::answer_broadcast(&report),
        }
    }

    /// A broadcast that had recipients and reached none of them (the sender is one of them, so
    /// not even the echo went out) is a broken permission or endpoint, not a few bad
    /// connections: a function error rather than a success nobody saw.
    fn answer_broadcast(report: &DeliveryReport) -> Result<ApiGatewayProxyResponse, HandlerError> {
        if report.posts.delivered == 0 && report.posts.failed > 0 {
            return Err(HandlerError::NothingDelivered {
                failed: report.posts.failed,
            });
        }
        Ok(ok())
    }

    /// A direct message's outcome, told to its sender when it did not arrive.
    async fn answer_direct(
        &self,
        out: &Outgoing<'_>,
        to: String,
        report: &DeliveryReport,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let posts = &report.posts;
        let err = if posts.delivered > 0 {
            return Ok(ok());
        } else if posts.gone > 0 {
            // Its record is deleted now; to the sender it is as unknown as any other.
            InputError::UnknownRecipient(to)
        } else {
            // The detail (a 403's text names the account and the role) went to the log with
            // the connection id; the client gets the reference of this log line.
            let reference = correlation_id(event);
            tracing::warn!(to, reference, "direct message could not be delivered");
            InputError::DeliveryFailed {
                to,
                reference: reference.to_owned(),
            }
        };
        self.reply_error(&out.endpoint, out.sender, err).await
    }
}
