//! One contract, two stores: `MemoryStore` and `DynamoDbStore` on dynalite must behave alike,
//! or the local gateway would test something other than what runs in AWS.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use wsstack_handlers::store::{
    ATTR_CONNECTION_ID, ATTR_EXPIRES_AT, Admission, Connection, ConnectionStore, DynamoDbStore,
    MemoryStore, MessageRate, Recipient, StoreError,
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
