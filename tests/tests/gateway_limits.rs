//! Issue 18's rate limits end to end: real WebSocket clients through the local gateway, the
//! real handlers behind it, answers through the real `@connections` client. The gateway runs
//! the handlers' defaults: 10 requests a second per connection, 20 at once.

mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use serde_json::{Value, json};

/// Sends `n` copies of `request` without waiting, then reads the `n` answers, in order.
async fn flood(client: &mut Client, request: Value, n: usize) -> Vec<Value> {
    for _ in 0..n {
        client.send_json(request.clone()).await;
    }
    let mut answers = Vec::with_capacity(n);
    for _ in 0..n {
        answers.push(client.next_json().await);
    }
    answers
}

fn count(answers: &[Value], code: &str) -> usize {
    answers.iter().filter(|a| a["code"] == code).count()
}

/// Before issue 18 every one of these was answered: a Scan per `listConnections` and an
/// invocation per unroutable frame, unlimited. 60 requests at once are far past a burst of
/// 20 plus 10 a second for as long as they take to handle.
#[tokio::test]
async fn list_connections_and_default_are_rate_limited_per_connection() {
    let (gw, _store) = start(options()).await;
    let mut lister = connect(&gw, "lister").await;
    let answers = flood(&mut lister, json!({"action": "listConnections"}), 60).await;
    let listed = answers
        .iter()
        .filter(|a| a["type"] == "connections")
        .count();
    let limited = count(&answers, "rate_limited");
    assert_eq!(listed + limited, 60, "{answers:?}");
    assert!(listed >= 20, "the burst passes: {listed} listed");
    assert!(limited > 0, "nothing refused: {listed} listed");

    // $default, on a connection of its own (its own bucket).
    let mut stray = connect(&gw, "stray").await;
    let answers = flood(&mut stray, json!({"action": "nope"}), 60).await;
    let unknown = count(&answers, "unknown_action");
    let limited = count(&answers, "rate_limited");
    assert_eq!(unknown + limited, 60, "{answers:?}");
    assert!(limited > 0, "nothing refused: {unknown} unknown_action");
    let refusal = answers
        .iter()
        .find(|a| a["code"] == "rate_limited")
        .expect("a refusal");
    assert_eq!(
        refusal["message"],
        "too many messages: at most 10 per second and 20 at once; this one was not sent"
    );

    // Limits are per connection: a connection that has been quiet is not held back by the
    // others' floods.
    let mut fresh = connect(&gw, "fresh").await;
    fresh
        .send_json(json!({"action": "sendMessage", "data": "hello"}))
        .await;
    assert_eq!(fresh.next_json().await["type"], "message");
    for c in [lister, stray, fresh] {
        c.close().await;
    }
}

/// Before issue 18 limits were per connection only: three tabs of one person had three times
/// the rate. With authentication, the user's bucket (default 20 a second, 40 at once) spans
/// their connections: three tabs each sending their own burst of 20 at once (60 requests, none
/// over its connection's limit) get refusals from the user's.
#[tokio::test]
async fn a_users_connections_share_the_users_rate() {
    let (issuer, authorizer) = local_auth(None).await;
    let mut opts = options();
    opts.authorizer = Some(authorizer);
    let (gw, _store) = start(opts).await;
    let token = issuer
        .mint("user-ann", "ann", Duration::from_secs(600))
        .expect("mint");
    let mut tabs = Vec::new();
    for i in 0..3 {
        let ws = try_connect(&format!("{}?token={token}", gw.ws_url()))
            .await
            .expect("connects");
        tabs.push(Client::from_socket(&format!("ann-{i}"), ws));
    }
    for tab in &mut tabs {
        for _ in 0..20 {
            tab.send_json(json!({"action": "listConnections"})).await;
        }
    }
    let mut answers = Vec::new();
    for tab in &mut tabs {
        for _ in 0..20 {
            answers.push(tab.next_json().await);
        }
    }
    let listed = answers
        .iter()
        .filter(|a| a["type"] == "connections")
        .count();
    let user_limited = count(&answers, "user_rate_limited");
    let connection_limited = count(&answers, "rate_limited");
    assert_eq!(listed + user_limited + connection_limited, 60);
    assert!(listed >= 40, "the user's burst passes: {listed} listed");
    assert!(
        user_limited > 0,
        "nothing refused by the user's limit: {listed} listed, {connection_limited} rate_limited"
    );
    let refusal = answers
        .iter()
        .find(|a| a["code"] == "user_rate_limited")
        .expect("a refusal");
    assert!(refusal["retryAfterMs"].as_u64().is_some(), "{refusal}");

    // Another user is not held back by ann's three tabs.
    let other = issuer
        .mint("user-bea", "bea", Duration::from_secs(600))
        .expect("mint");
    let ws = try_connect(&format!("{}?token={other}", gw.ws_url()))
        .await
        .expect("connects");
    let mut bea = Client::from_socket("bea", ws);
    bea.send_json(json!({"action": "listConnections"})).await;
    assert_eq!(bea.next_json().await["type"], "connections");
}

/// Issue 19: the gateway runs the handlers' own code, so a flood over real sockets writes the
/// same metric lines as in Lambda: one `RateLimited` per `rate_limited` answer, for the stage
/// the events name, each line valid embedded metric format.
#[tokio::test]
async fn every_refusal_of_a_flood_is_counted_as_rate_limited() {
    use wsstack_handlers::metrics::validate;
    let (metrics, lines) = memory_metrics();
    let (gw, _store) = start(wsstack_gateway::GatewayOptions {
        metrics,
        ..options()
    })
    .await;
    let mut flooder = connect(&gw, "flooder").await;
    let answers = flood(&mut flooder, json!({"action": "listConnections"}), 60).await;
    let limited = count(&answers, "rate_limited");
    assert!(limited > 0, "nothing refused: {answers:?}");
    let lines = lines.lock().expect("lock").clone();
    let mut counted = 0;
    for line in &lines {
        let v = validate(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(
            (&v["Stage"], &v["Handler"]),
            (&json!("dev"), &json!("wsstack-local")),
            "{line}"
        );
        counted += v["RateLimited"].as_u64().unwrap_or(0);
    }
    assert_eq!(counted, limited as u64, "{lines:?}");
    flooder.close().await;
}
