//! The Lambda handlers of the wsstack WebSocket API and the library they share.
//!
//! - [`domain`]: the chat's rules (validation, recipients, frames); no AWS types.
//! - [`store`]: connection records ([`store::DynamoDbStore`], [`store::MemoryStore`]).
//! - [`management`]: the `@connections` API ([`management::SdkManagementApi`]).
//! - [`config`]: environment configuration, validated once.
//! - [`fanout`]: delivery of one frame to many connections with bounded concurrency.
//! - [`rooms`], [`membership`], [`room_fanout`]: room names, who is in which room
//!   ([`membership::DynamoDbMembershipStore`], [`membership::MemoryMembershipStore`]), and
//!   delivery to a room's members page by page.
//! - [`App`]: one entry point per route, shared by the Lambda binaries and the local gateway.
//!
//! # Protocol
//!
//! | route | does | answers |
//! |---|---|---|
//! | `$connect` | negotiates the subprotocol ([`domain::SUBPROTOCOL`] when offered); stores `{connectionId, username, connectedAt (ms), expiresAt (s, TTL = +2 h)}`; `username` from the query string, 1..=64 printable characters (no Cc, Cf, Zl, Zp), default `anonymous` | 200, with `Sec-WebSocket-Protocol: wsstack.v1` when the client offered it; 400 when the client offered only other subprotocols or a bad username; 500 when the store fails (API Gateway then refuses the handshake) |
//! | `$disconnect` | deletes the record (a missing one is fine) | 200; a store failure is a function error |
//! | `sendMessage` | `{"action":"sendMessage","data":"…","to":"<id>"?}`: a broadcast to everyone **including the sender**, or a direct message to `to` only | frames `{"type":"message","from","data","sentAt"}` / `{"type":"direct","from","to","data","sentAt"}`; bad input: `{"type":"error","code","message"}` to the sender only ([`domain::InputError`] lists the codes) |
//! | `join` / `leave` | `{"action":"join","room":"lobby"}`: adds / removes the sender's membership | `{"type":"joined","room"}` / `{"type":"left","room"}` to the sender; bad input: error frames (`invalid_room`, `too_many_rooms`, `not_a_member`, ...) |
//! | `$default` | nothing | `{"type":"error","code":"unknown_action","message","supportedActions":[…]}` to the sender |
//! | `listConnections` | `{"action":"listConnections","cursor"?,"limit"?}`: one page (1..=100, default 100) of the open connections, the sender included | `{"type":"connections","items":[{"connectionId","username","connectedAt"}],"next":<cursor or null>,"you":<sender's id>}` to the sender |
//!
//! Every client route (`sendMessage`, `listConnections`, `join`, `leave`, `$default`) first
//! charges one request to the connection's rate limit and, for an authenticated connection,
//! its user's ([`App`]'s `admit`); a broadcast also spends the stage's delivery budget. Over a
//! limit the sender gets `rate_limited`, `user_rate_limited` or `broadcast_budget_exceeded`.
//!
//! A handler returns `Err` only for what the client cannot fix (a broken event, the store
//! failing, the sender unreachable by anything but 410); API Gateway then sends the client its
//! `Internal server error` frame.

pub mod audience;
pub mod config;
pub mod domain;
pub mod fanout;
pub mod job;
pub mod management;
pub mod membership;
pub mod protocol;
pub mod queue;
pub mod room_fanout;
pub mod rooms;
pub mod simulated;
pub mod store;
pub mod token_sweep;
pub mod worker;

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tracing::Instrument;
use wsstack_routes::Handler;

use crate::config::Config;
use crate::domain::{ConnectionSummary, Frame, InputError, Recipients};
use crate::management::{ManagementApi, ManagementError};
use crate::membership::{JoinOutcome, MembershipStore, MemoryMembershipStore};
use crate::rooms::MAX_ROOMS_PER_CONNECTION;
use crate::store::{Admission, Bucket, Charge, Connection, ConnectionStore, StoreError};

/// A failure the handler cannot turn into an answer to the client. Lambda reports it as a
/// function error; API Gateway then refuses a `$connect` or sends the client its
/// `Internal server error` frame.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event lacks a field API Gateway always sends (a broken emulator or test event).
    #[error("event has no {0}")]
    MissingField(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not answer the sender: {0}")]
    Management(#[from] ManagementError),
    /// Queue mode without a queue to send to (a wiring mistake of the embedder).
    #[error("fan-out mode is queue but no queue is configured")]
    NoQueue,
    #[error("could not enqueue the fan-out jobs: {0}")]
    Queue(#[from] queue::QueueError),
    /// A broadcast had recipients and reached none of them: every post failed (each failure
    /// is logged with its reason). Gone connections are not recipients: they left.
    #[error("the broadcast reached none of its {failed} recipients; every post failed")]
    NothingDelivered { failed: usize },
    /// A WebSocket event handed to a handler that is not behind a route (the `$connect`
    /// authorizer and the fan-out worker have entry points of their own): a wiring mistake of
    /// the embedder.
    #[error("handler {0} is not a route and takes no WebSocket events")]
    NotARoute(&'static str),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        let kind = match &err {
            HandlerError::MissingField(_) => "MissingField",
            HandlerError::Store(_) => "StoreError",
            HandlerError::Management(_) => "ManagementError",
            HandlerError::NoQueue | HandlerError::Queue(_) => "QueueError",
            HandlerError::NothingDelivered { .. } => "NothingDelivered",
            HandlerError::NotARoute(_) => "NotARoute",
        };
        lambda_runtime::Diagnostic {
            error_type: format!("HandlerError::{kind}"),
            error_message: err.to_string(),
        }
    }
}

/// The handlers, wired to a store, a management API and a configuration.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn ConnectionStore>,
    memberships: Arc<dyn MembershipStore>,
    api: Arc<dyn ManagementApi>,
    config: Config,
    /// Where queue-mode broadcasts go (`None` in inline mode).
    queue: Option<Arc<dyn queue::Queue>>,
}

/// The handshake header a client offers subprotocols in, and `$connect` answers with the chosen
/// one in (see [`domain::negotiate_subprotocol`]).
pub const SEC_WEBSOCKET_PROTOCOL: &str = "sec-websocket-protocol";

/// The query string parameter `$connect` reads the username from (without authentication).
pub const USERNAME_PARAMETER: &str = "username";
/// The authorizer context keys `$connect` reads with authentication on (what
/// `wsstack_auth::Verdict::response` puts there).
pub const AUTHORIZER_USERNAME: &str = "username";
pub const AUTHORIZER_SUB: &str = "sub";
/// The authorizer context key of the token's expiry (epoch seconds), which `$connect` stores
/// on the record for the token sweep ([`token_sweep`]).
pub const AUTHORIZER_TOKEN_EXPIRES_AT: &str = "tokenExpiresAt";

/// The token's expiry from the authorizer's context. API Gateway hands the integration the
/// context's values as strings (a number `1` arrives as `"1"`: "Output from an API Gateway
/// Lambda authorizer",
/// https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-lambda-authorizer-output.html),
/// the local gateway as JSON numbers: both are read.
pub fn token_expiry(fields: &std::collections::HashMap<String, serde_json::Value>) -> Option<i64> {
    match fields.get(AUTHORIZER_TOKEN_EXPIRES_AT)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn response(status: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(Body::Text);
    r
}

fn ok() -> ApiGatewayProxyResponse {
    response(200, None)
}

/// The id that ties a client's error frame to the log line with the detail: API Gateway's
/// `requestId` of the event (every handler's span carries it as `request_id`), else its
/// `messageId`.
fn correlation_id(event: &ApiGatewayWebsocketProxyRequest) -> &str {
    let ctx = &event.request_context;
    ctx.request_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .or(ctx.message_id.as_deref())
        .unwrap_or("")
}

/// Epoch milliseconds from the event, or now when an emulator sent 0.
fn event_time(epoch_ms: i64) -> DateTime<Utc> {
    if epoch_ms > 0 {
        DateTime::from_timestamp_millis(epoch_ms).unwrap_or_else(Utc::now)
    } else {
        Utc::now()
    }
}

impl App {
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        api: Arc<dyn ManagementApi>,
        config: Config,
    ) -> Self {
        App {
            store,
            memberships: Arc::new(MemoryMembershipStore::new()),
            api,
            config,
            queue: None,
        }
    }

    /// Keeps room memberships in `memberships` instead of the in-memory store [`App::new`]
    /// starts with; with a [`store::DynamoDbStore`], pass a
    /// [`membership::DynamoDbMembershipStore`] on the same connections table.
    pub fn with_memberships(mut self, memberships: Arc<dyn MembershipStore>) -> Self {
        self.memberships = memberships;
        self
    }

    /// The queue of fan-out jobs, for queue mode.
    pub fn with_queue(mut self, queue: Arc<dyn queue::Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one event of `handler`'s route, with no deadline (the local gateway, tests).
    pub async fn handle(
        &self,
        handler: Handler,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        self.handle_until(handler, event, None).await
    }

    /// Handles one event of `handler`'s route; a broadcast stops at `deadline` (in Lambda, the
    /// invocation's deadline less a margin).
    pub async fn handle_until(
        &self,
        handler: Handler,
        event: ApiGatewayWebsocketProxyRequest,
        deadline: Option<fanout::Deadline>,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let connection_id = event
            .request_context
            .connection_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or(HandlerError::MissingField("requestContext.connectionId"))?;
        let span = tracing::info_span!(
            "handle",
            route = ?handler,
            connection_id,
            request_id = event.request_context.request_id.as_deref().unwrap_or("")
        );
        // `instrument`, not `span.enter()`: an entered guard held across awaits would attach the
        // span to whatever else the executor runs on this thread meanwhile.
        let work = async {
            match handler {
                Handler::Connect => self.connect(connection_id, &event).await,
                Handler::Disconnect => self.disconnect(connection_id, &event).await,
                Handler::SendMessage => self.send_message(connection_id, &event, deadline).await,
                Handler::Default => self.default_route(connection_id, &event).await,
                Handler::Join => self.join(connection_id, &event).await,
                Handler::Leave => self.leave(connection_id, &event).await,
                Handler::ListConnections => self.list_connections(connection_id, &event).await,
                Handler::Authorizer | Handler::FanoutWorker | Handler::TokenSweeper => {
                    Err(HandlerError::NotARoute(handler.name()))
                }
            }
        };
        work.instrument(span).await
    }

    /// Who is connecting. With authentication on, the username and `sub` the authorizer
    /// verified (API Gateway passes its `context` as `requestContext.authorizer`); a
    /// `?username=` in the query string is ignored, so nobody can speak as someone else.
    /// Without it, `?username=` (default `anonymous`).
    fn identity(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<domain::Identity, domain::UsernameError> {
        if self.config.authenticated {
            let fields = &event.request_context.authorizer.fields;
            let text = |k: &str| fields.get(k).and_then(|v| v.as_str());
            domain::Identity::verified(text(AUTHORIZER_USERNAME), text(AUTHORIZER_SUB))
        } else {
            domain::validate_username(event.query_string_parameters.first(USERNAME_PARAMETER))
                .map(domain::Identity::anonymous_choice)
        }
    }

    /// With authentication on, when the connection's token expires (the token sweep closes it
    /// then); `None` without authentication. An authorizer that gave no readable expiry is
    /// logged: that connection is never swept.
    fn connect_token_expiry(&self, event: &ApiGatewayWebsocketProxyRequest) -> Option<i64> {
        if !self.config.authenticated {
            return None;
        }
        let expiry = token_expiry(&event.request_context.authorizer.fields);
        if expiry.is_none() {
            tracing::warn!(
                key = AUTHORIZER_TOKEN_EXPIRES_AT,
                "the authorizer's context has no readable token expiry; the token sweep will not close this connection"
            );
        }
        expiry
    }

    /// The `@connections` endpoint: the configured one, else `https://{domainName}/{stage}`.
    pub fn callback_endpoint(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<String, HandlerError> {
        if let Some(url) = &self.config.callback_url {
            return Ok(url.clone());
        }
        let ctx = &event.request_context;
        let domain = ctx
            .domain_name
            .as_deref()
            .filter(|d| !d.is_empty())
            .ok_or(HandlerError::MissingField("requestContext.domainName"))?;
        let stage = ctx
            .stage
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(HandlerError::MissingField("requestContext.stage"))?;
        Ok(format!("https://{domain}/{stage}"))
    }

    async fn connect(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        // API Gateway sends the headers twice: `multiValueHeaders` keeps every line of a
        // repeated header, `headers` one value per name. Read one of them, not both.
        let headers = if event
            .multi_value_headers
            .contains_key(SEC_WEBSOCKET_PROTOCOL)
        {
            &event.multi_value_headers
        } else {
            &event.headers
        };
        let protocol_headers = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let subprotocol = match domain::negotiate_subprotocol(protocol_headers) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(error = %e, "refusing connection: unsupported subprotocol");
                // The status AWS's own example answers with; API Gateway refuses the handshake
                // with it.
                return Ok(response(400, Some(e.to_string())));
            }
        };
        let identity = match self.identity(event) {
            Ok(i) => i,
            Err(e) => {
                tracing::info!(error = %e, "refusing connection: bad username");
                // A non-2xx answer makes API Gateway refuse the handshake with this status.
                let status = match e {
                    domain::UsernameError::NotVerified(_) => 403,
                    _ => 400,
                };
                return Ok(response(status, Some(e.to_string())));
            }
        };
        let connected_at = event_time(event.request_context.connected_at);
        let ttl = i64::try_from(self.config.connection_ttl.as_secs()).unwrap_or(i64::MAX);
        let record = Connection {
            connection_id: connection_id.to_owned(),
            username: identity.username,
            connected_at: connected_at.timestamp_millis(),
            expires_at: connected_at.timestamp().saturating_add(ttl),
            sub: identity.sub,
            token_expires_at: self.connect_token_expiry(event),
        };
        if let Err(e) = self.store.put(&record).await {
            // Never accept a client that has no record: it could neither be reached by a
            // broadcast nor send (its sender lookup would fail).
            tracing::error!(error = %e, "refusing connection: could not store its record");
            return Ok(response(
                500,
                Some("could not register the connection".into()),
            ));
        }
        tracing::info!(username = %record.username, subprotocol, "connected");
        let mut answer = ok();
        if let Some(p) = subprotocol {
            // API Gateway copies this header into its 101 answer to the client.
            answer.headers.insert(
                SEC_WEBSOCKET_PROTOCOL,
                aws_lambda_events::http::HeaderValue::from_static(p),
            );
        }
        Ok(answer)
    }

    async fn disconnect(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        // The record first, in one step that answers with the rooms it listed: once it is gone
        // no join can add a room (a join needs the record, and checks it again after writing
        // its membership), so the rooms it listed are all the memberships there are. If
        // deleting those fails, the memberships' TTL is the backstop.
        let listed = match self.store.remove(connection_id, None).await? {
            store::Removal::Removed { rooms } => rooms,
            store::Removal::Absent | store::Removal::Young => Vec::new(),
        };
        let rooms = self
            .memberships
            .forget_listed(connection_id, &listed)
            .await?;
        tracing::info!(
            rooms,
            status_code = event.request_context.disconnect_status_code,
            reason = event
                .request_context
                .disconnect_reason
                .as_deref()
                .unwrap_or(""),
            "disconnected"
        );
        Ok(ok())
    }

    async fn send_message(
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
        let sent_at = event_time(event.request_context.request_time_epoch);
        let ctx = &event.request_context;
        let message_id = ctx
            .message_id
            .as_deref()
            .or(ctx.request_id.as_deref())
            .unwrap_or(connection_id);
        let frame_text =
            match Frame::for_message(&msg, message_id, &sender.username, sent_at).to_wire() {
                Ok(f) => f,
                Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
            };
        // A broadcast (everyone, a room) spends the stage's delivery budget: one unit to pass
        // now, the rest when it knows how many it listed.
        if !matches!(msg.recipients(), Recipients::One(_))
            && let Err(e) = self.admit_broadcast().await?
        {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        if let (Recipients::Everyone, config::FanOutMode::Queue { segments, .. }) =
            (msg.recipients(), &self.config.fanout)
        {
            let queue = self.queue.as_ref().ok_or(HandlerError::NoQueue)?;
            let jobs = job::FanOutJob::for_everyone(message_id, &endpoint, &frame_text, *segments);
            queue
                .send(jobs.iter().map(job::FanOutJob::to_body).collect())
                .await?;
            tracing::info!(message_id, jobs = jobs.len(), "broadcast enqueued");
            return Ok(ok());
        }
        let frame = Bytes::from(frame_text.clone());
        match msg.recipients() {
            Recipients::Everyone => {
                let report = fanout::broadcast_to(
                    self.store.as_ref(),
                    Some(self.memberships.as_ref()),
                    self.api.as_ref(),
                    &endpoint,
                    frame,
                    fanout::Limits {
                        concurrency: self.config.broadcast_concurrency,
                        deadline,
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
                // Everyone listed costs a delivery, posted or handed off (the one unit taken
                // at admission included).
                self.charge_broadcast(
                    report.delivered + report.gone + report.failed + report.undelivered,
                )
                .await;
                if report.deadline_reached
                    && let Some(queue) = &self.queue
                {
                    // Above what one invocation can post in time, the rest goes to the fan-out
                    // worker: a job that continues this very Scan (segment 0 of 1) after the
                    // last id listed, with the ids listed but not posted first.
                    let rest = job::FanOutJob {
                        listing: report
                            .listed_up_to
                            .clone()
                            .map_or(job::Listing::Start, job::Listing::After),
                        pending: report.handed_back.clone(),
                        ..job::FanOutJob::for_everyone(message_id, &endpoint, &frame_text, 1)
                            .remove(0)
                    };
                    queue.send(vec![rest.to_body()]).await?;
                    tracing::info!(
                        message_id,
                        pending = rest.pending.len(),
                        "broadcast handed off to the fan-out queue at its deadline"
                    );
                }
                if let Some(e) = report.list_error {
                    // Without the rest of the listing there is no way to reach the others; a
                    // function error makes API Gateway tell the sender.
                    return Err(e.into());
                }
                if report.delivered == 0 && report.failed > 0 {
                    // The sender is a recipient too, so not even the echo went out: a broken
                    // permission or endpoint, not a few bad connections. Report it as the
                    // function error it is instead of a success nobody saw.
                    return Err(HandlerError::NothingDelivered {
                        failed: report.failed,
                    });
                }
                Ok(ok())
            }
            Recipients::Room(room) => {
                if !self.memberships.is_member(&room, connection_id).await? {
                    let err = InputError::NotAMember(room.to_string());
                    return self.reply_error(&endpoint, connection_id, err).await;
                }
                if let config::FanOutMode::Queue { .. } = &self.config.fanout {
                    // Validated and a member: the worker lists the room and posts.
                    let queue = self.queue.as_ref().ok_or(HandlerError::NoQueue)?;
                    let job =
                        job::FanOutJob::for_room(message_id, &endpoint, &frame_text, room.as_str());
                    queue.send(vec![job.to_body()]).await?;
                    tracing::info!(message_id, %room, "room message enqueued");
                    return Ok(ok());
                }
                let delivery = room_fanout::RoomDelivery {
                    store: self.store.as_ref(),
                    memberships: self.memberships.as_ref(),
                    api: self.api.as_ref(),
                    endpoint: &endpoint,
                    concurrency: self.config.broadcast_concurrency,
                };
                let report = delivery.send_to_room(&room, frame).await;
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
            Recipients::One(to) => {
                let Some(recipient) = self.store.get(&to).await? else {
                    return self
                        .reply_error(&endpoint, connection_id, InputError::UnknownRecipient(to))
                        .await;
                };
                match fanout::deliver_to(
                    self.store.as_ref(),
                    Some(self.memberships.as_ref()),
                    self.api.as_ref(),
                    &endpoint,
                    &recipient.connection_id,
                    frame,
                )
                .await
                {
                    fanout::Outcome::Delivered => Ok(ok()),
                    // Its record is deleted now; to the sender it is as unknown as any other.
                    fanout::Outcome::Gone => {
                        self.reply_error(&endpoint, connection_id, InputError::UnknownRecipient(to))
                            .await
                    }
                    fanout::Outcome::Failed(e) => {
                        // The detail (a 403's text names the account and the role) goes to the
                        // log only, under the reference the client is given.
                        let reference = correlation_id(event);
                        tracing::warn!(
                            to,
                            reference,
                            error = %e,
                            "direct message could not be delivered"
                        );
                        let err = InputError::DeliveryFailed {
                            to,
                            reference: reference.to_owned(),
                        };
                        self.reply_error(&endpoint, connection_id, err).await
                    }
                }
            }
        }
    }

    async fn default_route(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // A flood of unroutable frames costs an invocation and a post each: it counts.
        if let Err(e) = self.admit(connection_id).await? {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        let action = if event.is_base64_encoded {
            None
        } else {
            domain::requested_action(event.body.as_deref())
        };
        self.reply_error(&endpoint, connection_id, InputError::UnknownAction(action))
            .await
    }

    /// Answers with one page of the open connections, the asker included, so a person can
    /// name whom to message. Records past their TTL that DynamoDB has not removed yet are left
    /// out (TTL deletes lazily); a malformed record is logged and left out.
    async fn list_connections(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // First: a page is the most expensive read a client can ask for.
        if let Err(e) = self.admit(connection_id).await? {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        let request =
            match domain::parse_list_connections(event.body.as_deref(), event.is_base64_encoded) {
                Ok(r) => r,
                Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
            };
        let page = self
            .store
            .page(request.cursor.as_deref(), request.limit)
            .await?;
        let now = event_time(event.request_context.request_time_epoch).timestamp();
        let items = page
            .records
            .into_iter()
            .filter_map(|record| match record {
                Ok(c) if c.expires_at > now => Some(ConnectionSummary {
                    connected_at: domain::iso8601(event_time(c.connected_at)),
                    connection_id: c.connection_id,
                    username: c.username,
                }),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "leaving a malformed record out of the list");
                    None
                }
            })
            .collect();
        let frame = Frame::Connections {
            items,
            next: page.next,
            you: connection_id.to_owned(),
        };
        match frame.to_wire() {
            Ok(json) => {
                self.reply(&endpoint, connection_id, Bytes::from(json))
                    .await
            }
            Err(e) => self.reply_error(&endpoint, connection_id, e).await,
        }
    }

    async fn join(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // The sender's record and its rate limits in one step (as for sendMessage).
        let sender = match self.admit(connection_id).await? {
            Ok(Some(sender)) => sender,
            Ok(None) => {
                return self
                    .reply_error(&endpoint, connection_id, InputError::UnknownSender)
                    .await;
            }
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        let room = match rooms::parse_room_request(event.body.as_deref(), event.is_base64_encoded) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        // The membership lives as long as the connection's record may.
        let outcome = self
            .memberships
            .join(
                &room,
                connection_id,
                sender.expires_at,
                MAX_ROOMS_PER_CONNECTION,
            )
            .await?;
        let mut err = match outcome {
            JoinOutcome::Joined | JoinOutcome::AlreadyMember => None,
            JoinOutcome::TooManyRooms => Some(InputError::TooManyRooms),
            JoinOutcome::UnknownConnection => Some(InputError::UnknownSender),
        };
        // A `$disconnect` may have run since the lookup above: it deletes the record, then the
        // memberships it knew of, possibly before this one was written. Once the record is gone
        // no later join can pass the lookup, so reading it again after the write closes the
        // gap: gone now, this membership goes too.
        if err.is_none() && self.store.get(connection_id).await?.is_none() {
            self.memberships.remove_member(&room, connection_id).await?;
            tracing::info!(%room, "the connection left while joining: membership deleted again");
            err = Some(InputError::UnknownSender);
        }
        if let Some(e) = err {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        tracing::info!(%room, ?outcome, "joined");
        let frame = Frame::Joined {
            room: room.to_string(),
        };
        self.reply(&endpoint, connection_id, Bytes::from(frame.to_json()))
            .await
    }

    async fn leave(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        if let Err(e) = self.admit(connection_id).await? {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        let room = match rooms::parse_room_request(event.body.as_deref(), event.is_base64_encoded) {
            Ok(r) => r,
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        if !self.memberships.leave(&room, connection_id).await? {
            let err = InputError::NotAMember(room.to_string());
            return self.reply_error(&endpoint, connection_id, err).await;
        }
        tracing::info!(%room, "left");
        let frame = Frame::Left {
            room: room.to_string(),
        };
        self.reply(&endpoint, connection_id, Bytes::from(frame.to_json()))
            .await
    }

    /// Charges one request of a client route (every route [`Handler::is_rate_limited`]) to the
    /// connection's bucket and, when the record carries a verified `sub` (authenticated
    /// stages), to that user's bucket across all of their connections.
    ///
    /// `Ok(Ok(Some(record)))` when admitted; `Ok(Ok(None))` when the connection has no record
    /// (nothing to charge: the routes that need the record answer `unknown_sender`, the others
    /// go on); `Ok(Err(error frame))` when over a limit. One request is one unit whatever the
    /// route: one bucket for all, so no route is a way around another's limit; the expensive
    /// part of a broadcast is charged to the stage's budget ([`App::admit_broadcast`]).
    async fn admit(
        &self,
        connection_id: &str,
    ) -> Result<Result<Option<Connection>, InputError>, HandlerError> {
        let now_ms = Utc::now().timestamp_millis();
        let rate = self.config.message_rate;
        let record = match self
            .store
            .admit_message(connection_id, now_ms, rate)
            .await?
        {
            Admission::Admitted(record) => record,
            Admission::RateLimited => {
                return Ok(Err(InputError::RateLimited(rate.per_second, rate.burst)));
            }
            Admission::UnknownSender => return Ok(Ok(None)),
        };
        if let Some(sub) = &record.sub {
            let user = self.config.user_rate;
            let charge = self
                .store
                .charge(&Bucket::User(sub.clone()), now_ms, user, 1)
                .await?;
            if let Charge::Limited { retry_after_ms } = charge {
                return Ok(Err(InputError::UserRateLimited {
                    per_second: user.per_second,
                    burst: user.burst,
                    retry_after_ms,
                }));
            }
        }
        Ok(Ok(Some(record)))
    }

    /// Lets a broadcast start when the stage's delivery budget holds at least one unit
    /// (taking it); its audience is charged once listed ([`App::charge_broadcast`]).
    async fn admit_broadcast(&self) -> Result<Result<(), InputError>, HandlerError> {
        let budget = self.config.broadcast_budget;
        let charge = self
            .store
            .charge(
                &Bucket::Broadcasts,
                Utc::now().timestamp_millis(),
                budget,
                1,
            )
            .await?;
        Ok(match charge {
            Charge::Admitted => Ok(()),
            Charge::Limited { retry_after_ms } => Err(InputError::BroadcastBudgetExceeded {
                per_second: budget.per_second,
                retry_after_ms,
            }),
        })
    }

    /// Charges a broadcast's `listed` recipients to the stage's budget, less the unit
    /// [`App::admit_broadcast`] took. The budget may go into debt: later broadcasts wait it
    /// out. A failure is logged, not reported: the message went out.
    async fn charge_broadcast(&self, listed: usize) {
        let rest = u32::try_from(listed.saturating_sub(1)).unwrap_or(u32::MAX);
        if rest == 0 {
            return;
        }
        if let Err(e) = self
            .store
            .debit(
                &Bucket::Broadcasts,
                Utc::now().timestamp_millis(),
                self.config.broadcast_budget,
                rest,
            )
            .await
        {
            tracing::warn!(error = %e, listed, "could not charge the broadcast budget");
        }
    }

    /// Sends the sender an error frame. A sender that already left is no failure.
    async fn reply_error(
        &self,
        endpoint: &str,
        connection_id: &str,
        err: InputError,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        tracing::info!(code = err.code(), error = %err, "refusing message");
        let frame = Bytes::from(Frame::error(&err).to_json());
        self.reply(endpoint, connection_id, frame).await
    }

    /// Posts `frame` to the sender. A sender that already left is no failure.
    async fn reply(
        &self,
        endpoint: &str,
        connection_id: &str,
        frame: Bytes,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        match self
            .api
            .post_to_connection(endpoint, connection_id, frame)
            .await
        {
            Ok(()) | Err(ManagementError::Gone) => Ok(ok()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The `main` of the `bootstrap` binary every function runs: logging as Lambda's logging config
/// says, the handler picked by the function's `Handler` setting (`_HANDLER`) and the
/// configuration validated before the first event, SDK clients built once and reused by every
/// invocation.
pub async fn run_lambda() -> Result<(), RunError> {
    // Honours AWS_LAMBDA_LOG_FORMAT=JSON and AWS_LAMBDA_LOG_LEVEL (falls back to RUST_LOG).
    lambda_runtime::tracing::init_default_subscriber();
    let env = |name: &str| std::env::var(name).ok();
    let handler = config::handler_from_lookup(env)
        .inspect_err(|e| tracing::error!(error = %e, "bad handler setting"))?;
    if handler == Handler::Authorizer {
        return run_authorizer().await;
    }
    let config = Config::from_lookup(env)
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let sdk = aws_sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let store = store::DynamoDbStore::new(dynamodb.clone(), config.table_name.clone());
    let api = management::SdkManagementApi::new(&sdk);
    let queue_url = match &config.fanout {
        config::FanOutMode::Queue { queue_url, .. } => Some(queue_url),
        config::FanOutMode::Inline { handoff_queue_url } => handoff_queue_url.as_ref(),
    };
    let queue =
        queue_url.map(|url| queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url.clone()));
    let memberships = if handler
        .table_actions(wsstack_routes::Table::Rooms)
        .is_empty()
    {
        None
    } else {
        // Synth sets the rooms table on exactly the handlers the route table lets use it.
        let Some(rooms_table) = config.rooms_table_name.clone() else {
            let e = config::ConfigError::Missing {
                name: config::ROOMS_TABLE_NAME,
            };
            tracing::error!(error = %e, "bad configuration");
            return Err(e.into());
        };
        Some(Arc::new(membership::DynamoDbMembershipStore::new(
            dynamodb,
            rooms_table,
            config.table_name.clone(),
        )))
    };
    if handler == Handler::TokenSweeper {
        // Not a route: EventBridge scheduled events, not WebSocket ones.
        return token_sweep::serve_lambda(Arc::new(store), Arc::new(api), &config).await;
    }
    if handler == Handler::FanoutWorker {
        // Not a route: SQS events, not WebSocket ones.
        return worker::serve_lambda(Arc::new(store), memberships, Arc::new(api), queue, &config)
            .await;
    }
    let mut app = App::new(Arc::new(store), Arc::new(api), config.clone());
    if let Some(m) = memberships {
        app = app.with_memberships(m);
    }
    if let Some(q) = queue {
        app = app.with_queue(Arc::new(q));
    }
    tracing::debug!(handler = handler.name(), "ready");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let app = app.clone();
            async move {
                let deadline = fanout::Deadline::from_lambda_deadline(
                    event.context.deadline,
                    management::ATTEMPT_TIMEOUT,
                );
                app.handle_until(handler, event.payload, Some(deadline))
                    .await
            }
        },
    ))
    .await
    .map_err(|e| RunError::Runtime(e.to_string()))
}

/// An error's text with its causes: the top-level text of an SDK error is only
/// "service error", which tells an operator nothing.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `$connect` authorizer's Lambda loop: settings from the `AUTH_*` variables synth sets,
/// one JWKS cache for the life of the process.
async fn run_authorizer() -> Result<(), RunError> {
    let settings = wsstack_auth::AuthConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let authorizer = Arc::new(settings.http_authorizer().map_err(|e| {
        tracing::error!(error = %e, "bad configuration");
        RunError::AuthSource(e.to_string())
    })?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<wsstack_auth::AuthorizerRequest>| {
            let authorizer = Arc::clone(&authorizer);
            // Never an error: every failure is a Deny policy (a function error would be a 500,
            // and must not be mistaken for anything but a refusal).
            async move { Ok::<_, std::convert::Infallible>(authorizer.authorize(&event.payload).await) }
        },
    ))
    .await
    .map_err(|e| RunError::Runtime(e.to_string()))
}

/// Why a Lambda binary stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    AuthConfig(#[from] wsstack_auth::config::ConfigError),
    #[error("the authorizer's key source: {0}")]
    AuthSource(String),
    #[error("lambda runtime failed: {0}")]
    Runtime(String),
}

/// The HTTPS client every SDK client of the workspace uses: rustls on ring, trusting the
/// system's root certificates.
///
/// The SDK crates are built without their `default-https-client` feature (which pulls aws-lc and
/// adds ~0.6 MiB to each Lambda zip), so an SDK config loaded without this client fails its
/// first request with "no HTTP client". Build configs with [`aws_sdk_config`] or
/// [`local_sdk_config`], or pass this to `aws_config::ConfigLoader::http_client`.
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The SDK configuration for AWS: region and credentials from the usual sources (in Lambda, the
/// environment), with [`https_client`].
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// An SDK configuration for a local, non-AWS endpoint (dynalite, the local gateway): fixed
/// dummy credentials and region, so the SDK neither searches the machine for credentials nor
/// falls through to the instance metadata service, and `endpoint_url` as the endpoint of every
/// client built from it.
pub async fn local_sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "wsstack-local",
        ));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
