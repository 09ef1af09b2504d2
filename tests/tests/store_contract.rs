//! One contract, two stores: `MemoryStore` and `DynamoDbStore` on dynalite must behave alike,
//! or the local gateway would test something other than what runs in AWS.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};
use wsstack_handlers::store::{
    ATTR_CONNECTION_ID, Admission, Connection, ConnectionStore, DynamoDbStore, MemoryStore,
    MessageRate, StoreError,
};
use wsstack_tests::{Dynalite, create_connections_table};

/// Enough records for several pages at `PAGE_SIZE` (and for three at the default 1,000).
const MANY: usize = 2_500;
const PAGE_SIZE: usize = 100;

fn conn(i: usize) -> Connection {
    Connection {
        connection_id: format!("conn-{i:05}="),
        username: format!("user {i}"),
        connected_at: 1_795_703_226_123 + i as i64,
        expires_at: 1_795_703_226 + 7200 + i as i64,
        sub: None,
    }
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
        sub: None,
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
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, "Connections")
        .await
        .unwrap();
    let store = DynamoDbStore::new(client.clone(), "Connections".into()).with_page_size(PAGE_SIZE);
    contract(&store).await;

    // Pagination really happened: a Scan with the same limit leaves a cursor.
    let page = client
        .scan()
        .table_name("Connections")
        .limit(PAGE_SIZE as i32)
        .send()
        .await
        .unwrap();
    assert!(page.last_evaluated_key().is_some());
}

#[tokio::test]
async fn dynamodb_store_with_default_pages_lists_everything() {
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, "Connections")
        .await
        .unwrap();
    let store = DynamoDbStore::new(client, "Connections".into());
    put_many(&store, 0..MANY).await;
    assert_eq!(list_all(&store).await.len(), MANY);
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
