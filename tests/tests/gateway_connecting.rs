//! A broadcast that meets a client still inside its `$connect` (issue 18, item 8).
//!
//! `$connect` stores the record before API Gateway completes the handshake, and a post in that
//! window answers 410 like a closed connection ("a message was posted to the WebSocket API
//! before the connection was established",
//! https://repost.aws/knowledge-center/410-gone-api-gateway); the local gateway does the same
//! (an id is not in its registry until the verdict). The broadcast must not delete that
//! record, or the client ends up connected without one: it receives nothing and every send
//! answers `unknown_sender`.
//!
//! Real sockets and the real handlers; the integration seam holds the `$connect` verdict of
//! one client after its handler stored the record, while another client broadcasts.

mod gateway_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use futures::future::BoxFuture;
use gateway_support::*;
use serde_json::json;
use tokio::sync::Semaphore;
use wsstack_handlers::App;
use wsstack_handlers::config::Config;
use wsstack_handlers::management::SdkManagementApi;
use wsstack_routes::Handler;

/// The real handlers, with the `$connect` verdict of `held_user` held until released.
struct HeldConnect {
    app: OnceLock<App>,
    held_user: &'static str,
    release: Semaphore,
    /// `sendMessage` invocations that returned.
    sends_done: AtomicUsize,
}

impl wsstack_gateway::Integration for HeldConnect {
    fn invoke(
        &self,
        handler: Handler,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> BoxFuture<'_, Result<ApiGatewayProxyResponse, String>> {
        Box::pin(async move {
            let app = self.app.get().ok_or("the test did not set the app")?;
            let held = handler == Handler::Connect
                && event.query_string_parameters.first("username") == Some(self.held_user);
            let result = app.handle(handler, event).await.map_err(|e| e.to_string());
            if held {
                // The record is stored; the verdict waits, as API Gateway's handshake would
                // while a slow `$connect` (up to the 29 s integration timeout) finishes.
                let permit = self.release.acquire().await.map_err(|e| e.to_string())?;
                permit.forget();
            }
            if handler == Handler::SendMessage {
                self.sends_done.fetch_add(1, Ordering::SeqCst);
            }
            result
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_keeps_the_record_of_a_client_still_connecting() {
    let integration = Arc::new(HeldConnect {
        app: OnceLock::new(),
        held_user: "bob",
        release: Semaphore::new(0),
        sends_done: AtomicUsize::new(0),
    });
    let store = wsstack_handlers::store::MemoryStore::new();
    let gw = start_with(
        wsstack_gateway::GatewayOptions {
            integration: Some(integration.clone()),
            ..options()
        },
        Arc::new(store.clone()),
    )
    .await;
    let sdk = wsstack_handlers::local_sdk_config(None).await;
    let mut config = Config::new("Connections");
    config.callback_url = Some(gw.callback_url().to_owned());
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(SdkManagementApi::new(&sdk)),
        config,
    );
    assert!(integration.app.set(app).is_ok());

    let mut alice = connect(&gw, "alice").await;
    // Bob's handshake waits for its verdict; his record is written already.
    let bob_url = url_for(&gw, "bob");
    let bob_handshake = tokio::spawn(async move { try_connect(&bob_url).await });
    eventually("bob's record is stored", WAIT, || {
        let store = store.clone();
        async move { records(&store).await.iter().any(|c| c.username == "bob") }
    })
    .await;
    assert!(!bob_handshake.is_finished(), "bob's verdict is held");

    // Alice broadcasts while bob is inside `$connect`: the post to him answers 410.
    alice
        .send_json(json!({"action": "sendMessage", "data": "hello"}))
        .await;
    let echo = alice.next_json().await;
    assert_eq!(echo["type"], "message", "{echo}");
    eventually("the broadcast returned", WAIT, || async {
        integration.sends_done.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        records(&store).await.iter().any(|c| c.username == "bob"),
        "a 410 during the handshake must not delete the record"
    );

    // The verdict comes: bob is connected, with his record, and can send.
    integration.release.add_permits(1);
    let ws = bob_handshake
        .await
        .expect("the handshake task")
        .expect("bob is accepted");
    let mut bob = Client::from_socket("bob", ws);
    bob.send_json(json!({"action": "sendMessage", "data": "made it"}))
        .await;
    let frame = bob.next_json().await;
    assert_eq!(frame["type"], "message", "not unknown_sender: {frame}");
    assert_eq!(frame["data"], "made it");
    assert_eq!(frame["from"], "bob");
    let to_alice = alice.next_json().await;
    assert_eq!(to_alice["data"], "made it", "{to_alice}");
}
