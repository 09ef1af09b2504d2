//! One contract, two stores: `MemoryStore` and `DynamoDbStore` on dynalite must behave alike,
//! or the local gateway would test something other than what runs in AWS.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use wsstack_handlers::audience::AudienceSource;
use wsstack_handlers::job::{Audience, Listing};
use wsstack_handlers::store::{
    ATTR_CONNECTION_ID, ATTR_EXPIRES_AT, ATTR_RATE_TAT, Admission, Bucket, Charge, Connection,
    ConnectionStore, DynamoDbStore, MemoryStore, MessageRate, Recipient, Removal, StoreError,
};
use wsstack_tests::{Dynalite, create_connections_table};

/// Enough records for several pages at `PAGE_SIZE`.
const MANY: usize = 2_500;
const PAGE_SIZE: usize = 100;
/// The listing's clock in these tests (2026-11-26T14:27:06Z), epoch seconds.
const NOW: i64 = 1_795_703_226;

fn conn(i: usize) -> Connection {
    Connection {
        connection_id: format!("conn-{i:05}="),
        username: format!("user {i}"),
        connected_at: NOW * 1000 + i as i64,
        expires_at: NOW + 7200 + i as i64,
        sub: None,
        token_expires_at: None,
    }
}

/// Records the JSON body of every Scan request the client sends: what DynamoDB is asked, page
/// by page.
#[derive(Debug, Default, Clone)]
struct ScanRecorder(Arc<Mutex<Vec<Value>>>);

impl ScanRecorder {
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.0.lock().expect("recorder lock"))
    }
}

impl Intercept for ScanRecorder {
    fn name(&self) -> &'static str {
        "ScanRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        if target.ends_with(".Scan") {
            let body = request.body().bytes().expect("a Scan body is in memory");
            let json = serde_json::from_slice(body).expect("a Scan body is JSON");
            self.0.lock().expect("recorder lock").push(json);
        }
        Ok(())
    }
}

/// A dynalite with the connections table, and a client whose Scans are recorded.
async fn dynalite_table() -> (Dynalite, aws_sdk_dynamodb::Client, ScanRecorder) {
    let dynalite = Dynalite::start().await;
    let recorder = ScanRecorder::default();
    let sdk = wsstack_tests::local_sdk_config(Some(&dynalite.endpoint())).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(recorder.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    create_connections_table(&client, "Connections")
        .await
        .unwrap();
    (dynalite, client, recorder)
}

async fn list_all(store: &dyn ConnectionStore) -> Vec<Connection> {
    store.list().try_collect().await.unwrap()
}

async fn put_many(store: &dyn ConnectionStore, range: std::ops::Range<usize>) {
    // Concurrent puts: 2,500 sequential round trips to dynalite take long for no benefit.
    futures::stream::iter(range)
        .map(|i| async move { store.put(&conn(i)).await })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

/// The contract every `ConnectionStore` meets. `store` must start empty and list in pages of
/// at most `PAGE_SIZE` records.
async fn contract(store: &dyn ConnectionStore) {
    // Empty.
    assert_eq!(list_all(store).await, vec![]);
    assert_eq!(store.get("nobody").await.unwrap(), None);

    // Round trip, replace.
    let a = conn(1);
    store.put(&a).await.unwrap();
    assert_eq!(store.get(&a.connection_id).await.unwrap(), Some(a.clone()));
    let renamed = Connection {
        username: "renamed".into(),
        ..a.clone()
    };
    store.put(&renamed).await.unwrap();
    assert_eq!(
        store.get(&a.connection_id).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(list_all(store).await, vec![renamed]);

    // Unicode and extremes survive.
    let odd = Connection {
        connection_id: "ü/+= id".into(),
        username: "Zoë 🚀".into(),
        connected_at: i64::MAX,
        expires_at: 0,
        sub: Some("sub/ü".into()),
        token_expires_at: None,
    };
    store.put(&odd).await.unwrap();
    assert_eq!(
        store.get(&odd.connection_id).await.unwrap(),
        Some(odd.clone())
    );

    // Delete, idempotent.
    store.delete(&a.connection_id).await.unwrap();
    store.delete(&a.connection_id).await.unwrap();
    store.delete("never-existed").await.unwrap();
    assert_eq!(store.get(&a.connection_id).await.unwrap(), None);
    store.delete(&odd.connection_id).await.unwrap();
    assert_eq!(list_all(store).await, vec![]);

    // Many pages: every record exactly once.
    put_many(store, 0..MANY).await;
    let listed = list_all(store).await;
    assert_eq!(listed.len(), MANY);
    let ids: HashSet<_> = listed.iter().map(|c| c.connection_id.clone()).collect();
    assert_eq!(ids.len(), MANY, "no record listed twice");
    for c in listed.iter().take(50) {
        let i: usize = c.connection_id[5..10].parse().unwrap();
        assert_eq!(c, &conn(i), "records come back whole");
    }

    // Paging as `listConnections` does: every record exactly once, no page over its limit.
    for limit in [29, 1000] {
        let paged = page_all(store, limit).await;
        assert_eq!(paged.len(), MANY, "limit {limit}");
        let ids: HashSet<_> = paged.iter().map(|c| c.connection_id.clone()).collect();
        assert_eq!(ids.len(), MANY, "limit {limit}: no record paged twice");
    }
    // A cursor whose record left meanwhile still goes on from where it was.
    let first = store.page(None, 10).await.unwrap();
    let cursor = first.next.clone().expect("more than one page");
    store.delete(&cursor).await.unwrap();
    let second = store.page(Some(&cursor), 10).await.unwrap();
    let seen: HashSet<String> = first
        .records
        .iter()
        .chain(&second.records)
        .map(|r| r.as_ref().unwrap().connection_id.clone())
        .collect();
    assert_eq!(
        seen.len(),
        20,
        "the second page repeats nothing of the first"
    );
    store
        .put(&conn(cursor[5..10].parse().unwrap()))
        .await
        .unwrap();

    // Deleting records while listing them (what a broadcast does with gone connections) loses
    // none of the others and repeats none.
    let mut seen = HashSet::new();
    let mut stream = store.list();
    let mut n = 0;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        if n % 3 == 0 {
            store.delete(&c.connection_id).await.unwrap();
        }
        assert!(seen.insert(c.connection_id), "listed twice");
        n += 1;
    }
    drop(stream);
    assert_eq!(seen.len(), MANY);
    assert_eq!(list_all(store).await.len(), MANY - MANY.div_ceil(3));
}

/// Every record, `limit` at a time through `page`, checking each page's bound.
async fn page_all(store: &dyn ConnectionStore, limit: usize) -> Vec<Connection> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.page(cursor.as_deref(), limit).await.unwrap();
        assert!(
            page.records.len() <= limit,
            "{} > {limit}",
            page.records.len()
        );
        all.extend(page.records.into_iter().map(Result::unwrap));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

const RATE: MessageRate = MessageRate {
    per_second: 10,
    burst: 20,
};

fn admitted(a: &Admission) -> bool {
    matches!(a, Admission::Admitted(_))
}

/// The rate limit part of the contract: GCRA at 10/s, burst 20, with the record returned by the
/// same call. `store` must start empty.
async fn rate_contract(store: &dyn ConnectionStore) {
    let now = 1_795_703_226_000;
    assert_eq!(
        store.admit_message("nobody", now, RATE).await.unwrap(),
        Admission::UnknownSender
    );
    let mut a = conn(1);
    a.sub = Some("sub-1".into());
    store.put(&a).await.unwrap();
    assert_eq!(store.get(&a.connection_id).await.unwrap(), Some(a.clone()));

    for i in 0..20 {
        let got = store
            .admit_message(&a.connection_id, now, RATE)
            .await
            .unwrap();
        assert_eq!(got, Admission::Admitted(a.clone()), "message {i}");
    }
    for at in [now, now + 99] {
        assert_eq!(
            store
                .admit_message(&a.connection_id, at, RATE)
                .await
                .unwrap(),
            Admission::RateLimited
        );
    }
    assert!(admitted(
        &store
            .admit_message(&a.connection_id, now + 100, RATE)
            .await
            .unwrap()
    ));
    assert_eq!(
        store
            .admit_message(&a.connection_id, now + 100, RATE)
            .await
            .unwrap(),
        Admission::RateLimited
    );
    // An hour of silence refills the bucket, to the burst and no further.
    let later = now + 3_600_000;
    for _ in 0..20 {
        assert!(admitted(
            &store
                .admit_message(&a.connection_id, later, RATE)
                .await
                .unwrap()
        ));
    }
    assert_eq!(
        store
            .admit_message(&a.connection_id, later, RATE)
            .await
            .unwrap(),
        Admission::RateLimited
    );

    // Concurrent messages cannot overdraw: of 30 at once, exactly the burst passes.
    let b = conn(2);
    store.put(&b).await.unwrap();
    let results = futures::future::join_all(
        (0..30).map(|_| store.admit_message(&b.connection_id, now, RATE)),
    )
    .await;
    let passed = results
        .iter()
        .filter(|r| admitted(r.as_ref().expect("no store error")))
        .count();
    assert_eq!(passed, 20);
    store.delete(&b.connection_id).await.unwrap();
    assert_eq!(
        store
            .admit_message(&b.connection_id, later, RATE)
            .await
            .unwrap(),
        Admission::UnknownSender
    );
}

#[tokio::test]
async fn memory_store_meets_the_rate_contract() {
    rate_contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_store_meets_the_rate_contract() {
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, "Connections")
        .await
        .unwrap();
    rate_contract(&DynamoDbStore::new(client, "Connections".into())).await;
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(&MemoryStore::new().with_page_size(PAGE_SIZE)).await;
}

#[tokio::test]
async fn memory_store_meets_the_contract_with_default_pages() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_store_meets_the_contract() {
    let (_dynalite, client, recorder) = dynalite_table().await;
    let store = DynamoDbStore::new(client, "Connections".into()).with_page_size(PAGE_SIZE);
    contract(&store).await;

    // The listings above really went page by page: the 1,666 records the contract leaves are
    // 16 full pages of 100, each with a cursor to the next, and a 17th of 66 that ends it.
    recorder.take();
    assert_eq!(list_all(&store).await.len(), MANY - MANY.div_ceil(3));
    let scans = recorder.take();
    let pages = (MANY - MANY.div_ceil(3)).div_ceil(PAGE_SIZE);
    assert_eq!(scans.len(), pages, "one Scan per page");
    assert!(scans[0].get("ExclusiveStartKey").is_none());
    for scan in &scans[1..] {
        assert_eq!(scan["Limit"], PAGE_SIZE);
        assert!(
            scan["ExclusiveStartKey"][ATTR_CONNECTION_ID]["S"].is_string(),
            "{scan}"
        );
    }
}

/// Without a page size, DynamoDB ends a Scan page at 1 MB of data: 2,500 records of about 1 KiB
/// each are 3 pages, and the store follows the cursors through all of them.
#[tokio::test]
async fn dynamodb_store_with_default_pages_follows_the_1_mb_pages() {
    let (_dynalite, client, recorder) = dynalite_table().await;
    let padding = "p".repeat(1_000);
    futures::stream::iter(0..MANY)
        .map(|i| {
            let client = client.clone();
            let padding = padding.clone();
            async move {
                let c = conn(i);
                client
                    .put_item()
                    .table_name("Connections")
                    .item(ATTR_CONNECTION_ID, AttributeValue::S(c.connection_id))
                    .item("username", AttributeValue::S(c.username))
                    .item("connectedAt", AttributeValue::N(c.connected_at.to_string()))
                    .item(ATTR_EXPIRES_AT, AttributeValue::N(c.expires_at.to_string()))
                    // An attribute this code does not read, as a newer writer might add.
                    .item("profile", AttributeValue::S(padding))
                    .send()
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let store = DynamoDbStore::new(client, "Connections".into());
    recorder.take();
    let listed = list_all(&store).await;
    assert_eq!(listed.len(), MANY);
    let ids: HashSet<_> = listed.iter().map(|c| c.connection_id.clone()).collect();
    assert_eq!(ids.len(), MANY, "no record listed twice");
    let scans = recorder.take();
    assert_eq!(scans.len(), 3, "2.5 MB in 1 MB pages: {scans:?}");
    assert!(scans.iter().all(|s| s.get("Limit").is_none()));
    assert!(
        scans[1..]
            .iter()
            .all(|s| s.get("ExclusiveStartKey").is_some())
    );

    // The broadcast listing gets only the connection ids back, but DynamoDB applies the 1 MB
    // to what it reads, before projection and filter: the same 3 pages, every record listed.
    let recipients: Vec<Recipient> = store.list_recipients(NOW).try_collect().await.unwrap();
    assert_eq!(recipients.len(), MANY);
    assert_eq!(recorder.take().len(), 3);
}

/// What a broadcast posts to: live records only, from a strongly consistent, projected Scan.
async fn recipients_contract(store: &dyn ConnectionStore) {
    let expired = Connection {
        connection_id: "expired=".into(),
        expires_at: NOW - 1,
        ..conn(0)
    };
    let expiring_now = Connection {
        connection_id: "expiring-now=".into(),
        expires_at: NOW,
        ..conn(0)
    };
    let live = Connection {
        connection_id: "live=".into(),
        expires_at: NOW + 1,
        ..conn(0)
    };
    for c in [&expired, &expiring_now, &live] {
        store.put(c).await.unwrap();
    }
    put_many(store, 1..(2 * PAGE_SIZE + 1)).await;
    // Expired among them, across pages.
    for i in (1..(2 * PAGE_SIZE + 1)).step_by(4) {
        store
            .put(&Connection {
                expires_at: NOW - 3600,
                ..conn(i)
            })
            .await
            .unwrap();
    }
    let mut ids: Vec<String> = store
        .list_recipients(NOW)
        .map_ok(|r| r.connection_id)
        .try_collect()
        .await
        .unwrap();
    ids.sort();
    let mut want: Vec<String> = (1..(2 * PAGE_SIZE + 1))
        .filter(|i| (i - 1) % 4 != 0)
        .map(|i| conn(i).connection_id)
        .chain(["live=".to_owned()])
        .collect();
    want.sort();
    assert_eq!(
        ids, want,
        "expired records (expiresAt <= now) are not listed"
    );
    // Everything is still in the table: expiry is DynamoDB's TTL's job, not the listing's.
    assert_eq!(list_all(store).await.len(), 2 * PAGE_SIZE + 3);
}

#[tokio::test]
async fn memory_store_lists_only_live_recipients() {
    recipients_contract(&MemoryStore::new().with_page_size(PAGE_SIZE)).await;
}

// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html
#[tokio::test]
async fn dynamodb_store_lists_only_live_recipients_consistently_and_projected() {
    let (_dynalite, client, recorder) = dynalite_table().await;
    let store = DynamoDbStore::new(client.clone(), "Connections".into()).with_page_size(PAGE_SIZE);
    recipients_contract(&store).await;

    recorder.take();
    let _: Vec<Recipient> = store.list_recipients(NOW).try_collect().await.unwrap();
    let scans = recorder.take();
    assert!(
        scans.len() >= 3,
        "{} records at {PAGE_SIZE} a page",
        2 * PAGE_SIZE + 3
    );
    for scan in &scans {
        assert_eq!(scan["ConsistentRead"], true, "{scan}");
        assert_eq!(scan["ProjectionExpression"], "#id", "{scan}");
        assert_eq!(scan["ExpressionAttributeNames"]["#id"], ATTR_CONNECTION_ID);
        assert_eq!(
            scan["ExpressionAttributeValues"][":now"]["N"],
            NOW.to_string()
        );
    }

    // A record written before TTL existed (no expiresAt) and without the attributes a full
    // listing needs is still reached: the broadcast reads only its id.
    client
        .put_item()
        .table_name("Connections")
        .item(ATTR_CONNECTION_ID, AttributeValue::S("legacy".into()))
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = store
        .list_recipients(NOW)
        .map_ok(|r| r.connection_id)
        .try_collect()
        .await
        .unwrap();
    assert!(ids.contains(&"legacy".to_owned()));
}

#[tokio::test]
async fn a_malformed_record_is_reported_and_the_rest_still_listed() {
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, "Connections")
        .await
        .unwrap();
    let store = DynamoDbStore::new(client.clone(), "Connections".into()).with_page_size(2);
    put_many(&store, 0..5).await;
    client
        .put_item()
        .table_name("Connections")
        .item(ATTR_CONNECTION_ID, AttributeValue::S("legacy".into()))
        .send()
        .await
        .unwrap();
    let items: Vec<_> = store.list().collect().await;
    assert_eq!(items.len(), 6);
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 5);
    let bad = items.into_iter().find_map(Result::err).unwrap();
    assert_eq!(
        bad,
        StoreError::Malformed {
            connection_id: "legacy".into(),
            reason: "no string attribute username".into()
        }
    );
    let err = store.get("legacy").await.unwrap_err();
    assert!(matches!(err, StoreError::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn a_missing_table_is_a_backend_error() {
    let dynalite = Dynalite::start().await;
    let store = DynamoDbStore::new(dynalite.client().await, "NoSuchTable".into());
    let err = store.put(&conn(1)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(text) if text.contains("ResourceNotFound")),
        "{err}"
    );
    let listed: Vec<_> = store.list().collect().await;
    assert!(
        matches!(listed.as_slice(), [Err(StoreError::Backend(_))]),
        "{listed:?}"
    );
    let err = store.page(None, 10).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(text) if text.contains("ResourceNotFound")),
        "{err}"
    );
}

#[tokio::test]
async fn dynalite_is_stopped_when_its_guard_drops() {
    let dynalite = Dynalite::start().await;
    let port = dynalite.port();
    drop(dynalite);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
}

/// What a 410 and `$disconnect` do to a record: `remove` with a cut-off keeps a record that
/// connected at or after it (its client may still be inside `$connect`, which API Gateway
/// answers 410 for: https://repost.aws/knowledge-center/410-gone-api-gateway) and deletes an
/// older one in one step; without a cut-off it deletes whatever is there (issue 18, item 8).
async fn removal_contract(store: &dyn ConnectionStore) {
    let young = Connection {
        connection_id: "young=".into(),
        connected_at: NOW * 1000,
        ..conn(1)
    };
    let old = Connection {
        connection_id: "old=".into(),
        connected_at: NOW * 1000 - 60_001,
        ..conn(2)
    };
    store.put(&young).await.unwrap();
    store.put(&old).await.unwrap();
    let cutoff = Some(NOW * 1000 - 60_000);
    assert_eq!(
        store.remove("young=", cutoff).await.unwrap(),
        Removal::Young
    );
    assert_eq!(store.get("young=").await.unwrap(), Some(young.clone()));
    // Exactly at the cut-off is still young.
    assert_eq!(
        store.remove("young=", Some(NOW * 1000)).await.unwrap(),
        Removal::Young
    );
    assert!(matches!(
        store.remove("old=", cutoff).await.unwrap(),
        Removal::Removed { .. }
    ));
    assert_eq!(store.get("old=").await.unwrap(), None);
    assert_eq!(store.remove("old=", cutoff).await.unwrap(), Removal::Absent);
    assert_eq!(store.remove("never=", None).await.unwrap(), Removal::Absent);
    // `$disconnect`: no cut-off, the young record goes too.
    assert!(matches!(
        store.remove("young=", None).await.unwrap(),
        Removal::Removed { .. }
    ));
    assert_eq!(store.get("young=").await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_keeps_a_young_record_on_a_410() {
    removal_contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_store_keeps_a_young_record_on_a_410() {
    let (_dynalite, client, _) = dynalite_table().await;
    let store = DynamoDbStore::new(client.clone(), "Connections".into());
    removal_contract(&store).await;

    // The delete answers with the rooms the record listed (the membership store's `rooms`
    // set), so the memberships can be deleted after the record that lists them.
    store.put(&conn(3)).await.unwrap();
    client
        .update_item()
        .table_name("Connections")
        .key(ATTR_CONNECTION_ID, AttributeValue::S(conn(3).connection_id))
        .update_expression("ADD #rooms :rooms")
        .expression_attribute_names("#rooms", "rooms")
        .expression_attribute_values(
            ":rooms",
            AttributeValue::Ss(vec!["lobby".into(), "r1".into()]),
        )
        .send()
        .await
        .unwrap();
    let Removal::Removed { mut rooms } = store.remove(&conn(3).connection_id, None).await.unwrap()
    else {
        panic!("the record was there");
    };
    rooms.sort();
    assert_eq!(rooms, ["lobby", "r1"]);
}

// ------------------------------------------------------------------- issue 18: other buckets

/// The per-user and stage buckets' part of the contract. `store` must start empty.
async fn bucket_contract(store: &dyn ConnectionStore) {
    let now = NOW * 1000;
    let user = MessageRate {
        per_second: 1,
        burst: 3,
    };
    let alice = Bucket::User("sub-alice".into());
    let bob = Bucket::User("sub-bob".into());
    for i in 0..3 {
        assert_eq!(
            store.charge(&alice, now, user, 1).await.unwrap(),
            Charge::Admitted,
            "request {i}"
        );
    }
    // Over the burst: refused, with the time until a unit is back (one interval, 1 s).
    assert_eq!(
        store.charge(&alice, now, user, 1).await.unwrap(),
        Charge::Limited {
            retry_after_ms: 1000
        }
    );
    assert_eq!(
        store.charge(&alice, now + 400, user, 1).await.unwrap(),
        Charge::Limited {
            retry_after_ms: 600
        }
    );
    // Another user has a bucket of their own.
    assert_eq!(
        store.charge(&bob, now, user, 1).await.unwrap(),
        Charge::Admitted
    );
    assert_eq!(
        store.charge(&alice, now + 1000, user, 1).await.unwrap(),
        Charge::Admitted
    );

    // The stage budget: a broadcast passes on one unit, its audience is debited after; the
    // next waits the debt out.
    let budget = MessageRate {
        per_second: 2,
        burst: 2,
    };
    let b = Bucket::Broadcasts;
    assert_eq!(
        store.charge(&b, now, budget, 1).await.unwrap(),
        Charge::Admitted
    );
    store.debit(&b, now, budget, 2).await.unwrap();
    assert_eq!(
        store.charge(&b, now, budget, 1).await.unwrap(),
        Charge::Limited {
            retry_after_ms: 1000
        }
    );
    // A debit always lands, even past the limit.
    store.debit(&b, now, budget, 2).await.unwrap();
    assert_eq!(
        store.charge(&b, now, budget, 1).await.unwrap(),
        Charge::Limited {
            retry_after_ms: 2000
        }
    );
    assert_eq!(
        store.charge(&b, now + 2000, budget, 1).await.unwrap(),
        Charge::Admitted
    );

    // Concurrent charges cannot overdraw: of 12 at once, exactly the burst passes.
    let carol = Bucket::User("sub-carol".into());
    let rate = MessageRate {
        per_second: 10,
        burst: 5,
    };
    let results =
        futures::future::join_all((0..12).map(|_| store.charge(&carol, now, rate, 1))).await;
    let passed = results
        .iter()
        .filter(|r| *r.as_ref().expect("no store error") == Charge::Admitted)
        .count();
    assert_eq!(passed, 5);
}

/// Whatever buckets exist, no listing of connections sees them: not a full listing, not a
/// broadcast's recipients, not a `listConnections` page, not a fan-out segment; and `get` of
/// a bucket's key (a `to` naming it) finds no connection.
async fn buckets_are_invisible(store: &(impl ConnectionStore + AudienceSource)) {
    let now = NOW * 1000;
    let rate = MessageRate {
        per_second: 1,
        burst: 1,
    };
    // Live whenever the test runs: the fan-out segments read the real clock.
    for i in 0..3 {
        let record = Connection {
            expires_at: 4_102_444_800,
            ..conn(i)
        };
        store.put(&record).await.unwrap();
    }
    for bucket in [Bucket::User("sub-1".into()), Bucket::Broadcasts] {
        assert_eq!(
            store.charge(&bucket, now, rate, 1).await.unwrap(),
            Charge::Admitted
        );
        assert_eq!(store.get(&bucket.key()).await.unwrap(), None);
    }
    let ids = |v: Vec<String>| {
        let mut v = v;
        v.sort();
        v
    };
    let want: Vec<String> = (0..3).map(|i| conn(i).connection_id).collect();
    let listed: Vec<String> = list_all(store)
        .await
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    assert_eq!(ids(listed), want, "list");
    let recipients: Vec<String> = store
        .list_recipients(NOW)
        .map_ok(|r| r.connection_id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(recipients), want, "broadcast recipients");
    let page = store.page(None, 100).await.unwrap();
    let paged: Vec<String> = page
        .records
        .into_iter()
        .map(|r| r.expect("no malformed record").connection_id)
        .collect();
    assert_eq!(ids(paged), want, "listConnections page");
    let segment = store
        .audience_page(
            &Audience::Everyone {
                segment: 0,
                segments: 1,
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(segment.next, Listing::Done);
    assert_eq!(ids(segment.ids), want, "fan-out segment");
    // The token sweep's and `push disconnect`'s listings neither fail on nor list them.
    let expired: Vec<String> = store
        .list_token_expired(i64::MAX)
        .map_ok(|r| r.connection_id)
        .try_collect()
        .await
        .expect("the token sweep's listing");
    assert!(
        expired.iter().all(|id| !id.starts_with("limit#")),
        "{expired:?}"
    );
    let by_sub: Vec<String> = store
        .list_by_sub("sub-1")
        .map_ok(|r| r.connection_id)
        .try_collect()
        .await
        .expect("a user's listing");
    assert!(by_sub.is_empty(), "{by_sub:?}");
}

#[tokio::test]
async fn memory_store_meets_the_bucket_contract() {
    bucket_contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn dynamodb_store_meets_the_bucket_contract() {
    let (_dynalite, client, _) = dynalite_table().await;
    let store = DynamoDbStore::new(client.clone(), "Connections".into());
    bucket_contract(&store).await;
    // The items carry a TTL, so DynamoDB removes them once they say nothing: the bucket is
    // full again by then (plus the grace hour).
    let item = client
        .get_item()
        .table_name("Connections")
        .key(
            ATTR_CONNECTION_ID,
            AttributeValue::S(Bucket::Broadcasts.key()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the stage budget's item");
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse::<i64>().unwrap(),
        other => panic!("{name}: {other:?}"),
    };
    let tat_s = number(ATTR_RATE_TAT) / 1_000_000;
    let expires_at = number(ATTR_EXPIRES_AT);
    assert!(
        expires_at > tat_s && expires_at <= tat_s + 3600 + 10,
        "expiresAt {expires_at}, bucket full at {tat_s}"
    );
}

#[tokio::test]
async fn memory_store_listings_never_see_the_buckets() {
    // Pages of one, so the listings cross pages.
    buckets_are_invisible(&MemoryStore::new().with_page_size(1)).await;
}

#[tokio::test]
async fn dynamodb_store_listings_never_see_the_buckets() {
    let (_dynalite, client, recorder) = dynalite_table().await;
    let store = DynamoDbStore::new(client, "Connections".into()).with_page_size(1);
    buckets_are_invisible(&store).await;
    // Every Scan filters the buckets' key prefix out.
    let scans = recorder.take();
    assert!(!scans.is_empty());
    for scan in scans {
        assert!(
            scan["FilterExpression"]
                .as_str()
                .is_some_and(|f| f.contains("NOT begins_with(#id, :limitPrefix)")),
            "{scan}"
        );
        assert_eq!(
            scan["ExpressionAttributeValues"][":limitPrefix"]["S"],
            "limit#"
        );
    }
}

async fn sorted_ids(
    s: futures::stream::BoxStream<'_, Result<Recipient, StoreError>>,
) -> Vec<String> {
    let mut ids: Vec<String> = s.map_ok(|r| r.connection_id).try_collect().await.unwrap();
    ids.sort();
    ids
}

/// What the token sweep and `push disconnect --user` close (issue 18): the records whose token
/// expired at or before now, and the records of one `sub`, across pages; records without a
/// token expiry or a `sub` (stages without authentication) never. The token's expiry
/// round-trips.
async fn sweep_contract(store: &dyn ConnectionStore) {
    let authenticated = |i: usize, sub: &str, token_expires_at: i64| Connection {
        sub: Some(sub.to_owned()),
        token_expires_at: Some(token_expires_at),
        ..conn(i)
    };
    put_many(store, 0..(2 * PAGE_SIZE)).await;
    let mut expired = Vec::new();
    let mut adas = Vec::new();
    for i in (0..(2 * PAGE_SIZE)).step_by(7) {
        let c = match i % 3 {
            0 => authenticated(i, "ada", NOW - 3600),
            1 => authenticated(i, "bo", NOW),
            _ => authenticated(i, "ada", NOW + 1),
        };
        if c.token_expires_at <= Some(NOW) {
            expired.push(c.connection_id.clone());
        }
        if c.sub.as_deref() == Some("ada") {
            adas.push(c.connection_id.clone());
        }
        store.put(&c).await.unwrap();
    }
    let sample = authenticated(7, "bo", NOW);
    assert_eq!(
        store.get(&sample.connection_id).await.unwrap(),
        Some(sample)
    );
    let ids = sorted_ids;
    assert!(!expired.is_empty() && !adas.is_empty());
    assert_eq!(ids(store.list_token_expired(NOW)).await, expired);
    assert_eq!(ids(store.list_by_sub("ada")).await, adas);
    assert!(ids(store.list_by_sub("nobody")).await.is_empty());
    assert!(ids(store.list_token_expired(NOW - 7200)).await.is_empty());
}

#[tokio::test]
async fn memory_store_lists_expired_tokens_and_a_users_connections() {
    sweep_contract(&MemoryStore::new().with_page_size(PAGE_SIZE)).await;
}

#[tokio::test]
async fn dynamodb_store_lists_expired_tokens_and_a_users_connections_consistently() {
    let (_dynalite, client, recorder) = dynalite_table().await;
    let store = DynamoDbStore::new(client, "Connections".into()).with_page_size(PAGE_SIZE);
    sweep_contract(&store).await;
    recorder.take();
    let _: Vec<Recipient> = store.list_token_expired(NOW).try_collect().await.unwrap();
    let scans = recorder.take();
    assert!(scans.len() >= 2, "{scans:?}");
    for scan in &scans {
        assert_eq!(scan["ConsistentRead"], true, "{scan}");
        assert_eq!(scan["ProjectionExpression"], "#id", "{scan}");
        assert_eq!(scan["ExpressionAttributeNames"]["#a"], "tokenExpiresAt");
        assert_eq!(scan["Limit"], PAGE_SIZE, "{scan}");
    }
}

/// A push to a user and presence (issue 17): every live connection of one user, across pages,
/// with when it connected; the user is the verified `sub` where there is one, the username
/// elsewhere; expired records and other users' are not listed. On DynamoDB this reads the
/// table's user index (`byUser`), which is eventually consistent: dynalite applies index
/// writes before it answers, so the contract reads them at once.
async fn user_contract(store: &dyn ConnectionStore) {
    put_many(store, 0..(8 * PAGE_SIZE)).await;
    let mut adas = Vec::new();
    for i in (0..(8 * PAGE_SIZE)).step_by(3) {
        let c = match i % 4 {
            // Authenticated: the user is the `sub`, whatever the name shown.
            0 => Connection {
                sub: Some("ada".into()),
                username: "Ada L.".into(),
                ..conn(i)
            },
            // Unauthenticated stage: the user is the username.
            1 => Connection {
                username: "ada".into(),
                ..conn(i)
            },
            // Ada's, but expired: not a connection any more.
            2 => Connection {
                sub: Some("ada".into()),
                expires_at: NOW - 1,
                ..conn(i)
            },
            _ => Connection {
                sub: Some("bo".into()),
                username: "ada".into(),
                ..conn(i)
            },
        };
        if i % 4 < 2 {
            adas.push((c.connection_id.clone(), c.connected_at));
        }
        store.put(&c).await.unwrap();
    }
    adas.sort();
    let mut listed: Vec<(String, i64)> = store
        .list_by_user("ada", NOW)
        .map_ok(|c| (c.connection_id, c.connected_at))
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    // More than a page of Ada's: the listing pages.
    assert!(adas.len() > PAGE_SIZE, "{}", adas.len());
    assert_eq!(listed, adas);
    let nobody: Vec<_> = store
        .list_by_user("nobody", NOW)
        .try_collect()
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

#[tokio::test]
async fn memory_store_lists_a_users_live_connections() {
    user_contract(&MemoryStore::new().with_page_size(PAGE_SIZE)).await;
}

#[tokio::test]
async fn dynamodb_store_lists_a_users_live_connections_from_the_user_index() {
    let (_dynalite, client, _recorder) = dynalite_table().await;
    let store = DynamoDbStore::new(client, "Connections".into()).with_page_size(PAGE_SIZE);
    user_contract(&store).await;
}
