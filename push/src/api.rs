//! `push api`: the stage's push API (its `PushApiUrl` output) through `wsstack-client`, signed
//! with SigV4 from the default credential chain; a plain `http://` URL (the local gateway's
//! push API) is not signed.

use anyhow::Context;
use serde_json::Value;
use wsstack_client::PushClient;

/// Call the stage's push API (IAM-signed): reach a user on all of their devices, a room, one
/// connection or everyone; see who is online; close a connection.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The push API: the stage's PushApiUrl output
    /// (https://{api-id}.execute-api.{region}.amazonaws.com), or http://127.0.0.1:3003 for the
    /// local gateway (not signed).
    #[arg(long, env = "WSSTACK_PUSH_API_URL", value_name = "URL")]
    url: String,

    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// Every open connection of a user: their verified `sub` where the stage authenticates,
    /// else the username they connected with.
    User {
        user_id: String,
        #[command(flatten)]
        message: Message,
    },
    /// Every member of a room.
    Room {
        room: String,
        #[command(flatten)]
        message: Message,
    },
    /// One connection.
    Connection {
        connection_id: String,
        #[command(flatten)]
        message: Message,
    },
    /// Every open connection (through the fan-out queue where the stage fans out that way).
    Everyone {
        #[command(flatten)]
        message: Message,
    },
    /// A user's open connections.
    Presence { user_id: String },
    /// Close a connection (API Gateway then runs $disconnect).
    Close { connection_id: String },
}

#[derive(Debug, clap::Args)]
struct Message {
    /// The message's data, as JSON ('{"job": 7}', '"text"', 42); text that is not JSON is sent
    /// as a string.
    #[arg(long)]
    data: String,

    /// The `requestId` of the client message this answers (clients see it as `replyTo`).
    #[arg(long, value_name = "REQUEST_ID")]
    reply_to: Option<String>,
}

impl Message {
    fn data(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|_| Value::String(self.data.clone()))
    }
}

/// Runs the call and prints the push API's answer as JSON.
pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    let push = if args.url.starts_with("http://") {
        PushClient::unsigned(&args.url)?
    } else {
        PushClient::from_env(&args.url).await?
    };
    let answer = match &args.target {
        Target::User { user_id, message } => {
            let outcome = push.to_user(user_id, message.data(), message.reply_to.as_deref());
            serde_json::to_value(outcome.await?.answer)?
        }
        Target::Room { room, message } => {
            let outcome = push.to_room(room, message.data(), message.reply_to.as_deref());
            serde_json::to_value(outcome.await?.answer)?
        }
        Target::Connection {
            connection_id,
            message,
        } => {
            let outcome =
                push.to_connection(connection_id, message.data(), message.reply_to.as_deref());
            serde_json::to_value(outcome.await?.answer)?
        }
        Target::Everyone { message } => {
            let outcome = push.to_everyone(message.data(), message.reply_to.as_deref());
            serde_json::to_value(outcome.await?.answer)?
        }
        Target::Presence { user_id } => serde_json::to_value(push.presence(user_id).await?)?,
        Target::Close { connection_id } => {
            push.disconnect(connection_id)
                .await
                .with_context(|| format!("closing {connection_id}"))?;
            serde_json::json!({"closed": connection_id})
        }
    };
    println!("{answer}");
    Ok(())
}
