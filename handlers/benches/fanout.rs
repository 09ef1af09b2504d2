//! Fan-out of one message to 1,000 and 10,000 connections through `App::handle`, with the
//! in-memory store and a management API that answers after 20 ms (about what PostToConnection
//! costs from a Lambda), at several broadcast concurrencies.
//!
//! Run: `cargo bench -p wsstack-handlers --bench fanout`. Concurrency 1 is measured on 1,000
//! connections only: on 10,000 it would take 200 s, and the figure is linear (N × 20 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use wsstack_handlers::App;
use wsstack_handlers::config::Config;
use wsstack_handlers::management::{ConnectionInfo, ManagementApi, ManagementError};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};
use wsstack_routes::Handler;

const LATENCY: Duration = Duration::from_millis(20);

/// Answers every post after `LATENCY`, counting deliveries.
#[derive(Default)]
struct SlowApi {
    posts: AtomicUsize,
}

#[async_trait]
impl ManagementApi for SlowApi {
    async fn post_to_connection(&self, _: &str, _: &str, _: Bytes) -> Result<(), ManagementError> {
        tokio::time::sleep(LATENCY).await;
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

async fn run(connections: usize, concurrency: usize) {
    let store = MemoryStore::new();
    let sender = "CqEs4dW0DoECJ1g=";
    for i in 0..connections {
        let id = if i == 0 {
            sender.to_owned()
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
    let api = Arc::new(SlowApi::default());
    let mut config = Config::new("Connections");
    config.broadcast_concurrency = concurrency;
    let app = App::new(Arc::new(store), api.clone(), config);
    let started = Instant::now();
    app.handle(Handler::SendMessage, event())
        .await
        .expect("broadcast");
    let elapsed = started.elapsed();
    let delivered = api.posts.load(Ordering::Relaxed);
    assert_eq!(delivered, connections, "every connection got the message");
    println!(
        "{connections:>6} connections  concurrency {concurrency:>4}  {:>9.3} s  {:>9.0} deliveries/s",
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
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
}
