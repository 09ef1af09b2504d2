//! The command line of `wsstack-local`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use wsstack_handlers::config::MAX_BROADCAST_CONCURRENCY;
use wsstack_routes::Handler;
use wsstack_stage::Stage;

use crate::callback::CallbackTransport;
use crate::fanout_queue::QueueMode;
use crate::forwarding::{BackendUrl, LocalForwarding, parse_actions};
use crate::integration::{MAX_INTEGRATION_TIMEOUT, MIN_INTEGRATION_TIMEOUT, Timeouts};
use crate::limits::{Limits, parse_duration};
use crate::server::{DEFAULT_API_ID, DEFAULT_ROOMS_TABLE, DEFAULT_TABLE, GatewayOptions};
use crate::store::StoreOptions;
use wsstack_handlers::config::check_forwarded_actions;

const EXAMPLES: &str = "\
Examples:
  # the whole API on ws://127.0.0.1:3001/dev, connections kept in memory, and the browser
  # client on http://127.0.0.1:3000/
  wsstack-local

  # the same handlers against a local DynamoDB (dynalite, DynamoDB Local)
  wsstack-local --store dynamodb --dynamodb-endpoint http://127.0.0.1:8000 --table Connections

  # then, from another terminal
  websocat 'ws://127.0.0.1:3001/dev?username=alice'
  {\"action\":\"sendMessage\",\"data\":\"hello\"}
  aws apigatewaymanagementapi post-to-connection --endpoint-url http://127.0.0.1:3001/dev \\
      --connection-id 'L0SM9cOFvHcCIhw=' --data 'from the backend'

The @connections API is served on the same port, at /{stage}/@connections/{id} and
/@connections/{id}; any SigV4 signature is accepted. Ctrl-C or SIGTERM closes every client
with 1001, runs $disconnect for each and exits 0.";

/// Where connection records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In the gateway's memory (gone when it stops).
    Memory,
    /// A DynamoDB table: --dynamodb-endpoint for a local server, AWS otherwise.
    Dynamodb,
}

/// Run the wsstack WebSocket API on localhost, as API Gateway runs it: the same route table and
/// handler code as in Lambda, API Gateway's limits, and the @connections management API.
#[derive(Debug, Clone, Parser)]
#[command(name = "wsstack-local", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Address to listen on. Anything but a loopback address exposes the API to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port for WebSocket clients and @connections (0 picks a free one).
    #[arg(long, default_value_t = crate::server::DEFAULT_PORT)]
    pub port: u16,

    /// API stage: clients connect to ws://HOST:PORT/STAGE.
    #[arg(long, default_value = crate::server::DEFAULT_STAGE)]
    pub stage: String,

    /// Connection store used by the handlers.
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,

    /// DynamoDB endpoint for --store dynamodb, e.g. http://127.0.0.1:8000 (dummy credentials
    /// are used); without it, AWS with your usual credentials and region.
    #[arg(long, value_name = "URL")]
    pub dynamodb_endpoint: Option<String>,

    /// Connections table for --store dynamodb.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_TABLE)]
    pub table: String,

    /// Rooms table for --store dynamodb (partition key `room`, sort key `connectionId`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ROOMS_TABLE)]
    pub rooms_table: String,

    /// Close connections that sent nothing for this long (API Gateway: 10 minutes). Seconds or
    /// units: 30s, 10m, 1h30m.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Close every connection after this long (API Gateway: 2 hours).
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration)]
    pub max_connection_duration: Duration,

    /// How long a handler may take before the gateway gives up on it, as API Gateway's
    /// integration timeout (50ms to 29s; 29s in AWS). A message route that times out gets the
    /// `Endpoint request timed out` frame, a `$connect` that times out refuses the handshake
    /// with 504. A function's own `timeout_seconds` in the stage file lowers it further.
    #[arg(long, value_name = "DURATION", default_value = "29s", value_parser = integration_timeout)]
    pub integration_timeout: Duration,

    /// Folder of the stage files: when `STAGES_DIR/STAGE.toml` exists, each function's
    /// `timeout_seconds` bounds its handler as Lambda would.
    #[arg(long, value_name = "DIR", default_value = "stages")]
    pub stages_dir: PathBuf,

    /// PostToConnection calls a broadcast keeps in flight (the handlers' BROADCAST_CONCURRENCY).
    #[arg(
        long,
        value_name = "N",
        default_value_t = wsstack_handlers::config::DEFAULT_BROADCAST_CONCURRENCY,
        value_parser = concurrency
    )]
    pub broadcast_concurrency: usize,

    /// How the handlers' `@connections` calls reach this gateway: `sdk-in-process` signs each
    /// call with the AWS SDK, as in Lambda, and hands it to the gateway's router (no socket);
    /// `sdk-tcp` sends it over a loopback connection to --port, as an outside client would;
    /// `direct` skips the SDK and goes straight to the connections with the checks the port
    /// makes (broadcasts three to four and a half times sooner, for load tests).
    /// Answers are the same.
    #[arg(long, value_name = "TRANSPORT", default_value = "sdk-in-process")]
    pub callback_transport: CallbackTransport,

    /// Port for the browser client (web/), at http://HOST:WEB_PORT/ [default: 3000, or 0 (a
    /// free port) when --port is 0]. A default port that is taken only gets a warning.
    #[arg(long, value_name = "PORT")]
    pub web_port: Option<u16>,

    /// Do not serve the browser client.
    #[arg(long, conflicts_with = "web_port")]
    pub no_web: bool,

    /// Port for the push API a backend calls (POST /users/{userId}/messages, ...; in AWS the
    /// stage's PushApiUrl, IAM-signed), at http://HOST:PUSH_PORT [default: 3003, or 0 (a free
    /// port) when --port is 0]. No signature is checked locally.
    #[arg(long, value_name = "PORT")]
    pub push_port: Option<u16>,

    /// Do not serve the push API.
    #[arg(long, conflicts_with = "push_port")]
    pub no_push_api: bool,

    /// Log filter: error, warn, info, debug, trace, or directives such as
    /// `wsstack_gateway=debug,info`.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,

    /// Authentication on $connect. `none`: anyone, username from ?username=. `dev`: start a
    /// local OpenID issuer (its URL is printed) and run the JWT authorizer before $connect, as
    /// a stage with `[auth] mode = "jwt"` does: clients connect with `?token=<JWT>` (get one with
    /// `wsstack-local token --sub NAME`) and their username comes from the token.
    #[arg(long, value_enum, default_value_t = AuthKind::None)]
    pub auth: AuthKind,

    /// With --auth dev, how often the connections whose token has expired are closed (through
    /// @connections DELETE, so $disconnect runs), as the token-sweeper function does on its
    /// schedule in AWS. Seconds or units: 30s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub token_sweep_interval: Duration,

    /// The app manifest whose forwarded actions the gateway serves (docs/manifest.md), as synth
    /// deploys them: each a two-way route whose messages the `forward` handler puts on a local
    /// bus, answering `accepted`. Default: wsstack.toml in the current folder, or the shipped
    /// manifest (submitJob) where there is none.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    /// One more forwarded action besides the manifest's, `NAME` or `NAME=MAX_DATA_BYTES`
    /// (repeatable): to try an action out before adding it to the manifest.
    #[arg(long = "forward-action", value_name = "NAME[=MAX_DATA_BYTES]")]
    pub forward_actions: Vec<String>,

    /// Where the local bus POSTs each forwarded action's event (the EventBridge envelope, as
    /// JSON); without it the events are logged.
    #[arg(long, value_name = "URL")]
    pub backend_url: Option<String>,

    /// Port of the local issuer for --auth dev (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_ISSUER_PORT)]
    pub issuer_port: u16,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The local issuer's port unless --issuer-port says otherwise.
pub const DEFAULT_ISSUER_PORT: u16 = 3002;

/// Who may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthKind {
    /// Anyone; the username comes from ?username=.
    None,
    /// A local issuer and the JWT authorizer in front of $connect.
    Dev,
}

/// What to do instead of serving the API.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a token from the local issuer of a running `wsstack-local --auth dev`, e.g.
    /// `wsstack-local token --sub ada`, then connect with `ws://127.0.0.1:3001/dev?token=...`.
    Token(TokenArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The token's subject (`sub`), and its username unless --username says otherwise.
    #[arg(long)]
    pub sub: String,
    /// The username claim (`preferred_username`); default: the subject.
    #[arg(long)]
    pub username: Option<String>,
    /// How long the token is valid: 30s, 10m, 1h (at most 24h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// The issuer's URL.
    #[arg(long, value_name = "URL", default_value_t = format!("http://127.0.0.1:{DEFAULT_ISSUER_PORT}"))]
    pub issuer: String,
}

fn concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_BROADCAST_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be an integer from 1 to {MAX_BROADCAST_CONCURRENCY}"
        )),
    }
}

fn integration_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if (MIN_INTEGRATION_TIMEOUT..=MAX_INTEGRATION_TIMEOUT).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "{text:?} is out of range: API Gateway allows 50ms to 29s"
        ))
    }
}

/// What `wsstack-local`'s command line comes to: the gateway's options, the store's, and the
/// push API's throttling (`None`: unthrottled).
pub type CliOptions = (
    GatewayOptions,
    StoreOptions,
    Option<crate::push_server::PushThrottling>,
);

/// `{dir}/{stage}.toml`, read and checked once; `None` when the file does not exist (the
/// gateway then runs on its defaults).
pub fn stage_file(dir: &Path, stage: &str) -> Result<Option<Stage>, OptionsError> {
    if !dir.join(format!("{stage}.toml")).is_file() {
        return Ok(None);
    }
    wsstack_stage::load(dir, stage)
        .map(Some)
        .map_err(|e| OptionsError::Stage(e.to_string()))
}

/// Each function's timeout from the stage file; none without it.
pub fn function_timeouts(stage: Option<&Stage>) -> BTreeMap<Handler, Duration> {
    let Some(stage) = stage else {
        return BTreeMap::new();
    };
    Handler::ALL
        .iter()
        .map(|&h| {
            let seconds = stage.function(h).timeout_seconds;
            (h, Duration::from_secs(u64::from(seconds)))
        })
        .collect()
}

/// Queue-mode fan-out from the stage file (`[fanout] mode = "queue"`, with its segments and
/// the worker function's timeout as each job's time); `None` in inline mode or without the
/// file.
pub fn queue_mode(stage: Option<&Stage>) -> Option<QueueMode> {
    let stage = stage?;
    (stage.fanout.mode == wsstack_stage::FanoutMode::Queue).then(|| QueueMode {
        segments: stage.fanout.segments,
        job_time: Duration::from_secs(u64::from(
            stage.function(Handler::FanoutWorker).timeout_seconds,
        )),
        max_job_age: Duration::from_secs(u64::from(stage.fanout.max_job_age_seconds)),
    })
}

/// The push API's throttling from the stage file (`[push_api]`, with its defaults); none
/// without the file, as the stage's other settings.
pub fn push_throttling(stage: Option<&Stage>) -> Option<crate::push_server::PushThrottling> {
    stage.map(|s| crate::push_server::PushThrottling {
        rate_limit: s.push_api.throttling_rate_limit,
        burst_limit: s.push_api.throttling_burst_limit,
    })
}

/// The forwarded actions: the manifest's and those of `--forward-action`; and `--backend-url`
/// (which needs at least one).
fn forwarding(
    manifest: Option<&Path>,
    extra: &[String],
    backend_url: Option<&str>,
) -> Result<Option<LocalForwarding>, OptionsError> {
    let backend_url = backend_url
        .map(BackendUrl::parse)
        .transpose()
        .map_err(OptionsError::Forwarding)?;
    let mut actions = wsstack_stage::manifest::load_or_default(manifest)
        .map_err(|e| OptionsError::Manifest(e.to_string()))?
        .forward;
    if !extra.is_empty() {
        actions.extend(parse_actions(extra).map_err(OptionsError::Forwarding)?);
        // Once more over the whole list: an extra action may repeat one of the manifest's.
        check_forwarded_actions(&actions)
            .map_err(|e| OptionsError::Forwarding(format!("--forward-action: {e}")))?;
    }
    if actions.is_empty() {
        return match backend_url {
            Some(_) => Err(OptionsError::Forwarding(
                "--backend-url needs a forwarded action (the manifest has none; add one, or --forward-action)".to_owned(),
            )),
            None => Ok(None),
        };
    }
    Ok(Some(LocalForwarding {
        actions,
        backend_url,
    }))
}

/// A command line that parses but cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("--dynamodb-endpoint only applies with --store dynamodb")]
    EndpointWithoutDynamoDb,
    #[error("--dynamodb-endpoint must be an http:// or https:// URL, got {0:?}")]
    BadEndpoint(String),
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    #[error("{0}")]
    Stage(String),
    /// A bad `--forward-action` or `--backend-url` (the text names which).
    #[error("{0}")]
    Forwarding(String),
    /// The app manifest could not be read (the text names the file, line and field).
    #[error("{0}")]
    Manifest(String),
}

/// Where to serve a server of its own: the browser client, the push API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPlan {
    Off,
    /// On this port; `required` when the user named it, so a taken port is an error.
    On {
        port: u16,
        required: bool,
    },
}

impl Cli {
    /// Where the browser client goes: `--web-port`, else [`crate::web::DEFAULT_WEB_PORT`] (a
    /// free port when the API's port is 0 too, so test runs never contend for it).
    pub fn web_plan(&self) -> PortPlan {
        self.port_plan(self.no_web, self.web_port, crate::web::DEFAULT_WEB_PORT)
    }

    /// Where the push API goes: `--push-port`, else
    /// [`crate::push_server::DEFAULT_PUSH_PORT`] (a free port when the API's port is 0).
    pub fn push_plan(&self) -> PortPlan {
        self.port_plan(
            self.no_push_api,
            self.push_port,
            crate::push_server::DEFAULT_PUSH_PORT,
        )
    }

    /// Off; the port given (required: taken is an error); or `default`, a free port when the
    /// API's port is 0 too, so test runs never contend for it (taken only warns).
    fn port_plan(&self, off: bool, given: Option<u16>, default: u16) -> PortPlan {
        match (off, given) {
            (true, _) => PortPlan::Off,
            (false, Some(port)) => PortPlan::On {
                port,
                required: true,
            },
            (false, None) => PortPlan::On {
                port: if self.port == 0 { 0 } else { default },
                required: false,
            },
        }
    }

    /// The gateway's and the store's options, and the push API's throttling (from the stage
    /// file, read once).
    pub fn into_options(self) -> Result<CliOptions, OptionsError> {
        if self.idle_timeout.is_zero() {
            return Err(OptionsError::ZeroDuration("--idle-timeout"));
        }
        if self.max_connection_duration.is_zero() {
            return Err(OptionsError::ZeroDuration("--max-connection-duration"));
        }
        if self.token_sweep_interval.is_zero() {
            return Err(OptionsError::ZeroDuration("--token-sweep-interval"));
        }
        let store = match (self.store, self.dynamodb_endpoint) {
            (StoreKind::Memory, Some(_)) => return Err(OptionsError::EndpointWithoutDynamoDb),
            (StoreKind::Memory, None) => StoreOptions::Memory,
            (StoreKind::Dynamodb, endpoint) => {
                if let Some(url) = &endpoint
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    return Err(OptionsError::BadEndpoint(url.clone()));
                }
                StoreOptions::DynamoDb {
                    endpoint,
                    table: self.table.clone(),
                    rooms_table: self.rooms_table.clone(),
                }
            }
        };
        let forwarding = forwarding(
            self.manifest.as_deref(),
            &self.forward_actions,
            self.backend_url.as_deref(),
        )?;
        let stage_file = stage_file(&self.stages_dir, &self.stage)?;
        let functions = function_timeouts(stage_file.as_ref());
        let queue_mode = queue_mode(stage_file.as_ref());
        let push_throttling = push_throttling(stage_file.as_ref());
        let gateway = GatewayOptions {
            host: self.host,
            port: self.port,
            stage: self.stage,
            api_id: DEFAULT_API_ID.to_owned(),
            limits: Limits {
                idle_timeout: self.idle_timeout,
                max_connection_duration: self.max_connection_duration,
                ..Limits::default()
            },
            table_name: self.table,
            broadcast_concurrency: self.broadcast_concurrency,
            callback_transport: self.callback_transport,
            timeouts: Timeouts {
                integration: self.integration_timeout,
                functions,
            },
            queue_mode,
            token_sweep_interval: Some(self.token_sweep_interval),
            forwarding,
            ..GatewayOptions::default()
        };
        Ok((gateway, store, push_throttling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<(GatewayOptions, StoreOptions), String> {
        let cli = Cli::try_parse_from(std::iter::once("wsstack-local").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.into_options()
            .map(|(gateway, store, _)| (gateway, store))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn forwarded_actions_and_their_backend_are_read() {
        // Without --manifest and without a wsstack.toml here (tests run in gateway/): the
        // shipped manifest's actions, plus --forward-action's.
        let (g, _) = parse(&[
            "--forward-action",
            "doThing=4096",
            "--forward-action",
            "ping",
            "--backend-url",
            "http://127.0.0.1:9000/events",
        ])
        .unwrap();
        let f = g.forwarding.expect("forwarding");
        let names: Vec<(&str, u32)> = f
            .actions
            .iter()
            .map(|a| (a.name.as_str(), a.max_data_bytes))
            .collect();
        assert_eq!(
            names,
            [
                ("submitJob", 32 * 1024),
                ("doThing", 4096),
                ("ping", 32 * 1024)
            ]
        );
        assert_eq!(
            f.backend_url.map(|u| u.as_str()).as_deref(),
            Some("http://127.0.0.1:9000/events")
        );
        let shipped = parse(&[])
            .unwrap()
            .0
            .forwarding
            .expect("the shipped manifest");
        assert_eq!(shipped.actions.len(), 1);
        for (args, says) in [
            (
                vec!["--forward-action", "x", "--backend-url", "https://b/e"],
                "--backend-url",
            ),
            (vec!["--forward-action", "join"], "built-in"),
            (vec!["--forward-action", "submitJob"], "submitJob"),
            (
                vec!["--manifest", "/nonexistent/wsstack.toml"],
                "/nonexistent/wsstack.toml",
            ),
        ] {
            let err = parse(&args).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn defaults_are_make_devs() {
        let (g, s) = parse(&[]).unwrap();
        assert_eq!(g.host.to_string(), "127.0.0.1");
        assert_eq!(g.port, 3001);
        assert_eq!(g.stage, "dev");
        assert_eq!(g.limits, Limits::default());
        assert_eq!(g.callback_transport, CallbackTransport::SdkInProcess);
        assert_eq!(s, StoreOptions::Memory);
    }

    #[test]
    fn the_callback_transport_is_read_and_an_unknown_one_named() {
        let (g, _) = parse(&["--callback-transport", "sdk-tcp"]).unwrap();
        assert_eq!(g.callback_transport, CallbackTransport::SdkTcp);
        let (g, _) = parse(&["--callback-transport", "direct"]).unwrap();
        assert_eq!(g.callback_transport, CallbackTransport::Direct);
        let err = parse(&["--callback-transport", "udp"]).unwrap_err();
        assert!(
            err.contains("--callback-transport") && err.contains("sdk-in-process, sdk-tcp, direct"),
            "{err}"
        );
    }

    #[test]
    fn every_option_is_read() {
        let (g, s) = parse(&[
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--stage",
            "prod",
            "--store",
            "dynamodb",
            "--dynamodb-endpoint",
            "http://127.0.0.1:8000",
            "--table",
            "Conns",
            "--rooms-table",
            "Memberships",
            "--idle-timeout",
            "30s",
            "--max-connection-duration",
            "1h30m",
            "--broadcast-concurrency",
            "256",
            "--integration-timeout",
            "250ms",
            "--stages-dir",
            "/nonexistent",
            "--token-sweep-interval",
            "5s",
        ])
        .unwrap();
        assert_eq!(g.host.to_string(), "0.0.0.0");
        assert_eq!(g.port, 0);
        assert_eq!(g.stage, "prod");
        assert_eq!(g.limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(g.limits.max_connection_duration, Duration::from_secs(5400));
        assert_eq!(g.broadcast_concurrency, 256);
        assert_eq!(g.timeouts.integration, Duration::from_millis(250));
        assert!(g.timeouts.functions.is_empty());
        assert_eq!(g.table_name, "Conns");
        assert_eq!(g.token_sweep_interval, Some(Duration::from_secs(5)));
        assert_eq!(
            s,
            StoreOptions::DynamoDb {
                endpoint: Some("http://127.0.0.1:8000".into()),
                table: "Conns".into(),
                rooms_table: "Memberships".into(),
            }
        );
    }

    fn web_plan(args: &[&str]) -> Result<PortPlan, String> {
        Cli::try_parse_from(std::iter::once("wsstack-local").chain(args.iter().copied()))
            .map(|cli| cli.web_plan())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_browser_client_port() {
        let default = PortPlan::On {
            port: 3000,
            required: false,
        };
        assert_eq!(web_plan(&[]), Ok(default));
        assert_eq!(
            web_plan(&["--port", "0"]),
            Ok(PortPlan::On {
                port: 0,
                required: false
            })
        );
        assert_eq!(
            web_plan(&["--web-port", "8080"]),
            Ok(PortPlan::On {
                port: 8080,
                required: true
            })
        );
        assert_eq!(web_plan(&["--no-web"]), Ok(PortPlan::Off));
        let err = web_plan(&["--no-web", "--web-port", "1"]).unwrap_err();
        assert!(err.contains("--web-port"), "{err}");
        let err = web_plan(&["--web-port", "70000"]).unwrap_err();
        assert!(err.contains("70000"), "{err}");
    }

    #[test]
    fn function_timeouts_come_from_the_stage_file_when_there_is_one() {
        let dir = std::env::temp_dir().join(format!("wsstack-gw-stages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("t1.toml"),
            "[lambda]\ntimeout_seconds = 5\n[lambda.connect]\ntimeout_seconds = 2\n",
        )
        .unwrap();
        std::fs::write(dir.join("t2.toml"), "[lambda]\nmemory_mb = 64\n").unwrap();
        let t = function_timeouts(stage_file(&dir, "t1").unwrap().as_ref());
        assert_eq!(t.get(&Handler::Connect), Some(&Duration::from_secs(2)));
        assert_eq!(t.get(&Handler::SendMessage), Some(&Duration::from_secs(5)));
        assert!(function_timeouts(stage_file(&dir, "absent").unwrap().as_ref()).is_empty());
        let err = stage_file(&dir, "t2").unwrap_err().to_string();
        assert!(
            err.contains("t2.toml") && err.contains("memory_mb"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The push API's throttling is the stage file's `[push_api]`, its defaults included; none
    /// without the file; a bad value is an error naming the file.
    #[test]
    fn push_throttling_comes_from_the_stage_file_when_there_is_one() {
        let dir = std::env::temp_dir().join(format!("wsstack-push-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = "[push_api]\nthrottling_rate_limit = 20\nthrottling_burst_limit = 40\n";
        std::fs::write(dir.join("p1.toml"), set).unwrap();
        std::fs::write(dir.join("p2.toml"), "").unwrap();
        let bad = "[push_api]\nthrottling_burst_limit = 0\n";
        std::fs::write(dir.join("p3.toml"), bad).unwrap();
        let throttling = |rate_limit, burst_limit| {
            Some(crate::push_server::PushThrottling {
                rate_limit,
                burst_limit,
            })
        };
        let read = |name| push_throttling(stage_file(&dir, name).unwrap().as_ref());
        assert_eq!(read("p1"), throttling(20.0, 40));
        assert_eq!(read("p2"), throttling(1000.0, 500));
        assert_eq!(read("absent"), None);
        let err = stage_file(&dir, "p3").unwrap_err().to_string();
        assert!(
            err.contains("p3.toml") && err.contains("throttling_burst_limit"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn contradictions_are_refused_with_the_option_named() {
        for (args, needle) in [
            (
                vec!["--dynamodb-endpoint", "http://x"],
                "--dynamodb-endpoint",
            ),
            (
                vec!["--store", "dynamodb", "--dynamodb-endpoint", "x:1"],
                "--dynamodb-endpoint",
            ),
            (vec!["--idle-timeout", "0"], "--idle-timeout"),
            (
                vec!["--token-sweep-interval", "0"],
                "--token-sweep-interval",
            ),
            (vec!["--idle-timeout", "soon"], "invalid duration"),
            (vec!["--store", "redis"], "redis"),
            (vec!["--broadcast-concurrency", "0"], "1 to 480"),
            (vec!["--integration-timeout", "30s"], "50ms to 29s"),
            (vec!["--integration-timeout", "10ms"], "50ms to 29s"),
        ] {
            let err = parse(&args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
