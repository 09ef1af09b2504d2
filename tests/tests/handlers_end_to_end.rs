//! The handlers end to end with real SDK clients on both sides: records in dynalite, frames
//! posted through `aws-sdk-apigatewaymanagement` to a fake `@connections` server.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::{Value, json};
use wsstack_handlers::App;
use wsstack_handlers::config::Config;
use wsstack_handlers::management::SdkManagementApi;
use wsstack_handlers::store::{ConnectionStore, DynamoDbStore};
use wsstack_routes::Handler;
use wsstack_tests::{
    Answer, Dynalite, FakeConnectionsApi, create_connections_table, local_sdk_config,
};

const TABLE: &str = "wsstack-Connections";

fn fixture(
    name: &str,
    connection_id: &str,
    edit: impl FnOnce(&mut Value),
) -> ApiGatewayWebsocketProxyRequest {
    let path = format!(
        "{}/../handlers/tests/fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["requestContext"]["connectionId"] = json!(connection_id);
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

fn connect(id: &str, username: &str) -> ApiGatewayWebsocketProxyRequest {
    connect_at(id, username, chrono::Utc::now().timestamp_millis())
}

/// A `$connect` event of a client that connected at `connected_at` (epoch ms).
fn connect_at(id: &str, username: &str, connected_at: i64) -> ApiGatewayWebsocketProxyRequest {
    fixture("connect", id, |v| {
        // Connected now, so the record is live (expiresAt = connectedAt + 2 h) when the
        // broadcast lists it: records whose TTL has passed are skipped.
        v["requestContext"]["connectedAt"] = json!(connected_at);
        v["queryStringParameters"]["username"] = json!(username);
        v["multiValueQueryStringParameters"]["username"] = json!([username]);
    })
}

struct Env {
    // Field order is drop order: the app's clients go before the servers they talk to.
    app: App,
    store: DynamoDbStore,
    api: FakeConnectionsApi,
    _dynalite: Dynalite,
}

/// Dynalite with the table, a fake `@connections` API where `gone-*` connections answer 410,
/// and the app wired to both with `CALLBACK_URL` pointing at the fake.
async fn env() -> Env {
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, TABLE).await.unwrap();
    let api = FakeConnectionsApi::start(|req| {
        if req.connection_id.starts_with("gone-") {
            Answer::gone()
        } else {
            Answer::success(&req.method)
        }
    })
    .await;
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(TABLE.into()),
        "CALLBACK_URL" => Some(format!("{}/dev", api.base_url())),
        "BROADCAST_CONCURRENCY" => Some("8".into()),
        _ => None,
    })
    .unwrap();
    let store = DynamoDbStore::new(client, TABLE.into()).with_page_size(2);
    let management = SdkManagementApi::new(&local_sdk_config(None).await);
    let app = App::new(Arc::new(store.clone()), Arc::new(management), config);
    Env {
        app,
        store,
        api,
        _dynalite: dynalite,
    }
}

#[tokio::test]
async fn connect_broadcast_gone_cleanup_and_disconnect() {
    let env = env().await;
    for (id, name) in [
        ("alice-1", "alice"),
        ("bob-1", "bob"),
        ("gone-1", "ghost"),
        ("carol-1", "carol"),
    ] {
        // Every client connected a few minutes ago: a 410 for a client that connected moments
        // ago keeps its record, which may be inside `$connect` still (fanout::HANDSHAKE_GRACE).
        let a_while_ago = chrono::Utc::now().timestamp_millis() - 300_000;
        let resp = env
            .app
            .handle(Handler::Connect, connect_at(id, name, a_while_ago))
            .await
            .unwrap();
        assert_eq!(resp.status_code, 200, "{id}");
    }
    let alice = env.store.get("alice-1").await.unwrap().unwrap();
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.expires_at, alice.connected_at / 1000 + 7200);

    // A broadcast over several Scan pages (page size 2) reaches everyone, sender included, and
    // the gone connection's record is deleted.
    let resp = env
        .app
        .handle(Handler::SendMessage, fixture("message", "alice-1", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    let mut posted: Vec<_> = env
        .api
        .requests()
        .into_iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, format!("/dev/@connections/{}", r.connection_id));
            let frame: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                frame,
                json!({"type": "message", "id": "CqEyBcgYDoECJ1g=", "from": "alice", "data": "hello, world", "sentAt": "2026-11-26T14:27:09.456Z"})
            );
            r.connection_id
        })
        .collect();
    posted.sort();
    assert_eq!(posted, ["alice-1", "bob-1", "carol-1", "gone-1"]);
    assert_eq!(env.store.get("gone-1").await.unwrap(), None);
    assert!(env.store.get("alice-1").await.unwrap().is_some());

    // Invalid input: only the sender hears back.
    let before = env.api.requests().len();
    let bad = fixture("message", "bob-1", |v| {
        v["body"] = json!(r#"{"action":"sendMessage"}"#)
    });
    env.app.handle(Handler::SendMessage, bad).await.unwrap();
    let reqs = env.api.requests();
    assert_eq!(reqs.len(), before + 1);
    assert_eq!(reqs[before].connection_id, "bob-1");
    assert_eq!(
        serde_json::from_slice::<Value>(&reqs[before].body).unwrap(),
        json!({"type": "error", "code": "missing_data", "message": "field `data` is required"})
    );

    // Disconnect, twice.
    for _ in 0..2 {
        let ev = fixture("disconnect", "bob-1", |_| {});
        assert_eq!(
            env.app
                .handle(Handler::Disconnect, ev)
                .await
                .unwrap()
                .status_code,
            200
        );
    }
    assert_eq!(env.store.get("bob-1").await.unwrap(), None);
    let mut left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(env.store.list())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    left.sort();
    assert_eq!(left, ["alice-1", "carol-1"]);
}

#[tokio::test]
async fn connect_is_refused_when_the_table_is_missing() {
    let env = env().await;
    let store = DynamoDbStore::new(env.store.client().clone(), "NoSuchTable".into());
    let app = App::new(
        Arc::new(store),
        Arc::new(SdkManagementApi::new(&local_sdk_config(None).await)),
        env.app.config().clone(),
    );
    let resp = app
        .handle(Handler::Connect, connect("x-1", "x"))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 500);
}

#[tokio::test]
async fn direct_message_and_default_route() {
    let env = env().await;
    for (id, name) in [("alice-1", "alice"), ("bob-1", "bob")] {
        env.app
            .handle(Handler::Connect, connect(id, name))
            .await
            .unwrap();
    }
    let direct = fixture("message", "alice-1", |v| {
        v["body"] = json!(r#"{"action":"sendMessage","data":"psst","to":"bob-1"}"#)
    });
    env.app.handle(Handler::SendMessage, direct).await.unwrap();
    env.app
        .handle(Handler::Default, fixture("default", "bob-1", |_| {}))
        .await
        .unwrap();
    let reqs = env.api.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].connection_id, "bob-1");
    let frame: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(frame["type"], "direct");
    assert_eq!(frame["to"], "bob-1");
    assert_eq!(reqs[1].connection_id, "bob-1");
    let frame: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(frame["code"], "unknown_action");
    assert_eq!(
        frame["supportedActions"],
        json!(wsstack_routes::client_actions().collect::<Vec<_>>())
    );
}

#[tokio::test]
async fn list_connections_pages_through_the_table() {
    let env = env().await;
    let people = ["alice-1", "bob-1", "carol-1", "dan-1", "erin-1"];
    for id in people {
        let name = id.trim_end_matches("-1");
        env.app
            .handle(Handler::Connect, connect(id, name))
            .await
            .unwrap();
    }
    // A record whose TTL passed that DynamoDB has not deleted yet: never listed.
    env.store
        .put(&wsstack_handlers::store::Connection {
            connection_id: "stale-1".into(),
            username: "stale".into(),
            connected_at: 0,
            expires_at: 1,
            sub: None,
            token_expires_at: None,
        })
        .await
        .unwrap();
    let mut listed = Vec::new();
    let mut cursor = Value::Null;
    for request in 1.. {
        let body = json!({"action": "listConnections", "cursor": cursor, "limit": 2}).to_string();
        let ev = fixture("message", "alice-1", |v| {
            v["body"] = json!(body);
            v["requestContext"]["routeKey"] = json!("listConnections");
        });
        env.app.handle(Handler::ListConnections, ev).await.unwrap();
        let reqs = env.api.requests();
        let last = reqs.last().expect("an answer");
        assert_eq!(last.connection_id, "alice-1", "only the asker hears back");
        let frame: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(frame["type"], "connections", "{frame}");
        assert_eq!(frame["you"], "alice-1");
        let items = frame["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{frame}");
        for item in items {
            let id = item["connectionId"].as_str().unwrap();
            assert_eq!(item["username"], id.trim_end_matches("-1"));
            listed.push(id.to_owned());
        }
        cursor = frame["next"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(request < 10, "the listing does not end");
    }
    listed.sort();
    assert_eq!(listed, people);
}
