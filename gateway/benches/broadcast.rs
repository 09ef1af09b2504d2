//! The gateway under load, through the real `@connections` path the handlers use (handler ->
//! SdkManagementApi (SigV4, HTTP) -> gateway -> socket), printing its figures.
//!
//! `cargo bench -p wsstack-gateway --bench broadcast` (release build). Phases:
//! 1. `wsstack-local` as a child process: 10,000 concurrent connections (connect rate, RSS per
//!    connection from /proc), then one `sendMessage` broadcast to all of them, three times;
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
//! Environment: BENCH_CONNECTIONS (default 10000), BENCH_STEADY_SECS (default 10, 0 skips
//! phase 4), BENCH_BROADCASTS (broadcasts per server, default 3), BENCH_GATEWAY_BIN (another
//! gateway binary to measure, e.g. one with symbols for perf), BENCH_BROADCAST_CONCURRENCY (the
//! gateway's --broadcast-concurrency, default the handlers' 64), BENCH_CALLBACK_TRANSPORTS (the
//! gateway's --callback-transport values to measure, comma-separated: `sdk-in-process`,
//! `sdk-tcp`, `direct`; default `sdk-in-process,direct`),
//! BENCH_CONNECT_IN_FLIGHT (handshakes in flight while connecting, default 512),
//! BENCH_SERVERLESS_OFFLINE (1: phase 3), BENCH_SO_CONNECT_IN_FLIGHT (serverless-offline's
//! handshakes in flight, default BENCH_CONNECT_IN_FLIGHT).
//!
//! `cargo bench` builds everything with the bench profile (release: LTO, one codegen unit).
//! `cargo bench --profile local -p wsstack-gateway --bench broadcast` measures the build `make
//! dev` runs (no LTO); the bare server and the load generator are then that build too, and the
//! ratios printed at the end compare the servers of the same run.
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

fn raise_fd_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit failed: {}", std::io::Error::last_os_error());
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

struct Figures {
    connect_rate: f64,
    broadcasts: Vec<Duration>,
}

impl Figures {
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

/// Connects `n` clients, `in_flight` handshakes at a time, then runs BENCH_BROADCASTS
/// broadcasts; the same for every server measured.
async fn run_clients(
    url: &str,
    n: usize,
    in_flight: usize,
    pid: Option<u32>,
    label: &str,
) -> anyhow::Result<Figures> {
    // Warm up: the first handshake and broadcast build the SDK clients and their pools.
    let (warm, _) = connect_many(url, 1, 1).await?;
    let (warm, _) = broadcast_once(sockets(warm), "warm-up").await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = match pid {
        Some(p) => Some(rss_kib(p)?),
        None => None,
    };

    let cpu = CpuMeter::start(pid);
    let (clients, took) = connect_many(url, n, in_flight).await?;
    let connect_rate = n as f64 / took.as_secs_f64();
    println!(
        "{label}: {n} connections in {:.3} s = {:.0} connections/s ({})",
        took.as_secs_f64(),
        connect_rate,
        cpu.report()
    );
    if let (Some(p), Some((base_rss, _))) = (pid, base) {
        let (rss, _) = rss_kib(p)?;
        println!(
            "{label}: RSS {base_rss} KiB before, {rss} KiB with {n} connections = {:.2} KiB per connection",
            (rss.saturating_sub(base_rss)) as f64 / n as f64
        );
    }
    let mut clients = sockets(clients);
    let mut broadcasts = Vec::new();
    for round in 0..env_usize("BENCH_BROADCASTS", 3).max(1) {
        if round > 0 {
            tokio::time::sleep(budget_pause(n)).await;
        }
        let cpu = CpuMeter::start(pid);
        let (back, t) = broadcast_once(clients, &format!("round-{round}-{label}")).await?;
        clients = back;
        println!(
            "{label}: broadcast {round} reached the last of {n} clients after {:.1} ms ({:.0} deliveries/s; {})",
            t.as_secs_f64() * 1e3,
            n as f64 / t.as_secs_f64(),
            cpu.report()
        );
        broadcasts.push(t);
    }
    if let Some(p) = pid {
        let (rss, hwm) = rss_kib(p)?;
        println!("{label}: RSS after the broadcasts {rss} KiB, peak {hwm} KiB");
    }
    drop(clients);
    Ok(Figures {
        connect_rate,
        broadcasts,
    })
}

/// `--bare-server`: the simplest tokio-tungstenite broadcast server (every text message goes to
/// every connection), the lower bound for the gateway's broadcast.
fn bare_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
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

/// The gateway to measure: BENCH_GATEWAY_BIN, else this bench's own build of it.
fn gateway_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_GATEWAY_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_wsstack-local").into())
}

/// Phase 1: the gateway binary as a child process, its handlers posting over `transport`
/// (`--callback-transport`); figures labelled `gateway/{transport}`.
fn gateway_phase(
    rt: &tokio::runtime::Runtime,
    n: usize,
    in_flight: usize,
    transport: &str,
) -> anyhow::Result<Figures> {
    let gateway_bin = gateway_binary();
    println!("gateway binary: {}", gateway_bin.display());
    let mut command = Command::new(gateway_bin);
    command.args(["--port", "0", "--log-level", "warn"]);
    command.args(["--callback-transport", transport]);
    if let Ok(c) = std::env::var("BENCH_BROADCAST_CONCURRENCY") {
        command.args(["--broadcast-concurrency", &c]);
    }
    let gateway = Server::spawn(command)?;
    let url = gateway.url.clone();
    let label = format!("gateway/{transport}");
    println!("{label}: {url} (pid {})", gateway.pid());
    rt.block_on(run_clients(&url, n, in_flight, Some(gateway.pid()), &label))
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

/// Phase 2: the bare server (this binary with `--bare-server`) as a child process.
fn bare_phase(rt: &tokio::runtime::Runtime, n: usize, in_flight: usize) -> anyhow::Result<Figures> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--bare-server");
    let bare = Server::spawn(command)?;
    let url = bare.url.clone();
    rt.block_on(run_clients(&url, n, in_flight, Some(bare.pid()), "bare"))
}

/// Phase 3 (BENCH_SERVERLESS_OFFLINE=1): serverless-offline as a child process, the same
/// clients and broadcasts. BENCH_SO_CONNECT_IN_FLIGHT (default BENCH_CONNECT_IN_FLIGHT) bounds
/// its handshakes in flight, for when it refuses as many as the others take.
fn serverless_offline_phase(
    rt: &tokio::runtime::Runtime,
    n: usize,
    in_flight: usize,
) -> anyhow::Result<Figures> {
    let in_flight_so = env_usize("BENCH_SO_CONNECT_IN_FLIGHT", in_flight);
    if in_flight_so != in_flight {
        println!(
            "serverless-offline: {in_flight_so} handshakes in flight (BENCH_SO_CONNECT_IN_FLIGHT), \
             the other servers {in_flight}"
        );
    }
    let offline = serverless_offline::Offline::start()?;
    let url = offline.server.url.clone();
    let pid = Some(offline.server.pid());
    rt.block_on(run_clients(
        &url,
        n,
        in_flight_so,
        pid,
        "serverless-offline",
    ))
    .map_err(|e| anyhow::anyhow!("{}", offline.failure(&format!("{e:#}"))))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// The run's summary: each server's best and median broadcast and connect rate, and the ratios
/// of each gateway (one per transport) to the bare server and serverless-offline.
fn summary(n: usize, gateways: &[(String, Figures)], bare: &Figures, so: Option<&Figures>) {
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
    for (transport, gw) in gateways {
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
            "broadcast to {n}: gateway/{transport} best {}, median {}; / bare {:.1}x (best), {:.1}x (median){versus_so}",
            ms(gw.best()),
            ms(gw.median()),
            ratio(gw.best(), bare.best()),
            ratio(gw.median(), bare.median()),
        );
    }
    let gateway_rates: Vec<String> = gateways
        .iter()
        .map(|(t, gw)| format!("gateway/{t} {:.0}/s", gw.connect_rate))
        .collect();
    let so_rate = so
        .map(|so| format!(", serverless-offline {:.0}/s", so.connect_rate))
        .unwrap_or_default();
    println!(
        "connect rate: {}, bare {:.0}/s{so_rate}",
        gateway_rates.join(", "),
        bare.connect_rate
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare-server") {
        return bare_server();
    }
    let fds = raise_fd_limit()?;
    let n = env_usize("BENCH_CONNECTIONS", 10_000);
    let steady_secs = env_usize("BENCH_STEADY_SECS", 10) as u64;
    let in_flight = env_usize("BENCH_CONNECT_IN_FLIGHT", 512);
    let with_so = std::env::var("BENCH_SERVERLESS_OFFLINE").is_ok_and(|v| v == "1");
    println!(
        "broadcast bench: {n} connections, fd limit {fds}, {} cores, serverless-offline {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if with_so {
            "on"
        } else {
            "off (BENCH_SERVERLESS_OFFLINE=1)"
        }
    );

    if with_so {
        serverless_offline::install()?;
    }
    let clients_rt = tokio::runtime::Runtime::new()?;
    let mut gateways = Vec::new();
    for transport in transports() {
        let figures = gateway_phase(&clients_rt, n, in_flight, &transport)?;
        gateways.push((transport, figures));
    }
    let bare = bare_phase(&clients_rt, n, in_flight)?;
    let so = match with_so {
        true => Some(serverless_offline_phase(&clients_rt, n, in_flight)?),
        false => None,
    };
    summary(n, &gateways, &bare, so.as_ref());

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
