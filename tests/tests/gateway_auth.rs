//! Authentication through the local gateway, end to end: a local issuer on a free port, the
//! JWT authorizer in front of `$connect` exactly as `wsstack-local --auth dev` runs it, the real
//! handlers, and real WebSocket clients.

mod gateway_support;

use std::sync::Arc;
use std::time::Duration;

use gateway_support::*;
use serde_json::json;
use tokio_tungstenite::tungstenite;
use wsstack_auth::issuer::{LocalIssuer, SigningKey};
use wsstack_gateway::RunningGateway;
use wsstack_gateway::integration::EventLog;
use wsstack_handlers::store::{ConnectionStore, MemoryStore};

struct AuthGateway {
    issuer: Arc<LocalIssuer>,
    gw: RunningGateway,
    store: MemoryStore,
    events: EventLog,
}

async fn start_authenticated() -> AuthGateway {
    start_authenticated_with(|_| {}).await
}

async fn start_authenticated_with(
    tweak: impl FnOnce(&mut wsstack_gateway::GatewayOptions),
) -> AuthGateway {
    let (issuer, authorizer) = local_auth(Some(wsstack_auth::issuer::LOCAL_USERNAME_CLAIM)).await;
    let events = EventLog::new();
    let mut opts = options();
    opts.authorizer = Some(authorizer);
    opts.event_log = Some(events.clone());
    tweak(&mut opts);
    let (gw, store) = start(opts).await;
    AuthGateway {
        issuer,
        gw,
        store,
        events,
    }
}

/// The HTTP status a refused handshake got.
async fn refused_with(url: &str) -> u16 {
    match try_connect(url).await {
        Ok(_) => panic!("{url}: the handshake succeeded"),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test]
async fn no_token_is_401_a_bad_token_403_and_neither_is_stored() {
    let a = start_authenticated().await;
    let base = a.gw.ws_url();
    assert_eq!(refused_with(&base).await, 401);
    assert_eq!(refused_with(&format!("{base}?token=")).await, 401);
    assert_eq!(refused_with(&format!("{base}?token=not-a-jwt")).await, 403);
    // Signed by a key the issuer never published.
    let stranger = SigningKey::generate_es256(a.issuer.current_key().kid()).expect("key");
    let forged = stranger
        .sign(
            &a.issuer
                .claims("mallory", "mallory", Duration::from_secs(60)),
        )
        .expect("sign");
    assert_eq!(refused_with(&format!("{base}?token={forged}")).await, 403);
    // Expired beyond the leeway.
    let mut old = a.issuer.claims("ada", "ada", Duration::from_secs(60));
    old["exp"] = json!(jsonwebtoken::get_current_timestamp() - 120);
    let expired = a.issuer.current_key().sign(&old).expect("sign");
    assert_eq!(refused_with(&format!("{base}?token={expired}")).await, 403);
    assert!(a.store.is_empty(), "a refused handshake leaves no record");
}

#[tokio::test]
async fn a_good_token_connects_and_its_messages_carry_the_verified_username() {
    let a = start_authenticated().await;
    let token = a
        .issuer
        .mint("user-ada", "ada", Duration::from_secs(600))
        .expect("mint");
    // Asking for another name changes nothing: the username is the token's.
    let url = format!("{}?username=mallory&token={token}", a.gw.ws_url());
    let ws = try_connect(&url).await.expect("connects");
    let mut ada = Client::from_socket("ada", ws);
    let records: Vec<_> = futures::StreamExt::collect::<Vec<_>>(a.store.list()).await;
    assert_eq!(records.len(), 1);
    let record = records[0].as_ref().expect("record");
    assert_eq!(record.username, "ada");
    assert_eq!(record.sub.as_deref(), Some("user-ada"));

    ada.send_json(json!({"action": "sendMessage", "data": "hello"}))
        .await;
    let frame = ada.next_json().await;
    assert_eq!(frame["type"], "message");
    assert_eq!(frame["from"], "ada");
    assert_eq!(frame["data"], "hello");

    // Every event of the connection carries the authorizer's answer, as API Gateway passes it.
    let events = a.events.events();
    assert!(events.len() >= 2, "{}", events.len());
    for (handler, event) in events {
        let fields = &event.request_context.authorizer.fields;
        assert_eq!(fields["principalId"], "user-ada", "{handler:?}");
        assert_eq!(fields["username"], "ada", "{handler:?}");
        assert_eq!(fields["sub"], "user-ada", "{handler:?}");
        assert!(fields["integrationLatency"].is_u64(), "{handler:?}");
    }
}

#[tokio::test]
async fn the_connection_rate_limit_triggers_through_the_gateway() {
    let a = start_authenticated().await;
    let token = a
        .issuer
        .mint("user-bo", "bo", Duration::from_secs(600))
        .expect("mint");
    let ws = try_connect(&format!("{}?token={token}", a.gw.ws_url()))
        .await
        .expect("connects");
    let mut bo = Client::from_socket("bo", ws);
    // The default limit: 10 per second, 20 at once. 30 at once: at least 10 are refused.
    for i in 0..30 {
        bo.send_json(json!({"action": "sendMessage", "data": format!("m{i}")}))
            .await;
    }
    let mut limited = 0;
    for _ in 0..30 {
        let f = bo.next_json().await;
        if f["code"] == "rate_limited" {
            limited += 1;
        }
    }
    // Some refill happens while they are handled; at least a few must still be refused.
    assert!(limited >= 5, "only {limited} of 30 were rate limited");
}

/// Issue 18: API Gateway checks a token on `$connect` only. `$connect` stores the token's
/// expiry on the record, and the token sweep closes the connection through `@connections`
/// DELETE once it has passed; `$disconnect` then runs and removes the record. A connection
/// whose token is still valid stays.
#[tokio::test]
async fn a_connection_is_closed_once_its_token_expires_and_a_valid_one_stays() {
    let a = start_authenticated_with(|o| {
        o.token_sweep_interval = Some(Duration::from_millis(200));
    })
    .await;
    let short = a
        .issuer
        .mint("user-eve", "eve", Duration::from_secs(2))
        .expect("mint");
    let long = a
        .issuer
        .mint("user-ada", "ada", Duration::from_secs(600))
        .expect("mint");
    let connect = |token: String| {
        let url = format!("{}?token={token}", a.gw.ws_url());
        async move { try_connect(&url).await.expect("connects") }
    };
    let mut eve = Client::from_socket("eve", connect(short).await);
    let mut ada = Client::from_socket("ada", connect(long).await);
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let eve_record = records(&a.store)
        .await
        .into_iter()
        .find(|r| r.username == "eve")
        .expect("eve's record");
    let eve_expiry = eve_record
        .token_expires_at
        .expect("the token's expiry is stored");
    assert!(
        (now..=now + 3).contains(&eve_expiry),
        "{eve_expiry} vs now {now}"
    );
    let ada_id = id_of(&a.store, "ada").await;

    // The sweep closes eve's socket (DELETE closes with 1000) and `$disconnect` runs.
    let close = eve.expect_close().await;
    assert_eq!(u16::from(close.code), 1000, "{close:?}");
    wait_for_event(
        &a.events,
        "DISCONNECT",
        Some(&eve_record.connection_id),
        WAIT,
    )
    .await;
    eventually("eve's record is removed", WAIT, || {
        let store = a.store.clone();
        let eve_id = eve_record.connection_id.clone();
        async move { store.get(&eve_id).await.expect("get").is_none() }
    })
    .await;

    // Ada's token is valid for ten minutes: she stays, and is answered.
    assert_eq!(a.gw.connection_ids(), vec![ada_id.clone()]);
    ada.send_json(json!({"action": "sendMessage", "data": "still here"}))
        .await;
    let frame = ada.next_json().await;
    assert_eq!(frame["data"], "still here", "{frame}");
    assert!(a.store.get(&ada_id).await.expect("get").is_some());
}

/// Issue 18: cutting a user off. After disabling them at the issuer, `push disconnect --user
/// <sub>` lists that user's connections from the table (a Scan filtered on `sub`) and closes
/// each through `@connections` DELETE; `$disconnect` removes their records. Other users stay.
#[tokio::test]
async fn push_disconnect_closes_every_connection_of_one_user() {
    use wsstack_gateway::{StoreOptions, open_store};
    use wsstack_tests::{Dynalite, create_connections_table};

    let dynalite = Dynalite::start().await;
    let table = "AuthConnections";
    create_connections_table(&dynalite.client().await, table)
        .await
        .unwrap_or_else(|e| panic!("table: {e}"));
    let store = open_store(&StoreOptions::DynamoDb {
        endpoint: Some(dynalite.endpoint()),
        table: table.to_owned(),
        rooms_table: "AuthRooms".to_owned(),
    })
    .await
    .unwrap_or_else(|e| panic!("store: {e}"));
    let (issuer, authorizer) = local_auth(None).await;
    let mut opts = options();
    opts.table_name = table.to_owned();
    opts.authorizer = Some(authorizer);
    let gw = start_with(opts, store.clone()).await;

    let connect = |sub: &str, name: &str| {
        let token = issuer
            .mint(sub, name, Duration::from_secs(600))
            .expect("mint");
        let url = format!("{}?token={token}", gw.ws_url());
        let name = name.to_owned();
        async move { Client::from_socket(&name, try_connect(&url).await.expect("connects")) }
    };
    // Mallory on two devices, Ada on one.
    let mut phone = connect("user-mallory", "mallory").await;
    let mut laptop = connect("user-mallory", "mallory").await;
    let mut ada = connect("user-ada", "ada").await;
    assert_eq!(stored_ids(store.as_ref()).await.len(), 3);

    let (ok, out, err) = run_tool(
        &push_binary(),
        &[
            "disconnect",
            "--user",
            "user-mallory",
            "--endpoint",
            &format!("http://{}", gw.local_addr()),
            "--stage",
            gw.stage(),
            "--table",
            table,
            "--dynamodb-endpoint",
            &dynalite.endpoint(),
        ],
    )
    .await;
    assert!(ok, "push disconnect failed: {out}{err}");
    assert!(out.contains("closed 2"), "{out}");
    for device in [&mut phone, &mut laptop] {
        assert_eq!(u16::from(device.expect_close().await.code), 1000);
    }
    eventually("mallory's records are removed", WAIT, || {
        let store = store.clone();
        async move { records(store.as_ref()).await.len() == 1 }
    })
    .await;
    let left = records(store.as_ref()).await;
    assert_eq!(left[0].sub.as_deref(), Some("user-ada"));
    ada.send_json(json!({"action": "sendMessage", "data": "still here"}))
        .await;
    assert_eq!(ada.next_json().await["data"], "still here");
}
