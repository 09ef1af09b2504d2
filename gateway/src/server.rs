//! Binding, routing the port's requests, and running and stopping a gateway.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use axum::Router;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wsstack_handlers::App;
use wsstack_handlers::audience::AudienceSource;
use wsstack_handlers::config::{Config, DEFAULT_BROADCAST_CONCURRENCY, Fanout};
use wsstack_handlers::management::{ManagementApi, SdkManagementApi};
use wsstack_handlers::membership::{MembershipStore, MemoryMembershipStore};
use wsstack_handlers::push_api::PushApi;
use wsstack_handlers::queue::MemoryQueue;
use wsstack_handlers::store::ConnectionStore;

use crate::callback::{CallbackTransport, DirectManagementApi, InProcessClient, PortSlot};
use crate::event::ApiContext;
use crate::fanout_queue::{self, QueueMode};
use crate::integration::{EventLog, Integration, Invoker, Timeouts};
use crate::limits::Limits;
use crate::registry::{CloseReason, Registry};
use crate::routing::RouteTable;
use crate::socket::{GatewayListener, Peer};
use crate::state::Shared;
use crate::{connections_api, handshake, http_error};

/// How to run a gateway. [`GatewayOptions::default`] is `make dev`'s: 127.0.0.1:3001, stage
/// `dev`, API Gateway's limits and 29 s integration timeout, the API's route table and handlers.
#[derive(Clone)]
pub struct GatewayOptions {
    pub host: IpAddr,
    /// 0 picks a free port (see [`RunningGateway::local_addr`]).
    pub port: u16,
    pub stage: String,
    /// `requestContext.apiId` of every event.
    pub api_id: String,
    pub limits: Limits,
    pub routes: RouteTable,
    /// The handlers' `TABLE_NAME` (only the DynamoDB store reads it).
    pub table_name: String,
    /// The handlers' `BROADCAST_CONCURRENCY`.
    pub broadcast_concurrency: usize,
    /// How the handlers' `@connections` calls reach this gateway (default: in process).
    pub callback_transport: CallbackTransport,
    /// How long each handler may take before API Gateway gives up on it.
    pub timeouts: Timeouts,
    /// The code behind the routes; `None`: the handlers' [`App`] (the production code).
    pub integration: Option<Arc<dyn Integration>>,
    /// Records every event sent to a handler (for tests).
    pub event_log: Option<EventLog>,
    /// Runs before `$connect` and gives the handlers the verified identity (`--auth dev`).
    pub authorizer: Option<Arc<crate::auth::ConnectAuthorizer>>,
    /// Queue-mode fan-out (the stage file's `[fanout] mode = "queue"`): `None` posts inline.
    pub queue_mode: Option<QueueMode>,
    /// With an authorizer, how often the connections whose token has expired are closed
    /// (`--token-sweep-interval`); `None`: never.
    pub token_sweep_interval: Option<Duration>,
    /// The app's forwarded actions and where their events go; `None`: no forwarded actions.
    pub forwarding: Option<crate::forwarding::LocalForwarding>,
    /// Where the handlers' delivery metric lines go, as in Lambda (`None`: none).
    pub metrics: Option<wsstack_handlers::metrics::Metrics>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("stage", &self.stage)
            .field("api_id", &self.api_id)
            .field("limits", &self.limits)
            .field("routes", &self.routes)
            .field("table_name", &self.table_name)
            .field("broadcast_concurrency", &self.broadcast_concurrency)
            .field("timeouts", &self.timeouts)
            .field("integration", &self.integration.as_ref().map(|_| "custom"))
            .field("event_log", &self.event_log.is_some())
            .field("queue_mode", &self.queue_mode)
            .field("token_sweep_interval", &self.token_sweep_interval)
            .field("metrics", &self.metrics)
            .field("forwarding", &self.forwarding)
            .finish()
    }
}

/// The default port of `make dev`.
pub const DEFAULT_PORT: u16 = 3001;
/// The default stage.
pub const DEFAULT_STAGE: &str = "dev";
/// The default `apiId`: ten lowercase characters, like API Gateway's.
pub const DEFAULT_API_ID: &str = "wsstacklcl";
/// The default connections table name.
pub const DEFAULT_TABLE: &str = "Connections";
/// The default rooms table name.
pub const DEFAULT_ROOMS_TABLE: &str = "Rooms";

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            stage: DEFAULT_STAGE.to_owned(),
            api_id: DEFAULT_API_ID.to_owned(),
            limits: Limits::default(),
            routes: RouteTable::default(),
            table_name: DEFAULT_TABLE.to_owned(),
            broadcast_concurrency: DEFAULT_BROADCAST_CONCURRENCY,
            callback_transport: CallbackTransport::default(),
            timeouts: Timeouts::default(),
            integration: None,
            event_log: None,
            authorizer: None,
            queue_mode: None,
            token_sweep_interval: Some(crate::token_sweep::DEFAULT_INTERVAL),
            metrics: None,
            forwarding: None,
        }
    }
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "cannot listen on {addr}: the address is already in use (another wsstack-local? pick another port with --port)"
    )]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "invalid stage {0:?}: use 1 to 128 letters, digits, '-' or '_' (API Gateway's stage name rules)"
    )]
    InvalidStage(String),
    #[error(
        "queue-mode fan-out needs the store as an audience source: bind with Gateway::bind_with_audience"
    )]
    QueueModeWithoutAudience,
}

fn valid_stage(stage: &str) -> bool {
    (1..=128).contains(&stage.len())
        && stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Pending connections the kernel queues for the gateway. A burst of clients (a page reload of
/// a whole test suite, a load test) must not overflow it: dropped SYNs are retried only after a
/// second. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted gateway can take its port back at once, while a
    // running one still gets "address in use".
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Entry point: [`Gateway::bind`].
#[derive(Debug)]
pub struct Gateway;

impl Gateway {
    /// Binds the port and starts serving: WebSocket clients at `/{stage}`, `@connections` at
    /// `/{stage}/@connections/{id}` and `/@connections/{id}`. The handlers' `@connections`
    /// calls go back to this gateway through the real SDK client.
    pub async fn bind(
        options: GatewayOptions,
        store: Arc<dyn ConnectionStore>,
    ) -> Result<RunningGateway, BindError> {
        Self::bind_with_memberships(options, store, Arc::new(MemoryMembershipStore::new())).await
    }

    /// [`Gateway::bind`], with room memberships kept in `memberships` (the rooms table with
    /// `--store dynamodb`) instead of in memory.
    pub async fn bind_with_memberships(
        options: GatewayOptions,
        store: Arc<dyn ConnectionStore>,
        memberships: Arc<dyn MembershipStore>,
    ) -> Result<RunningGateway, BindError> {
        Self::bind_with_audience(options, store, memberships, None).await
    }

    /// [`Gateway::bind_with_memberships`], with `audience` (the same store, listing
    /// connections by Scan segment) for queue-mode fan-out, which `options.queue_mode` asks
    /// for.
    pub async fn bind_with_audience(
        mut options: GatewayOptions,
        store: Arc<dyn ConnectionStore>,
        memberships: Arc<dyn MembershipStore>,
        audience: Option<Arc<dyn AudienceSource>>,
    ) -> Result<RunningGateway, BindError> {
        if !valid_stage(&options.stage) {
            return Err(BindError::InvalidStage(options.stage));
        }
        if options.queue_mode.is_some() && audience.is_none() {
            return Err(BindError::QueueModeWithoutAudience);
        }
        let (listener, local_addr) = bind_listener(&options)?;
        let callback_url = callback_url_for(local_addr, &options.stage);
        let mut config = handlers_config(&options, &callback_url);
        let callback_port = PortSlot::default();
        let callback =
            callback_management_api(options.callback_transport, &callback_port, &callback_url)
                .await;
        let api = Arc::clone(&callback.api);
        let cancel = CancellationToken::new();
        let (queue, worker_task) = match (options.queue_mode, audience) {
            (Some(mode), Some(audience)) => {
                let parts = fanout_queue::WorkerParts {
                    store: Arc::clone(&store),
                    audience,
                    memberships: Arc::clone(&memberships),
                    api: Arc::clone(&api),
                    endpoint: callback_url.clone(),
                    concurrency: config.broadcast_concurrency,
                    broadcast_budget: config.broadcast_budget,
                    metrics: options.metrics.clone(),
                };
                let (q, task) = start_queue_worker(mode, parts, &mut config, &cancel);
                (Some(q), Some(task))
            }
            _ => (None, None),
        };
        start_token_sweep(&options, &store, &api, &callback_url, &config, &cancel);
        let handlers = HandlerParts {
            store,
            memberships,
            api: Arc::clone(&api),
            config,
            queue,
        };
        let (integration, push_api) = build_integration(&mut options, handlers);
        let shared = build_shared(&options, integration, local_addr);
        let routes = router(Arc::clone(&shared));
        callback_port.fill(routes.clone(), Arc::clone(&shared));
        if let Some(direct) = &callback.direct {
            direct.serve(&shared);
        }
        let server = serve(listener, routes, &cancel);
        tracing::debug!(%local_addr, "listening");
        if options.callback_transport == CallbackTransport::SdkTcp {
            warm_up(
                Arc::clone(&api),
                callback_url.clone(),
                options.broadcast_concurrency.max(1),
            );
        }
        Ok(RunningGateway {
            shared,
            cancel,
            server: Some(server),
            worker: worker_task,
            callback_url,
            callback_port,
            management_api: api,
            push_api,
        })
    }
}

/// Binds `options.host:options.port` and reads back the bound address (the port 0 picked),
/// mapping a taken port to [`BindError::AddrInUse`] so `wsstack-local` can say what to do.
fn bind_listener(options: &GatewayOptions) -> Result<(TcpListener, SocketAddr), BindError> {
    let addr = SocketAddr::new(options.host, options.port);
    let listener = listen(addr).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            BindError::AddrInUse { addr }
        } else {
            BindError::Io { addr, source }
        }
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| BindError::Io { addr, source })?;
    Ok((listener, local_addr))
}

/// The `@connections` endpoint the handlers call back on, `http://{addr}/{stage}`: a concrete
/// loopback address when the gateway listens on all addresses, since an unspecified address
/// cannot be connected to.
fn callback_url_for(local_addr: SocketAddr, stage: &str) -> String {
    // Handlers call back through a concrete address even when the gateway listens on all.
    let callback_ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "http://{}/{}",
        SocketAddr::new(callback_ip, local_addr.port()),
        stage
    )
}

/// The handlers' configuration, as Lambda's environment would give it: the table, the
/// callback endpoint, the broadcast concurrency (at least 1) and whether `$connect` is
/// authenticated.
fn handlers_config(options: &GatewayOptions, callback_url: &str) -> Config {
    let mut config = Config::new(options.table_name.clone());
    config.callback_url = Some(callback_url.to_owned());
    config.broadcast_concurrency = options.broadcast_concurrency.max(1);
    // With an authorizer, `$connect` takes the username from its context only.
    config.authenticated = options.authorizer.is_some();
    // `$default` lists them in `unknown_action`, as synth's FORWARDED_ACTIONS makes it do.
    if let Some(f) = &options.forwarding {
        config.forwarded_actions = f.actions.iter().map(|a| a.name.clone()).collect();
    }
    config
}

/// The `@connections` client the handlers use to call back into this gateway.
struct CallbackApi {
    api: Arc<dyn ManagementApi>,
    /// With [`CallbackTransport::Direct`]: the same client, to be connected to the gateway's
    /// state once that exists.
    direct: Option<Arc<DirectManagementApi>>,
}

/// The handlers' `@connections` client over `transport`: direct to this gateway's connections
/// for `callback_url`, or the SDK (tuned for loopback calls) in process through the router
/// `slot` is filled with, or over TCP.
async fn callback_management_api(
    transport: CallbackTransport,
    slot: &PortSlot,
    callback_url: &str,
) -> CallbackApi {
    // Stalled-stream protection watches each request's throughput with timers: a guard
    // against slow networks that a loopback call does not need, at a cost per request.
    let mut sdk = wsstack_handlers::local_sdk_config(None)
        .await
        .into_builder()
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if transport == CallbackTransport::SdkInProcess {
        sdk = sdk.http_client(InProcessClient::new(slot.clone()).shared());
    }
    let sdk = Arc::new(SdkManagementApi::new(&sdk.build()));
    if transport != CallbackTransport::Direct {
        return CallbackApi {
            api: sdk,
            direct: None,
        };
    }
    let direct = Arc::new(DirectManagementApi::new(callback_url.to_owned(), sdk));
    CallbackApi {
        api: Arc::clone(&direct) as Arc<dyn ManagementApi>,
        direct: Some(direct),
    }
}

/// Switches the handlers' `config` to queue-mode fan-out and starts the in-process fan-out
/// worker (the stand-in for the SQS-triggered Lambda), which stops with `cancel`.
fn start_queue_worker(
    mode: QueueMode,
    parts: fanout_queue::WorkerParts,
    config: &mut Config,
    cancel: &CancellationToken,
) -> (Arc<MemoryQueue>, JoinHandle<()>) {
    config.fanout = Fanout::Queue {
        queue_url: fanout_queue::LOCAL_QUEUE_URL.to_owned(),
        segments: mode.segments,
    };
    config.max_job_age = mode.max_job_age;
    fanout_queue::start(mode, parts, cancel.child_token())
}

/// With an authorizer and a sweep interval, starts the task that closes the connections whose
/// token has expired; it ends with `cancel`, like the fan-out worker.
fn start_token_sweep(
    options: &GatewayOptions,
    store: &Arc<dyn ConnectionStore>,
    api: &Arc<dyn ManagementApi>,
    callback_url: &str,
    config: &Config,
    cancel: &CancellationToken,
) {
    if let (Some(_), Some(every)) = (&options.authorizer, options.token_sweep_interval) {
        // Ends with `cancel`, like the fan-out worker.
        crate::token_sweep::start(
            every,
            Arc::clone(store),
            Arc::clone(api),
            callback_url.to_owned(),
            config.broadcast_concurrency,
            cancel.child_token(),
        );
    }
}

/// What the handlers' [`App`] is built from when no custom integration is given.
struct HandlerParts {
    store: Arc<dyn ConnectionStore>,
    memberships: Arc<dyn MembershipStore>,
    api: Arc<dyn ManagementApi>,
    config: Config,
    queue: Option<Arc<MemoryQueue>>,
}

/// The code behind the routes: `options.integration` if given (taken out of `options`), else
/// the handlers' [`App`] with its metrics, queue and forwarding, plus the push API over it.
fn build_integration(
    options: &mut GatewayOptions,
    parts: HandlerParts,
) -> (Arc<dyn Integration>, Option<PushApi>) {
    if let Some(custom) = options.integration.take() {
        return (custom, None);
    }
    let mut app =
        App::new(parts.store, parts.api, parts.config).with_memberships(parts.memberships);
    if let Some(m) = options.metrics.clone() {
        app = app.with_metrics(m);
    }
    if let Some(q) = parts.queue {
        app = app.with_queue(q);
    }
    if let Some(f) = &options.forwarding {
        let bus = crate::forwarding::LocalBus::new(f.backend_url.clone());
        app = app.with_forwarding(Arc::new(bus), f.config(&options.stage));
    }
    // The callback URL is set in the config: the push API always has its endpoint.
    let push_api = app.push_api().ok();
    (Arc::new(app), push_api)
}

/// The state every request and session shares: the invoker, the route table (with the
/// forwarded actions' routes), the registry of connections, the limits and the API context.
fn build_shared(
    options: &GatewayOptions,
    integration: Arc<dyn Integration>,
    local_addr: SocketAddr,
) -> Arc<Shared> {
    Arc::new(Shared {
        invoker: Invoker {
            integration,
            timeouts: options.timeouts.clone(),
            log: options.event_log.clone(),
        },
        routes: match &options.forwarding {
            Some(f) => options.routes.clone().with_forwarded(f.route_keys()),
            None => options.routes.clone(),
        },
        registry: Registry::default(),
        ws_config: options.limits.websocket_config(),
        limits: options.limits.clone(),
        api: ApiContext {
            stage: options.stage.clone(),
            api_id: options.api_id.clone(),
            port: local_addr.port(),
        },
        tracker: TaskTracker::new(),
        shutting_down: AtomicBool::new(false),
        local_addr,
        authorizer: options.authorizer.clone(),
    })
}

/// The port's routes: WebSocket upgrades, `@connections`, and the rest to the fallback.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(handshake::routes())
        .merge(connections_api::routes())
        .fallback(http_error::fallback)
        .with_state(shared)
}

/// Serves the port's [`router`] until `cancel`, with each connection's peer address.
fn serve(
    listener: TcpListener,
    router: Router,
    cancel: &CancellationToken,
) -> JoinHandle<io::Result<()>> {
    tokio::spawn(
        axum::serve(
            GatewayListener(listener),
            router.into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .into_future(),
    )
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that were open and got a 1001 close.
    pub closed: usize,
    /// Whether every session and handler finished within the grace period.
    pub drained: bool,
}

/// A serving gateway. Dropping it stops the listener and closes every connection without
/// waiting; [`RunningGateway::shutdown`] waits for `$disconnect` of each.
pub struct RunningGateway {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    server: Option<JoinHandle<io::Result<()>>>,
    /// The in-process fan-out worker (queue mode); stops with `cancel`.
    worker: Option<JoinHandle<()>>,
    callback_url: String,
    /// The port (router and state) the SDK's in-process `@connections` calls go to; emptied on
    /// drop.
    callback_port: PortSlot,
    /// The handlers' `@connections` client (over `--callback-transport`).
    management_api: Arc<dyn ManagementApi>,
    /// The push API over the handlers' store and this gateway's `@connections` (`None` with a
    /// custom integration).
    push_api: Option<PushApi>,
}

impl std::fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGateway")
            .field("shared", &self.shared)
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

impl RunningGateway {
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn stage(&self) -> &str {
        &self.shared.api.stage
    }

    /// `ws://{addr}/{stage}`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/{}", self.shared.local_addr, self.shared.api.stage)
    }

    /// The `@connections` endpoint as SDK clients take it: `http://{addr}/{stage}`.
    pub fn callback_url(&self) -> &str {
        &self.callback_url
    }

    /// An SDK HTTP client that hands each request to this gateway's router in process, as
    /// the handlers' `@connections` client does with [`CallbackTransport::SdkInProcess`].
    pub fn in_process_http_client(&self) -> InProcessClient {
        InProcessClient::new(self.callback_port.clone())
    }

    /// The `@connections` client the handlers inside this gateway use, over the options'
    /// `callback_transport`.
    pub fn management_api(&self) -> Arc<dyn ManagementApi> {
        Arc::clone(&self.management_api)
    }

    /// The push API the `push-api` function serves in AWS, over this gateway's store and
    /// `@connections`: for [`crate::push_server::PushServer`]. `None` with a custom
    /// integration (there are no handlers to share a store with).
    pub fn push_api(&self) -> Option<PushApi> {
        self.push_api.clone()
    }

    /// `http://{addr}/{stage}/@connections`.
    pub fn connections_url(&self) -> String {
        format!("{}/@connections", self.callback_url)
    }

    /// Connections past their `$connect` verdict and not yet closing or closed.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Ids of the open connections.
    pub fn connection_ids(&self) -> Vec<String> {
        self.shared
            .registry
            .all()
            .iter()
            .map(|c| c.info.id.as_str().to_owned())
            .collect()
    }

    /// Sessions and handler invocations still running (including ones finishing their
    /// `$disconnect`).
    pub fn active_tasks(&self) -> usize {
        self.shared.tracker.len()
    }

    /// Stops the gateway as API Gateway ends connections: a 1001 close to every client and
    /// `$disconnect` for each, waited for up to `grace`; then the listener closes.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let closed = self.begin_shutdown();
        self.shared.tracker.close();
        let drained = tokio::time::timeout(grace, self.shared.tracker.wait())
            .await
            .is_ok();
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            // The listener has stopped; idle keep-alive connections are closed by hyper.
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                tracing::warn!("HTTP connections still open after shutdown");
            }
        }
        if let Some(worker) = self.worker.take() {
            // Cancelled with the server; a job in progress ends at its next post.
            if tokio::time::timeout(Duration::from_secs(5), worker)
                .await
                .is_err()
            {
                tracing::warn!("fan-out worker still running after shutdown");
            }
        }
        ShutdownReport { closed, drained }
    }

    fn begin_shutdown(&self) -> usize {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let mut closed = 0;
        for conn in self.shared.registry.all() {
            if conn.close(CloseReason::GOING_AWAY) {
                closed += 1;
            }
        }
        closed
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        // The router holds the shared state, which holds the handlers and their client.
        self.callback_port.empty();
        if self.server.is_some() {
            self.begin_shutdown();
            self.cancel.cancel();
        }
    }
}

/// Builds the handlers' `@connections` client and opens its pooled connections to this gateway
/// (one GetConnection per broadcast slot, each answered 410), so the first broadcast does not
/// pay for them. A long-running API Gateway has its connections warm; so should this.
fn warm_up(api: Arc<dyn ManagementApi>, endpoint: String, connections: usize) {
    tokio::spawn(async move {
        let calls = (0..connections).map(|_| api.get_connection(&endpoint, "warm-up"));
        futures::future::join_all(calls).await;
    });
}
