//! Rooms end to end: real WebSocket clients through the local gateway, the real handlers behind
//! it, `@connections` through the real SDK client, memberships in the in-memory stores the
//! test holds on to.

mod gateway_support;

use std::sync::Arc;
use std::time::Duration;

use gateway_support::*;
use serde_json::{Value, json};
use wsstack_gateway::{Gateway, RunningGateway};
use wsstack_handlers::membership::{MembershipStore, MemoryMembershipStore};
use wsstack_handlers::rooms::RoomName;
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};

/// How long to wait for a frame that must *not* arrive.
const QUIET: Duration = Duration::from_millis(300);

struct Rooms {
    gw: RunningGateway,
    store: MemoryStore,
    memberships: MemoryMembershipStore,
}

async fn start_rooms() -> Rooms {
    let store = MemoryStore::new();
    // Small pages, so a room message crosses page boundaries even with a handful of members.
    let memberships = MemoryMembershipStore::new().with_page_size(2);
    let gw = Gateway::bind_with_memberships(
        options(),
        Arc::new(store.clone()),
        Arc::new(memberships.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
    Rooms {
        gw,
        store,
        memberships,
    }
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room name")
}

async fn join(client: &mut Client, name: &str) {
    client
        .send_json(json!({"action": "join", "room": name}))
        .await;
    assert_eq!(
        client.next_json().await,
        json!({"type": "joined", "room": name}),
        "{}",
        client.name
    );
}

fn to_room(name: &str, data: &str) -> Value {
    json!({"action": "sendMessage", "room": name, "data": data})
}

/// Fails if `client` receives anything within [`QUIET`].
async fn assert_quiet(client: &mut Client) {
    if let Ok(m) = tokio::time::timeout(QUIET, client.next()).await {
        panic!("{} received {m:?} but should not have", client.name);
    }
}

async fn members(store: &dyn MembershipStore, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .members_page(&room(name), after.as_deref())
            .await
            .expect("page");
        out.extend(page.connection_ids);
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

#[tokio::test]
async fn members_receive_a_room_message_and_non_members_do_not() {
    let r = start_rooms().await;
    let mut alice = connect(&r.gw, "alice").await;
    let mut bob = connect(&r.gw, "bob").await;
    let mut carol = connect(&r.gw, "carol").await;
    let mut dave = connect(&r.gw, "dave").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        join(c, "lobby").await;
    }
    join(&mut dave, "other").await;

    alice.send_json(to_room("lobby", "hi lobby")).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        let frame = c.next_json().await;
        assert_eq!(frame["type"], "message", "{}: {frame}", c.name);
        assert_eq!(frame["room"], "lobby");
        assert_eq!(frame["from"], "alice");
        assert_eq!(frame["data"], "hi lobby");
    }
    assert_quiet(&mut dave).await;

    // Without `room` a message is still a broadcast to everyone, and says no room.
    dave.send_json(json!({"action": "sendMessage", "data": "to all"}))
        .await;
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        let frame = c.next_json().await;
        assert_eq!(frame["data"], "to all", "{}", c.name);
        assert!(frame.get("room").is_none(), "{frame}");
    }
}

#[tokio::test]
async fn a_non_member_may_not_send_to_a_room() {
    let r = start_rooms().await;
    let mut alice = connect(&r.gw, "alice").await;
    let mut bob = connect(&r.gw, "bob").await;
    join(&mut alice, "lobby").await;
    bob.send_json(to_room("lobby", "let me in")).await;
    let frame = bob.next_json().await;
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["code"], "not_a_member");
    assert_eq!(
        frame["message"],
        "you are not a member of room `lobby`; join it first"
    );
    assert_quiet(&mut alice).await;
}

#[tokio::test]
async fn leave_and_disconnect_remove_membership() {
    let r = start_rooms().await;
    let mut alice = connect(&r.gw, "alice").await;
    let mut bob = connect(&r.gw, "bob").await;
    let mut carol = connect(&r.gw, "carol").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        join(c, "lobby").await;
    }
    join(&mut carol, "side").await;
    let carol_id = id_of(&r.store, "carol").await;
    let bob_id = id_of(&r.store, "bob").await;

    bob.send_json(json!({"action": "leave", "room": "lobby"}))
        .await;
    assert_eq!(
        bob.next_json().await,
        json!({"type": "left", "room": "lobby"})
    );
    bob.send_json(json!({"action": "leave", "room": "lobby"}))
        .await;
    assert_eq!(bob.next_json().await["code"], "not_a_member");
    assert!(!members(&r.memberships, "lobby").await.contains(&bob_id));

    alice.send_json(to_room("lobby", "after bob left")).await;
    assert_eq!(alice.next_json().await["data"], "after bob left");
    assert_eq!(carol.next_json().await["data"], "after bob left");
    assert_quiet(&mut bob).await;

    // A killed socket: $disconnect deletes every membership of it.
    carol.kill();
    eventually("carol's memberships deleted", WAIT, || async {
        !members(&r.memberships, "lobby").await.contains(&carol_id)
            && members(&r.memberships, "side").await.is_empty()
    })
    .await;
    assert_eq!(
        r.memberships.rooms_of(&carol_id).await.unwrap(),
        Vec::<RoomName>::new()
    );
    alice.send_json(to_room("lobby", "just us")).await;
    assert_eq!(alice.next_json().await["data"], "just us");
    assert_quiet(&mut bob).await;
}

/// API Gateway's `$disconnect` is best effort: a member can outlive its socket. A room message
/// meets its 410 and deletes its memberships and its record, and the others still get theirs.
#[tokio::test]
async fn a_gone_member_is_cleaned_by_its_410() {
    let r = start_rooms().await;
    let mut alice = connect(&r.gw, "alice").await;
    let mut bob = connect(&r.gw, "bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    // Well-formed (so `@connections` answers 410, not 400) and connected to nothing.
    let ghost = "GhostGhostGhos0=";
    let expires_at = chrono::Utc::now().timestamp() + 3600;
    r.store
        .put(&Connection {
            connection_id: ghost.to_owned(),
            username: "ghost".to_owned(),
            connected_at: 0,
            expires_at,
            sub: None,
            token_expires_at: None,
        })
        .await
        .unwrap();
    for name in ["lobby", "side"] {
        r.memberships
            .join(&room(name), ghost, expires_at, 20)
            .await
            .unwrap();
    }
    assert_eq!(members(&r.memberships, "lobby").await.len(), 3);

    alice.send_json(to_room("lobby", "anyone there?")).await;
    assert_eq!(alice.next_json().await["data"], "anyone there?");
    assert_eq!(bob.next_json().await["data"], "anyone there?");
    eventually("the ghost forgotten", WAIT, || async {
        r.store.get(ghost).await.unwrap().is_none()
    })
    .await;
    let lobby = members(&r.memberships, "lobby").await;
    assert_eq!(lobby.len(), 2, "{lobby:?}");
    assert!(!lobby.contains(&ghost.to_owned()));
    assert!(
        members(&r.memberships, "side").await.is_empty(),
        "its other rooms too"
    );
}

#[tokio::test]
async fn bad_room_input_gets_error_frames_and_sends_nothing() {
    let r = start_rooms().await;
    let mut alice = connect(&r.gw, "alice").await;
    let mut bob = connect(&r.gw, "bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    let long = "r".repeat(65);
    let cases = [
        (
            json!({"action": "join"}),
            "missing_room",
            "field `room` is required",
        ),
        (
            json!({"action": "join", "room": 7}),
            "room_not_string",
            "field `room` must be a string, got number",
        ),
        (
            json!({"action": "join", "room": ""}),
            "invalid_room",
            "field `room` must not be empty",
        ),
        (
            json!({"action": "join", "room": long}),
            "invalid_room",
            "field `room` must be at most 64 characters, got 65",
        ),
        (
            json!({"action": "join", "room": "no spaces"}),
            "invalid_room",
            "field `room` has ' ' at position 2: only ASCII letters, digits, `-`, `_`, `.` and `:` are allowed",
        ),
        (
            json!({"action": "leave", "room": "café"}),
            "invalid_room",
            "field `room` has 'é' at position 3: only ASCII letters, digits, `-`, `_`, `.` and `:` are allowed",
        ),
        (
            json!({"action": "sendMessage", "room": "lob by", "data": "x"}),
            "invalid_room",
            "field `room` has ' ' at position 3: only ASCII letters, digits, `-`, `_`, `.` and `:` are allowed",
        ),
        (
            json!({"action": "sendMessage", "room": "lobby", "to": "x", "data": "x"}),
            "room_with_to",
            "fields `room` and `to` cannot be combined: a message goes to a room or to one connection",
        ),
    ];
    for (body, code, message) in cases {
        alice.send_json(body.clone()).await;
        let frame = alice.next_json().await;
        assert_eq!(frame["type"], "error", "{body}: {frame}");
        assert_eq!(frame["code"], code, "{body}: {frame}");
        assert_eq!(frame["message"], message, "{body}");
    }
    assert_quiet(&mut bob).await;
    // Not JSON: API Gateway cannot read `action` and routes it to `$default`.
    alice.send_text(r#"{"action":"join","room":"lobby""#).await;
    assert_eq!(alice.next_json().await["code"], "unknown_action");
}

#[tokio::test]
async fn rooms_per_connection_are_bounded() {
    let r = start_rooms().await;
    let mut alice = connect(&r.gw, "alice").await;
    let max = wsstack_handlers::rooms::MAX_ROOMS_PER_CONNECTION;
    // All but the last room joined directly in the store: joining them all over the socket at
    // once would be past the connection's rate limit (a burst of 20 requests), which is not
    // what this test is about.
    let id = id_of(&r.store, "alice").await;
    for i in 0..max - 1 {
        let outcome = r
            .memberships
            .join(&room(&format!("room-{i}")), &id, i64::MAX, max)
            .await
            .expect("join");
        assert_eq!(outcome, wsstack_handlers::membership::JoinOutcome::Joined);
    }
    join(&mut alice, &format!("room-{}", max - 1)).await;
    alice
        .send_json(json!({"action": "join", "room": "one-too-many"}))
        .await;
    let frame = alice.next_json().await;
    assert_eq!(frame["code"], "too_many_rooms", "{frame}");
    // Joining one it is in is fine at the bound; leaving frees a slot.
    join(&mut alice, "room-0").await;
    alice
        .send_json(json!({"action": "leave", "room": "room-0"}))
        .await;
    assert_eq!(alice.next_json().await["type"], "left");
    join(&mut alice, "one-too-many").await;
    assert_eq!(r.memberships.rooms_of(&id).await.unwrap().len(), max);
}
