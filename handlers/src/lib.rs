//! The handlers of the wsstack WebSocket API as a library, without Lambda's runtime: the
//! `bootstrap` binary of `wsstack-lambda` runs them in Lambda, the local gateway on localhost.
//!
//! - [`App`]: the handlers over a store, a management API and a configuration, shared by the
//!   Lambda binary, the local gateway and the tests; [`App::handle_until`] dispatches to one
//!   module per route (`routes/`: `connect`, `disconnect`, `send_message`, `default`,
//!   `list_connections`, `join`, `leave`).
//! - [`protocol`]: the client protocol as types, and the AsyncAPI document generated from them
//!   (`docs/protocol.md` describes it for people).
//! - [`domain`]: the chat's rules (validation, recipients, frames, error codes); no AWS types.
//! - [`store`]: connection records and rate-limit buckets ([`store::DynamoDbStore`],
//!   [`store::MemoryStore`]).
//! - [`management`]: the `@connections` API ([`management::SdkManagementApi`]).
//! - [`config`]: environment configuration, validated once.
//! - [`delivery`]: the one delivery service, a frame to an audience (a connection, a user, a
//!   room, everyone), inline or through the fan-out queue; [`fanout`] is its engine (bounded
//!   concurrency, the deadline, 429 back-off); queue mode is [`job`], [`queue`], [`audience`]
//!   and [`worker`].
//! - [`rooms`], [`membership`]: room names, who is in which room.
//! - [`forwarded`], [`bus`]: forwarded actions (a client message put on the stage's
//!   EventBridge bus, answered in the route's response) and the bus they go to; [`bus_push`]:
//!   a backend's reply through the bus, which the worker delivers.
//! - [`token_sweep`]: closing the connections whose token has expired.
//! - `sdk` ([`aws_sdk_config`], [`local_sdk_config`]): the SDK's configuration.
//!
//! Every client route first charges one request to the connection's rate limit and, for an
//! authenticated connection, its user's ([`App`]'s `admit`); a broadcast also spends the stage's
//! delivery budget. A handler returns `Err` only for what the client cannot fix (a broken event,
//! the store failing, the sender unreachable by anything but 410); API Gateway then sends the
//! client its `Internal server error` frame.

pub mod audience;
pub mod bus;
pub mod bus_push;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod fanout;
#[cfg(any(test, feature = "test-support"))]
pub mod faults;
pub mod forwarded;
pub mod job;
pub mod management;
pub mod membership;
pub mod metrics;
pub mod protocol;
pub mod push_api;
pub mod queue;
pub mod rooms;
mod routes;
mod sdk;
pub mod simulated;
pub mod store;
pub mod token_sweep;
pub mod worker;

pub use sdk::{aws_sdk_config, https_client, local_sdk_config};

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tracing::Instrument;
use wsstack_routes::Handler;
use wsstack_routes::metrics::Metric;

use crate::config::Config;
use crate::domain::{Frame, InputError};
use crate::management::{ManagementApi, ManagementError};
use crate::membership::{MembershipStore, MemoryMembershipStore};
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
    #[error(transparent)]
    Delivery(#[from] delivery::DeliveryError),
    /// A broadcast had recipients and reached none of them: every post failed (each failure
    /// is logged with its reason). Gone connections are not recipients: they left.
    #[error("the broadcast reached none of its {failed} recipients; every post failed")]
    NothingDelivered { failed: usize },
    /// A WebSocket event handed to a handler that is not behind a route (the `$connect`
    /// authorizer and the fan-out worker have entry points of their own): a wiring mistake of
    /// the embedder.
    #[error("handler {0} is not a route and takes no WebSocket events")]
    NotARoute(&'static str),
    /// The `forward` handler without a bus to put on (a wiring mistake of the embedder:
    /// [`App::with_forwarding`] was not called, `EVENT_BUS_NAME` unset).
    #[error("the forward handler has no event bus: EVENT_BUS_NAME is not set")]
    NoBus,
    /// A forwarded action's detail could not be written as JSON.
    #[error("could not encode the event's detail: {0}")]
    Encode(#[from] serde_json::Error),
}

impl HandlerError {
    /// The variant's name, stable across releases: the Lambda binary reports a function error
    /// as `HandlerError::{kind}` (its `errorType`), which alarms and log queries match on.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::MissingField(_) => "MissingField",
            HandlerError::Store(_) => "StoreError",
            HandlerError::Management(_) => "ManagementError",
            HandlerError::Delivery(_) => "DeliveryError",
            HandlerError::NothingDelivered { .. } => "NothingDelivered",
            HandlerError::NotARoute(_) => "NotARoute",
            HandlerError::NoBus => "NoBus",
            HandlerError::Encode(_) => "Encode",
        }
    }
}

/// Where forwarded actions go, and which ones.
#[derive(Clone)]
struct Forwarding {
    bus: Arc<dyn bus::EventBus>,
    config: config::ForwardConfig,
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
    /// The bus and the actions of the `forward` handler (`None` elsewhere).
    forwarding: Option<Forwarding>,
    /// Where deliveries' metric lines go (`None`: no metrics).
    metrics: Option<metrics::Metrics>,
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
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-lambda-authorizer-output.html>),
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
            forwarding: None,
            metrics: None,
        }
    }

    /// Writes metric lines ([`metrics`]): per delivery, forwarded action and message refused
    /// over a rate limit; in Lambda, to CloudWatch.
    pub fn with_metrics(mut self, metrics: metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
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

    /// The bus the `forward` handler puts forwarded actions on, and which actions it takes.
    pub fn with_forwarding(
        mut self,
        bus: Arc<dyn bus::EventBus>,
        config: config::ForwardConfig,
    ) -> Self {
        self.forwarding = Some(Forwarding { bus, config });
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

    /// Handles one event of `handler`'s route; a broadcast, or a forwarded action's retries,
    /// stop at `deadline` (in Lambda, the invocation's deadline less a margin).
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
                Handler::Forward => self.forward(connection_id, &event, deadline).await,
                Handler::Authorizer
                | Handler::FanoutWorker
                | Handler::TokenSweeper
                | Handler::PushApi => Err(HandlerError::NotARoute(handler.name())),
            }
        };
        work.instrument(span).await
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

    /// Charges one request of a client route (every route [`Handler::is_rate_limited`]) to the
    /// connection's bucket and, when the record carries a verified `sub` (authenticated
    /// stages), to that user's bucket across all of their connections.
    ///
    /// `Ok(Ok(Some(record)))` when admitted; `Ok(Ok(None))` when the connection has no record
    /// (nothing to charge: the routes that need the record answer `unknown_sender`, the others
    /// go on); `Ok(Err(error frame))` when over a limit. One request is one unit whatever the
    /// route: one bucket for all, so no route is a way around another's limit; the expensive
    /// part of a broadcast is charged to the stage's budget ([`App::admit_broadcast`]).
    ///
    /// A refusal counts one `RateLimited` ([`metrics`]) for the event's stage.
    async fn admit(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
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
                self.count(event, Metric::RateLimited, 1);
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
                self.count(event, Metric::RateLimited, 1);
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
    /// (taking it); its audience is charged once listed ([`App::charge_broadcast`]). A refusal
    /// counts one `BroadcastBudgetExceeded` ([`metrics`]) for the event's stage.
    async fn admit_broadcast(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<Result<(), InputError>, HandlerError> {
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
            Charge::Limited { retry_after_ms } => {
                self.count(event, Metric::BroadcastBudgetExceeded, 1);
                Err(InputError::BroadcastBudgetExceeded {
                    per_second: budget.per_second,
                    retry_after_ms,
                })
            }
        })
    }

    /// Counts `n` of `metric` for the API stage of a route's `event` (its
    /// `requestContext.stage`, as `Ref` of the stage names it), when metrics are on.
    fn count(&self, event: &ApiGatewayWebsocketProxyRequest, metric: Metric, n: usize) {
        if let Some(metrics) = &self.metrics {
            let stage = event.request_context.stage.as_deref().unwrap_or_default();
            metrics.count_in_stage(stage, metric, n, Utc::now().timestamp_millis());
        }
    }

    /// The push API over the app's delivery service, posting to the function's `CALLBACK_URL`.
    pub fn push_api(&self) -> Result<push_api::PushApi, config::ConfigError> {
        let endpoint = self
            .config
            .callback_url
            .clone()
            .ok_or(config::ConfigError::Missing {
                name: config::CALLBACK_URL,
            })?;
        Ok(push_api::PushApi {
            delivery: self.delivery(),
            store: self.store.clone(),
            api: self.api.clone(),
            endpoint,
        })
    }

    /// The delivery service over the app's stores, API and queue, in the stage's fan-out mode.
    pub fn delivery(&self) -> delivery::Delivery {
        let queue_segments = match &self.config.fanout {
            config::Fanout::Queue { segments, .. } => Some(*segments),
            config::Fanout::Inline { .. } => None,
        };
        delivery::Delivery {
            store: self.store.clone(),
            audience: Arc::new(audience::StackAudience {
                connections: Arc::new(audience::StoreAudience(self.store.clone())),
                memberships: Some(self.memberships.clone()),
            }),
            memberships: Some(self.memberships.clone()),
            api: self.api.clone(),
            queue: self.queue.clone(),
            queue_segments,
            concurrency: self.config.broadcast_concurrency,
            page_size: worker::PAGE_SIZE,
            broadcast_budget: Some(self.config.broadcast_budget),
            prepaid: 0,
            metrics: self.metrics.clone(),
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

/// An error's text with its causes: the top-level text of an SDK error is only
/// "service error", which tells an operator nothing.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
