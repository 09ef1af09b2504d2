//! The local gateway with `--store dynamodb`: the handlers' DynamoDB store code against
//! dynalite. The table must hold exactly the live connections at every step.

mod gateway_support;

use gateway_support::*;
use serde_json::json;
use wsstack_gateway::{Gateway, StoreOptions, open_memberships, open_store};
use wsstack_handlers::rooms::RoomName;
use wsstack_tests::{Dynalite, create_connections_table, create_rooms_table};

#[tokio::test]
async fn the_table_holds_exactly_the_live_connections() {
    let dynalite = Dynalite::start().await;
    let table = "GatewayConnections";
    create_connections_table(&dynalite.client().await, table)
        .await
        .unwrap_or_else(|e| panic!("table: {e}"));
    create_rooms_table(&dynalite.client().await, "GatewayRooms")
        .await
        .unwrap_or_else(|e| panic!("rooms table: {e}"));
    let store_options = StoreOptions::DynamoDb {
        endpoint: Some(dynalite.endpoint()),
        table: table.to_owned(),
        rooms_table: "GatewayRooms".to_owned(),
    };
    let store = open_store(&store_options)
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    let memberships = open_memberships(&store_options)
        .await
        .unwrap_or_else(|e| panic!("memberships: {e}"));
    let gw = Gateway::bind_with_memberships(
        wsstack_gateway::GatewayOptions {
            table_name: table.to_owned(),
            ..options()
        },
        store.clone(),
        memberships.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("gateway did not start: {e}"));

    let mut alice = connect(&gw, "alice").await;
    let bob = connect(&gw, "bob").await;
    let mut carol = connect(&gw, "carol").await;
    let mut live = gw.connection_ids();
    live.sort();
    assert_eq!(stored_ids(store.as_ref()).await, live);

    alice
        .send_json(json!({"action": "sendMessage", "data": "via dynamodb"}))
        .await;
    let frame = alice.next_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(frame["data"], "via dynamodb");

    // Rooms through the rooms table: alice and carol join, a room message reaches them.
    let lobby = RoomName::parse("lobby").expect("room");
    assert_eq!(carol.next_json().await["data"], "via dynamodb");
    for c in [&mut alice, &mut carol] {
        c.send_json(json!({"action": "join", "room": "lobby"}))
            .await;
        assert_eq!(c.next_json().await["type"], "joined");
    }
    alice
        .send_json(json!({"action": "sendMessage", "room": "lobby", "data": "in the lobby"}))
        .await;
    for c in [&mut alice, &mut carol] {
        let frame = c.next_json().await;
        assert_eq!(frame["room"], "lobby", "{frame}");
        assert_eq!(frame["data"], "in the lobby");
    }
    let lobby_members = || {
        let memberships = memberships.clone();
        let lobby = lobby.clone();
        async move {
            let page = memberships.members_page(&lobby, None).await.expect("page");
            page.connection_ids
        }
    };
    assert_eq!(lobby_members().await.len(), 2);

    // A clean close and a killed socket both end with $disconnect deleting the record (and
    // carol's membership).
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
    let alice_id = id_of(store.as_ref(), "alice").await;
    assert_eq!(lobby_members().await, vec![alice_id]);

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

/// `--store dynamodb` with a rooms table that does not exist fails at start, naming it.
#[tokio::test]
async fn a_missing_rooms_table_is_named_at_start() {
    let dynalite = Dynalite::start().await;
    create_connections_table(&dynalite.client().await, "Connections")
        .await
        .unwrap_or_else(|e| panic!("table: {e}"));
    let err = match open_memberships(&StoreOptions::DynamoDb {
        endpoint: Some(dynalite.endpoint()),
        table: "Connections".to_owned(),
        rooms_table: "NoSuchRooms".to_owned(),
    })
    .await
    {
        Ok(_) => panic!("a missing rooms table must be an error"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("NoSuchRooms"), "{err}");
    assert!(err.contains(&dynalite.endpoint()), "{err}");
}
