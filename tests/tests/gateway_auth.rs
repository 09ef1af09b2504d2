//! Authentication through the local gateway, end to end: a local issuer on a free port, the
//! JWT authorizer in front of `$connect` exactly as `wsstack-local --auth dev` runs it, the real
//! handlers, and real WebSocket clients.

mod gateway_support;

use std::sync::Arc;
use std::time::Duration;

use gateway_support::*;
use serde_json::json;
use tokio_tungstenite::tungstenite;
use wsstack_auth::issuer::{LOCAL_AUDIENCE, LocalIssuer, SigningKey};
use wsstack_auth::{AuthConfig, TokenSource};
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
    let issuer = LocalIssuer::start("127.0.0.1:0".parse().expect("addr"), LOCAL_AUDIENCE)
        .await
        .expect("issuer");
    let config = AuthConfig {
        issuer: issuer.url().to_owned(),
        audiences: vec![LOCAL_AUDIENCE.to_owned()],
        jwks_url: None,
        token_source: TokenSource::default(),
        username_claim: Some(wsstack_auth::issuer::LOCAL_USERNAME_CLAIM.to_owned()),
    };
    let events = EventLog::new();
    let mut opts = options();
    opts.authorizer = Some(Arc::new(config.http_authorizer().expect("authorizer")));
    opts.event_log = Some(events.clone());
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
