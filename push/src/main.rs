//! Backend push: send a message to one WebSocket client, or to all of them, through the
//! API Gateway Management API (`@connections`), against AWS or the local gateway alike.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use wsstack_handlers::audience::StoreAudience;
use wsstack_handlers::delivery::{Audience, Delivery, Parcel};
use wsstack_handlers::domain::Frame;
use wsstack_handlers::fanout;
use wsstack_handlers::management::{ManagementApi, SdkManagementApi};
use wsstack_handlers::store::{ConnectionStore, DynamoDbStore};
use wsstack_handlers::token_sweep::Closer;

mod api;

const EXAMPLES: &str = "\
Examples:
  # a user on all of their devices, through the stage's push API (PushApiUrl, IAM-signed)
  push api --url https://abc123.execute-api.eu-west-1.amazonaws.com \\
       user 1a2b3c4d-sub --data '{\"job\": 7, \"state\": \"done\"}' --reply-to r-1

  # the local gateway's push API (make dev), not signed
  push api --url http://127.0.0.1:3003 room lobby --data 'hello, room'

  # one client, in AWS (credentials and region from the usual AWS sources)
  push --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com --stage prod \\
       --connection-id 'L0SM9cOFvHcCIhw=' --data 'maintenance in 5 minutes'

  # every client of the local gateway, listing connections from a local DynamoDB
  push --endpoint http://127.0.0.1:3001 --stage dev --all \\
       --table Connections --dynamodb-endpoint http://127.0.0.1:8000 --data hello

  # cut a user off: disable them at the issuer (Cognito: admin-disable-user), then close
  # every connection of theirs (by the token's `sub`)
  push disconnect --user 1a2b3c4d-sub --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com \\
       --stage prod --table wsstack-prod-ConnectionsTable-XYZ

Against AWS, the region is --region, else the one in an
https://{api-id}.execute-api.{region}.amazonaws.com endpoint, else AWS_REGION or the profile's.
Credentials come from the usual sources, SSO and credential_process profiles included
(AWS_PROFILE=my-sso-profile push ...; run `aws sso login` first for SSO).

Plain http:// endpoints are local emulators: the tool signs requests to them with dummy
credentials in us-east-1, so no AWS credentials are needed there.";

/// Push a message to WebSocket clients through the API Gateway Management API.
///
/// The message is posted as a frame `{"type":"push","id":...,"data":...,"sentAt":...}` unless --raw is
/// given. With --all, connections are listed from the connections table (a paginated Scan),
/// posted to with bounded concurrency, and the records of connections that answer 410 Gone are
/// deleted, exactly as a broadcast from the sendMessage route does.
#[derive(Debug, Parser)]
#[command(
    name = "push",
    version,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Callback endpoint without the stage: https://{api-id}.execute-api.{region}.amazonaws.com
    /// (or a custom domain), or http://127.0.0.1:{port} for the local gateway.
    #[arg(long, env = "WSSTACK_ENDPOINT", value_name = "URL", required = true)]
    endpoint: Option<String>,

    /// The API stage, appended to the endpoint as `{endpoint}/{stage}`.
    #[arg(long, env = "WSSTACK_STAGE", required = true)]
    stage: Option<String>,

    /// The AWS region of the API (and of the table, with --all). Default: the region in an
    /// execute-api endpoint, else AWS_REGION or the profile's region.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// The connection to push to.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    connection_id: Option<String>,

    /// Push to every connection in the connections table.
    #[arg(long, requires = "table")]
    all: bool,

    /// The connections table (with --all).
    #[arg(long, env = "TABLE_NAME", value_name = "NAME")]
    table: Option<String>,

    /// DynamoDB endpoint to list connections from (with --all), e.g. http://127.0.0.1:8000 for
    /// dynalite; AWS's regional endpoint by default.
    #[arg(long, value_name = "URL")]
    dynamodb_endpoint: Option<String>,

    /// The message.
    #[arg(long, required = true)]
    data: Option<String>,

    /// Post --data as is instead of wrapping it in a push frame.
    #[arg(long)]
    raw: bool,

    /// Posts in flight at once (with --all).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
}

/// What to do instead of pushing a message.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Close every connection of one user (by the verified `sub` the connection was
    /// authenticated with), through @connections DELETE: API Gateway then runs $disconnect.
    /// Disable the user at the issuer first, or they simply reconnect.
    Disconnect(DisconnectArgs),
    /// Call the stage's push API (its PushApiUrl output), signed with SigV4: a user on all of
    /// their devices, a room, a connection, everyone; presence; close a connection.
    Api(api::ApiArgs),
}

#[derive(Debug, clap::Args)]
struct DisconnectArgs {
    /// The user's `sub` (Cognito: the user's `sub` attribute, not the username).
    #[arg(long, value_name = "SUB")]
    user: String,

    /// Callback endpoint without the stage, as for a push.
    #[arg(long, env = "WSSTACK_ENDPOINT", value_name = "URL")]
    endpoint: String,

    /// The API stage.
    #[arg(long, env = "WSSTACK_STAGE")]
    stage: String,

    /// The AWS region of the API and the table (default: as for a push).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// The connections table, scanned for the user's connections.
    #[arg(long, env = "TABLE_NAME", value_name = "NAME")]
    table: String,

    /// DynamoDB endpoint to list connections from, e.g. http://127.0.0.1:8000 for dynalite.
    #[arg(long, value_name = "URL")]
    dynamodb_endpoint: Option<String>,

    /// DeleteConnection calls in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
}

/// `{base}/{stage}`, after checking both.
fn stage_endpoint(base: &str, stage: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        bail!("--endpoint must start with https:// or http://, got {base:?}");
    }
    let stage = stage.trim_matches('/');
    if stage.is_empty() {
        bail!("--stage must not be empty");
    }
    Ok(format!("{base}/{stage}"))
}

fn is_local(url: &str) -> bool {
    url.starts_with("http://")
}

/// The region of an `https://{api-id}.execute-api.{region}.amazonaws.com[.cn]` endpoint.
fn region_of_endpoint(url: &str) -> Option<&str> {
    let host = url.strip_prefix("https://")?.split(['/', ':']).next()?;
    let rest = host.split_once(".execute-api.")?.1;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    let valid = region.split('-').count() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(region)
}

/// The SDK configuration for AWS: credentials from the default chain (environment, SSO and
/// credential_process profiles, ...), the region given or else the chain's, and `url` as the
/// endpoint when there is one. Local http:// endpoints get fixed dummy credentials instead.
async fn sdk_config_for(
    url: Option<&str>,
    region: Option<&str>,
) -> anyhow::Result<aws_config::SdkConfig> {
    if let Some(u) = url.filter(|u| is_local(u)) {
        return Ok(wsstack_handlers::local_sdk_config(Some(u)).await);
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(wsstack_handlers::https_client());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(u) = url {
        loader = loader.endpoint_url(u);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        bail!(
            "no AWS region: pass --region, use an https://{{api-id}}.execute-api.{{region}}.amazonaws.com endpoint, or set AWS_REGION"
        );
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Some(Command::Api(a)) = args.command {
        api::run(a).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Command::Disconnect(d)) = args.command {
        return disconnect(d).await;
    }
    // Clap requires these without a subcommand.
    let (Some(base), Some(stage), Some(data)) = (&args.endpoint, &args.stage, &args.data) else {
        bail!("--endpoint, --stage and --data are required");
    };
    let endpoint = stage_endpoint(base, stage)?;
    let base = base.trim_end_matches('/');
    let region = args.region.as_deref().or_else(|| region_of_endpoint(base));

    let frame = if args.raw {
        data.clone()
    } else {
        Frame::push(
            serde_json::Value::String(data.clone()),
            None,
            chrono::Utc::now(),
        )
        .to_json()
    };

    // The management client is always pointed at `endpoint` per call; the SDK config only
    // supplies credentials and region.
    let api = SdkManagementApi::new(
        &sdk_config_for(is_local(&endpoint).then_some(&*endpoint), region).await?,
    );

    if let Some(id) = &args.connection_id {
        api.post_to_connection(&endpoint, id, Bytes::from(frame))
            .await
            .with_context(|| format!("push to {id} via {endpoint}"))?;
        println!("delivered to {id}");
        return Ok(ExitCode::SUCCESS);
    }

    let table = args.table.clone().context("--all needs --table")?;
    let dynamodb = aws_sdk_dynamodb::Client::new(
        &sdk_config_for(args.dynamodb_endpoint.as_deref(), region).await?,
    );
    let store: Arc<dyn ConnectionStore> = Arc::new(DynamoDbStore::new(dynamodb, table));
    broadcast(store, Arc::new(api), endpoint, frame, args.concurrency).await
}

/// `push --all`: `frame` to every connection in `store`, with the delivery service as
/// sendMessage's broadcast uses it (bounded concurrency, 429s backed off and retried, the
/// records of gone connections deleted). No queue and no deadline: everything is posted from
/// here.
async fn broadcast(
    store: Arc<dyn ConnectionStore>,
    api: Arc<dyn ManagementApi>,
    endpoint: String,
    frame: String,
    concurrency: u16,
) -> anyhow::Result<ExitCode> {
    let delivery = Delivery {
        store: store.clone(),
        audience: Arc::new(StoreAudience(store.clone())),
        memberships: None,
        api,
        queue: None,
        queue_segments: None,
        concurrency: usize::from(concurrency),
        page_size: fanout::BATCH_SIZE,
        broadcast_budget: None,
        prepaid: 0,
        metrics: None,
    };
    let parcel = Parcel {
        endpoint,
        message_id: format!("push-{}", chrono::Utc::now().timestamp_millis()),
        frame,
    };
    let report = delivery
        .deliver(&Audience::Everyone, &parcel, None)
        .await
        .context("listing connections failed")?
        .posts;
    println!(
        "delivered {}, gone (records deleted) {}, failed {}",
        report.delivered, report.gone, report.failed
    );
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `push disconnect`: every connection of the user, closed.
async fn disconnect(args: DisconnectArgs) -> anyhow::Result<ExitCode> {
    let endpoint = stage_endpoint(&args.endpoint, &args.stage)?;
    let base = args.endpoint.trim_end_matches('/');
    let region = args.region.as_deref().or_else(|| region_of_endpoint(base));
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    let api = SdkManagementApi::new(
        &sdk_config_for(is_local(&endpoint).then_some(&*endpoint), region).await?,
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(
        &sdk_config_for(args.dynamodb_endpoint.as_deref(), region).await?,
    );
    let store: Arc<dyn ConnectionStore> = Arc::new(DynamoDbStore::new(dynamodb, args.table));
    let closer = Closer {
        store,
        api: Arc::new(api),
        endpoint,
        concurrency: usize::from(args.concurrency),
    };
    let report = closer.close_user(&args.user, None).await;
    println!(
        "closed {}, gone (records deleted) {}, failed {}",
        report.closed, report.gone, report.failed
    );
    if let Some(e) = report.list_error {
        bail!("listing the user's connections failed: {e}");
    }
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::region_of_endpoint;

    #[test]
    fn the_region_of_an_execute_api_endpoint() {
        assert_eq!(
            region_of_endpoint("https://abc123.execute-api.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_endpoint("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod"),
            Some("cn-north-1")
        );
        for other in [
            "https://chat.example.com",
            "http://127.0.0.1:3001",
            "https://abc123.execute-api.amazonaws.com",
            "https://abc123.execute-api.EU_WEST.amazonaws.com",
        ] {
            assert_eq!(region_of_endpoint(other), None, "{other}");
        }
    }
}
