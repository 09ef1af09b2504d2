//! What the gateway's end-to-end tests share: a gateway on a free port of 127.0.0.1 (stopped
//! when its guard drops, also when a test panics), real WebSocket clients, and bounded waits
//! that fail with what was awaited.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsstack_gateway::{Gateway, GatewayOptions, RunningGateway};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};

/// The longest any single awaited event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Options for a test gateway: API Gateway's defaults on a free port of 127.0.0.1.
pub fn options() -> GatewayOptions {
    GatewayOptions {
        host: Ipv4Addr::LOCALHOST.into(),
        port: 0,
        ..GatewayOptions::default()
    }
}

/// A gateway over `store`.
pub async fn start_with(
    options: GatewayOptions,
    store: Arc<dyn ConnectionStore>,
) -> RunningGateway {
    Gateway::bind(options, store)
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

/// The handlers' metric lines, kept in memory instead of standard output (for
/// `GatewayOptions::metrics`), and where to read them. Their `Handler` dimension is
/// `wsstack-local`.
pub fn memory_metrics() -> (
    Option<wsstack_handlers::metrics::Metrics>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    use wsstack_handlers::metrics::{Metrics, MetricsSink};
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let metrics = Metrics {
        handler: "wsstack-local".into(),
        sink: MetricsSink::Memory(Arc::clone(&lines)),
    };
    (Some(metrics), lines)
}

/// A gateway over a fresh in-memory store, and the store (clones share their records).
pub async fn start(options: GatewayOptions) -> (RunningGateway, MemoryStore) {
    let store = MemoryStore::new();
    let gw = start_with(options, Arc::new(store.clone())).await;
    (gw, store)
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client.
pub struct Client {
    pub name: String,
    ws: Socket,
}

/// `ws://.../{stage}?username={name}` (names in tests need no escaping).
pub fn url_for(gw: &RunningGateway, username: &str) -> String {
    format!("{}?username={username}", gw.ws_url())
}

/// Connects as `username`; panics if the handshake fails.
pub async fn connect(gw: &RunningGateway, username: &str) -> Client {
    match try_connect(&url_for(gw, username)).await {
        Ok(ws) => Client {
            name: username.to_owned(),
            ws,
        },
        Err(e) => panic!("{username} could not connect: {e}"),
    }
}

/// A handshake to `url` with a `User-Agent`, bounded by [`WAIT`].
pub async fn try_connect(url: &str) -> Result<Socket, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "user-agent",
        "wsstack-tests/1".parse().expect("static header"),
    );
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
        Ok(result) => result.map(|(ws, _)| ws),
        Err(_) => panic!("handshake to {url} did not finish within {WAIT:?}"),
    }
}

impl Client {
    pub async fn send(&mut self, message: Message) {
        if let Err(e) = self.ws.send(message).await {
            panic!("{}: send failed: {e}", self.name);
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// The next data or close message (pings and pongs are skipped).
    pub async fn next(&mut self) -> Message {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("{}: nothing received within {WAIT:?}", self.name),
                Ok(None) => panic!("{}: the socket ended without a close frame", self.name),
                Ok(Some(Err(e))) => panic!("{}: receive failed: {e}", self.name),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(m))) => return m,
            }
        }
    }

    /// The next message, which must be a JSON text frame.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Message::Text(t) => serde_json::from_str(&t)
                .unwrap_or_else(|e| panic!("{}: frame is not JSON ({e}): {t}", self.name)),
            other => panic!("{}: expected a text frame, got {other:?}", self.name),
        }
    }

    /// The next message, which must be the close frame; returns it.
    pub async fn expect_close(&mut self) -> CloseFrame {
        match self.next().await {
            Message::Close(Some(frame)) => frame,
            other => panic!("{}: expected a close frame, got {other:?}", self.name),
        }
    }

    /// Closes cleanly and waits for the gateway's answer.
    pub async fn close(mut self) {
        if let Err(e) = self.ws.close(None).await {
            panic!("{}: close failed: {e}", self.name);
        }
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Kills the TCP connection (a reset, no close frame), as a crashed client would.
    pub fn kill(self) {
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            // Zero linger turns the close into a RST.
            let _ = tcp.set_zero_linger();
        }
        drop(self);
    }

    pub fn socket(&mut self) -> &mut Socket {
        &mut self.ws
    }
}

/// Every record in the store.
pub async fn records(store: &dyn ConnectionStore) -> Vec<Connection> {
    let mut all = Vec::new();
    let mut list = store.list();
    while let Some(r) = list.next().await {
        all.push(r.unwrap_or_else(|e| panic!("listing the store failed: {e}")));
    }
    all
}

/// The connection id of `username` (from its record, written by `$connect`).
pub async fn id_of(store: &dyn ConnectionStore, username: &str) -> String {
    let matching: Vec<_> = records(store)
        .await
        .into_iter()
        .filter(|c| c.username == username)
        .collect();
    assert_eq!(matching.len(), 1, "records of {username}: {matching:?}");
    matching[0].connection_id.clone()
}

/// Sorted connection ids of the store's records.
pub async fn stored_ids(store: &dyn ConnectionStore) -> Vec<String> {
    let mut ids: Vec<String> = records(store)
        .await
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    ids.sort();
    ids
}

/// Waits until `check` holds, polling: for state that changes in another process or task
/// without an event the test can await (a store record deleted by `$disconnect`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return;
        }
        if started.elapsed() > timeout {
            panic!("{what}: not true within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A message of `size` bytes of text.
pub fn text_of_size(size: usize) -> String {
    "x".repeat(size)
}

/// The `push` binary of its own crate (see [`wsstack_tests::package_binary`]).
pub fn push_binary() -> std::path::PathBuf {
    wsstack_tests::package_binary("wsstack-push", "push")
}

/// Runs `program args` with dummy AWS credentials (and no access to the user's AWS config),
/// bounded by a minute; returns (success, stdout, stderr).
pub async fn run_tool(program: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Err(_) => panic!("{} {args:?} did not finish within 60 s", program.display()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{} is not installed: run `make tools` (pip install awscli) first",
            program.display()
        ),
        Ok(Err(e)) => panic!("could not run {}: {e}", program.display()),
        Ok(Ok(o)) => o,
    };
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Client {
    /// Wraps a socket from [`try_connect`].
    pub fn from_socket(name: &str, ws: Socket) -> Client {
        Client {
            name: name.to_owned(),
            ws,
        }
    }
}

/// A client on a bare TCP socket: it completes the WebSocket handshake itself and then reads
/// and writes only when the test says so, e.g. never reads, as a stalled client would.
pub struct RawClient {
    pub tcp: TcpStream,
    /// (gateway, client) addresses of the connection, kept for after a reset.
    addrs: (std::net::SocketAddr, std::net::SocketAddr),
}

impl RawClient {
    /// Connects to `gw` with a small receive buffer (so a client that does not read fills up
    /// quickly) and completes the handshake; panics unless the gateway answers 101.
    pub async fn connect(gw: &RunningGateway, query: &str) -> RawClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut tcp = tokio::time::timeout(WAIT, socket.connect(gw.local_addr()))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        let request = format!(
            "GET /{}?{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             User-Agent: wsstack-raw/1\r\n\r\n",
            gw.stage(),
            gw.local_addr()
        );
        tcp.write_all(request.as_bytes())
            .await
            .expect("write handshake");
        // Read the response byte by byte so that nothing after it is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
                .await
                .expect("handshake response timed out")
                .expect("read handshake");
            assert!(n == 1, "socket closed during the handshake: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        let addrs = (
            tcp.peer_addr().expect("peer address"),
            tcp.local_addr().expect("local address"),
        );
        RawClient { tcp, addrs }
    }

    /// Sends one masked client frame (as RFC 6455 requires of clients).
    pub async fn send_frame(
        &mut self,
        frame: tokio_tungstenite::tungstenite::protocol::frame::Frame,
    ) {
        use tokio::io::AsyncWriteExt;
        let mut frame = frame;
        // Any mask will do; the gateway only requires one.
        frame.header_mut().mask = Some([0x5a, 0x17, 0xc3, 0x08]);
        let mut bytes = Vec::new();
        frame.format(&mut bytes).expect("format frame");
        self.tcp.write_all(&bytes).await.expect("write frame");
    }

    /// Starts reading at last and reads (and discards) until the server's side of the TCP
    /// connection is gone: `Ok(bytes read)` at end of stream (FIN), `Err` on a reset. Panics if
    /// the socket is still open `within` after the call: the server kept it.
    pub async fn read_until_closed(&mut self, within: Duration) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        let drain = async {
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match self.tcp.read(&mut buf).await? {
                    0 => return Ok(total),
                    n => total += n,
                }
            }
        };
        match tokio::time::timeout(within, drain).await {
            Ok(result) => result,
            Err(_) => panic!("the server's socket was still open {within:?} later"),
        }
    }

    /// The state of the gateway's end of this TCP connection as the kernel lists it in
    /// `/proc/net/tcp` (`"01"` ESTABLISHED, `"04"` FIN_WAIT1, ...), `None` once the kernel has
    /// let go of it. Linux only, as the rest of the test environment.
    pub fn server_side_tcp_state(&self) -> Option<String> {
        let hex = |addr: std::net::SocketAddr| match addr {
            std::net::SocketAddr::V4(a) => format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(a.ip().octets()),
                a.port()
            ),
            std::net::SocketAddr::V6(_) => panic!("test gateways listen on 127.0.0.1"),
        };
        let (local, remote) = (hex(self.addrs.0), hex(self.addrs.1));
        let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
                .then(|| fields.get(3).map(|s| (*s).to_owned()))
                .flatten()
        })
    }

    /// Reads one server frame: (opcode byte, FIN, payload).
    pub async fn read_frame(&mut self) -> (u8, bool, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut head = [0u8; 2];
            self.tcp.read_exact(&mut head).await?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.tcp.read_exact(&mut b).await?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.tcp.read_exact(&mut b).await?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
            self.tcp.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>((opcode, fin, payload))
        };
        match tokio::time::timeout(WAIT, read).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => panic!("reading a frame failed: {e}"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }
}

/// Code behind the routes for tests: answers `$connect` (and every route) with `response`,
/// after `delay` for the listed handlers; panics or fails where told.
pub struct StubIntegration {
    pub response: aws_lambda_events::apigw::ApiGatewayProxyResponse,
    pub slow: Vec<(wsstack_routes::Handler, Duration)>,
    pub fail: Vec<wsstack_routes::Handler>,
    pub panic: Vec<wsstack_routes::Handler>,
}

impl StubIntegration {
    /// Answers every route with 200 at once.
    pub fn ok() -> StubIntegration {
        let mut response = aws_lambda_events::apigw::ApiGatewayProxyResponse::default();
        response.status_code = 200;
        StubIntegration {
            response,
            slow: Vec::new(),
            fail: Vec::new(),
            panic: Vec::new(),
        }
    }
}

impl wsstack_gateway::Integration for StubIntegration {
    fn invoke(
        &self,
        handler: wsstack_routes::Handler,
        _event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
    ) -> futures::future::BoxFuture<
        '_,
        Result<aws_lambda_events::apigw::ApiGatewayProxyResponse, String>,
    > {
        Box::pin(async move {
            if let Some((_, delay)) = self.slow.iter().find(|(h, _)| *h == handler) {
                tokio::time::sleep(*delay).await;
            }
            if self.panic.contains(&handler) {
                panic!("stub panics in {handler:?}");
            }
            if self.fail.contains(&handler) {
                return Err(format!("stub fails in {handler:?}"));
            }
            Ok(self.response.clone())
        })
    }
}

/// Waits until `log` holds an event of `event_type` for `connection_id` (any connection when
/// `None`) and returns it.
pub async fn wait_for_event(
    log: &wsstack_gateway::EventLog,
    event_type: &str,
    connection_id: Option<&str>,
    timeout: Duration,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let started = Instant::now();
    loop {
        let found = log.events().into_iter().map(|(_, e)| e).find(|e| {
            e.request_context.event_type.as_deref() == Some(event_type)
                && connection_id
                    .is_none_or(|id| e.request_context.connection_id.as_deref() == Some(id))
        });
        if let Some(event) = found {
            return event;
        }
        if started.elapsed() > timeout {
            panic!(
                "no {event_type} event within {timeout:?}: {:?}",
                log.events()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An `@connections` client as the handlers build it: the real SDK, dummy credentials, the
/// gateway as endpoint. No retries, so each call is exactly one request.
pub async fn management_client(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = wsstack_tests::local_sdk_config(None).await;
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
        .endpoint_url(endpoint)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// [`management_client`] for the gateway's own callback endpoint, whose requests go to the
/// gateway's router in process (the transport the handlers inside the gateway use) instead
/// of its port.
pub async fn in_process_management_client(
    gw: &RunningGateway,
) -> aws_sdk_apigatewaymanagement::Client {
    let sdk = wsstack_tests::local_sdk_config(None).await;
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
        .endpoint_url(gw.callback_url())
        .http_client(gw.in_process_http_client())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// A local OpenID issuer on a free port and an authorizer that trusts it (its keys fetched
/// through discovery, as in AWS): for gateways that authenticate `$connect`. `username_claim`
/// as the stage's `[auth] username_claim`. Keep the issuer alive as long as the gateway.
pub async fn local_auth(
    username_claim: Option<&str>,
) -> (
    Arc<wsstack_auth::issuer::LocalIssuer>,
    Arc<wsstack_auth::Authorizer<wsstack_auth::http_source::HttpJwksSource>>,
) {
    use wsstack_auth::issuer::{LOCAL_AUDIENCE, LocalIssuer};
    let issuer = LocalIssuer::start("127.0.0.1:0".parse().expect("addr"), LOCAL_AUDIENCE)
        .await
        .expect("issuer");
    let config = wsstack_auth::AuthConfig {
        issuer: issuer.url().to_owned(),
        audiences: vec![LOCAL_AUDIENCE.to_owned()],
        jwks_url: None,
        token_source: wsstack_auth::TokenSource::default(),
        username_claim: username_claim.map(str::to_owned),
    };
    let authorizer = Arc::new(config.http_authorizer().expect("authorizer"));
    (issuer, authorizer)
}
