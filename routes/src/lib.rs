//! The route table of the wsstack WebSocket API, declared once.
//!
//! Synth builds one Lambda function, integration, route and permission per entry, every function
//! running the same code (the handlers crate's one `bootstrap` binary) with its [`Handler::name`]
//! as the function's `Handler` setting; the binary dispatches on that name; the local gateway
//! dispatches frames with the same list. Adding a route is an entry here (a [`Route`], a
//! [`Handler`] variant with its names and permissions) plus the handler's code in
//! `wsstack_handlers::App`.

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

/// A DynamoDB table of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// One record per open connection (`table`).
    Connections,
    /// One item per room membership (`rooms_table`).
    Rooms,
}

impl Table {
    /// Every table, in the order the stack declares them.
    pub const ALL: [Table; 2] = [Table::Connections, Table::Rooms];
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
}

/// A DynamoDB action a handler performs on a table.
///
/// Synth grants exactly these actions to the handler's role, so a handler that starts calling a
/// new action must list it here or it gets `AccessDenied` in AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableAction {
    PutItem,
    GetItem,
    UpdateItem,
    DeleteItem,
    Scan,
    Query,
}

impl TableAction {
    /// The IAM action name, e.g. `dynamodb:PutItem`.
    pub const fn iam_action(self) -> &'static str {
        match self {
            TableAction::PutItem => "dynamodb:PutItem",
            TableAction::GetItem => "dynamodb:GetItem",
            TableAction::UpdateItem => "dynamodb:UpdateItem",
            TableAction::DeleteItem => "dynamodb:DeleteItem",
            TableAction::Scan => "dynamodb:Scan",
            TableAction::Query => "dynamodb:Query",
        }
    }
}

/// The Lambda handlers of the API. Each is one function in the synthesized stack; all of them
/// run the same `bootstrap` binary, which picks the handler by [`Handler::name`].
///
/// Most are behind a route of [`ROUTES`]; the others are invoked by API Gateway or Lambda in
/// another role (the `$connect` authorizer, the queue-mode fan-out worker behind an SQS event
/// source): [`Handler::invocation`] and [`Handler::is_route`] tell them apart, so synth wires
/// routes, integrations and invoke permissions only for routes, and the gateway serves only
/// routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Handler {
    Connect,
    Disconnect,
    SendMessage,
    Default,
    ListConnections,
    Join,
    Leave,
    /// The Lambda REQUEST authorizer of `$connect` (stages with `[auth] mode = "jwt"`).
    Authorizer,
    /// Not a route: runs queued fan-out jobs from the SQS event source (queue mode).
    FanoutWorker,
    /// Not a route: closes the connections whose token has expired, on an EventBridge schedule
    /// (stages with `[auth] mode = "jwt"`).
    TokenSweeper,
}

/// How a handler is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// By API Gateway, as the integration of its route in [`ROUTES`].
    Route,
    /// By API Gateway, as the Lambda REQUEST authorizer of the `$connect` route, before the
    /// `$connect` integration; only in stages that turn authentication on.
    ConnectAuthorizer,
    /// By Lambda's SQS event source, with batches of queued fan-out jobs.
    FanoutQueue,
    /// By an EventBridge schedule, every few minutes; only in stages that turn authentication
    /// on.
    Schedule,
}

impl Handler {
    /// Every handler, in the order the stack declares them. New handlers go at the end, so
    /// the resources of the existing ones keep their place in the template.
    pub const ALL: [Handler; 10] = [
        Handler::Connect,
        Handler::Disconnect,
        Handler::SendMessage,
        Handler::Default,
        Handler::ListConnections,
        Handler::Join,
        Handler::Leave,
        Handler::Authorizer,
        Handler::FanoutWorker,
        Handler::TokenSweeper,
    ];

    /// How the handler is invoked: behind a route, as the `$connect` authorizer, or from the
    /// fan-out queue.
    pub const fn invocation(self) -> Invocation {
        match self {
            Handler::Authorizer => Invocation::ConnectAuthorizer,
            Handler::FanoutWorker => Invocation::FanoutQueue,
            Handler::TokenSweeper => Invocation::Schedule,
            Handler::Connect
            | Handler::Disconnect
            | Handler::SendMessage
            | Handler::Default
            | Handler::ListConnections
            | Handler::Join
            | Handler::Leave => Invocation::Route,
        }
    }

    /// The route behind which API Gateway invokes the handler; `None` for a handler that is
    /// not a route (the authorizer, the fan-out worker).
    pub fn route(self) -> Option<&'static Route> {
        ROUTES.iter().find(|r| r.handler == self)
    }

    /// Whether the handler is behind a route of [`ROUTES`].
    pub fn is_route(self) -> bool {
        self.route().is_some()
    }

    /// The handler's name, kebab-case: the value of its function's `Handler` property (which
    /// Lambda hands the `bootstrap` binary as `_HANDLER`) and its `[lambda.<name>]` table in the
    /// stage files.
    pub const fn name(self) -> &'static str {
        match self {
            Handler::Connect => "connect",
            Handler::Disconnect => "disconnect",
            Handler::SendMessage => "send-message",
            Handler::Default => "default",
            Handler::ListConnections => "list-connections",
            Handler::Join => "join",
            Handler::Leave => "leave",
            Handler::Authorizer => "authorizer",
            Handler::FanoutWorker => "fanout-worker",
            Handler::TokenSweeper => "token-sweeper",
        }
    }

    /// The handler called `name` (exact, as [`Handler::name`] spells it).
    pub fn from_name(name: &str) -> Option<Handler> {
        Handler::ALL.into_iter().find(|h| h.name() == name)
    }

    /// Every handler's name, for messages that list what is allowed.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Handler::ALL.into_iter().map(Handler::name)
    }

    /// The PascalCase stem of every CloudFormation logical ID that belongs to this handler
    /// (`{stem}Function`, `{stem}Role`, ...). These IDs are an API: renaming one replaces the
    /// live resource.
    pub const fn logical_id_stem(self) -> &'static str {
        match self {
            Handler::Connect => "Connect",
            Handler::Disconnect => "Disconnect",
            Handler::SendMessage => "SendMessage",
            Handler::Default => "Default",
            Handler::ListConnections => "ListConnections",
            Handler::Join => "Join",
            Handler::Leave => "Leave",
            Handler::Authorizer => "Authorizer",
            Handler::FanoutWorker => "FanoutWorker",
            Handler::TokenSweeper => "TokenSweeper",
        }
    }

    /// The DynamoDB actions the handler performs on `table`; synth grants exactly these, on
    /// that table only.
    pub const fn table_actions(self, table: Table) -> &'static [TableAction] {
        use TableAction::*;
        match (self, table) {
            // Stores the new connection's record.
            (Handler::Connect, Table::Connections) => &[PutItem],
            // Reads the connection's rooms, deletes those memberships, then the record; a
            // missing one is fine.
            (Handler::Disconnect, Table::Connections) => &[GetItem, DeleteItem],
            (Handler::Disconnect, Table::Rooms) => &[DeleteItem],
            // Charges the sender's rate limit and reads its record in one conditional update,
            // reads a direct message's target, lists every connection for a broadcast, and
            // deletes the records of connections that turned out to be gone.
            (Handler::SendMessage, Table::Connections) => &[GetItem, UpdateItem, Scan, DeleteItem],
            // Checks the sender is a member, lists a room's members page by page, and deletes
            // the memberships of members that turned out to be gone.
            (Handler::SendMessage, Table::Rooms) => &[GetItem, Query, DeleteItem],
            // Reads the sender, adds the room to its record (conditionally: the record must
            // exist and the room count stay bounded), then stores the membership.
            (Handler::Join, Table::Connections) => &[GetItem, UpdateItem],
            (Handler::Join, Table::Rooms) => &[PutItem],
            // Deletes the membership, then removes the room from the record.
            (Handler::Leave, Table::Connections) => &[UpdateItem],
            (Handler::Leave, Table::Rooms) => &[DeleteItem],
            // Reads one page of connections, where the client's cursor says.
            (Handler::ListConnections, Table::Connections) => &[Scan],
            // Lists its Scan segment of the connections (an "everyone" job) and deletes the
            // records of connections that turned out to be gone.
            (Handler::FanoutWorker, Table::Connections) => &[Scan, DeleteItem],
            // Lists a room's members page by page (a room job) and deletes the memberships of
            // members that turned out to be gone.
            (Handler::FanoutWorker, Table::Rooms) => &[Query, DeleteItem],
            // Lists the connections whose token has expired (a filtered Scan) and deletes the
            // records of those that turned out to be gone already; closing the others makes
            // API Gateway run `$disconnect`, which removes their records and memberships.
            (Handler::TokenSweeper, Table::Connections) => &[Scan, DeleteItem],
            // Only answers the sender; never touches a table. The authorizer verifies a token
            // against the issuer's keys: no state of ours.
            (Handler::Default, _)
            | (Handler::Authorizer, _)
            | (Handler::Connect, Table::Rooms)
            | (Handler::TokenSweeper, Table::Rooms)
            | (Handler::ListConnections, Table::Rooms) => &[],
        }
    }

    /// The `@connections` operations the handler calls; synth grants
    /// `execute-api:ManageConnections` on exactly these methods of this API's stage.
    pub const fn management_operations(self) -> &'static [ManagementOperation] {
        match self {
            Handler::Connect | Handler::Disconnect | Handler::Authorizer => &[],
            // Broadcasts and direct messages; error frames back to the sender.
            Handler::SendMessage => &[ManagementOperation::Post],
            // Answers the sender with an error frame.
            Handler::Default => &[ManagementOperation::Post],
            // Answers the sender with a page of connections (or an error frame).
            Handler::ListConnections => &[ManagementOperation::Post],
            // Confirm to the sender, or answer with an error frame.
            Handler::Join | Handler::Leave => &[ManagementOperation::Post],
            // Posts the job's frame to every connection of its segment.
            Handler::FanoutWorker => &[ManagementOperation::Post],
            // Closes the connections whose token has expired (DeleteConnection).
            Handler::TokenSweeper => &[ManagementOperation::Delete],
        }
    }
}

/// An operation of the API Gateway management API (`@connections`). Its IAM resource names the
/// HTTP method: `arn:{partition}:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/@connections/*`
/// (API Gateway developer guide, "Control access to WebSocket APIs with IAM authorization",
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-control-access-iam.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ManagementOperation {
    /// PostToConnection: send data to a connection.
    Post,
    /// GetConnection: a connection's details.
    Get,
    /// DeleteConnection: close a connection.
    Delete,
}

impl ManagementOperation {
    /// The HTTP method, as the IAM resource of the operation names it.
    pub const fn http_method(self) -> &'static str {
        match self {
            ManagementOperation::Post => "POST",
            ManagementOperation::Get => "GET",
            ManagementOperation::Delete => "DELETE",
        }
    }
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
        assert_eq!(
            Handler::names().collect::<Vec<_>>(),
            [
                "connect",
                "disconnect",
                "send-message",
                "default",
                "list-connections",
                "join",
                "leave",
                "authorizer",
                "fanout-worker",
                "token-sweeper"
            ]
        );
    }

    #[test]
    fn the_token_sweeper_is_a_scheduled_handler_that_only_closes_connections() {
        let h = Handler::TokenSweeper;
        assert_eq!(Handler::from_name("token-sweeper"), Some(h));
        assert!(!h.is_route());
        assert_eq!(h.invocation(), Invocation::Schedule);
        assert_eq!(Handler::ALL.last(), Some(&h), "new handlers go at the end");
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
    fn client_actions_exclude_system_routes() {
        assert_eq!(
            client_actions().collect::<Vec<_>>(),
            vec!["sendMessage", "listConnections", "join", "leave"]
        );
    }

    #[test]
    fn only_room_handlers_touch_the_rooms_table() {
        for h in Handler::ALL {
            let touches = !h.table_actions(Table::Rooms).is_empty();
            let rooms = matches!(
                h,
                Handler::Join
                    | Handler::Leave
                    | Handler::SendMessage
                    | Handler::Disconnect
                    | Handler::FanoutWorker
            );
            assert_eq!(touches, rooms, "{h:?}");
        }
    }
}
