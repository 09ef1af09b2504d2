//! Fan-out of one message to 1,000 and 10,000 connections through `App::handle`, with the
//! in-memory store and a management API that answers after 20 ms (about what PostToConnection
//! costs from a Lambda), at several broadcast concurrencies.
//!
//! Run: `cargo bench -p wsstack-handlers --bench fanout`. Concurrency 1 is measured on 1,000
//! connections only: on 10,000 it would take 200 s, and the figure is linear (N × 20 ms).
//!
//! Then what the metric lines cost a broadcast (issue 19: "no measurable time"): the same
//! broadcast to 10,000 over a management API that answers at once (so the handler's own work is
//! all that is timed), alternately without metrics and with them (kept in memory), in one run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use wsstack_handlers::App;
use wsstack_handlers::config::Config;
use wsstack_handlers::management::{ConnectionInfo, ManagementApi, ManagementError};
use wsstack_handlers::metrics::{Metrics, MetricsSink, emf_line};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};
use wsstack_routes::Handler;
use wsstack_routes::metrics::Metric;

const LATENCY: Duration = Duration::from_millis(20);

/// Answers every post after `latency`, counting deliveries.
struct SlowApi {
    latency: Duration,
    posts: AtomicUsize,
}

impl SlowApi {
    fn new(latency: Duration) -> Arc<SlowApi> {
        Arc::new(SlowApi {
            latency,
            posts: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl ManagementApi for SlowApi {
    async fn post_to_connection(&self, _: &str, _: &str, _: Bytes) -> Result<(), ManagementError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.posts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn get_connection(&self, _: &str, _: &str) -> Result<ConnectionInfo, ManagementError> {
        Ok(ConnectionInfo::default())
    }
    async fn delete_connection(&self, _: &str, _: &str) -> Result<(), ManagementError> {
        Ok(())
    }
}

fn event() -> ApiGatewayWebsocketProxyRequest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/message.json");
    let text = std::fs::read_to_string(path).expect("fixture message.json");
    serde_json::from_str(&text).expect("fixture parses")
}

const SENDER: &str = "CqEs4dW0DoECJ1g=";

/// A store of `connections` live records, the sender's among them (a fresh broadcast budget).
async fn store(connections: usize) -> MemoryStore {
    let store = MemoryStore::new();
    for i in 0..connections {
        let id = if i == 0 {
            SENDER.to_owned()
        } else {
            format!("conn-{i:06}")
        };
        store
            .put(&Connection {
                connection_id: id,
                username: "bench".into(),
                connected_at: 0,
                // Live: a broadcast skips records whose TTL has passed.
                expires_at: i64::MAX,
                sub: None,
                token_expires_at: None,
            })
            .await
            .expect("memory store put");
    }
    store
}

/// One broadcast from `app` (over `api`) to `connections`: its time, every post checked.
async fn broadcast(app: App, api: &SlowApi, connections: usize) -> Duration {
    let started = Instant::now();
    app.handle(Handler::SendMessage, event())
        .await
        .expect("broadcast");
    let elapsed = started.elapsed();
    let delivered = api.posts.load(Ordering::Relaxed);
    assert_eq!(delivered, connections, "every connection got the message");
    elapsed
}

async fn run(connections: usize, concurrency: usize) {
    let api = SlowApi::new(LATENCY);
    let mut config = Config::new("Connections");
    config.broadcast_concurrency = concurrency;
    let app = App::new(Arc::new(store(connections).await), api.clone(), config);
    let elapsed = broadcast(app, &api, connections).await;
    println!(
        "{connections:>6} connections  concurrency {concurrency:>4}  {:>9.3} s  {:>9.0} deliveries/s",
        elapsed.as_secs_f64(),
        connections as f64 / elapsed.as_secs_f64()
    );
}

/// One broadcast to 10,000 over an instant management API; with `lines`, with metrics there.
async fn timed_broadcast(lines: Option<Arc<Mutex<Vec<String>>>>) -> Duration {
    const CONNECTIONS: usize = 10_000;
    let api = SlowApi::new(Duration::ZERO);
    let mut app = App::new(
        Arc::new(store(CONNECTIONS).await),
        api.clone(),
        Config::new("Connections"),
    );
    if let Some(lines) = &lines {
        app = app.with_metrics(Metrics {
            handler: "bench-send-message".into(),
            sink: MetricsSink::Memory(Arc::clone(lines)),
        });
    }
    let elapsed = broadcast(app, &api, CONNECTIONS).await;
    if let Some(lines) = lines {
        let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!lines.is_empty(), "the broadcast wrote its metric line");
    }
    elapsed
}

/// Min, median and max, milliseconds.
fn spread_ms(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
    )
}

/// What writing one delivery's metric line costs on its own, nanoseconds.
fn one_line_ns() -> f64 {
    let values = Metric::DELIVERY.map(|m| (m, 10_000));
    let n = 100_000;
    let started = Instant::now();
    let bytes: usize = (0..n)
        .map(|i| emf_line("prod", "bench-send-message", &values, i).len())
        .sum();
    assert!(bytes > 0);
    started.elapsed().as_secs_f64() * 1e9 / n as f64
}

/// The metric lines' cost: 15 broadcasts each way, alternating.
async fn metrics_cost() {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        without.push(timed_broadcast(None).await);
        with.push(timed_broadcast(Some(Arc::default())).await);
    }
    let (w_min, w_med, w_max) = spread_ms(&mut without);
    let (m_min, m_med, m_max) = spread_ms(&mut with);
    println!("metric lines: broadcast to 10,000, posts answered at once, 15 rounds alternating");
    println!("  without metrics: median {w_med:.2} ms (min {w_min:.2}, max {w_max:.2})");
    println!("  with metrics:    median {m_med:.2} ms (min {m_min:.2}, max {m_max:.2})");
    println!(
        "  difference of the medians: {:+.2} ms ({:+.1} %); one delivery's line: {:.0} ns",
        m_med - w_med,
        (m_med - w_med) / w_med * 100.0,
        one_line_ns()
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too, with no wish to wait
    // half a minute: run the real thing only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fanout: run with `cargo bench -p wsstack-handlers --bench fanout`");
        return;
    }
    println!("fan-out of one message, management API latency {LATENCY:?} per post");
    for (connections, concurrency) in [
        (1_000, 1),
        (1_000, 64),
        (1_000, 256),
        (10_000, 64),
        (10_000, 256),
        (10_000, 1024),
    ] {
        run(connections, concurrency).await;
    }
    println!("(10,000 at concurrency 1 not run: it is linear, 10,000 x 20 ms = 200 s)");
    metrics_cost().await;
}
