//! One contract, two membership stores: `MemoryMembershipStore` and `DynamoDbMembershipStore`
//! on dynalite (the rooms table plus the `rooms` set on connection records) must behave alike,
//! or the local gateway would test something other than what runs in AWS.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};
use wsstack_handlers::membership::{
    DynamoDbMembershipStore, JoinOutcome, MemberPage, MembershipStore, MemoryMembershipStore,
};
use wsstack_handlers::rooms::RoomName;
use wsstack_handlers::store::{Connection, ConnectionStore, DynamoDbStore, MemoryStore, Removal};
use wsstack_tests::{Dynalite, create_connections_table, create_rooms_table};

/// The room that must be listed across pages.
const BIG_ROOM: usize = 2_500;
const PAGE_SIZE: usize = 1_000;
const MAX_ROOMS: usize = 3;
/// Far in the future: members that have not expired.
const LIVE: i64 = 4_102_444_800; // 2100-01-01

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("valid room name")
}

fn conn(id: &str) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        username: format!("user of {id}"),
        connected_at: 1_795_703_226_123,
        expires_at: LIVE,
        sub: None,
        token_expires_at: None,
    }
}

/// Every page of `room`, following the cursors.
async fn pages(store: &dyn MembershipStore, room: &RoomName) -> Vec<MemberPage> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .members_page(room, after.as_deref())
            .await
            .expect("page");
        after = page.next.clone();
        out.push(page);
        if after.is_none() {
            return out;
        }
        assert!(out.len() <= BIG_ROOM, "the cursor never ends");
    }
}

async fn members(store: &dyn MembershipStore, room: &RoomName) -> Vec<String> {
    pages(store, room)
        .await
        .into_iter()
        .flat_map(|p| p.connection_ids)
        .collect()
}

/// The contract every `MembershipStore` meets. Both stores start empty and list `PAGE_SIZE`
/// members per page; `connections` holds the connection records (the DynamoDB store keeps each
/// connection's rooms on its record).
async fn contract(store: &dyn MembershipStore, connections: &dyn ConnectionStore) {
    let lobby = room("lobby");
    // A name that sorts right after `lobby` and shares its prefix: no leaking across rooms.
    let lobby2 = room("lobby2");
    for id in ["a=", "b=", "c="] {
        connections.put(&conn(id)).await.unwrap();
    }

    // Empty.
    assert_eq!(members(store, &lobby).await, Vec::<String>::new());
    assert!(!store.is_member(&lobby, "a=").await.unwrap());
    assert_eq!(store.rooms_of("a=").await.unwrap(), vec![]);
    assert!(!store.leave(&lobby, "a=").await.unwrap(), "not a member");

    // Join, idempotent.
    assert_eq!(
        store.join(&lobby, "a=", LIVE, MAX_ROOMS).await.unwrap(),
        JoinOutcome::Joined
    );
    assert_eq!(
        store.join(&lobby, "a=", LIVE, MAX_ROOMS).await.unwrap(),
        JoinOutcome::AlreadyMember
    );
    store.join(&lobby, "b=", LIVE, MAX_ROOMS).await.unwrap();
    store.join(&lobby2, "c=", LIVE, MAX_ROOMS).await.unwrap();
    assert!(store.is_member(&lobby, "a=").await.unwrap());
    assert!(!store.is_member(&lobby, "c=").await.unwrap());
    assert_eq!(members(store, &lobby).await, ["a=", "b="]);
    assert_eq!(members(store, &lobby2).await, ["c="]);
    assert_eq!(store.rooms_of("a=").await.unwrap(), vec![lobby.clone()]);

    // At most MAX_ROOMS rooms; rejoining one of them is still fine at the bound.
    store
        .join(&room("r1"), "a=", LIVE, MAX_ROOMS)
        .await
        .unwrap();
    store
        .join(&room("r2"), "a=", LIVE, MAX_ROOMS)
        .await
        .unwrap();
    assert_eq!(
        store
            .join(&room("r3"), "a=", LIVE, MAX_ROOMS)
            .await
            .unwrap(),
        JoinOutcome::TooManyRooms
    );
    assert!(!store.is_member(&room("r3"), "a=").await.unwrap());
    assert_eq!(
        store
            .join(&room("r1"), "a=", LIVE, MAX_ROOMS)
            .await
            .unwrap(),
        JoinOutcome::AlreadyMember
    );
    let mut rooms = store.rooms_of("a=").await.unwrap();
    rooms.sort();
    assert_eq!(rooms, vec![lobby.clone(), room("r1"), room("r2")]);

    // Leave frees a slot.
    assert!(store.leave(&room("r2"), "a=").await.unwrap());
    assert!(!store.leave(&room("r2"), "a=").await.unwrap());
    assert!(!store.is_member(&room("r2"), "a=").await.unwrap());
    assert_eq!(
        store
            .join(&room("r3"), "a=", LIVE, MAX_ROOMS)
            .await
            .unwrap(),
        JoinOutcome::Joined
    );

    // Expired memberships (the TTL has not removed them yet) are neither members nor listed.
    connections.put(&conn("old=")).await.unwrap();
    store.join(&lobby, "old=", 1, MAX_ROOMS).await.unwrap();
    assert!(!store.is_member(&lobby, "old=").await.unwrap());
    assert_eq!(members(store, &lobby).await, ["a=", "b="]);

    // Removing one membership leaves the others.
    store.remove_member(&room("r3"), "a=").await.unwrap();
    assert!(!store.is_member(&room("r3"), "a=").await.unwrap());
    assert!(store.is_member(&room("r1"), "a=").await.unwrap());

    // Forget: every room of the connection, nobody else's.
    let forgotten = store.forget("a=").await.unwrap();
    assert!(forgotten >= 2, "lobby and r1 at least, got {forgotten}");
    for r in [&lobby, &room("r1")] {
        assert!(!store.is_member(r, "a=").await.unwrap(), "{r}");
    }
    assert_eq!(members(store, &lobby).await, ["b="]);
    assert_eq!(store.forget("never-joined=").await.unwrap(), 0);

    // A room of 2,500 members comes back page by page, each member once, in order.
    let big = &room("big");
    futures::stream::iter(0..BIG_ROOM)
        .map(|i| async move {
            let id = format!("m-{i:05}=");
            connections.put(&conn(&id)).await?;
            store.join(big, &id, LIVE, MAX_ROOMS).await
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let listed = pages(store, big).await;
    let sizes: Vec<usize> = listed.iter().map(|p| p.connection_ids.len()).collect();
    // 2,500 members at 1,000 a page: two full pages and one of 500, whose end has no cursor
    // (DynamoDB may add an empty fourth page when the third ends exactly at the limit; ours
    // does not).
    assert_eq!(sizes, [1_000, 1_000, 500], "pages of at most {PAGE_SIZE}");
    let ids: Vec<String> = listed.into_iter().flat_map(|p| p.connection_ids).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), BIG_ROOM, "no member twice");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "pages follow the sort key");
    assert_eq!(ids[0], "m-00000=");
    assert_eq!(ids[BIG_ROOM - 1], "m-02499=");
}

#[tokio::test]
async fn memory_membership_store_meets_the_contract() {
    let store = MemoryMembershipStore::new().with_page_size(PAGE_SIZE);
    contract(&store, &MemoryStore::new()).await;
}

struct DynamoDb {
    _dynalite: Dynalite,
    client: aws_sdk_dynamodb::Client,
    store: DynamoDbMembershipStore,
    connections: DynamoDbStore,
}

async fn dynamodb() -> DynamoDb {
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, "Connections")
        .await
        .unwrap_or_else(|e| panic!("connections table: {e}"));
    create_rooms_table(&client, "Rooms")
        .await
        .unwrap_or_else(|e| panic!("rooms table: {e}"));
    DynamoDb {
        store: DynamoDbMembershipStore::new(client.clone(), "Rooms".into(), "Connections".into())
            .with_page_size(PAGE_SIZE),
        connections: DynamoDbStore::new(client.clone(), "Connections".into()),
        client,
        _dynalite: dynalite,
    }
}

#[tokio::test]
async fn dynamodb_membership_store_meets_the_contract() {
    let db = dynamodb().await;
    contract(&db.store, &db.connections).await;
}

/// A join racing `$disconnect` must not bring the deleted record back (an UpdateItem on a
/// missing key would create one) nor leave a membership behind.
#[tokio::test]
async fn dynamodb_join_without_a_record_changes_nothing() {
    let db = dynamodb().await;
    let lobby = room("lobby");
    assert_eq!(
        db.store
            .join(&lobby, "gone=", LIVE, MAX_ROOMS)
            .await
            .unwrap(),
        JoinOutcome::UnknownConnection
    );
    assert_eq!(db.connections.get("gone=").await.unwrap(), None);
    assert!(!db.store.is_member(&lobby, "gone=").await.unwrap());
    let scan = db.client.scan().table_name("Rooms").send().await.unwrap();
    assert_eq!(scan.count(), 0);
}

/// What the items look like: the membership carries the TTL attribute, the record lists the
/// room in a string set (an added attribute: the record's own fields are untouched).
#[tokio::test]
async fn dynamodb_layout_is_the_documented_one() {
    let db = dynamodb().await;
    db.connections.put(&conn("a=")).await.unwrap();
    db.store
        .join(&room("lobby"), "a=", LIVE, MAX_ROOMS)
        .await
        .unwrap();
    let member = db
        .client
        .get_item()
        .table_name("Rooms")
        .key("room", AttributeValue::S("lobby".into()))
        .key("connectionId", AttributeValue::S("a=".into()))
        .send()
        .await
        .unwrap();
    let item = member.item().expect("membership item");
    assert_eq!(item["expiresAt"], AttributeValue::N(LIVE.to_string()));
    let record = db
        .client
        .get_item()
        .table_name("Connections")
        .key("connectionId", AttributeValue::S("a=".into()))
        .send()
        .await
        .unwrap();
    let item = record.item().expect("record");
    assert_eq!(item["rooms"], AttributeValue::Ss(vec!["lobby".into()]));
    assert_eq!(db.connections.get("a=").await.unwrap(), Some(conn("a=")));
}

/// A malformed `rooms` attribute is an error naming the connection, not a panic.
#[tokio::test]
async fn dynamodb_malformed_rooms_attribute_names_the_connection() {
    let db = dynamodb().await;
    db.client
        .put_item()
        .table_name("Connections")
        .item("connectionId", AttributeValue::S("odd=".into()))
        .item("rooms", AttributeValue::S("not a set".into()))
        .send()
        .await
        .unwrap();
    let err = db.store.rooms_of("odd=").await.unwrap_err();
    assert!(err.to_string().contains("odd="), "{err}");
    assert!(err.to_string().contains("rooms"), "{err}");
}

/// `$disconnect` as the handlers now run it: the record first (its delete answers with the
/// rooms it listed), then those memberships.
async fn disconnect(
    connections: &DynamoDbStore,
    memberships: &DynamoDbMembershipStore,
    id: &str,
) -> usize {
    let rooms = match connections.remove(id, None).await.unwrap() {
        Removal::Removed { rooms } => rooms,
        _ => Vec::new(),
    };
    memberships.forget_listed(id, &rooms).await.unwrap()
}

/// Runs a `$disconnect` of `id` right before the first PutItem on the rooms table goes out:
/// the moment between a join's update of the record and its membership write.
#[derive(Debug, Clone)]
struct DisconnectBeforeMembershipPut {
    id: String,
    connections: DynamoDbStore,
    memberships: DynamoDbMembershipStore,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl aws_sdk_dynamodb::config::Intercept for DisconnectBeforeMembershipPut {
    fn name(&self) -> &'static str {
        "DisconnectBeforeMembershipPut"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let body = request
            .body()
            .bytes()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if target.ends_with(".PutItem")
            && body.contains(r#""TableName":"Rooms""#)
            && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let this = self.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    disconnect(&this.connections, &this.memberships, &this.id).await
                })
            });
        }
        Ok(())
    }
}

/// A join racing `$disconnect` (the join adds the room to the record, `$disconnect` deletes the
/// record and the memberships it lists, then the join writes its membership) ends with no
/// membership left, and the join says the connection is unknown (issue 18, item 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_join_racing_disconnect_leaves_no_membership() {
    let db = dynamodb().await;
    db.connections.put(&conn("racer=")).await.unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sdk = wsstack_tests::local_sdk_config(Some(&db._dynalite.endpoint())).await;
    let racing_client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(DisconnectBeforeMembershipPut {
                id: "racer=".into(),
                connections: db.connections.clone(),
                memberships: db.store.clone(),
                done: done.clone(),
            })
            .build(),
    );
    let racing = DynamoDbMembershipStore::new(racing_client, "Rooms".into(), "Connections".into());
    let lobby = room("lobby");
    let outcome = racing
        .join(&lobby, "racer=", LIVE, MAX_ROOMS)
        .await
        .unwrap();
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        "the race was run"
    );
    assert_eq!(outcome, JoinOutcome::UnknownConnection);
    assert_eq!(db.connections.get("racer=").await.unwrap(), None);
    assert!(!db.store.is_member(&lobby, "racer=").await.unwrap());
    let scan = db.client.scan().table_name("Rooms").send().await.unwrap();
    assert_eq!(scan.count(), 0, "no membership left: {:?}", scan.items());
}

/// `$disconnect` and a 410 delete the record first and then the memberships its delete
/// answered with: every room, nobody else's (both stores).
async fn forget_listed_contract(store: &dyn MembershipStore, connections: &dyn ConnectionStore) {
    let lobby = room("lobby");
    for id in ["a=", "b="] {
        connections.put(&conn(id)).await.unwrap();
        for r in [&lobby, &room("r1")] {
            store.join(r, id, LIVE, MAX_ROOMS).await.unwrap();
        }
    }
    let rooms = match connections.remove("a=", None).await.unwrap() {
        Removal::Removed { rooms } => rooms,
        other => panic!("a='s record was there: {other:?}"),
    };
    store.forget_listed("a=", &rooms).await.unwrap();
    for r in [&lobby, &room("r1")] {
        assert!(!store.is_member(r, "a=").await.unwrap(), "{r}");
        assert!(store.is_member(r, "b=").await.unwrap(), "{r}");
    }
    assert_eq!(members(store, &lobby).await, ["b="]);
}

#[tokio::test]
async fn memory_membership_store_forgets_what_a_deleted_record_listed() {
    forget_listed_contract(&MemoryMembershipStore::new(), &MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_membership_store_forgets_what_a_deleted_record_listed() {
    let db = dynamodb().await;
    forget_listed_contract(&db.store, &db.connections).await;
}
