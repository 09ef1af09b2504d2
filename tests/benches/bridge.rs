//! The bridge, locally (issue 17's performance targets), in one process on 127.0.0.1: the local
//! gateway (memory store, the handlers' real code), its push API server, and a backend the bench
//! runs. Prints its figures:
//!
//! 1. **Push API, one connection per push**: pushes/s and the answer's latency (p50, p99) for
//!    `POST /connections/{id}/messages` through `wsstack-client` (keep-alive HTTP/1.1), 32 in
//!    flight, every frame received by its client. Goal: at least 5,000/s, p99 at most 5 ms.
//! 2. **Forwarded round trip**: a client sends a forwarded action; the `forward` handler puts it
//!    on the local bus, which POSTs it to the backend; the backend pushes a reply to the sender's
//!    connection through the push API; the client receives it. Latency from send to receipt at a
//!    paced 500 jobs/s from 50 clients. Goal: p99 at most 5 ms.
//!
//! Run with `cargo bench -p wsstack-tests --bench bridge` (`BRIDGE_PUSHES`, `BRIDGE_JOBS` to
//! change the counts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use wsstack_client::{ForwardedEvent, PushClient};
use wsstack_gateway::forwarding::{BackendUrl, LocalForwarding};
use wsstack_gateway::push_server::PushServer;
use wsstack_gateway::{Gateway, GatewayOptions, RunningGateway};
use wsstack_handlers::store::{ConnectionStore, MemoryStore};
use wsstack_routes::bridge::ForwardedAction;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const ACTION: &str = "benchJob";

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A backend that answers each forwarded event by pushing `{"pong": n}` to the sender's
/// connection, replying to its `requestId`.
async fn start_backend(push: PushClient) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    let push = Arc::new(push);
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: axum::body::Bytes| {
            let push = Arc::clone(&push);
            async move {
                let Ok(event) = serde_json::from_slice::<ForwardedEvent>(&body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let d = event.detail;
                tokio::spawn(async move {
                    let _ = push
                        .to_connection(
                            &d.connection_id,
                            json!({"pong": d.data}),
                            d.request_id.as_deref(),
                        )
                        .await;
                });
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

async fn connect(gw: &RunningGateway, name: &str) -> anyhow::Result<Ws> {
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{}?username={name}", gw.ws_url())).await?;
    Ok(ws)
}

/// Pushes to one connection, 32 in flight; the answers' latencies and the rate.
async fn bench_pushes(
    push: &PushClient,
    store: &MemoryStore,
    gw: &RunningGateway,
) -> anyhow::Result<()> {
    let n = count("BRIDGE_PUSHES", 10_000);
    let mut client = connect(gw, "target").await?;
    let id = store
        .list_by_user("target", chrono::Utc::now().timestamp())
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no record"))??
        .connection_id;
    let received = tokio::spawn(async move {
        let mut got = 0usize;
        // Both phases' frames: the connection stays open until the paced phase is done.
        while got < 2 * n {
            match tokio::time::timeout(Duration::from_secs(30), client.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => got += 1,
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        got
    });
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        if in_flight.len() >= 32
            && let Some(r) = in_flight.next().await
        {
            latencies.push(r?);
        }
        let push = push.clone();
        let id = id.clone();
        in_flight.push(async move {
            let t = Instant::now();
            push.to_connection(&id, json!(i), None).await?;
            Ok::<_, anyhow::Error>(t.elapsed())
        });
    }
    while let Some(r) = in_flight.next().await {
        latencies.push(r?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "push API, one connection per push, 32 in flight: {n} pushes in {:.2} s = {:.0}/s; answer p50 {}, p99 {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
    bench_paced_pushes(push, &id, n).await?;
    let got = received.await?;
    println!("push API: frames received by the client {got} of {}", 2 * n);
    Ok(())
}

/// The same pushes paced at 5,000/s (the rate): each answer's latency at that load.
async fn bench_paced_pushes(push: &PushClient, id: &str, n: usize) -> anyhow::Result<()> {
    let rate = 5_000.0;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let push = push.clone();
        let id = id.to_owned();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            push.to_connection(&id, json!(i), None)
                .await
                .map(|_| t.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for t in tasks {
        latencies.push(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "push API, one connection per push, paced at {rate:.0}/s: {n} pushes in {:.2} s; answer p50 {}, p99 {}",
        elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
    Ok(())
}

/// Forwarded actions at a paced rate from `clients` connections: send to pushed reply.
async fn bench_round_trip(gw: &RunningGateway) -> anyhow::Result<()> {
    let jobs = count("BRIDGE_JOBS", 2_500);
    let clients = 50;
    let rate = 500.0;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for c in 0..clients {
        let (write, mut read) = connect(gw, &format!("c{c}")).await?.split();
        writers.push(write);
        let (sent, latencies) = (Arc::clone(&sent), Arc::clone(&latencies));
        readers.push(tokio::spawn(async move {
            while let Ok(Some(Ok(m))) =
                tokio::time::timeout(Duration::from_secs(5), read.next()).await
            {
                let Message::Text(t) = m else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if frame["type"] != "push" {
                    continue;
                }
                let Some(id) = frame["replyTo"].as_str() else {
                    continue;
                };
                if let Some(at) = sent.lock().await.remove(id) {
                    latencies.lock().await.push(at.elapsed());
                }
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    for j in 0..jobs {
        let due = started + interval * j as u32;
        tokio::time::sleep_until(due.into()).await;
        let id = format!("j{j}");
        let message = json!({"action": ACTION, "requestId": id, "data": j}).to_string();
        sent.lock().await.insert(id, Instant::now());
        writers[j % clients]
            .send(Message::Text(message.into()))
            .await?;
    }
    for r in readers {
        let _ = r.await;
    }
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    println!(
        "forwarded round trip (client -> forward -> local bus -> backend -> push API -> client), {jobs} jobs at {rate:.0}/s from {clients} clients: answered {}, p50 {}, p99 {}, max {}",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = MemoryStore::new();
    // The push API's port first: the backend needs its URL, the gateway the backend's.
    let push_port = wsstack_tests::free_port();
    let push_url = format!("http://127.0.0.1:{push_port}");
    let push = PushClient::unsigned(&push_url)?;
    let backend_url = start_backend(push.clone()).await?;
    let options = GatewayOptions {
        host: std::net::Ipv4Addr::LOCALHOST.into(),
        port: 0,
        forwarding: Some(LocalForwarding {
            actions: vec![ForwardedAction {
                name: ACTION.into(),
                max_data_bytes: 1024,
            }],
            backend_url: Some(BackendUrl::parse(&backend_url).map_err(anyhow::Error::msg)?),
        }),
        ..GatewayOptions::default()
    };
    let gw = Gateway::bind(options, Arc::new(store.clone())).await?;
    let push_api = gw
        .push_api()
        .ok_or_else(|| anyhow::anyhow!("no push API"))?;
    let _server =
        PushServer::bind(format!("127.0.0.1:{push_port}").parse()?, push_api, None).await?;
    bench_pushes(&push, &store, &gw).await?;
    bench_round_trip(&gw).await?;
    Ok(())
}
