//! Queue-mode fan-out through the local gateway: the handlers' job and worker code over the
//! in-process memory queue, with real WebSocket clients over real sockets.

mod gateway_support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use gateway_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsstack_gateway::fanout_queue::QueueMode;
use wsstack_gateway::options::{queue_mode, stage_file};
use wsstack_gateway::{Gateway, GatewayOptions};
use wsstack_handlers::audience::{AudienceError, AudiencePage, AudienceSource};
use wsstack_handlers::job::JobAudience;
use wsstack_handlers::membership::MemoryMembershipStore;
use wsstack_handlers::store::MemoryStore;

const CLIENTS: usize = 2_000;
const SEGMENTS: u32 = 8;

/// The store as the worker's audience, recording which Scan segments were listed: proof that
/// the broadcast went through queued jobs (inline mode lists through the store, not this).
#[derive(Clone)]
struct RecordingAudience {
    store: MemoryStore,
    segments: Arc<Mutex<BTreeSet<u32>>>,
}

#[async_trait]
impl AudienceSource for RecordingAudience {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        if let JobAudience::Everyone { segment, .. } = audience {
            self.segments.lock().expect("lock").insert(*segment);
        }
        self.store.audience_page(audience, after, limit).await
    }
}

fn stages_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages")
}

#[test]
fn the_stage_file_decides_the_mode() {
    let mode_of = |name| {
        let stage = stage_file(&stages_dir(), name).expect("the stage file loads");
        queue_mode(stage.as_ref())
    };
    let staging = mode_of("staging").expect("staging is in queue mode");
    assert_eq!(staging.segments, 8);
    assert_eq!(staging.job_time, Duration::from_secs(60));
    assert_eq!(mode_of("dev"), None, "dev is inline");
    assert_eq!(mode_of("no-such-stage"), None);
}

#[tokio::test]
async fn queue_mode_without_an_audience_source_is_a_clear_error() {
    let options = GatewayOptions {
        queue_mode: Some(QueueMode {
            segments: 2,
            job_time: Duration::from_secs(10),
            max_job_age: Duration::from_secs(900),
        }),
        ..options()
    };
    let Err(err) = Gateway::bind(options, Arc::new(MemoryStore::new())).await else {
        panic!("queue mode without an audience source started");
    };
    assert!(err.to_string().contains("bind_with_audience"), "{err}");
}

/// Reads until the first message frame, then for `settle` more, counting message frames by id.
async fn message_ids(mut client: Client, settle: Duration) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    let mut first = true;
    loop {
        let wait = if first { WAIT * 3 } else { settle };
        match tokio::time::timeout(wait, client.socket().next()).await {
            Err(_) if first => panic!("{}: no message within {wait:?}", client.name),
            Err(_) => return ids,
            Ok(None) | Ok(Some(Err(_))) => panic!("{}: the socket ended", client.name),
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                if frame["type"] == "message" {
                    let id = frame["id"].as_str().expect("a message frame has an id");
                    *ids.entry(id.to_owned()).or_default() += 1;
                    first = false;
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_in_queue_mode_reaches_each_of_2000_clients_exactly_once() {
    let store = MemoryStore::new();
    let audience = RecordingAudience {
        store: store.clone(),
        segments: Arc::default(),
    };
    let options = GatewayOptions {
        queue_mode: Some(QueueMode {
            segments: SEGMENTS,
            job_time: Duration::from_secs(10),
            max_job_age: Duration::from_secs(900),
        }),
        ..options()
    };
    let gw = Gateway::bind_with_audience(
        options,
        Arc::new(store.clone()),
        Arc::new(MemoryMembershipStore::new()),
        Some(Arc::new(audience.clone())),
    )
    .await
    .expect("gateway starts");

    let mut clients = Vec::with_capacity(CLIENTS);
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("u{i}")).collect();
    for batch in names.chunks(100) {
        let connected = futures::future::join_all(batch.iter().map(|n| connect(&gw, n))).await;
        clients.extend(connected);
    }
    assert_eq!(gw.connection_count(), CLIENTS);

    clients[0]
        .send_json(json!({"action": "sendMessage", "data": "to everyone, through the queue"}))
        .await;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let name = c.name.clone();
            (
                name,
                tokio::spawn(message_ids(c, Duration::from_millis(500))),
            )
        })
        .collect();
    let mut ids = BTreeSet::new();
    for (name, reader) in readers {
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), 1, "{name}: one message, got {got:?}");
        let (id, count) = got.into_iter().next().expect("one");
        assert_eq!(count, 1, "{name}: message {id} arrived {count} times");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 1, "every client got the same message");
    let listed = audience.segments.lock().expect("lock").clone();
    assert_eq!(
        listed,
        (0..SEGMENTS).collect::<BTreeSet<_>>(),
        "the worker listed every segment of its jobs"
    );
}
