//! wsstack-local: the wsstack WebSocket API on localhost, faithful to API Gateway.
//!
//! A WebSocket server that routes frames to the same handler code that runs in Lambda
//! ([`wsstack_handlers::App`]), with the route table synth deploys ([`wsstack_routes::ROUTES`]),
//! and serves the `@connections` management API on the same port, so the handlers' calls
//! through the real `aws-sdk-apigatewaymanagement` client come back here.
//!
//! - [`options`]: the command line.
//! - [`server`]: binds the port and composes the routes of `handshake` and `connections_api`.
//! - `state`: what every request and session shares.
//! - `handshake`: the upgrade at `/{stage}`, with the `$connect` verdict first.
//! - `session`: one connection: frames in, posts out (separately), limits, `$disconnect`.
//! - [`routing`]: route selection and the frames API Gateway sends itself.
//! - [`integration`]: invoking handlers (bounded in time, recorded for tests).
//! - [`event`]: the Lambda events API Gateway sends.
//! - `connections_api`: `@connections` (POST, GET, DELETE).
//! - `http_error`: API Gateway-shaped HTTP errors.
//! - `socket`: accepted sockets, which a session resets when a client ignores the close.
//! - `registry`: open connections and their outboxes.
//! - [`limits`]: frame, message and payload sizes, timeouts.
//! - [`store`]: memory or DynamoDB.
//! - [`shutdown`]: Ctrl-C and SIGTERM.
//! - [`web`]: the browser client (`web/`), on a port of its own.
//! - [`push_server`]: the push API a backend calls (the `push-api` function's code), on a port
//!   of its own.
//! - [`fanout_queue`]: queue-mode fan-out in-process (the handlers' worker over a memory queue).
//! - [`forwarding`]: forwarded actions (two-way routes of the `forward` handler) and the local
//!   bus that posts their events to a backend.

pub mod auth;
pub mod callback;
mod connections_api;
pub mod event;
pub mod fanout_queue;
pub mod forwarding;
mod handshake;
mod http_error;
pub mod id;
pub mod integration;
pub mod limits;
pub mod options;
pub mod push_server;
mod registry;
pub mod routing;
pub mod server;
mod session;
pub mod shutdown;
mod side_server;
mod socket;
mod state;
pub mod store;
pub mod token_sweep;
pub mod web;

pub use integration::{EventLog, Integration, Timeouts};
pub use limits::Limits;
pub use routing::RouteTable;
pub use server::{BindError, Gateway, GatewayOptions, RunningGateway, ShutdownReport};
pub use store::{StoreOptions, open_memberships, open_store, open_store_and_audience};
