//! Issue 18's rate limits end to end: real WebSocket clients through the local gateway, the
//! real handlers behind it, answers through the real `@connections` client. The gateway runs
//! the handlers' defaults: 10 requests a second per connection, 20 at once.

mod gateway_support;

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
