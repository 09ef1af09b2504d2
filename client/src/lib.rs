//! For the backend services of a wsstack stage.
//!
//! - **Receiving.** A client's forwarded action arrives on the stage's EventBridge bus as one
//!   event: `source` [`event_source`]`(stage)`, `detail-type` the action's name, `detail` a
//!   [`ForwardedDetail`]. A Lambda behind a rule on the bus receives it as a
//!   [`ForwardedEvent`].
//! - **Replying.** [`PushClient`] calls the stage's push API (its `PushApiUrl` output), signed
//!   with SigV4 from the default credential chain: to a connection, to a user on all of their
//!   devices, to a room, to everyone; who is online; disconnect. Against the local gateway
//!   ([`PushClient::unsigned`]) nothing is signed. A backend that only puts events can reply
//!   with a [`PushDetail`] event instead (`detail-type` [`PUSH_DETAIL_TYPE`]).
//!
//! ```no_run
//! # async fn reply(event: wsstack_client::ForwardedEvent) -> Result<(), wsstack_client::PushClientError> {
//! use wsstack_client::PushClient;
//!
//! let push = PushClient::from_env("https://abc123.execute-api.eu-west-1.amazonaws.com").await?;
//! let detail = &event.detail;
//! push.to_user(&detail.user_id, serde_json::json!({"state": "done"}), detail.request_id.as_deref())
//!     .await?;
//! # Ok(()) }
//! ```

mod push;
mod sign;

pub use push::{PushClient, PushClientError, PushOutcome, RetryPolicy};
pub use sign::Signer;
pub use wsstack_routes::bridge::{
    ForwardedDetail, PUSH_DETAIL_TYPE, PushAudience, PushDetail, event_source,
};
pub use wsstack_routes::push_api::{
    MAX_MESSAGE_BYTES, PUSH_ROUTES, Presence, PresenceConnection, PushAnswer, PushError,
    PushOperation, PushRequest,
};

/// A forwarded client action as a Lambda behind an EventBridge rule on the stage's bus receives
/// it (<https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html>).
pub type ForwardedEvent = aws_lambda_events::eventbridge::EventBridgeEvent<ForwardedDetail>;
