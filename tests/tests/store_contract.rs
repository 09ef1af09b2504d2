//! One contract, two stores: `MemoryStore` and `DynamoDbStore` on dynalite must behave alike,
//! or the local gateway would test something other than what runs in AWS.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};
use wsstack_handlers::store::{
    ATTR_CONNECTION_ID, Connection, ConnectionStore, DynamoDbStore, MemoryStore, StoreError,
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
