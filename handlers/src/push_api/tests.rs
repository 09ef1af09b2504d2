//! The push API's answers, over the in-memory store and a recording `@connections`. The real
//! servers (dynalite, the local gateway's sockets) are exercised in `tests/tests/push_api.rs`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::App;
use crate::config::{self, Config};
use crate::faults::{Faulty, Op, Rule};
use crate::management::ConnectionInfo;
use crate::membership::{MembershipStore, MemoryMembershipStore};
use crate::queue::MemoryQueue;
use crate::store::{Connection, MemoryStore};

const ENDPOINT: &str = "http://127.0.0.1:9/dev";

/// Records posts and DELETEs that reach it; faults come from the [`Faulty`] in front of it.
#[derive(Default)]
struct Recording {
    posts: Mutex<Vec<(String, Value)>>,
    deleted: Mutex<Vec<String>>,
}

impl Recording {
    fn frames_to(&self, id: &str) -> Vec<Value> {
        let posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        posts
            .iter()
            .filter(|(to, _)| to == id)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[async_trait]
impl ManagementApi for Recording {
    async fn post_to_connection(
        &self,
        _endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError> {
        let frame = serde_json::from_slice(&data).unwrap_or(Value::Null);
        let mut posts = self.posts.lock().unwrap_or_else(|p| p.into_inner());
        posts.push((connection_id.to_owned(), frame));
        Ok(())
    }

    async fn get_connection(&self, _: &str, _: &str) -> Result<ConnectionInfo, ManagementError> {
        Ok(ConnectionInfo::default())
    }

    async fn delete_connection(
        &self,
        _endpoint: &str,
        connection_id: &str,
    ) -> Result<(), ManagementError> {
        let mut deleted = self.deleted.lock().unwrap_or_else(|p| p.into_inner());
        deleted.push(connection_id.to_owned());
        Ok(())
    }
}

/// The recording API behind a fault plan (empty unless a test adds to it).
type Api = Faulty<Recording, ManagementError>;

/// A recording API to which `id` is gone: 410 for its posts and its DELETE.
fn gone(id: &str) -> Api {
    Api::new(Recording::default())
        .with(Rule::fail(Op::Post, ManagementError::Gone).for_key(id))
        .with(Rule::fail(Op::DeleteConnection, ManagementError::Gone).for_key(id))
}

fn connection(id: &str, username: &str, sub: Option<&str>) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        username: username.to_owned(),
        // Old enough that a 410 deletes the record.
        connected_at: 0,
        expires_at: i64::MAX,
        sub: sub.map(str::to_owned),
        token_expires_at: None,
    }
}

struct Fixture {
    api: Arc<Api>,
    store: MemoryStore,
    memberships: Arc<MemoryMembershipStore>,
    queue: MemoryQueue,
    push: PushApi,
}

/// Ada on two devices (`a1`, `a2`), Bob on one (`b1`), `gone` closed; Ada's `a1` and Bob are
/// in the room `lobby`.
async fn fixture(api: impl Into<Api>, queue_mode: bool) -> Fixture {
    let store = MemoryStore::new();
    for c in [
        connection("a1", "ada", Some("sub-ada")),
        connection("a2", "ada", Some("sub-ada")),
        connection("b1", "bob", Some("sub-bob")),
        connection("gone", "gil", Some("sub-gil")),
    ] {
        store.put(&c).await.expect("put");
    }
    let memberships = Arc::new(MemoryMembershipStore::new());
    let lobby = RoomName::parse("lobby").expect("room");
    for id in ["a1", "b1"] {
        memberships
            .join(&lobby, id, i64::MAX, 10)
            .await
            .expect("join");
    }
    let api = Arc::new(api.into());
    let queue = MemoryQueue::new(std::time::Duration::from_secs(30));
    let mut config = Config::new("Connections");
    config.callback_url = Some(ENDPOINT.into());
    if queue_mode {
        config.fanout = config::Fanout::Queue {
            queue_url: "http://127.0.0.1:9/queue".into(),
            segments: 2,
        };
    }
    let app = App::new(Arc::new(store.clone()), api.clone(), config)
        .with_memberships(memberships.clone())
        .with_queue(Arc::new(queue.clone()));
    let push = app.push_api().expect("a callback URL");
    Fixture {
        api,
        store,
        memberships,
        queue,
        push,
    }
}

async fn call(f: &Fixture, method: &str, path: &str, body: Value) -> PushResponse {
    f.push
        .answer(method, path, body.to_string().as_bytes(), "req-1", None)
        .await
}

#[tokio::test]
async fn a_push_to_a_connection_reaches_it_as_a_push_frame() {
    let f = fixture(Recording::default(), false).await;
    let r = call(
        &f,
        "POST",
        "/connections/b1/messages",
        json!({"data": {"job": 7}, "replyTo": "r-1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.body_json();
    assert_eq!(answer["delivered"], 1);
    let frames = f.api.frames_to("b1");
    assert_eq!(frames.len(), 1);
    let frame = &frames[0];
    assert_eq!(frame["type"], "push");
    assert_eq!(frame["data"], json!({"job": 7}));
    assert_eq!(frame["replyTo"], "r-1");
    assert_eq!(frame["id"], answer["id"], "the answer names the frame's id");
    assert!(frame["sentAt"].as_str().is_some_and(|s| s.ends_with('Z')));
}

#[tokio::test]
async fn a_push_to_a_user_reaches_every_device_of_theirs_and_nobody_else() {
    let f = fixture(Recording::default(), false).await;
    let r = call(&f, "POST", "/users/sub-ada/messages", json!({"data": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body_json()["delivered"], 2);
    assert_eq!(f.api.frames_to("a1").len(), 1);
    assert_eq!(f.api.frames_to("a2").len(), 1);
    assert!(f.api.frames_to("b1").is_empty());
    // A user with no open connection: nothing delivered, not an error.
    let r = call(&f, "POST", "/users/nobody/messages", json!({"data": 1})).await;
    assert_eq!(
        (r.status, r.body_json()["delivered"].clone()),
        (200, json!(0))
    );
}

#[tokio::test]
async fn a_push_to_a_room_reaches_its_members() {
    let f = fixture(Recording::default(), false).await;
    let r = call(&f, "POST", "/rooms/lobby/messages", json!({"data": null})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body_json()["delivered"], 2);
    assert_eq!(f.api.frames_to("a1")[0]["data"], Value::Null);
    assert_eq!(f.api.frames_to("b1").len(), 1);
    assert!(f.api.frames_to("a2").is_empty());
}

#[tokio::test]
async fn a_push_to_everyone_inline_posts_to_every_open_connection() {
    let f = fixture(gone("gone"), false).await;
    let r = call(&f, "POST", "/messages", json!({"data": "all"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.body_json();
    assert_eq!(
        (answer["delivered"].clone(), answer["gone"].clone()),
        (json!(3), json!(1))
    );
    assert!(
        f.store.get("gone").await.expect("get").is_none(),
        "a gone connection's record is deleted"
    );
}

#[tokio::test]
async fn in_queue_mode_a_push_to_everyone_or_a_room_is_queued_and_answered_202() {
    let f = fixture(Recording::default(), true).await;
    let r = call(&f, "POST", "/messages", json!({"data": "all"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body_json()["queuedJobs"], 2, "one job per segment");
    let r = call(&f, "POST", "/rooms/lobby/messages", json!({"data": "room"})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body_json()["queuedJobs"], 1);
    assert_eq!(f.queue.len(), 3);
    assert!(
        f.api.posts.lock().expect("lock").is_empty(),
        "nothing posted now"
    );
    // One connection is posted now in every mode.
    let r = call(&f, "POST", "/connections/a1/messages", json!({"data": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_gone_connection_is_410_and_its_record_and_memberships_are_deleted() {
    let f = fixture(gone("b1"), false).await;
    let r = call(&f, "POST", "/connections/b1/messages", json!({"data": 1})).await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.body_json()["error"], "gone");
    assert!(f.store.get("b1").await.expect("get").is_none());
    let lobby = RoomName::parse("lobby").expect("room");
    assert!(!f.memberships.is_member(&lobby, "b1").await.expect("member"));
    let r = call(&f, "DELETE", "/connections/b1", Value::Null).await;
    assert_eq!(r.status, 410, "{}", r.body);
}

#[tokio::test]
async fn a_refused_post_is_502_with_a_reference_and_no_service_text() {
    let refusing = ManagementError::Forbidden("arn:aws:iam::123456789012".into());
    let api = Api::new(Recording::default()).with(Rule::fail(Op::Post, refusing).for_key("b1"));
    let f = fixture(api, false).await;
    let r = call(&f, "POST", "/connections/b1/messages", json!({"data": 1})).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("req-1"), "{}", r.body);
    assert!(!r.body.contains("123456789012"), "{}", r.body);
}

#[tokio::test]
async fn presence_lists_a_users_connections() {
    let f = fixture(Recording::default(), false).await;
    let r = call(&f, "GET", "/users/sub-ada/connections", Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let presence: Presence = serde_json::from_str(&r.body).expect("presence");
    let mut ids: Vec<_> = presence
        .connections
        .iter()
        .map(|c| c.connection_id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        (presence.user_id.as_str(), ids),
        ("sub-ada", vec!["a1", "a2"])
    );
}

#[tokio::test]
async fn delete_closes_the_connection_through_connections() {
    let f = fixture(Recording::default(), false).await;
    let r = call(&f, "DELETE", "/connections/a2", Value::Null).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(*f.api.deleted.lock().expect("lock"), vec!["a2".to_owned()]);
}

/// Every refusal: the status, the code, and a message naming what is wrong.
#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let f = fixture(Recording::default(), false).await;
    let post = |path: &'static str, body: &'static [u8]| {
        let push = f.push.clone();
        async move { push.answer("POST", path, body, "req-1", None).await }
    };
    let cases: [(&str, &[u8], u16, &str, &str); 7] = [
        ("/messages", b"{", 400, "bad_request", "not JSON"),
        ("/messages", b"[1]", 400, "bad_request", "JSON object"),
        ("/messages", b"{}", 400, "bad_request", "data: missing"),
        (
            "/messages",
            br#"{"data": 1, "replyTo": ""}"#,
            400,
            "bad_request",
            "replyTo",
        ),
        (
            "/messages",
            br#"{"data": 1, "replyTo": 5}"#,
            400,
            "bad_request",
            "replyTo",
        ),
        (
            "/rooms/no%20spaces/messages",
            br#"{"data": 1}"#,
            400,
            "bad_request",
            "room",
        ),
        ("/nothing/here", b"{}", 404, "not_found", "/nothing/here"),
    ];
    for (path, body, status, code, names) in cases {
        let r = post(path, body).await;
        let text = String::from_utf8_lossy(body);
        assert_eq!(r.status, status, "{path} {text}: {}", r.body);
        let e: PushError = serde_json::from_str(&r.body).expect("an error body");
        assert_eq!(e.error, code, "{path} {text}");
        assert!(e.message.contains(names), "{path} {text}: {}", e.message);
    }
    assert!(f.api.posts.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let f = fixture(Recording::default(), false).await;
    let r = call(&f, "GET", "/messages", Value::Null).await;
    assert_eq!((r.status, r.allow.as_deref()), (405, Some("POST")));
}

#[tokio::test]
async fn past_the_message_limit_is_413() {
    let f = fixture(Recording::default(), false).await;
    let big = "x".repeat(MAX_MESSAGE_BYTES);
    let r = call(&f, "POST", "/messages", json!({"data": big})).await;
    assert_eq!(r.status, 413, "{}", &r.body);
    assert!(
        r.body_json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("131072"))
    );
    // Just under the body limit, but the frame's envelope takes it past the frame limit.
    let near = "x".repeat(MAX_MESSAGE_BYTES - 20);
    let r = call(&f, "POST", "/messages", json!({"data": near})).await;
    assert_eq!(r.status, 413, "{}", &r.body);
    assert!(r.body.contains("the frame"), "{}", r.body);
    assert!(f.api.posts.lock().expect("lock").is_empty());
}

#[test]
fn the_handlers_push_frame_is_the_one_backends_read() {
    let frame = Frame::push(json!({"a": [1]}), Some("r-9".into()), chrono::Utc::now());
    let wire: wsstack_routes::push_api::PushFrame =
        serde_json::from_str(&frame.to_json()).expect("the routes' PushFrame reads it");
    assert_eq!(wire.data, json!({"a": [1]}));
    assert_eq!(wire.reply_to.as_deref(), Some("r-9"));
    let Frame::Push { id, .. } = &frame else {
        panic!("a push frame")
    };
    assert_eq!(&wire.id, id);
}
