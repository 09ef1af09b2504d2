//! The handlers of the API, described as data: one [`HandlerSpec`] per handler says how it is
//! invoked, which logical IDs it owns, what it may do (table, `@connections` and queue grants),
//! which environment variables it reads and whether it is rate limited. Synth builds the
//! function, role and policies from it, the `bootstrap` binary dispatches on its name, the local
//! gateway serves its route.
//!
//! Adding a handler: a [`Handler`] variant at the end of [`Handler::ALL`] and its entry at the
//! end of [`SPECS`] (a test checks they line up), plus its route in [`crate::ROUTES`] if it is
//! one.

use crate::access::{
    BusAction, Index, ManagementOperation, QueueAction, Table, TableAction, TableGrant,
};
use crate::env::EnvVar;

/// The Lambda handlers of the API. Each is one function in the synthesized stack; all of them
/// run the same `bootstrap` binary, which picks the handler by [`Handler::name`].
///
/// Most are behind a route of [`crate::ROUTES`]; the others are invoked by API Gateway or Lambda
/// in another role (the `$connect` authorizer, the queue-mode fan-out worker behind an SQS event
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
    /// The integration of every forwarded action's route (the app manifest's actions): checks
    /// the message, puts it on the stage's EventBridge bus, answers the sender in the route's
    /// response.
    Forward,
    /// Not a WebSocket route: serves the HTTP push API a backend calls (IAM-signed).
    PushApi,
}

/// How a handler is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// By API Gateway, as the integration of its route in [`crate::ROUTES`].
    Route,
    /// By API Gateway, as the Lambda REQUEST authorizer of the `$connect` route, before the
    /// `$connect` integration; only in stages that turn authentication on.
    ConnectAuthorizer,
    /// By Lambda's SQS event source, with batches of queued fan-out jobs.
    FanoutQueue,
    /// By an EventBridge schedule, every few minutes; only in stages that turn authentication
    /// on.
    Schedule,
    /// By API Gateway, as the integration of every route of the app manifest's forwarded
    /// actions: two-way routes, whose response is the handler's answer to the sender.
    ForwardedActions,
    /// By the stage's HTTP push API (payload format 2.0), on every route of
    /// [`crate::push_api::PUSH_ROUTES`].
    PushApi,
}

/// Everything the stack and the runtime need to know about one handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerSpec {
    pub handler: Handler,
    /// Kebab-case: the function's `Handler` property (which Lambda hands the `bootstrap` binary
    /// as `_HANDLER`) and its `[lambda.<name>]` table in the stage files.
    pub name: &'static str,
    /// The PascalCase stem of every CloudFormation logical ID that belongs to the handler
    /// (`{stem}Function`, `{stem}Role`, ...). These IDs are an API: renaming one replaces the
    /// live resource.
    pub logical_id_stem: &'static str,
    pub invocation: Invocation,
    /// The DynamoDB actions it performs, per table; synth grants exactly these.
    pub tables: &'static [TableGrant],
    /// The `@connections` operations it calls; synth grants `execute-api:ManageConnections` on
    /// exactly these methods of this API's stage.
    pub management: &'static [ManagementOperation],
    /// The SQS actions it calls on the fan-out queue; synth grants exactly these.
    pub queue: &'static [QueueAction],
    /// The indexes it queries; synth grants `dynamodb:Query` on exactly these indexes' ARNs.
    pub indexes: &'static [Index],
    /// The actions it calls on the stage's EventBridge bus; synth grants exactly these.
    pub bus: &'static [BusAction],
    /// The variables synth sets on its function (each only when the stage gives it a value).
    pub environment: &'static [EnvVar],
    /// Whether every request it handles is charged against the rate limits (the connection's
    /// bucket and, in authenticated stages, the user's) before its work: the routes a client
    /// sends frames to. It then reads [`EnvVar::MessageRate`], [`EnvVar::MessageBurst`],
    /// [`EnvVar::UserMessageRate`] and [`EnvVar::UserMessageBurst`].
    pub rate_limited: bool,
}

use EnvVar::*;
use TableAction::*;

/// What a client route that answers its sender reads: the table its rate limit lives in, how
/// to post, and the rate limits (`rate_limited`).
const ANSWERING_ROUTE: [EnvVar; 7] = [
    TableName,
    BroadcastConcurrency,
    CallbackUrl,
    MessageRate,
    MessageBurst,
    UserMessageRate,
    UserMessageBurst,
];

/// [`ANSWERING_ROUTE`] and the rooms table: `join` and `leave`.
const ROOM_ROUTE: [EnvVar; 8] = [
    TableName,
    RoomsTableName,
    BroadcastConcurrency,
    CallbackUrl,
    MessageRate,
    MessageBurst,
    UserMessageRate,
    UserMessageBurst,
];

/// The handlers, in the order of [`Handler::ALL`].
pub const SPECS: [HandlerSpec; 12] = [
    HandlerSpec {
        handler: Handler::Connect,
        name: "connect",
        logical_id_stem: "Connect",
        invocation: Invocation::Route,
        // Stores the new connection's record.
        tables: &[TableGrant {
            table: Table::Connections,
            actions: &[PutItem],
        }],
        management: &[],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &[TableName, AuthMode],
        rate_limited: false,
    },
    HandlerSpec {
        handler: Handler::Disconnect,
        name: "disconnect",
        logical_id_stem: "Disconnect",
        invocation: Invocation::Route,
        // Deletes the record, which answers with the rooms it listed, then those memberships;
        // a missing record is fine.
        tables: &[
            TableGrant {
                table: Table::Connections,
                actions: &[DeleteItem],
            },
            TableGrant {
                table: Table::Rooms,
                actions: &[DeleteItem],
            },
        ],
        management: &[],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &[TableName, RoomsTableName],
        rate_limited: false,
    },
    HandlerSpec {
        handler: Handler::SendMessage,
        name: "send-message",
        logical_id_stem: "SendMessage",
        invocation: Invocation::Route,
        tables: &[
            // Charges the sender's rate limit and reads its record in one conditional update,
            // reads a direct message's target, lists every connection for a broadcast, and
            // deletes the records of connections that turned out to be gone.
            TableGrant {
                table: Table::Connections,
                actions: &[GetItem, UpdateItem, Scan, DeleteItem],
            },
            // Checks the sender is a member, lists a room's members page by page, and deletes
            // the memberships of members that turned out to be gone.
            TableGrant {
                table: Table::Rooms,
                actions: &[GetItem, Query, DeleteItem],
            },
        ],
        // Broadcasts and direct messages; error frames back to the sender.
        management: &[ManagementOperation::Post],
        // Enqueues the jobs of a broadcast (queue mode) or what its deadline left (inline).
        queue: &[QueueAction::SendMessage],
        indexes: &[],
        bus: &[],
        environment: &[
            TableName,
            RoomsTableName,
            BroadcastConcurrency,
            CallbackUrl,
            MessageRate,
            MessageBurst,
            UserMessageRate,
            UserMessageBurst,
            BroadcastBudget,
            FanoutMode,
            FanoutQueueUrl,
            FanoutSegments,
            FanoutMaxJobAgeSeconds,
        ],
        rate_limited: true,
    },
    HandlerSpec {
        handler: Handler::Default,
        name: "default",
        logical_id_stem: "Default",
        invocation: Invocation::Route,
        // Charges the rate limits (a conditional update of the connection's record and, in
        // authenticated stages, of the user's `limit#` item; a GetItem where the update's
        // failure carries no item), then answers the sender.
        tables: &[TableGrant {
            table: Table::Connections,
            actions: &[GetItem, UpdateItem],
        }],
        // Answers the sender with an error frame.
        management: &[ManagementOperation::Post],
        queue: &[],
        indexes: &[],
        bus: &[],
        // `unknown_action` lists the forwarded actions after the built-in ones.
        environment: &[
            TableName,
            BroadcastConcurrency,
            CallbackUrl,
            MessageRate,
            MessageBurst,
            UserMessageRate,
            UserMessageBurst,
            ForwardedActions,
        ],
        rate_limited: true,
    },
    HandlerSpec {
        handler: Handler::ListConnections,
        name: "list-connections",
        logical_id_stem: "ListConnections",
        invocation: Invocation::Route,
        // Charges the rate limits, then reads one page of connections, where the client's
        // cursor says.
        tables: &[TableGrant {
            table: Table::Connections,
            actions: &[GetItem, UpdateItem, Scan],
        }],
        // Answers the sender with a page of connections (or an error frame).
        management: &[ManagementOperation::Post],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &ANSWERING_ROUTE,
        rate_limited: true,
    },
    HandlerSpec {
        handler: Handler::Join,
        name: "join",
        logical_id_stem: "Join",
        invocation: Invocation::Route,
        // Reads the sender, adds the room to its record (conditionally: the record must exist
        // and the room count stay bounded), then stores the membership and reads the record
        // again: a `$disconnect` that ran in between leaves no record, and the membership is
        // deleted again.
        tables: &[
            TableGrant {
                table: Table::Connections,
                actions: &[GetItem, UpdateItem],
            },
            TableGrant {
                table: Table::Rooms,
                actions: &[PutItem, DeleteItem],
            },
        ],
        // Confirms to the sender, or answers with an error frame.
        management: &[ManagementOperation::Post],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &ROOM_ROUTE,
        rate_limited: true,
    },
    HandlerSpec {
        handler: Handler::Leave,
        name: "leave",
        logical_id_stem: "Leave",
        invocation: Invocation::Route,
        // Charges the rate limits, deletes the membership, then removes the room from the
        // record.
        tables: &[
            TableGrant {
                table: Table::Connections,
                actions: &[GetItem, UpdateItem],
            },
            TableGrant {
                table: Table::Rooms,
                actions: &[DeleteItem],
            },
        ],
        // Confirms to the sender, or answers with an error frame.
        management: &[ManagementOperation::Post],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &ROOM_ROUTE,
        rate_limited: true,
    },
    HandlerSpec {
        handler: Handler::Authorizer,
        name: "authorizer",
        logical_id_stem: "Authorizer",
        invocation: Invocation::ConnectAuthorizer,
        // Verifies a token against the issuer's keys: no state of ours.
        tables: &[],
        management: &[],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &[
            AuthIssuer,
            AuthAudience,
            AuthJwksUrl,
            AuthTokenSource,
            AuthUsernameClaim,
        ],
        rate_limited: false,
    },
    HandlerSpec {
        handler: Handler::FanoutWorker,
        name: "fanout-worker",
        logical_id_stem: "FanoutWorker",
        invocation: Invocation::FanoutQueue,
        tables: &[
            // Lists its Scan segment of the connections (an "everyone" job), deletes the
            // records of connections that turned out to be gone, and charges what it listed to
            // the stage's broadcast budget (an update of its `limit#` item).
            TableGrant {
                table: Table::Connections,
                actions: &[UpdateItem, Scan, DeleteItem],
            },
            // Lists a room's members page by page (a room job) and deletes the memberships of
            // members that turned out to be gone.
            TableGrant {
                table: Table::Rooms,
                actions: &[Query, DeleteItem],
            },
        ],
        // Posts the job's frame to every connection of its segment.
        management: &[ManagementOperation::Post],
        // Polled by its event source mapping, which needs the first three on the function's
        // role (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html);
        // sends the continuation of a job its deadline cut.
        queue: &[
            QueueAction::ReceiveMessage,
            QueueAction::DeleteMessage,
            QueueAction::GetQueueAttributes,
            QueueAction::SendMessage,
        ],
        // A reply through the bus to a user lists that user's connections.
        indexes: &[Index::ConnectionsByUser],
        bus: &[],
        environment: &[
            TableName,
            RoomsTableName,
            BroadcastConcurrency,
            CallbackUrl,
            BroadcastBudget,
            FanoutMode,
            FanoutQueueUrl,
            FanoutMaxJobAgeSeconds,
        ],
        rate_limited: false,
    },
    HandlerSpec {
        handler: Handler::TokenSweeper,
        name: "token-sweeper",
        logical_id_stem: "TokenSweeper",
        invocation: Invocation::Schedule,
        // Lists the connections whose token has expired (a filtered Scan) and deletes the
        // records of those that turned out to be gone already; closing the others makes API
        // Gateway run `$disconnect`, which removes their records and memberships.
        tables: &[TableGrant {
            table: Table::Connections,
            actions: &[Scan, DeleteItem],
        }],
        // Closes the connections whose token has expired (DeleteConnection).
        management: &[ManagementOperation::Delete],
        queue: &[],
        indexes: &[],
        bus: &[],
        environment: &[TableName, BroadcastConcurrency, CallbackUrl],
        rate_limited: false,
    },
    HandlerSpec {
        handler: Handler::Forward,
        name: "forward",
        logical_id_stem: "Forward",
        invocation: Invocation::ForwardedActions,
        // Charges the rate limits and reads the sender's record (its user and name) in one
        // conditional update.
        tables: &[TableGrant {
            table: Table::Connections,
            actions: &[GetItem, UpdateItem],
        }],
        // Answers in the route's response, never through `@connections`.
        management: &[],
        queue: &[],
        indexes: &[],
        // One event per accepted message.
        bus: &[BusAction::PutEvents],
        environment: &[
            TableName,
            MessageRate,
            MessageBurst,
            UserMessageRate,
            UserMessageBurst,
            EventBusName,
            EventSource,
            ForwardedActions,
        ],
        rate_limited: true,
    },
    HandlerSpec {
        handler: Handler::PushApi,
        name: "push-api",
        logical_id_stem: "PushApi",
        invocation: Invocation::PushApi,
        tables: &[
            // Reads a connection's record, lists everyone for a push to everyone, deletes the
            // records of connections that turned out to be gone, charges the broadcast budget.
            TableGrant {
                table: Table::Connections,
                actions: &[GetItem, UpdateItem, Scan, DeleteItem],
            },
            // Lists a room's members; deletes the memberships of gone members.
            TableGrant {
                table: Table::Rooms,
                actions: &[Query, DeleteItem],
            },
        ],
        // Posts to connections; closes one on `DELETE /connections/{id}`.
        management: &[ManagementOperation::Post, ManagementOperation::Delete],
        // Enqueues a push to everyone in queue mode, or what an inline push's deadline left.
        queue: &[QueueAction::SendMessage],
        // A user's connections (a push to a user, presence).
        indexes: &[Index::ConnectionsByUser],
        bus: &[],
        environment: &[
            TableName,
            RoomsTableName,
            BroadcastConcurrency,
            CallbackUrl,
            BroadcastBudget,
            FanoutMode,
            FanoutQueueUrl,
            FanoutSegments,
            FanoutMaxJobAgeSeconds,
        ],
        rate_limited: false,
    },
];

impl Handler {
    /// Every handler, in the order the stack declares them. New handlers go at the end, so
    /// the resources of the existing ones keep their place in the template.
    pub const ALL: [Handler; 12] = [
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
        Handler::Forward,
        Handler::PushApi,
    ];

    /// The handler's description.
    pub const fn spec(self) -> &'static HandlerSpec {
        &SPECS[self as usize]
    }

    /// How the handler is invoked: behind a route, as the `$connect` authorizer, or from the
    /// fan-out queue.
    pub const fn invocation(self) -> Invocation {
        self.spec().invocation
    }

    /// The route behind which API Gateway invokes the handler; `None` for a handler that is
    /// not a route (the authorizer, the fan-out worker).
    pub fn route(self) -> Option<&'static crate::Route> {
        crate::ROUTES.iter().find(|r| r.handler == self)
    }

    /// Whether the handler is behind a route of [`crate::ROUTES`].
    pub fn is_route(self) -> bool {
        self.route().is_some()
    }

    /// The handler's name, kebab-case ([`HandlerSpec::name`]).
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// The handler called `name` (exact, as [`Handler::name`] spells it).
    pub fn from_name(name: &str) -> Option<Handler> {
        Handler::ALL.into_iter().find(|h| h.name() == name)
    }

    /// Every handler's name, for messages that list what is allowed.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Handler::ALL.into_iter().map(Handler::name)
    }

    /// The stem of the handler's logical IDs ([`HandlerSpec::logical_id_stem`]).
    pub const fn logical_id_stem(self) -> &'static str {
        self.spec().logical_id_stem
    }

    /// The DynamoDB actions the handler performs on `table`; synth grants exactly these, on
    /// that table only.
    pub fn table_actions(self, table: Table) -> &'static [TableAction] {
        self.spec()
            .tables
            .iter()
            .find(|g| g.table == table)
            .map_or(&[], |g| g.actions)
    }

    /// The `@connections` operations the handler calls.
    pub const fn management_operations(self) -> &'static [ManagementOperation] {
        self.spec().management
    }

    /// The SQS actions the handler calls on the fan-out queue.
    pub const fn queue_actions(self) -> &'static [QueueAction] {
        self.spec().queue
    }

    /// The indexes the handler queries.
    pub const fn index_queries(self) -> &'static [Index] {
        self.spec().indexes
    }

    /// The actions the handler calls on the stage's EventBridge bus.
    pub const fn bus_actions(self) -> &'static [BusAction] {
        self.spec().bus
    }

    /// Whether every request to the handler is charged against the rate limits
    /// ([`HandlerSpec::rate_limited`]).
    pub const fn is_rate_limited(self) -> bool {
        self.spec().rate_limited
    }

    /// Whether the handler's function gets `var` (when the stage gives it a value).
    pub fn reads(self, var: EnvVar) -> bool {
        self.spec().environment.contains(&var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client route reads to charge its sender's rate limits.
    const RATE_LIMITS: [EnvVar; 4] = [MessageRate, MessageBurst, UserMessageRate, UserMessageBurst];

    #[test]
    fn specs_line_up_with_handlers() {
        assert_eq!(SPECS.len(), Handler::ALL.len());
        for (i, h) in Handler::ALL.into_iter().enumerate() {
            assert_eq!(SPECS[i].handler, h, "SPECS[{i}]");
            assert_eq!(h.spec().handler, h);
        }
    }

    #[test]
    fn names_and_logical_id_stems_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        let mut stems = std::collections::BTreeSet::new();
        for s in SPECS {
            assert!(names.insert(s.name), "name {} twice", s.name);
            assert!(
                stems.insert(s.logical_id_stem),
                "stem {} twice",
                s.logical_id_stem
            );
            assert!(
                s.logical_id_stem.chars().all(|c| c.is_ascii_alphanumeric())
                    && s.logical_id_stem
                        .starts_with(|c: char| c.is_ascii_uppercase()),
                "{}",
                s.logical_id_stem
            );
        }
    }

    /// The variables follow from what a handler does: a spec that grants a resource but does
    /// not read its name (or the reverse) would fail at its first request in AWS.
    #[test]
    fn each_handler_reads_the_variables_its_grants_need() {
        for s in SPECS {
            let h = s.handler;
            let reads = |v| h.reads(v);
            let tables = |t| !h.table_actions(t).is_empty();
            let authorizer = s.invocation == Invocation::ConnectAuthorizer;
            // Every handler but the authorizer knows the connections table (`$default` only
            // for its configuration to be complete; it never calls it).
            assert_eq!(reads(TableName), !authorizer, "{h:?} TABLE_NAME");
            assert!(!tables(Table::Connections) || reads(TableName), "{h:?}");
            assert_eq!(
                reads(RoomsTableName),
                tables(Table::Rooms),
                "{h:?} ROOMS_TABLE_NAME"
            );
            let posts = !s.management.is_empty();
            assert_eq!(reads(CallbackUrl), posts, "{h:?} CALLBACK_URL");
            assert_eq!(
                reads(BroadcastConcurrency),
                posts,
                "{h:?} BROADCAST_CONCURRENCY"
            );
            let queue = !s.queue.is_empty();
            assert_eq!(reads(FanoutQueueUrl), queue, "{h:?} FANOUT_QUEUE_URL");
            assert_eq!(reads(FanoutMode), queue, "{h:?} FANOUT_MODE");
            assert_eq!(
                reads(FanoutMaxJobAgeSeconds),
                queue,
                "{h:?} FANOUT_MAX_JOB_AGE_SECONDS"
            );
            for v in RATE_LIMITS {
                assert_eq!(reads(v), s.rate_limited, "{h:?} {}", v.name());
            }
            // The budget is charged by what starts a broadcast (sendMessage) and by what lists
            // its audience in queue mode (the worker): the handlers that enqueue fan-out jobs.
            let fans_out = s.queue.contains(&QueueAction::SendMessage);
            assert_eq!(reads(BroadcastBudget), fans_out, "{h:?} BROADCAST_BUDGET");
            assert_eq!(reads(AuthIssuer), authorizer, "{h:?} AUTH_ISSUER");
            let puts_events = !s.bus.is_empty();
            assert_eq!(reads(EventBusName), puts_events, "{h:?} EVENT_BUS_NAME");
            assert_eq!(reads(EventSource), puts_events, "{h:?} EVENT_SOURCE");
            for index in s.indexes {
                assert!(
                    reads(TableName),
                    "{h:?} queries {index:?} of a table it cannot name"
                );
            }
            for v in s.environment {
                let n = s.environment.iter().filter(|w| *w == v).count();
                assert_eq!(n, 1, "{h:?} lists {v:?} {n} times");
            }
        }
    }
}
