//! `wsstack-local`: run the WebSocket API on localhost (`make dev`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use wsstack_auth::issuer::LocalIssuer;
use wsstack_gateway::options::{AuthKind, Cli, Command, PortPlan, TokenArgs};
use wsstack_gateway::push_server::{PushServer, PushServerError, PushThrottling};
use wsstack_gateway::web::{WebError, WebServer};
use wsstack_gateway::{
    Gateway, GatewayOptions, RunningGateway, StoreOptions, open_memberships,
    open_store_and_audience,
};

// A broadcast is allocation-heavy (each delivery is an SDK request, an HTTP request and a
// frame); glibc's malloc spent a fifth of the gateway's CPU on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long shutdown waits for clients' close frames and `$disconnect` handlers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Scheduler ticks (task polls, roughly) between two polls of tokio's I/O and timer driver; tokio's
/// default is 61. The gateway's tasks poll briefly (a post, a frame), and tokio's own guidance is
/// that "if tasks generally complete their polling quickly, a higher event interval will minimize
/// that overhead while still keeping the scheduler responsive to events"
/// (`tokio::runtime::Builder::event_interval`). It also lets the connection writers a broadcast
/// wakes write in longer bursts (`session::write_loop` yields once before writing). A local
/// broadcast through the SDK took about 5 % less time and 7 % less CPU at 250
/// (docs/benchmarks.md).
const EVENT_INTERVAL: u32 = 250;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
        .context("could not start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("invalid --log-level {:?}", cli.log_level))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();

    if let Some(Command::Token(args)) = &cli.command {
        return print_token(args).await;
    }

    let web_plan = cli.web_plan();
    let push_plan = cli.push_plan();
    let (auth, issuer_port, host) = (cli.auth, cli.issuer_port, cli.host);
    let (mut options, store_options, push_throttling) = cli.into_options()?;
    let forward_line = options
        .forwarding
        .as_ref()
        .map(wsstack_gateway::forwarding::banner_line)
        .unwrap_or_default();
    // --auth dev: a local issuer, and the authorizer that trusts it. Kept alive until exit.
    let issuer = start_dev_auth(auth, host, issuer_port, &mut options).await?;
    let store_name = store_description(&store_options);
    let (store, audience) = open_store_and_audience(&store_options).await?;
    let memberships = open_memberships(&store_options).await?;
    let fanout = if options.queue_mode.is_some() {
        "queue (in-process worker)"
    } else {
        "inline"
    };
    let gateway = Gateway::bind_with_audience(options, store, memberships, Some(audience)).await?;

    let web = start_web(web_plan, gateway.local_addr().ip(), &gateway.ws_url()).await?;
    let push_host = gateway.local_addr().ip();
    let push = start_push_api(push_plan, push_host, gateway.push_api(), push_throttling).await?;
    let banner = Banner {
        store_name: &store_name,
        fanout,
        web: web.as_ref(),
        push: push.as_ref(),
        issuer: issuer.as_deref(),
        forward_line: &forward_line,
    };
    print_banner(&banner.render(&gateway));

    let signal = wsstack_gateway::shutdown::signal().await;
    tracing::info!(signal, "stopping: closing every connection");
    drop(web);
    drop(push);
    let report = gateway.shutdown(SHUTDOWN_GRACE).await;
    tracing::info!(closed = report.closed, drained = report.drained, "stopped");
    Ok(())
}

/// `wsstack-local token`: asks the issuer for a token and prints it, for `?token=` on connect.
async fn print_token(args: &TokenArgs) -> anyhow::Result<()> {
    let token = wsstack_auth::issuer::request_token(
        &args.issuer,
        &args.sub,
        args.username.as_deref(),
        args.ttl,
    )
    .await?;
    println!("{token}");
    Ok(())
}

/// `--auth dev`: starts a local issuer and gives the gateway the authorizer that trusts it.
/// The issuer is returned so that the caller keeps it alive until exit.
async fn start_dev_auth(
    auth: AuthKind,
    host: std::net::IpAddr,
    issuer_port: u16,
    options: &mut GatewayOptions,
) -> anyhow::Result<Option<std::sync::Arc<LocalIssuer>>> {
    match auth {
        AuthKind::None => Ok(None),
        AuthKind::Dev => {
            let issuer = LocalIssuer::start(
                std::net::SocketAddr::new(host, issuer_port),
                wsstack_auth::issuer::LOCAL_AUDIENCE,
            )
            .await?;
            let config = wsstack_auth::AuthConfig {
                issuer: issuer.url().to_owned(),
                audiences: vec![issuer.audience().to_owned()],
                jwks_url: None,
                token_source: wsstack_auth::TokenSource::default(),
                username_claim: Some(wsstack_auth::issuer::LOCAL_USERNAME_CLAIM.to_owned()),
            };
            options.authorizer = Some(std::sync::Arc::new(config.http_authorizer()?));
            Ok(Some(issuer))
        }
    }
}

/// The store as the banner names it: memory, or the DynamoDB tables and their endpoint.
fn store_description(store_options: &StoreOptions) -> String {
    match store_options {
        StoreOptions::Memory => "memory".to_owned(),
        StoreOptions::DynamoDb {
            endpoint,
            table,
            rooms_table,
        } => format!(
            "DynamoDB tables {table} and {rooms_table} at {}",
            endpoint.as_deref().unwrap_or("AWS")
        ),
    }
}

/// What the start-up banner reports besides the gateway's own addresses.
struct Banner<'a> {
    store_name: &'a str,
    fanout: &'a str,
    web: Option<&'a WebServer>,
    push: Option<&'a PushServer>,
    issuer: Option<&'a LocalIssuer>,
    forward_line: &'a str,
}

impl Banner<'_> {
    /// The banner's text: the stage, store and fan-out, then every address a developer uses.
    fn render(&self, gateway: &RunningGateway) -> String {
        let Banner {
            store_name,
            fanout,
            web,
            push,
            issuer,
            forward_line,
        } = self;
        let browser = match web {
            Some(server) => server.url(),
            None => "not served".to_owned(),
        };
        let push_url = match push {
            Some(server) => {
                let throttled = match server.throttling() {
                    Some(t) => format!("; {}/s, burst {}", t.rate_limit, t.burst_limit),
                    None => String::new(),
                };
                format!(
                    "{} (unsigned locally; IAM-signed in AWS{throttled})",
                    server.url()
                )
            }
            None => "not served".to_owned(),
        };
        let auth_line = match issuer {
            Some(i) => format!(
                "  Issuer        {} (JWT on $connect: connect with ?token=$(wsstack-local token --sub NAME))\n",
                i.url()
            ),
            None => String::new(),
        };
        format!(
            "wsstack-local: stage {}, store {store_name}, fan-out {fanout}\n  WebSocket     {}\n  @connections  {}\n  Browser       {browser}\n  Push API      {push_url}\n{auth_line}{forward_line}Ctrl-C to stop.\n",
            gateway.stage(),
            gateway.ws_url(),
            gateway.connections_url()
        )
    }
}

/// Writes the banner to stdout, ignoring a closed stdout.
fn print_banner(banner: &str) {
    // A closed stdout (a supervisor that stopped reading) must not stop the gateway, which
    // `println!` would do by panicking.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
}

/// Serves the browser client as planned. A default port that is taken is no reason to refuse
/// the API: the page is an extra, so that only gets a warning.
async fn start_web(
    plan: PortPlan,
    host: std::net::IpAddr,
    api_url: &str,
) -> anyhow::Result<Option<WebServer>> {
    let PortPlan::On { port, required } = plan else {
        return Ok(None);
    };
    match WebServer::bind(std::net::SocketAddr::new(host, port), api_url).await {
        Ok(server) => Ok(Some(server)),
        Err(e @ WebError::AddrInUse { .. }) if !required => {
            tracing::warn!(error = %e, "the browser client is not served");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Serves the push API as planned; like the page, a default port that is taken only warns.
async fn start_push_api(
    plan: PortPlan,
    host: std::net::IpAddr,
    push_api: Option<wsstack_handlers::push_api::PushApi>,
    throttling: Option<PushThrottling>,
) -> anyhow::Result<Option<PushServer>> {
    let (PortPlan::On { port, required }, Some(push_api)) = (plan, push_api) else {
        return Ok(None);
    };
    match PushServer::bind(std::net::SocketAddr::new(host, port), push_api, throttling).await {
        Ok(server) => Ok(Some(server)),
        Err(e @ PushServerError::AddrInUse { .. }) if !required => {
            tracing::warn!(error = %e, "the push API is not served");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
