//! The API of wsstack declared once: its routes, and each handler described as data.
//!
//! - [`handler`]: the [`Handler`]s and their [`HandlerSpec`]s (name, logical ID stem, how it is
//!   invoked, grants, environment, rate limit), read by synth (functions, roles, policies), the
//!   handlers (`bootstrap` dispatches on [`Handler::name`]) and the local gateway.
//! - [`access`]: what a handler may do, as IAM names it (table, `@connections`, queue).
//! - [`env`](mod@env): the environment variables synth sets and the handlers read.
//! - [`ROUTES`]: route key to handler, as API Gateway matches it.
//! - [`push_api`]: the HTTP push API a backend calls, its routes and bodies.
//! - [`bridge`]: forwarded actions and replies as events on the stage's EventBridge bus.
//!
//! Adding a route is a [`Route`] entry here, a [`Handler`] variant with its [`HandlerSpec`], and
//! the handler's code in `wsstack_handlers`.

pub mod access;
pub mod bridge;
pub mod env;
pub mod handler;
pub mod metrics;
pub mod push_api;

pub use access::{
    BusAction, Index, ManagementOperation, QueueAction, Table, TableAction, TableGrant,
};
pub use env::{EnvVar, FanoutMode};
pub use handler::{Handler, HandlerSpec, Invocation, SPECS};

/// The expression API Gateway evaluates on every incoming message to pick a route.
pub const ROUTE_SELECTION_EXPRESSION: &str = "$request.body.action";

/// The JSON field of a client message that [`ROUTE_SELECTION_EXPRESSION`] reads.
pub const ROUTE_SELECTION_FIELD: &str = "action";

/// The connections table's schema, as the handlers write it and synth declares it.
pub mod table {
    /// The partition key (type S): API Gateway's connection ID.
    pub const PARTITION_KEY: &str = "connectionId";
    /// The attribute DynamoDB's TTL reads: when the record expires, epoch seconds.
    pub const TTL_ATTRIBUTE: &str = "expiresAt";
    /// A string set: the rooms the connection is in, so `$disconnect` and a 410 know which
    /// memberships to delete. An added attribute, not a key: the live table is not replaced.
    pub const ROOMS_ATTRIBUTE: &str = "rooms";
    /// The user a connection belongs to (type S): the verified `sub` in stages with
    /// `[auth] mode = "jwt"`, the username elsewhere. The key of [`USER_INDEX`].
    pub const USER_ID_ATTRIBUTE: &str = "userId";
    /// A global secondary index on [`USER_ID_ATTRIBUTE`] (projection: the keys plus
    /// [`USER_INDEX_ATTRIBUTES`]): every open connection of one user in one Query. Adding a GSI
    /// to a live table is an in-place update.
    pub const USER_INDEX: &str = "byUser";
    /// When the connection was made (type N, epoch milliseconds).
    pub const CONNECTED_AT_ATTRIBUTE: &str = "connectedAt";
    /// The non-key attributes [`USER_INDEX`] carries: what a query of it reads
    /// (`connectedAt`) and filters on (`expiresAt`: a filter on an attribute the index does
    /// not hold would see none, and pass expired records).
    pub const USER_INDEX_ATTRIBUTES: [&str; 2] = [CONNECTED_AT_ATTRIBUTE, TTL_ATTRIBUTE];
}

/// The rooms table's schema: one item per membership, queried by room page by page.
pub mod rooms_table {
    /// The partition key (type S): the room's name.
    pub const PARTITION_KEY: &str = "room";
    /// The sort key (type S): the member's connection ID, also the pagination cursor.
    pub const SORT_KEY: &str = "connectionId";
    /// The TTL attribute: the member's connection record's `expiresAt`, epoch seconds.
    pub const TTL_ATTRIBUTE: &str = "expiresAt";
}

/// Limits that both synth (the stage file's ranges) and the handlers (their environment check)
/// enforce, declared once.
pub mod limits {
    /// Most `PostToConnection` calls one function keeps in flight.
    ///
    /// A Lambda process may open 1,024 file descriptors, a quota that cannot be raised
    /// (<https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>, "File
    /// descriptors"). During a broadcast each post slot can hold one socket to `@connections`
    /// and, after a 410, one to DynamoDB (both pools keep idle sockets open), and the process
    /// needs some for itself (the runtime API, stdio, the SDK's other clients, the async
    /// runtime): (1,024 - 64) / 2 = 480.
    pub const MAX_BROADCAST_CONCURRENCY: u32 = 480;

    /// Most Scan segments (= fan-out jobs, = parallel workers) a broadcast to everyone is split
    /// into: more parallel workers than the account's 10,000 `@connections` requests/s can
    /// feed (each posts a few thousand per second) only add 429s.
    pub const MAX_FANOUT_SEGMENTS: u32 = 1_000;

    /// Default of the oldest a fan-out job may be before a worker drops it, in seconds
    /// (`[fanout] max_job_age_seconds`): a chat message more than 15 minutes late is noise.
    pub const DEFAULT_MAX_JOB_AGE_SECONDS: u32 = 900;
    /// Lower bound: a job must outlive a few retries of one worker invocation (the worker may
    /// run 900 s, SQS hides a received job 6x that) without being dropped for its age alone.
    pub const MIN_MAX_JOB_AGE_SECONDS: u32 = 60;
    /// Upper bound: API Gateway closes every connection after 2 hours
    /// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>),
    /// so past that no connection that was open when the message was sent is still there.
    pub const MAX_MAX_JOB_AGE_SECONDS: u32 = 7_200;
}

/// A route of the WebSocket API: a route key and the handler behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The route key as API Gateway matches it: exact and case-sensitive.
    pub key: &'static str,
    pub handler: Handler,
}

/// The route key of the connection handshake.
pub const CONNECT: &str = "$connect";
/// The route key API Gateway invokes after a connection closed (best effort).
pub const DISCONNECT: &str = "$disconnect";
/// The route key for messages whose `action` matches no other route.
pub const DEFAULT: &str = "$default";
/// The route key of a chat message.
pub const SEND_MESSAGE: &str = "sendMessage";
/// The route key of a request for a page of the open connections (who can be messaged).
pub const LIST_CONNECTIONS: &str = "listConnections";
/// The route key of joining a room.
pub const JOIN: &str = "join";
/// The route key of leaving a room.
pub const LEAVE: &str = "leave";

/// The API's routes.
pub const ROUTES: &[Route] = &[
    Route {
        key: CONNECT,
        handler: Handler::Connect,
    },
    Route {
        key: DISCONNECT,
        handler: Handler::Disconnect,
    },
    Route {
        key: SEND_MESSAGE,
        handler: Handler::SendMessage,
    },
    Route {
        key: DEFAULT,
        handler: Handler::Default,
    },
    Route {
        key: LIST_CONNECTIONS,
        handler: Handler::ListConnections,
    },
    Route {
        key: JOIN,
        handler: Handler::Join,
    },
    Route {
        key: LEAVE,
        handler: Handler::Leave,
    },
];

/// The route for a route key, matched exactly (case-sensitive), as API Gateway does.
pub fn route(key: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.key == key)
}

/// The route keys a client can name in `action`: every route that is not a `$` system route.
pub fn client_actions() -> impl Iterator<Item = &'static str> {
    ROUTES.iter().map(|r| r.key).filter(|k| !k.starts_with('$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handler_has_at_most_one_route_and_every_route_a_listed_handler() {
        for h in Handler::ALL {
            let routes = ROUTES.iter().filter(|r| r.handler == h).count();
            assert!(routes <= 1, "{h:?} has {routes} routes");
            assert_eq!(h.is_route(), routes == 1, "{h:?}");
            assert_eq!(h.invocation() == Invocation::Route, h.is_route(), "{h:?}");
        }
        for r in ROUTES {
            assert!(Handler::ALL.contains(&r.handler), "{}", r.key);
        }
    }

    #[test]
    fn the_fanout_worker_is_a_handler_but_not_a_route() {
        assert_eq!(
            Handler::from_name("fanout-worker"),
            Some(Handler::FanoutWorker)
        );
        assert!(!Handler::FanoutWorker.is_route());
        assert_eq!(
            Handler::SendMessage.route().map(|r| r.key),
            Some(SEND_MESSAGE)
        );
    }

    #[test]
    fn names_round_trip_and_are_kebab_case() {
        for h in Handler::ALL {
            assert_eq!(Handler::from_name(h.name()), Some(h));
            assert!(
                h.name().chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{h:?}: {}",
                h.name()
            );
        }
        assert_eq!(Handler::from_name("sendMessage"), None);
        assert_eq!(Handler::from_name(""), None);
        assert_eq!(Handler::names().count(), Handler::ALL.len());
    }

    #[test]
    fn the_token_sweeper_is_a_scheduled_handler_that_only_closes_connections() {
        let h = Handler::TokenSweeper;
        assert_eq!(Handler::from_name("token-sweeper"), Some(h));
        assert!(!h.is_route());
        assert_eq!(h.invocation(), Invocation::Schedule);
        // Handlers are appended: the sweeper comes after every handler that existed before it.
        let at = |h| Handler::ALL.iter().position(|x| *x == h);
        assert!(
            at(h) > at(Handler::FanoutWorker),
            "new handlers go at the end"
        );
        assert_eq!(h.management_operations(), [ManagementOperation::Delete]);
        assert_eq!(
            h.table_actions(Table::Connections),
            [TableAction::Scan, TableAction::DeleteItem]
        );
        assert!(h.table_actions(Table::Rooms).is_empty());
    }

    #[test]
    fn route_lookup_is_case_sensitive() {
        assert_eq!(
            route("sendMessage").map(|r| r.handler),
            Some(Handler::SendMessage)
        );
        assert!(route("sendmessage").is_none());
        assert!(route("SendMessage").is_none());
    }

    #[test]
    fn client_actions_are_the_routes_that_are_not_system_routes() {
        let actions: Vec<&str> = client_actions().collect();
        for r in ROUTES {
            assert_eq!(
                actions.contains(&r.key),
                !r.key.starts_with('$'),
                "{}",
                r.key
            );
        }
        assert!(actions.contains(&SEND_MESSAGE));
        assert!(!actions.contains(&CONNECT));
    }
}
