//! One module per route of the WebSocket API, each an `impl App` block with that route's
//! handler; [`crate::App::handle_until`] dispatches to them. What they share (the store, the
//! management API, the rate limits, the answers to the sender) is [`crate::App`]'s.

mod connect;
mod default;
mod disconnect;
mod forward;
mod join;
mod leave;
mod list_connections;
mod send_message;

/// The names the route modules use.
mod prelude {
    pub(crate) use aws_lambda_events::apigw::{
        ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
    };
    pub(crate) use bytes::Bytes;

    pub(crate) use crate::domain::{ConnectionSummary, Frame, InputError, Recipients};
    pub(crate) use crate::membership::JoinOutcome;
    pub(crate) use crate::rooms::MAX_ROOMS_PER_CONNECTION;
    pub(crate) use crate::store::Connection;
    pub(crate) use crate::{
        AUTHORIZER_SUB, AUTHORIZER_TOKEN_EXPIRES_AT, AUTHORIZER_USERNAME, App, HandlerError,
        SEC_WEBSOCKET_PROTOCOL, USERNAME_PARAMETER, correlation_id, domain, event_time, fanout, ok,
        response, store, token_expiry,
    };
}
