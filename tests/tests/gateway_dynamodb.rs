//! The local gateway with `--store dynamodb`: the handlers' DynamoDB store code against
//! dynalite. The table must hold exactly the live connections at every step.

mod gateway_support;

use gateway_support::*;
use serde_json::json;
use wsstack_gateway::{StoreOptions, open_store};
use wsstack_tests::{Dynalite, create_connections_table};

#[tokio::test]
async fn the_table_holds_exactly_the_live_connections() {
    let dynalite = Dynalite::start().await;
    let table = "GatewayConnections";
    create_connections_table(&dynalite.client().await, table)
        .await
        .unwrap_or_else(|e| panic!("table: {e}"));
    let store = open_store(&StoreOptions::DynamoDb {
        endpoint: Some(dynalite.endpoint()),
        table: table.to_owned(),
    })
    .await
    .unwrap_or_else(|e| panic!("store: {e}"));
    let gw = start_with(
        wsstack_gateway::GatewayOptions {
            table_name: table.to_owned(),
            ..options()
        },
        store.clone(),
    )
    .await;

    let mut alice = connect(&gw, "alice").await;
    let bob = connect(&gw, "bob").await;
    let carol = connect(&gw, "carol").await;
    let mut live = gw.connection_ids();
    live.sort();
    assert_eq!(stored_ids(store.as_ref()).await, live);

    alice
        .send_json(json!({"action": "sendMessage", "data": "via dynamodb"}))
        .await;
    let frame = alice.next_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(frame["data"], "via dynamodb");

    // A clean close and a killed socket both end with $disconnect deleting the record.
    let bob_id = id_of(store.as_ref(), "bob").await;
    let carol_id = id_of(store.as_ref(), "carol").await;
    bob.close().await;
    carol.kill();
    eventually("bob's and carol's records are deleted", WAIT, || {
        let store = store.clone();
        let (b, c) = (bob_id.clone(), carol_id.clone());
        async move {
            let ids = stored_ids(store.as_ref()).await;
            ids.len() == 1 && !ids.contains(&b) && !ids.contains(&c)
        }
    })
    .await;
    assert_eq!(stored_ids(store.as_ref()).await, gw.connection_ids());

    // `push --all` lists the same table and reaches the one live client.
    let push = push_binary();
    let base = format!("http://{}", gw.local_addr());
    let endpoint = dynalite.endpoint();
    let (ok, out, err) = run_tool(
        &push,
        &[
            "--endpoint",
            &base,
            "--stage",
            gw.stage(),
            "--all",
            "--table",
            table,
            "--dynamodb-endpoint",
            &endpoint,
            "--data",
            "to everyone",
        ],
    )
    .await;
    assert!(ok, "push --all failed: {out}{err}");
    assert!(out.contains("delivered 1"), "{out}");
    let frame = alice.next_json().await;
    assert_eq!(frame["type"], "push", "{frame}");

    let report = gw.shutdown(WAIT).await;
    assert_eq!(report.closed, 1);
    assert!(stored_ids(store.as_ref()).await.is_empty());
}
