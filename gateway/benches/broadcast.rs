//! The gateway under load, through the real `@connections` path the handlers use (handler ->
//! SdkManagementApi (SigV4, HTTP) -> gateway -> socket), printing its figures.
//!
//! `cargo bench -p wsstack-gateway --bench broadcast` (release build). Phases:
//! 1. `wsstack-local` as a child process: 10,000 concurrent connections (connect rate, RSS per
//!    connection from /proc), then one `sendMessage` broadcast to all of them, three times
//!    (BENCH_BROADCASTS);
//!    once for each of BENCH_CALLBACK_TRANSPORTS (default `sdk-in-process,direct`: the
//!    handlers' posts through the AWS SDK, the default, and straight to the connections).
//! 2. A bare tokio-tungstenite broadcast server (this binary in `--bare-server` mode, also a
//!    child process): the same 10,000 clients and broadcasts, for the ratio.
//! 3. With BENCH_SERVERLESS_OFFLINE=1 (`make bench` sets it): serverless-offline as a child
//!    process (`benches/serverless-offline/`, installed with `npm ci` on first use; needs Node.js
//!    20 and npm), its sendMessage broadcasting through the SDK's PostToConnection, 64 in flight;
//!    the same clients, broadcasts and timing, and the ratio serverless-offline / wsstack-local.
//! 4. A gateway in-process (its own 2-thread runtime): 100 clients sending 1,000 direct
//!    messages per second to themselves for 10 s, round-trip percentiles.
//!
//! The servers of phases 1 to 3 take turns, so that a slow or fast spell of this shared machine
//! falls on all of them: as many as the fd limit holds the clients of are started and connected
//! together, then each round has one broadcast per server (servers x (connections + 16) + 1,024
//! fds; the bench raises the hard limit where it may, as root; with 10,000 connections and the
//! usual limit of 20,000, one server at a time). BENCH_PASSES runs the broadcasts in that many
//! passes over the servers, each server reconnecting its clients every pass. The summary gives
//! the ratios of the best and of the median broadcasts, and the median and range of the ratios
//! round by round.
//!
//! Environment: BENCH_CONNECTIONS (default 10000), BENCH_STEADY_SECS (default 10, 0 skips
//! phase 4), BENCH_BROADCASTS (broadcasts per server, default 3), BENCH_GATEWAY_BIN (another
//! gateway binary to measure, e.g. one with symbols for perf), BENCH_BROADCAST_CONCURRENCY (the
//! gateway's --broadcast-concurrency, default the handlers' 64), BENCH_CALLBACK_TRANSPORTS (the
//! gateway's --callback-transport values to measure, comma-separated: `sdk-in-process`,
//! `sdk-tcp`, `direct`; default `sdk-in-process,direct`),
//! BENCH_CONNECT_IN_FLIGHT (handshakes in flight while connecting, default 512),
//! BENCH_SERVERLESS_OFFLINE (1: phase 3), BENCH_SO_CONNECT_IN_FLIGHT (serverless-offline's
//! handshakes in flight, default BENCH_CONNECT_IN_FLIGHT), BENCH_PASSES (default 1),
//! BENCH_AT_ONCE (most servers connected at once, default all that the fd limit holds).
//!
//! `cargo bench` builds everything with the bench profile (release: LTO, one codegen unit).
//! `cargo bench --profile local -p wsstack-gateway --bench broadcast` measures the build `make
//! dev` runs (thin LTO, dependencies in one codegen unit); the bare server and the load generator
//! are then that build too, and the ratios printed at the end compare the servers of the same
//! run.
//! The fd limit is raised here (setrlimit), never in the gateway.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsstack_gateway::{Gateway, GatewayOptions};
use wsstack_handlers::store::{ConnectionStore, MemoryStore};

#[path = "broadcast/serverless_offline.rs"]
mod serverless_offline;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Raises the soft fd limit to the hard one, and the hard one to `wanted` where the process may
/// (root); returns the soft limit now in force. Servers started later inherit it.
fn raise_fd_limit(wanted: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit failed: {}", std::io::Error::last_os_error());
        }
        if limit.rlim_max < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            // Refused without the privilege: the hard limit stays as it is.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(wanted);
            }
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            bail!("setrlimit failed: {}", std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// VmRSS and VmHWM of a process, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process used so far.
fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU used by the server and by this process (the clients) while `f` ran.
struct CpuMeter {
    server: Option<u32>,
    server_start: Duration,
    me_start: Duration,
}

impl CpuMeter {
    fn start(server: Option<u32>) -> Self {
        CpuMeter {
            server,
            server_start: server.map(cpu_time).unwrap_or_default(),
            me_start: cpu_time(std::process::id()),
        }
    }

    fn report(&self) -> String {
        let me = cpu_time(std::process::id()).saturating_sub(self.me_start);
        match self.server {
            Some(pid) => format!(
                "CPU: server {:.0} ms, clients {:.0} ms",
                cpu_time(pid)
                    .saturating_sub(self.server_start)
                    .as_secs_f64()
                    * 1e3,
                me.as_secs_f64() * 1e3
            ),
            None => format!("CPU: clients {:.0} ms", me.as_secs_f64() * 1e3),
        }
    }
}

/// A child server that prints its ws:// URL on stdout; killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn spawn(mut command: Command) -> anyhow::Result<Server> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn server")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .context("server exited before printing its URL")??;
            if let Some(pos) = line.find("ws://") {
                break line[pos..].trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_config() -> WebSocketConfig {
    // Small client buffers: 10,000 default clients would need 2.5 GiB of buffers.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a WebSocket with a minimal hand-written handshake: the load generator should spend as
/// little CPU as possible, so the figures describe the server. (Frames are then handled by
/// tokio-tungstenite, as in any client.) `i` makes the Sec-WebSocket-Key unique, as a browser's
/// random one is: serverless-offline ties a handshake to its connection id by that key.
async fn connect(url: String, i: usize) -> anyhow::Result<Ws> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("not a ws:// URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut tcp = TcpStream::connect(host)
        .await
        .with_context(|| format!("connect {host}"))?;
    tcp.set_nodelay(true)?;
    // 16 bytes, base64: what RFC 6455 asks of the key.
    let key = base64::engine::general_purpose::STANDARD.encode(format!("{i:016}"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    let end = loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("{url}: connection closed during the handshake");
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(pos) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!(
            "{url}: handshake refused: {}",
            String::from_utf8_lossy(&head[..end])
        );
    }
    let leftover = head.split_off(end);
    Ok(WebSocketStream::from_partially_read(
        MaybeTlsStream::Plain(tcp),
        leftover,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        Some(client_config()),
    )
    .await)
}

/// Connects `n` clients named `u{i}`, `in_flight` handshakes at a time; returns them with
/// their index, in completion order, and the wall time.
async fn connect_many(
    url: &str,
    n: usize,
    in_flight: usize,
) -> anyhow::Result<(Vec<(usize, Ws)>, Duration)> {
    let started = Instant::now();
    let clients: Vec<anyhow::Result<(usize, Ws)>> = futures::stream::iter(0..n)
        .map(|i| {
            let url = format!("{url}?username=u{i}");
            tokio::spawn(async move { connect(url, i).await.map(|ws| (i, ws)) })
        })
        .buffer_unordered(in_flight)
        .map(|r| r.map_err(anyhow::Error::from).and_then(|r| r))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let clients = clients.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((clients, elapsed))
}

fn sockets(clients: Vec<(usize, Ws)>) -> Vec<Ws> {
    clients.into_iter().map(|(_, ws)| ws).collect()
}

/// Sends one broadcast from the first client; returns the time until the last of `clients`
/// received it (and the clients back).
async fn broadcast_once(mut clients: Vec<Ws>, marker: &str) -> anyhow::Result<(Vec<Ws>, Duration)> {
    let mut sender = clients.remove(0);
    let body = serde_json::json!({"action": "sendMessage", "data": marker}).to_string();
    let started = Instant::now();
    sender.send(Message::text(body)).await?;
    clients.insert(0, sender);
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let marker = marker.to_owned();
            tokio::spawn(async move {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.contains(marker.as_str()) => {
                            return Ok((ws, Instant::now()));
                        }
                        // An error frame (a refused broadcast) would otherwise be a 60 s wait.
                        Some(Ok(Message::Text(t))) if t.contains(r#""type":"error""#) => {
                            bail!("error frame instead of the broadcast: {t}")
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(anyhow::Error::from(e)),
                        None => bail!("socket closed"),
                    }
                }
            })
        })
        .collect();
    let mut back = Vec::with_capacity(waits.len());
    let mut last = started;
    for w in waits {
        let (ws, at) = tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .context("broadcast not received within 60 s")???;
        last = last.max(at);
        back.push(ws);
    }
    Ok((back, last - started))
}

#[derive(Default)]
struct Figures {
    /// One per pass.
    connect_rates: Vec<f64>,
    broadcasts: Vec<Duration>,
}

impl Figures {
    fn connect_rate(&self) -> f64 {
        let mut sorted = self.connect_rates.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    fn best(&self) -> Duration {
        self.broadcasts.iter().min().copied().unwrap_or_default()
    }

    fn median(&self) -> Duration {
        let mut sorted = self.broadcasts.clone();
        sorted.sort();
        percentile(&sorted, 0.5)
    }
}

/// How long to wait after a broadcast to `n` before the next: the gateway's handlers charge
/// every delivery to the stage's broadcast budget (`DEFAULT_BROADCAST_BUDGET` per second, one
/// second's worth at once) and refuse a broadcast while it is in debt. Every server gets the
/// same pause; it is not part of the time measured.
fn budget_pause(n: usize) -> Duration {
    let per_second = u64::from(wsstack_handlers::config::DEFAULT_BROADCAST_BUDGET).max(1);
    Duration::from_millis(n as u64 * 1000 / per_second + 200)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// What keeps a server measured running: killed on drop.
enum Process {
    Child(Server),
    ServerlessOffline(serverless_offline::Offline),
}

impl Process {
    fn pid(&self) -> u32 {
        match self {
            Process::Child(s) => s.pid(),
            Process::ServerlessOffline(o) => o.server.pid(),
        }
    }

    fn url(&self) -> &str {
        match self {
            Process::Child(s) => &s.url,
            Process::ServerlessOffline(o) => &o.server.url,
        }
    }

    /// `e`, with serverless-offline's log where it is the server.
    fn failure(&self, e: anyhow::Error) -> anyhow::Error {
        match self {
            Process::Child(_) => e,
            Process::ServerlessOffline(o) => anyhow::anyhow!("{}", o.failure(&format!("{e:#}"))),
        }
    }
}

/// A server under measurement: its process, its connected clients and its figures so far.
struct Contender {
    label: String,
    process: Process,
    clients: Vec<Ws>,
    figures: Figures,
    last_broadcast: Option<Instant>,
}

/// Connects `n` clients to `process`, `in_flight` handshakes at a time (after one warm-up
/// handshake and broadcast), printing the connect rate and RSS per connection.
async fn connect_contender(
    label: &str,
    process: Process,
    n: usize,
    in_flight: usize,
) -> anyhow::Result<Contender> {
    let (url, pid) = (process.url().to_owned(), process.pid());
    let connected = async {
        // Warm up: the first handshake and broadcast build the SDK clients and their pools.
        let (warm, _) = connect_many(&url, 1, 1).await?;
        let (warm, _) = broadcast_once(sockets(warm), "warm-up").await?;
        drop(warm);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (base_rss, _) = rss_kib(pid)?;
        let cpu = CpuMeter::start(Some(pid));
        let (clients, took) = connect_many(&url, n, in_flight).await?;
        let connect_rate = n as f64 / took.as_secs_f64();
        println!(
            "{label}: {n} connections in {:.3} s = {:.0} connections/s ({})",
            took.as_secs_f64(),
            connect_rate,
            cpu.report()
        );
        let (rss, _) = rss_kib(pid)?;
        println!(
            "{label}: RSS {base_rss} KiB before, {rss} KiB with {n} connections = {:.2} KiB per connection",
            (rss.saturating_sub(base_rss)) as f64 / n as f64
        );
        anyhow::Ok((sockets(clients), connect_rate))
    };
    let (clients, connect_rate) = connected.await.map_err(|e| process.failure(e))?;
    Ok(Contender {
        label: label.to_owned(),
        process,
        clients,
        figures: Figures {
            connect_rates: vec![connect_rate],
            broadcasts: Vec::new(),
        },
        last_broadcast: None,
    })
}

impl Contender {
    /// One broadcast to all of this server's clients, after its budget pause.
    async fn broadcast(&mut self, round: usize) -> anyhow::Result<()> {
        let n = self.clients.len();
        if let Some(last) = self.last_broadcast {
            tokio::time::sleep_until((last + budget_pause(n)).into()).await;
        }
        let (label, pid) = (self.label.clone(), self.process.pid());
        let cpu = CpuMeter::start(Some(pid));
        let clients = std::mem::take(&mut self.clients);
        let (back, t) = broadcast_once(clients, &format!("round-{round}-{label}"))
            .await
            .map_err(|e| self.process.failure(e))?;
        self.clients = back;
        self.last_broadcast = Some(Instant::now());
        println!(
            "{label}: broadcast {round} reached the last of {n} clients after {:.1} ms ({:.0} deliveries/s; {})",
            t.as_secs_f64() * 1e3,
            n as f64 / t.as_secs_f64(),
            cpu.report()
        );
        self.figures.broadcasts.push(t);
        Ok(())
    }

    /// Prints the server's RSS after the broadcasts, closes the clients and stops the server.
    fn finish(self) -> (String, Figures) {
        if let Ok((rss, hwm)) = rss_kib(self.process.pid()) {
            println!(
                "{}: RSS after the broadcasts {rss} KiB, peak {hwm} KiB",
                self.label
            );
        }
        drop(self.clients);
        (self.label, self.figures)
    }
}

/// `--bare-server`: the simplest tokio-tungstenite broadcast server (every text message goes to
/// every connection), the lower bound for the gateway's broadcast.
fn bare_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // The gateway's backlog (`server.rs`): `TcpListener::bind` queues 128, and a burst of
        // 512 handshakes in flight then drops SYNs, which the clients retry only after a second.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse()?)?;
        let listener = socket.listen(4096)?;
        println!("bare server on ws://{}/dev", listener.local_addr()?);
        let (tx, _) =
            tokio::sync::broadcast::channel::<tokio_tungstenite::tungstenite::Utf8Bytes>(64);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            // Subscribed before the handshake: a client may send (or be sent) a broadcast as
            // soon as it has the 101.
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(tcp, Some(client_config())).await
                else {
                    return;
                };
                loop {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(Message::Text(t))) => { let _ = tx.send(t); }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        b = rx.recv() => match b {
                            Ok(t) => if ws.send(Message::Text(t)).await.is_err() { return },
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => return,
                        },
                    }
                }
            });
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// 100 clients each send a direct message to themselves every 100 ms (1,000 messages/s in
/// all, open loop: a slow answer does not delay the next send) for `secs`; returns the round
/// trips (send -> handler -> @connections -> the client's socket).
async fn steady_load(url: String, store: MemoryStore, secs: u64) -> anyhow::Result<Vec<Duration>> {
    let clients = 100;
    let (sockets, _) = connect_many(&url, clients, 100).await?;
    let mut ids = std::collections::HashMap::new();
    let records: Vec<_> = store.list().collect().await;
    for r in records {
        let r = r?;
        ids.insert(r.username, r.connection_id);
    }
    let epoch = Instant::now();
    let per_client = secs * 10;
    let mut tasks = Vec::new();
    for (i, ws) in sockets {
        let id = ids
            .get(&format!("u{i}"))
            .cloned()
            .with_context(|| format!("no record for u{i}"))?;
        let (mut write, mut read) = ws.split();
        // Spread the clients over the 100 ms period.
        let first = epoch + Duration::from_millis(200 + i as u64);
        let writer = async move {
            for k in 0..per_client {
                tokio::time::sleep_until((first + Duration::from_millis(100 * k)).into()).await;
                let sent = epoch.elapsed().as_nanos().to_string();
                let body = serde_json::json!({"action": "sendMessage", "data": sent, "to": id});
                write.send(Message::text(body.to_string())).await?;
            }
            Ok::<_, anyhow::Error>(write)
        };
        let reader = async move {
            let mut rtts = Vec::with_capacity(per_client as usize);
            while rtts.len() < per_client as usize {
                let message = tokio::time::timeout(Duration::from_secs(10), read.next())
                    .await
                    .context("no answer within 10 s")?;
                match message {
                    Some(Ok(Message::Text(t))) => {
                        let v: serde_json::Value = serde_json::from_str(&t)?;
                        let sent: u128 = v["data"]
                            .as_str()
                            .and_then(|d| d.parse().ok())
                            .with_context(|| format!("unexpected frame {t}"))?;
                        let now = epoch.elapsed().as_nanos();
                        rtts.push(Duration::from_nanos(u64::try_from(now - sent)?));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("socket closed"),
                }
            }
            Ok(rtts)
        };
        tasks.push(tokio::spawn(async move {
            let (w, r) = tokio::join!(writer, reader);
            drop(w?);
            r
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// A server to measure, before it is started.
enum Kind {
    /// Phase 1: the gateway binary, its handlers posting over this `--callback-transport`;
    /// labelled `gateway/{transport}`.
    Gateway(String),
    /// Phase 2: the bare server (this binary with `--bare-server`).
    Bare,
    /// Phase 3 (BENCH_SERVERLESS_OFFLINE=1): serverless-offline.
    ServerlessOffline,
}

impl Kind {
    fn label(&self) -> String {
        match self {
            Kind::Gateway(transport) => format!("gateway/{transport}"),
            Kind::Bare => "bare".to_owned(),
            Kind::ServerlessOffline => "serverless-offline".to_owned(),
        }
    }

    fn start(&self) -> anyhow::Result<Process> {
        match self {
            Kind::Gateway(transport) => {
                let gateway_bin = gateway_binary();
                println!("gateway binary: {}", gateway_bin.display());
                let mut command = Command::new(gateway_bin);
                command.args(["--port", "0", "--log-level", "warn"]);
                command.args(["--callback-transport", transport]);
                if let Ok(c) = std::env::var("BENCH_BROADCAST_CONCURRENCY") {
                    command.args(["--broadcast-concurrency", &c]);
                }
                let gateway = Server::spawn(command)?;
                println!("{}: {} (pid {})", self.label(), gateway.url, gateway.pid());
                Ok(Process::Child(gateway))
            }
            Kind::Bare => {
                let mut command = Command::new(std::env::current_exe()?);
                command.arg("--bare-server");
                Ok(Process::Child(Server::spawn(command)?))
            }
            Kind::ServerlessOffline => Ok(Process::ServerlessOffline(
                serverless_offline::Offline::start()?,
            )),
        }
    }

    /// Handshakes in flight while connecting: BENCH_SO_CONNECT_IN_FLIGHT (default `in_flight`)
    /// bounds serverless-offline's, for when it refuses as many as the others take.
    fn connect_in_flight(&self, in_flight: usize) -> usize {
        match self {
            Kind::ServerlessOffline => {
                let so = env_usize("BENCH_SO_CONNECT_IN_FLIGHT", in_flight);
                if so != in_flight {
                    println!(
                        "serverless-offline: {so} handshakes in flight (BENCH_SO_CONNECT_IN_FLIGHT), \
                         the other servers {in_flight}"
                    );
                }
                so
            }
            _ => in_flight,
        }
    }

    async fn connect(&self, n: usize, in_flight: usize) -> anyhow::Result<Contender> {
        let process = self.start()?;
        connect_contender(&self.label(), process, n, self.connect_in_flight(in_flight)).await
    }
}

/// The gateway to measure: BENCH_GATEWAY_BIN, else this bench's own build of it.
fn gateway_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_GATEWAY_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_wsstack-local").into())
}

/// The `--callback-transport` values to measure: BENCH_CALLBACK_TRANSPORTS, comma-separated.
fn transports() -> Vec<String> {
    std::env::var("BENCH_CALLBACK_TRANSPORTS")
        .unwrap_or_else(|_| "sdk-in-process,direct".to_owned())
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `rounds` broadcasts per server, in `passes` passes. In a pass the servers go in groups of
/// `at_once` (as many as the fd limit holds the clients of): a group's servers are started and
/// connected, take turns broadcasting (one broadcast each per round), and are stopped. Turns
/// and passes make a slow or fast spell of this shared machine fall on every server alike.
async fn measure(
    kinds: &[Kind],
    n: usize,
    in_flight: usize,
    rounds: usize,
    passes: usize,
    at_once: usize,
) -> anyhow::Result<Vec<(String, Figures)>> {
    let mut figures: Vec<(String, Figures)> = kinds
        .iter()
        .map(|k| (k.label(), Figures::default()))
        .collect();
    let per_pass = rounds.div_ceil(passes);
    let mut round = 0;
    while round < rounds {
        let these = per_pass.min(rounds - round);
        for group in kinds.chunks(at_once) {
            let mut contenders = Vec::new();
            for kind in group {
                contenders.push(kind.connect(n, in_flight).await?);
            }
            for r in round..round + these {
                for contender in &mut contenders {
                    contender.broadcast(r).await?;
                }
            }
            for contender in contenders {
                let (label, pass) = contender.finish();
                if let Some((_, all)) = figures.iter_mut().find(|(l, _)| *l == label) {
                    all.connect_rates.extend(pass.connect_rates);
                    all.broadcasts.extend(pass.broadcasts);
                }
            }
        }
        round += these;
    }
    Ok(figures)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// The median of `slow / fast` over the rounds both ran, and its range.
fn paired(slow: &Figures, fast: &Figures) -> Option<(f64, f64, f64)> {
    let mut ratios: Vec<f64> = slow
        .broadcasts
        .iter()
        .zip(&fast.broadcasts)
        .map(|(&s, &f)| ratio(s, f))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = *ratios.get(ratios.len() / 2)?;
    Some((median, ratios[0], ratios[ratios.len() - 1]))
}

fn paired_text(slow: &Figures, fast: &Figures) -> String {
    paired(slow, fast)
        .map(|(m, lo, hi)| format!("{m:.1}x (round by round: {lo:.1}x to {hi:.1}x)"))
        .unwrap_or_default()
}

/// The run's summary: each server's best and median broadcast and connect rate, and the ratios
/// of each gateway (one per transport) to the bare server and serverless-offline: of the best
/// and median broadcasts, and the median and range of the ratios round by round.
fn summary(n: usize, figures: &[(String, Figures)]) {
    let find = |label: &str| figures.iter().find(|(l, _)| l == label).map(|(_, f)| f);
    let (Some(bare), so) = (find("bare"), find("serverless-offline")) else {
        return;
    };
    println!(
        "broadcast to {n}: bare tokio-tungstenite best {}, median {}",
        ms(bare.best()),
        ms(bare.median()),
    );
    if let Some(so) = so {
        println!(
            "broadcast to {n}: serverless-offline best {}, median {}",
            ms(so.best()),
            ms(so.median()),
        );
    }
    let gateways: Vec<_> = figures
        .iter()
        .filter(|(l, _)| l.starts_with("gateway/"))
        .collect();
    for (label, gw) in &gateways {
        let versus_so = so
            .map(|so| {
                format!(
                    "; serverless-offline / wsstack-local {:.1}x (best), {:.1}x (median)",
                    ratio(so.best(), gw.best()),
                    ratio(so.median(), gw.median()),
                )
            })
            .unwrap_or_default();
        println!(
            "broadcast to {n}: {label} best {}, median {}; / bare {:.1}x (best), {:.1}x (median){versus_so}",
            ms(gw.best()),
            ms(gw.median()),
            ratio(gw.best(), bare.best()),
            ratio(gw.median(), bare.median()),
        );
        let versus_so = so
            .map(|so| format!("; serverless-offline / {label} {}", paired_text(so, gw)))
            .unwrap_or_default();
        println!(
            "paired by round: {label} / bare {}{versus_so}",
            paired_text(gw, bare)
        );
    }
    let rates: Vec<String> = figures
        .iter()
        .map(|(l, f)| format!("{l} {:.0}/s", f.connect_rate()))
        .collect();
    println!("connect rate: {}", rates.join(", "));
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare-server") {
        return bare_server();
    }
    let n = env_usize("BENCH_CONNECTIONS", 10_000);
    let steady_secs = env_usize("BENCH_STEADY_SECS", 10) as u64;
    let in_flight = env_usize("BENCH_CONNECT_IN_FLIGHT", 512);
    let rounds = env_usize("BENCH_BROADCASTS", 3).max(1);
    let with_so = std::env::var("BENCH_SERVERLESS_OFFLINE").is_ok_and(|v| v == "1");
    let mut kinds: Vec<Kind> = transports().into_iter().map(Kind::Gateway).collect();
    kinds.push(Kind::Bare);
    if with_so {
        kinds.push(Kind::ServerlessOffline);
    }
    let passes = env_usize("BENCH_PASSES", 1).clamp(1, rounds);
    // A server's clients and its warm-up's, and some fds to spare.
    let per_server = (n + 16) as u64;
    let fds = raise_fd_limit(kinds.len() as u64 * per_server + 1024)?;
    let fit = usize::try_from(fds.saturating_sub(1024) / per_server).unwrap_or(usize::MAX);
    let at_once = env_usize("BENCH_AT_ONCE", kinds.len()).min(fit).max(1);
    println!(
        "broadcast bench: {n} connections, fd limit {fds}, {} cores, serverless-offline {}; \
         {rounds} broadcasts per server in {passes} pass(es) (BENCH_PASSES), {at_once} server(s) \
         at once taking turns (as many as the fd limit holds, at most BENCH_AT_ONCE)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if with_so {
            "on"
        } else {
            "off (BENCH_SERVERLESS_OFFLINE=1)"
        },
    );

    if with_so {
        serverless_offline::install()?;
    }
    let clients_rt = tokio::runtime::Runtime::new()?;
    let figures = clients_rt.block_on(measure(&kinds, n, in_flight, rounds, passes, at_once))?;
    summary(n, &figures);

    if steady_secs > 0 {
        steady_phase(&clients_rt, steady_secs)?;
    }
    Ok(())
}

/// Phase 4: steady load on an in-process gateway with its own runtime.
fn steady_phase(clients_rt: &tokio::runtime::Runtime, steady_secs: u64) -> anyhow::Result<()> {
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = MemoryStore::new();
    let options = GatewayOptions {
        port: 0,
        ..GatewayOptions::default()
    };
    let running = gateway_rt.block_on(Gateway::bind(options, Arc::new(store.clone())))?;
    let rtts = clients_rt.block_on(steady_load(running.ws_url(), store, steady_secs))?;
    let mut sorted = rtts;
    sorted.sort();
    println!(
        "steady load: {} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    gateway_rt.block_on(running.shutdown(Duration::from_secs(5)));
    Ok(())
}
