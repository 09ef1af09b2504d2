//! What a handler may do, in the vocabulary of IAM: actions on the stack's tables, operations of
//! the API Gateway management API (`@connections`), actions on the fan-out queue. Synth grants
//! exactly what a handler's [`crate::HandlerSpec`] lists, on those resources only.

/// A DynamoDB table of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// One record per open connection ([`crate::table`]).
    Connections,
    /// One item per room membership ([`crate::rooms_table`]).
    Rooms,
}

impl Table {
    /// Every table, in the order the stack declares them.
    pub const ALL: [Table; 2] = [Table::Connections, Table::Rooms];
}

/// A global secondary index of a table of the stack; the only action on it is `dynamodb:Query`,
/// granted on the index's ARN (`{table ARN}/index/{name}`) alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Index {
    /// The connections by user ([`crate::table::USER_INDEX`]).
    ConnectionsByUser,
}

impl Index {
    /// The table the index belongs to.
    pub const fn table(self) -> Table {
        match self {
            Index::ConnectionsByUser => Table::Connections,
        }
    }

    /// The index's name.
    pub const fn name(self) -> &'static str {
        match self {
            Index::ConnectionsByUser => crate::table::USER_INDEX,
        }
    }
}

/// An action on the stage's EventBridge bus; synth grants exactly these, on that bus only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BusAction {
    PutEvents,
}

impl BusAction {
    /// The IAM action name, e.g. `events:PutEvents`.
    pub const fn iam_action(self) -> &'static str {
        match self {
            BusAction::PutEvents => "events:PutEvents",
        }
    }
}

/// A DynamoDB action a handler performs on a table.
///
/// Synth grants exactly these actions to the handler's role, so a handler that starts calling a
/// new action must list it in its [`crate::HandlerSpec`] or it gets `AccessDenied` in AWS.
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

/// What a handler may do on one table: synth grants `actions` on that table's ARN only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableGrant {
    pub table: Table,
    pub actions: &'static [TableAction],
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

/// An SQS action a handler calls on the stack's fan-out queue; synth grants exactly these, on
/// that queue only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueAction {
    SendMessage,
    ReceiveMessage,
    DeleteMessage,
    GetQueueAttributes,
}

impl QueueAction {
    /// The IAM action name, e.g. `sqs:SendMessage`.
    pub const fn iam_action(self) -> &'static str {
        match self {
            QueueAction::SendMessage => "sqs:SendMessage",
            QueueAction::ReceiveMessage => "sqs:ReceiveMessage",
            QueueAction::DeleteMessage => "sqs:DeleteMessage",
            QueueAction::GetQueueAttributes => "sqs:GetQueueAttributes",
        }
    }
}
