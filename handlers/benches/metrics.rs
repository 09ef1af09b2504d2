//! What the metric lines cost a broadcast (issue 19: "the metric lines add no measurable time
//! to a broadcast"): the same `sendMessage` broadcast to 10,000 connections through
//! `App::handle`, over the in-memory store and a management API that answers at once (so the
//! handler's own work is all that is timed), alternately without metrics and with them (the
//! lines kept in memory, as a test sink), in the same run.
//!
//! Run: `cargo bench -p wsstack-handlers --bench metrics`. Prints each side's median and
//! spread, their difference, and what one metric line costs on its own.

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

const CONNECTIONS: usize = 10_000;
const ROUNDS: usize = 15;
const SENDER: &str = "CqEs4dW0DoECJ1g=";

/// Answers every post at once, counting them.
#[derive(Default)]
struct InstantApi {
    posts: AtomicUsize,
}

#[async_trait]
impl ManagementApi for InstantApi {
    async fn post_to_connection(&self, _: &str, _: &str, _: Bytes) -> Result<(), ManagementError> {
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

/// A fresh store of `CONNECTIONS` live records (a fresh broadcast budget each time).
async fn store() -> MemoryStore {
    let store = MemoryStore::new();
    for i in 0..CONNECTIONS {
        let id = if i == 0 {
            SENDER.to_owned()
        } else {
            format!("conn-{i:06}")
        };
        let record = Connection {
            connection_id: id,
            username: "bench".into(),
            connected_at: 0,
            expires_at: i64::MAX,
            sub: None,
            token_expires_at: None,
        };
        store.put(&record).await.expect("memory store put");
    }
    store
}

/// One broadcast's time; with `lines`, the app writes its metric lines there.
async fn broadcast(lines: Option<Arc<Mutex<Vec<String>>>>) -> Duration {
    let api = Arc::new(InstantApi::default());
    let mut app = App::new(
        Arc::new(store().await),
        api.clone(),
        Config::new("Connections"),
    );
    if let Some(lines) = &lines {
        app = app.with_metrics(Metrics {
            handler: "bench-send-message".into(),
            sink: MetricsSink::Memory(Arc::clone(lines)),
        });
    }
    let started = Instant::now();
    app.handle(Handler::SendMessage, event())
        .await
        .expect("broadcast");
    let elapsed = started.elapsed();
    assert_eq!(api.posts.load(Ordering::Relaxed), CONNECTIONS);
    if let Some(lines) = lines {
        let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!lines.is_empty(), "the broadcast wrote its metric line");
    }
    elapsed
}

fn median_ms(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
    )
}

/// What writing one delivery's line costs on its own, nanoseconds.
fn one_line_ns() -> f64 {
    let values = Metric::DELIVERY.map(|m| (m, 10_000));
    let n = 100_000;
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        bytes += emf_line("prod", "bench-send-message", &values, i).len();
    }
    assert!(bytes > 0);
    started.elapsed().as_secs_f64() * 1e9 / n as f64
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("metrics: run with `cargo bench -p wsstack-handlers --bench metrics`");
        return;
    }
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        without.push(broadcast(None).await);
        with.push(broadcast(Some(Arc::default())).await);
    }
    let (w_min, w_med, w_max) = median_ms(&mut without);
    let (m_min, m_med, m_max) = median_ms(&mut with);
    println!(
        "broadcast to {CONNECTIONS}, {ROUNDS} rounds each, alternating, posts answered at once"
    );
    println!("  without metrics: median {w_med:.2} ms (min {w_min:.2}, max {w_max:.2})");
    println!("  with metrics:    median {m_med:.2} ms (min {m_min:.2}, max {m_max:.2})");
    println!(
        "  difference of the medians: {:+.2} ms ({:+.1} %)",
        m_med - w_med,
        (m_med - w_med) / w_med * 100.0
    );
    println!("  one delivery's metric line: {:.0} ns", one_line_ns());
}
