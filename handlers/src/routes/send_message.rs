//! `sendMessage`: a message to everyone, to a room or to one connection, inline or through
//! the fan-out queue.

use super::prelude::*;
use crate::domain::SendMessage;
use crate::rooms::RoomName;

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
        let sender = match self.admit(connection_id).await? {
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

    /// Sends a valid, admitted message to its recipients.
    async fn deliver_message(
        &self,
        out: &Outgoing<'_>,
        msg: &SendMessage,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        // A broadcast (everyone, a room) spends the stage's delivery budget: one unit to pass
        // now, the rest when it knows how many it listed.
        if !matches!(msg.recipients(), Recipients::One(_))
            && let Err(e) = self.admit_broadcast().await?
        {
            return self.reply_error(&out.endpoint, out.sender, e).await;
        }
        match msg.recipients() {
            Recipients::Everyone => match &self.config.fanout {
                config::FanOutMode::Queue { segments, .. } => {
                    self.enqueue_everyone(out, *segments).await
                }
                config::FanOutMode::Inline { .. } => self.send_to_everyone(out).await,
            },
            Recipients::Room(room) => self.send_to_room(out, &room).await,
            Recipients::One(to) => self.send_direct(out, to, event).await,
        }
    }

    /// Queue mode: one job per Scan segment; the worker posts.
    async fn enqueue_everyone(
        &self,
        out: &Outgoing<'_>,
        segments: u32,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let queue = self.queue.as_ref().ok_or(HandlerError::NoQueue)?;
        let jobs =
            job::FanOutJob::for_everyone(out.message_id, &out.endpoint, &out.frame, segments);
        queue
            .send(jobs.iter().map(job::FanOutJob::to_body).collect())
            .await?;
        tracing::info!(
            message_id = out.message_id,
            jobs = jobs.len(),
            "broadcast enqueued"
        );
        Ok(ok())
    }

    /// Inline mode: posts to every connection within the deadline, and hands what is left to
    /// the fan-out queue when the deadline comes first.
    async fn send_to_everyone(
        &self,
        out: &Outgoing<'_>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let report = fanout::broadcast_to(
            self.store.as_ref(),
            Some(self.memberships.as_ref()),
            self.api.as_ref(),
            &out.endpoint,
            Bytes::from(out.frame.clone()),
            fanout::Limits {
                concurrency: self.config.broadcast_concurrency,
                deadline: out.deadline,
            },
        )
        .await;
        tracing::info!(
            delivered = report.delivered,
            gone = report.gone,
            failed = report.failed,
            throttled = report.throttled,
            undelivered = report.undelivered,
            "broadcast done"
        );
        // Everyone listed costs a delivery, posted or handed off (the one unit taken at
        // admission included).
        self.charge_broadcast(report.delivered + report.gone + report.failed + report.undelivered)
            .await;
        if report.deadline_reached {
            self.hand_off_rest(out, &report).await?;
        }
        if let Some(e) = report.list_error {
            // Without the rest of the listing there is no way to reach the others; a function
            // error makes API Gateway tell the sender.
            return Err(e.into());
        }
        if report.delivered == 0 && report.failed > 0 {
            // The sender is a recipient too, so not even the echo went out: a broken permission
            // or endpoint, not a few bad connections. Report it as the function error it is
            // instead of a success nobody saw.
            return Err(HandlerError::NothingDelivered {
                failed: report.failed,
            });
        }
        Ok(ok())
    }

    /// Above what one invocation can post in time, the rest goes to the fan-out worker: a job
    /// that continues this very Scan (segment 0 of 1) after the last id listed, with the ids
    /// listed but not posted first. Without a queue the rest is only logged (by the engine).
    async fn hand_off_rest(
        &self,
        out: &Outgoing<'_>,
        report: &fanout::FanOutReport,
    ) -> Result<(), HandlerError> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let rest = job::FanOutJob {
            listing: report
                .listed_up_to
                .clone()
                .map_or(job::Listing::Start, job::Listing::After),
            pending: report.handed_back.clone(),
            ..job::FanOutJob::for_everyone(out.message_id, &out.endpoint, &out.frame, 1).remove(0)
        };
        queue.send(vec![rest.to_body()]).await?;
        tracing::info!(
            message_id = out.message_id,
            pending = rest.pending.len(),
            "broadcast handed off to the fan-out queue at its deadline"
        );
        Ok(())
    }

    /// A room message: the sender must be a member; queue mode enqueues one room job, inline
    /// mode posts to the members page by page.
    async fn send_to_room(
        &self,
        out: &Outgoing<'_>,
        room: &RoomName,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        if !self.memberships.is_member(room, out.sender).await? {
            let err = InputError::NotAMember(room.to_string());
            return self.reply_error(&out.endpoint, out.sender, err).await;
        }
        if let config::FanOutMode::Queue { .. } = &self.config.fanout {
            // Validated and a member: the worker lists the room and posts.
            let queue = self.queue.as_ref().ok_or(HandlerError::NoQueue)?;
            let job =
                job::FanOutJob::for_room(out.message_id, &out.endpoint, &out.frame, room.as_str());
            queue.send(vec![job.to_body()]).await?;
            tracing::info!(message_id = out.message_id, %room, "room message enqueued");
            return Ok(ok());
        }
        let delivery = room_fanout::RoomDelivery {
            store: self.store.as_ref(),
            memberships: self.memberships.as_ref(),
            api: self.api.as_ref(),
            endpoint: &out.endpoint,
            concurrency: self.config.broadcast_concurrency,
        };
        let report = delivery
            .send_to_room(room, Bytes::from(out.frame.clone()))
            .await;
        tracing::info!(
            %room,
            delivered = report.delivered,
            gone = report.gone,
            failed = report.failed,
            "room message done"
        );
        self.charge_broadcast(report.delivered + report.gone + report.failed)
            .await;
        if let Some(e) = report.list_error {
            return Err(e.into());
        }
        Ok(ok())
    }

    /// A direct message to the one connection `to`.
    async fn send_direct(
        &self,
        out: &Outgoing<'_>,
        to: String,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let Some(recipient) = self.store.get(&to).await? else {
            let err = InputError::UnknownRecipient(to);
            return self.reply_error(&out.endpoint, out.sender, err).await;
        };
        let outcome = fanout::deliver_to(
            self.store.as_ref(),
            Some(self.memberships.as_ref()),
            self.api.as_ref(),
            &out.endpoint,
            &recipient.connection_id,
            Bytes::from(out.frame.clone()),
        )
        .await;
        let err = match outcome {
            fanout::Outcome::Delivered => return Ok(ok()),
            // Its record is deleted now; to the sender it is as unknown as any other.
            fanout::Outcome::Gone => InputError::UnknownRecipient(to),
            fanout::Outcome::Failed(e) => {
                // The detail (a 403's text names the account and the role) goes to the log
                // only, under the reference the client is given.
                let reference = correlation_id(event);
                tracing::warn!(
                    to,
                    reference,
                    error = %e,
                    "direct message could not be delivered"
                );
                InputError::DeliveryFailed {
                    to,
                    reference: reference.to_owned(),
                }
            }
        };
        self.reply_error(&out.endpoint, out.sender, err).await
    }
}
