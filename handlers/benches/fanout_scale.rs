//! Proof at scale: a broadcast to 10^4, 10^5 and 10^6 connections, inline and queue mode, in
//! virtual time (tokio's paused clock), running the real `sendMessage` handler, fan-out engine
//! and queue worker against a simulated `@connections`: a latency spread (15-60 ms), the
//! account's token bucket (10,000/s, burst 5,000; 429 past it) and Lambda deadlines.
//!
//! Run: `cargo bench -p wsstack-handlers --bench fanout_scale` (`-- --quick` skips 10^6).
//! It prints, per run: time to the last delivery (virtual), the floor N / 10,000 s, 429s,
//! duplicates, lost, and the operations a cost estimate needs (Scan pages, posts, SQS
//! requests, Lambda milliseconds).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use tokio::time::Instant;
use wsstack_handlers::App;
use wsstack_handlers::audience::{AudienceError, AudiencePage, AudienceSource};
use wsstack_handlers::config::{Config, Fanout};
use wsstack_handlers::fanout::Deadline;
use wsstack_handlers::job::JobAudience;
use wsstack_handlers::management::ATTEMPT_TIMEOUT;
use wsstack_handlers::queue::{MemoryQueue, Queue, QueueError, Received};
use wsstack_handlers::simulated::{Behaviour, SimulatedApi, TokenBucket};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};
use wsstack_handlers::worker::{PAGE_SIZE, Worker};
use wsstack_routes::Handler;

/// The sendMessage function's timeout: API Gateway's integration timeout (29 s, not raisable).
const INLINE_TIMEOUT: Duration = Duration::from_secs(29);
/// The worker function's timeout (an SQS-driven function may run 15 minutes; a short one keeps
/// the visibility timeout and the cost of a cut job small).
const WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Scan segments = parallel workers in queue mode.
const SEGMENTS: u32 = 16;
/// Posts in flight per function (the stage default).
const CONCURRENCY: usize = 64;
const SENDER: &str = "CqEs4dW0DoECJ1g=";

/// Counts audience pages as a Scan would bill them.
struct CountingAudience {
    inner: MemoryStore,
    pages: AtomicU64,
    items: AtomicU64,
}

#[async_trait]
impl AudienceSource for CountingAudience {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let page = self.inner.audience_page(audience, after, limit).await?;
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.items
            .fetch_add(page.ids.len() as u64, Ordering::Relaxed);
        Ok(page)
    }
}

/// Counts SQS requests (send batches, receives, deletes) over the in-memory queue.
struct CountingQueue {
    inner: MemoryQueue,
    requests: AtomicU64,
    messages: AtomicU64,
}

#[async_trait]
impl Queue for CountingQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        self.requests
            .fetch_add(bodies.len().div_ceil(10) as u64, Ordering::Relaxed);
        self.messages
            .fetch_add(bodies.len() as u64, Ordering::Relaxed);
        self.inner.send(bodies).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let got = self.inner.receive(max, wait).await?;
        if !got.is_empty() {
            // Empty polls of the event source mapping are not counted: SQS bills them, but
            // they do not depend on the broadcast.
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        Ok(got)
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(receipt_handle).await
    }
}

fn counting_queue() -> Arc<CountingQueue> {
    Arc::new(CountingQueue {
        // SQS's advice: a visibility timeout of 6 times the function's timeout.
        inner: MemoryQueue::new(WORKER_TIMEOUT * 6),
        requests: AtomicU64::new(0),
        messages: AtomicU64::new(0),
    })
}

fn counting_audience(store: &MemoryStore) -> Arc<CountingAudience> {
    Arc::new(CountingAudience {
        inner: store.clone(),
        pages: AtomicU64::new(0),
        items: AtomicU64::new(0),
    })
}

fn worker(
    store: MemoryStore,
    audience: &Arc<CountingAudience>,
    api: &Arc<SimulatedApi>,
    queue: &Arc<CountingQueue>,
) -> Worker {
    Worker {
        store: Arc::new(store),
        audience: audience.clone(),
        api: api.clone(),
        queue: queue.clone(),
        memberships: None,
        // The endpoint `sendMessage` derives from the fixture event (no CALLBACK_URL here).
        endpoint: "https://abc123def4.execute-api.eu-west-1.amazonaws.com/prod".to_owned(),
        max_job_age: wsstack_handlers::config::DEFAULT_MAX_JOB_AGE,
        concurrency: CONCURRENCY,
        page_size: PAGE_SIZE,
        broadcast_budget: None,
        metrics: None,
    }
}

fn event() -> ApiGatewayWebsocketProxyRequest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/message.json");
    let text = std::fs::read_to_string(path).expect("fixture message.json");
    serde_json::from_str(&text).expect("fixture parses")
}

async fn store_of(n: usize) -> MemoryStore {
    let store = MemoryStore::new();
    for i in 0..n {
        let id = if i == 0 {
            SENDER.to_owned()
        } else {
            format!("c{i:07}=")
        };
        store
            .put(&Connection {
                connection_id: id,
                username: "bench".into(),
                connected_at: 0,
                expires_at: i64::MAX,
                sub: None,
                token_expires_at: None,
            })
            .await
            .expect("memory put");
    }
    store
}

#[derive(Debug, Default)]
struct Figures {
    last_delivery: Duration,
    throttled: u64,
    duplicates: u64,
    lost: u64,
    posts: u64,
    scan_pages: u64,
    scan_items: u64,
    sqs_requests: u64,
    jobs: u64,
    lambda_ms: u64,
    ran_past_deadline: bool,
}

fn lost_and_duplicates(n: usize, deliveries: &HashMap<String, u32>) -> (u64, u64) {
    let duplicates = deliveries
        .values()
        .map(|&k| u64::from(k.saturating_sub(1)))
        .sum();
    (n.saturating_sub(deliveries.len()) as u64, duplicates)
}

fn api(transient_one_in: u64) -> Arc<SimulatedApi> {
    Arc::new(SimulatedApi::new(
        Behaviour {
            transient_failure_one_in: transient_one_in,
            ..Behaviour::default()
        },
        Some(TokenBucket::api_gateway_default()),
    ))
}

async fn inline(n: usize, transient_one_in: u64) -> Figures {
    let store = store_of(n).await;
    let api = api(transient_one_in);
    let mut config = Config::new("Connections");
    config.broadcast_concurrency = CONCURRENCY;
    let queue = counting_queue();
    let audience = counting_audience(&store);
    let app = App::new(Arc::new(store.clone()), api.clone(), config).with_queue(queue.clone());
    let started = Instant::now();
    let deadline = Deadline::at(
        started + INLINE_TIMEOUT - wsstack_handlers::fanout::DEADLINE_MARGIN,
        ATTEMPT_TIMEOUT,
    );
    // A function error (a broadcast that reached nobody) would show as `lost`.
    let _ = app
        .handle_until(Handler::SendMessage, event(), Some(deadline))
        .await;
    let ended = Instant::now();
    let inline_ms = (ended - started).as_millis() as u64;
    // Above what 29 s allow, sendMessage handed the rest to the queue.
    let (jobs, worker_ms, worker_over) =
        drain(worker(store, &audience, &api, &queue), queue.clone()).await;
    let tally = api.tally();
    let (lost, duplicates) = lost_and_duplicates(n, &tally.deliveries);
    Figures {
        last_delivery: tally.last_delivery.map_or(Duration::ZERO, |t| t - started),
        throttled: tally.throttled,
        duplicates,
        lost,
        posts: tally.posts,
        // The inline Scan's pages up to the hand-off, plus the worker's.
        scan_pages: (n as u64)
            .saturating_sub(audience.items.load(Ordering::Relaxed))
            .div_ceil(1000)
            + audience.pages.load(Ordering::Relaxed),
        scan_items: n as u64,
        sqs_requests: queue.requests.load(Ordering::Relaxed),
        jobs,
        lambda_ms: inline_ms + worker_ms,
        ran_past_deadline: ended - started > INLINE_TIMEOUT || worker_over,
    }
}

async fn queue(n: usize, transient_one_in: u64) -> Figures {
    let store = store_of(n).await;
    let api = api(transient_one_in);
    let queue = counting_queue();
    let audience = counting_audience(&store);
    let mut config = Config::new("Connections");
    config.broadcast_concurrency = CONCURRENCY;
    config.fanout = Fanout::Queue {
        queue_url: "http://127.0.0.1:9/queue".into(),
        segments: SEGMENTS,
    };
    let app = App::new(Arc::new(store.clone()), api.clone(), config).with_queue(queue.clone());
    let started = Instant::now();
    app.handle(Handler::SendMessage, event())
        .await
        .expect("sendMessage enqueues");
    let send_ms = (Instant::now() - started).as_millis() as u64;

    let worker = worker(store, &audience, &api, &queue);
    let (jobs, worker_ms, over_deadline) = drain(worker, queue.clone()).await;
    let tally = api.tally();
    let (lost, duplicates) = lost_and_duplicates(n, &tally.deliveries);
    Figures {
        last_delivery: tally.last_delivery.map_or(Duration::ZERO, |t| t - started),
        throttled: tally.throttled,
        duplicates,
        lost,
        posts: tally.posts,
        scan_pages: audience.pages.load(Ordering::Relaxed),
        scan_items: audience.items.load(Ordering::Relaxed),
        sqs_requests: queue.requests.load(Ordering::Relaxed),
        jobs,
        lambda_ms: send_ms + worker_ms,
        ran_past_deadline: over_deadline,
    }
}

/// The event source mapping: one job per invocation, up to SEGMENTS invocations at once, each
/// with the worker function's deadline; runs until the queue is empty. Returns the jobs run,
/// the Lambda milliseconds they took, and whether any ran past its timeout.
async fn drain(worker: Worker, queue: Arc<CountingQueue>) -> (u64, u64, bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let lambda_ms = Arc::new(AtomicU64::new(0));
    let jobs = Arc::new(AtomicU64::new(0));
    let over_deadline = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for _ in 0..SEGMENTS {
        let (worker, queue, stop, lambda_ms, jobs, over) = (
            worker.clone(),
            queue.clone(),
            stop.clone(),
            lambda_ms.clone(),
            jobs.clone(),
            over_deadline.clone(),
        );
        pollers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let got = queue
                    .receive(1, Duration::from_millis(200))
                    .await
                    .expect("memory queue");
                for m in got {
                    let began = Instant::now();
                    let deadline = Deadline::at(
                        began + WORKER_TIMEOUT - wsstack_handlers::fanout::DEADLINE_MARGIN,
                        ATTEMPT_TIMEOUT,
                    );
                    let ran = worker
                        .run_body(&m.message_id, &m.body, Some(deadline))
                        .await;
                    let took = Instant::now() - began;
                    lambda_ms.fetch_add(took.as_millis() as u64, Ordering::Relaxed);
                    jobs.fetch_add(1, Ordering::Relaxed);
                    if took > WORKER_TIMEOUT {
                        over.store(true, Ordering::Relaxed);
                    }
                    if ran.is_ok() {
                        queue.delete(&m.receipt_handle).await.expect("delete");
                    }
                }
            }
        }));
    }
    while !queue.inner.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.await.expect("poller");
    }
    (
        jobs.load(Ordering::Relaxed),
        lambda_ms.load(Ordering::Relaxed),
        over_deadline.load(Ordering::Relaxed),
    )
}

fn print(mode: &str, n: usize, failures: &str, f: &Figures) {
    let floor = n as f64 / 10_000.0;
    println!(
        "{mode:<6} {n:>9} {failures:<10} last delivery {:>8.2} s  floor {floor:>6.1} s  ratio {:>5.2}  429s {:>8}  dup {:>5}  lost {:>8}  posts {:>8}  scan pages {:>5} items {:>8}  jobs {:>4}  sqs req {:>5}  lambda {:>9} ms  past deadline {}",
        f.last_delivery.as_secs_f64(),
        f.last_delivery.as_secs_f64() / floor,
        f.throttled,
        f.duplicates,
        f.lost,
        f.posts,
        f.scan_pages,
        f.scan_items,
        f.jobs,
        f.sqs_requests,
        f.lambda_ms,
        f.ran_past_deadline,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fanout_scale: run with `cargo bench -p wsstack-handlers --bench fanout_scale`");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    println!(
        "virtual time; @connections latency 15-60 ms, bucket 10,000/s burst 5,000; {CONCURRENCY} posts in flight per function; queue mode {SEGMENTS} segments, worker timeout {WORKER_TIMEOUT:?}; inline timeout {INLINE_TIMEOUT:?}"
    );
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        runtime.block_on(async {
            print("inline", n, "none", &inline(n, 0).await);
            print("queue", n, "none", &queue(n, 0).await);
            print("queue", n, "1% 5xx", &queue(n, 100).await);
        });
    }
}
