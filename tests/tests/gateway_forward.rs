//! Forwarded actions end to end in the local gateway: a real WebSocket client sends a forwarded
//! action, the real `forward` handler puts it on the gateway's local bus, which posts the
//! EventBridge envelope to a backend the test runs; the client gets the route's response as a
//! frame (a two-way route), never through `@connections`.

mod gateway_support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use gateway_support::*;
use serde_json::{Value, json};
use wsstack_gateway::forwarding::{BackendUrl, LocalForwarding};
use wsstack_gateway::{GatewayOptions, RunningGateway};
use wsstack_routes::bridge::ForwardedAction;

/// A backend that records every event posted to `/events` and answers with the next scripted
/// status (200 once the script is done). Stops with the test's runtime.
#[derive(Clone, Default)]
struct Backend {
    events: Arc<Mutex<Vec<Value>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Backend {
    async fn start(statuses: &[u16]) -> (Backend, String) {
        let backend = Backend::default();
        backend
            .statuses
            .lock()
            .expect("lock")
            .extend(statuses.iter().copied());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the backend");
        let url = format!(
            "http://{}/events",
            listener.local_addr().expect("backend address")
        );
        let app = axum::Router::new()
            .route("/events", post(receive))
            .with_state(backend.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (backend, url)
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("lock").clone()
    }
}

async fn receive(State(backend): State<Backend>, body: String) -> StatusCode {
    let event = serde_json::from_str(&body).unwrap_or(Value::String(body));
    backend.events.lock().expect("lock").push(event);
    let status = backend.statuses.lock().expect("lock").pop_front();
    StatusCode::from_u16(status.unwrap_or(200)).unwrap_or(StatusCode::OK)
}

fn forwarding_options(backend_url: &str) -> GatewayOptions {
    GatewayOptions {
        forwarding: Some(LocalForwarding {
            actions: vec![ForwardedAction {
                name: "doThing".into(),
                max_data_bytes: 64,
            }],
            backend_url: Some(BackendUrl::parse(backend_url).expect("backend url")),
        }),
        ..options()
    }
}

async fn start_forwarding(statuses: &[u16]) -> (RunningGateway, Backend) {
    let (backend, url) = Backend::start(statuses).await;
    let (gw, _store) = start(forwarding_options(&url)).await;
    (gw, backend)
}

#[tokio::test]
async fn a_forwarded_action_is_accepted_and_its_event_reaches_the_backend() {
    let (gw, backend) = start_forwarding(&[]).await;
    let mut ada = connect(&gw, "ada").await;
    ada.send_json(json!({"action": "doThing", "data": {"n": 1}, "requestId": "r-1"}))
        .await;
    let frame = ada.next_json().await;
    assert_eq!(frame["type"], "accepted", "{frame}");
    assert_eq!(frame["action"], "doThing");
    assert_eq!(frame["requestId"], "r-1");
    let events = backend.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["id"], frame["eventId"], "the answer names the event");
    assert_eq!(event["source"], "wsstack.dev");
    assert_eq!(event["detail-type"], "doThing");
    assert_eq!(event["detail"]["username"], "ada");
    assert_eq!(event["detail"]["userId"], "ada");
    assert_eq!(event["detail"]["requestId"], "r-1");
    assert_eq!(event["detail"]["data"], json!({"n": 1}));
    assert!(event["detail"]["connectionId"].is_string());
    ada.close().await;
}

#[tokio::test]
async fn a_refused_forwarded_action_gets_its_error_frame_and_nothing_is_posted() {
    let (gw, backend) = start_forwarding(&[]).await;
    let mut ada = connect(&gw, "ada").await;
    ada.send_json(json!({"action": "doThing", "data": "x".repeat(80), "requestId": "r-2"}))
        .await;
    let frame = ada.next_json().await;
    assert_eq!(frame["code"], "data_too_large", "{frame}");
    assert_eq!(frame["requestId"], "r-2");
    assert!(backend.events().is_empty());
    // Built-in routes are untouched.
    ada.send_json(json!({"action": "nothing"})).await;
    assert_eq!(ada.next_json().await["code"], "unknown_action");
    ada.close().await;
}

/// `$default`'s `unknown_action` lists the stage's forwarded actions after the built-in ones,
/// over a real socket, as `supportedActions` and in the message.
#[tokio::test]
async fn unknown_action_lists_the_forwarded_actions() {
    let (gw, _backend) = start_forwarding(&[]).await;
    let mut ada = connect(&gw, "ada").await;
    ada.send_json(json!({"action": "doThings"})).await;
    let frame = ada.next_json().await;
    assert_eq!(frame["code"], "unknown_action", "{frame}");
    let mut actions: Vec<&str> = wsstack_routes::client_actions().collect();
    actions.push("doThing");
    assert_eq!(frame["supportedActions"], json!(actions));
    assert_eq!(
        frame["message"],
        format!(
            "unknown action `doThings`; supported actions: {}",
            actions.join(", ")
        )
    );
    ada.close().await;
}

#[tokio::test]
async fn a_backend_failure_is_retried_and_acknowledged_once() {
    let (gw, backend) = start_forwarding(&[503]).await;
    let mut ada = connect(&gw, "ada").await;
    ada.send_json(json!({"action": "doThing"})).await;
    let frame = ada.next_json().await;
    assert_eq!(frame["type"], "accepted", "{frame}");
    let events = backend.events();
    assert_eq!(events.len(), 2, "posted again after the 503");
    assert_eq!(events[1]["id"], frame["eventId"]);
    ada.close().await;
}

#[tokio::test]
async fn a_backend_that_refuses_is_answered_backend_unavailable() {
    let (gw, backend) = start_forwarding(&[400]).await;
    let mut ada = connect(&gw, "ada").await;
    ada.send_json(json!({"action": "doThing", "requestId": "r-3"}))
        .await;
    let frame = ada.next_json().await;
    assert_eq!(frame["code"], "backend_unavailable", "{frame}");
    assert_eq!(frame["requestId"], "r-3");
    assert_eq!(backend.events().len(), 1, "a refusal is not retried");
    ada.close().await;
}

/// Issue 19: the gateway's `forward` runs the handler's own code and writes its metric lines:
/// an action accepted after a retried 503 counts `Forwarded` and `ForwardRetried`, one refused
/// with a 400 `ForwardFailed`; every line valid embedded metric format, for the stage `dev`.
#[tokio::test]
async fn the_gateways_forwards_write_embedded_metric_lines() {
    use wsstack_handlers::metrics::validate;
    let (metrics, lines) = memory_metrics();
    let (backend, url) = Backend::start(&[503, 200, 400]).await;
    let (gw, _store) = start(GatewayOptions {
        metrics,
        ..forwarding_options(&url)
    })
    .await;
    let mut ada = connect(&gw, "ada").await;
    for expected in ["accepted", "error"] {
        ada.send_json(json!({"action": "doThing"})).await;
        let frame = ada.next_json().await;
        assert_eq!(frame["type"], expected, "{frame}");
    }
    assert_eq!(backend.events().len(), 3, "503, 200, 400");
    let mut counts = std::collections::BTreeMap::new();
    for line in lines.lock().expect("lock").iter() {
        let v = validate(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(
            (&v["Stage"], &v["Handler"]),
            (&json!("dev"), &json!("wsstack-local"))
        );
        for name in ["Forwarded", "ForwardFailed", "ForwardRetried"] {
            *counts.entry(name).or_insert(0) += v[name].as_u64().unwrap_or(0);
        }
    }
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [
            ("ForwardFailed", 1),
            ("ForwardRetried", 1),
            ("Forwarded", 1)
        ]
    );
    ada.close().await;
}
