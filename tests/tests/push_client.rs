//! Issue 17 item 5: the backend services' crate. Its push client against the local gateway's
//! push API (real sockets, real WebSocket clients), its bounded retry of throttled calls (429)
//! against a real local server, and its SigV4 signature checked against botocore's signer (an
//! independent implementation, the one the AWS CLI and Python backends use) on the same request
//! at the same instant. AWS's own test vectors are `client/src/sign/test_suite.rs`.

mod gateway_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use gateway_support::{WAIT, connect, options, start};
use serde_json::json;
use wsstack_client::{PushClient, RetryPolicy, Signer};
use wsstack_gateway::push_server::PushServer;

#[tokio::test]
async fn the_push_client_reaches_a_user_shows_presence_and_disconnects() {
    let (gw, _store) = start(options()).await;
    let server = PushServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        gw.push_api().expect("push api"),
        None,
    )
    .await
    .expect("push server");
    let push = PushClient::unsigned(&server.url()).expect("client");
    let mut tab1 = connect(&gw, "ada").await;
    let mut tab2 = connect(&gw, "ada").await;

    let outcome = push
        .to_user("ada", json!({"progress": 100}), Some("r-7"))
        .await
        .expect("pushed");
    assert_eq!((outcome.answer.delivered, outcome.queued), (2, false));
    for tab in [&mut tab1, &mut tab2] {
        let frame = tab.next_json().await;
        assert_eq!(
            (&frame["type"], &frame["data"], &frame["replyTo"]),
            (&json!("push"), &json!({"progress": 100}), &json!("r-7"))
        );
    }
    let presence = push.presence("ada").await.expect("presence");
    assert_eq!(presence.connections.len(), 2);

    let id = presence.connections[0].connection_id.clone();
    push.disconnect(&id).await.expect("disconnect");
    let err = tokio::time::timeout(WAIT, async {
        loop {
            match push.to_connection(&id, json!(1), None).await {
                Err(e) => break e,
                // `$disconnect` may not have run yet; the connection is closing.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the connection is gone in time");
    assert!(err.is_gone(), "{err}");

    let err = push
        .to_room("no spaces", json!(1), None)
        .await
        .expect_err("a bad room");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("room"), "{err}");
}

/// The same request signed by `aws-sigv4` (the client) and by botocore at one instant carries
/// the same `Authorization` header.
#[tokio::test]
async fn the_signature_is_the_one_botocore_computes() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_500_800);
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "test",
    );
    let signer = Signer::with_credentials(credentials, "eu-west-1");
    let url = "https://abc123.execute-api.eu-west-1.amazonaws.com/users/sub%2Fada/messages";
    let body = r#"{"data":{"n":1},"replyTo":"r-1"}"#;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .body(bytes::Bytes::from(body))
        .expect("request");
    signer.sign(&mut request, at).await.expect("signed");
    let ours = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .expect("an authorization header")
        .to_owned();
    assert!(
        ours.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/eu-west-1/execute-api/aws4_request"
        ),
        "{ours}"
    );
    let script = r#"
import datetime, sys
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, body, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
at = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(tzinfo=None)
botocore.auth.get_current_datetime = lambda *a, **k: at
request = AWSRequest(method="POST", url=url, data=body.encode(), headers={"content-type": "application/json"})
SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "execute-api", "eu-west-1").add_auth(request)
print(request.headers["Authorization"])
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, url, body, "1796500800"])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "botocore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(ours, theirs);
}

/// A push API stand-in on a real socket that answers API Gateway's throttling answer (429
/// `{"message":"Too Many Requests"}`) to its first `throttled` requests, then a push answer.
/// Counts the requests; stops with the test's runtime.
async fn throttling_server(throttled: usize) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/users/{user}/messages",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < throttled {
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        r#"{"message":"Too Many Requests"}"#.to_owned(),
                    )
                } else {
                    let answer = json!({"id": "p-1", "delivered": 1, "gone": 0, "failed": 0});
                    (axum::http::StatusCode::OK, answer.to_string())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

const FAST_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    first_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(20),
};

/// A throttled push (API Gateway answered 429 before the function ran: nothing delivered) is
/// sent again with back-off, and succeeds once the stage lets it through.
#[tokio::test]
async fn a_throttled_push_is_sent_again_until_it_passes() {
    let (url, seen) = throttling_server(2).await;
    let push = PushClient::unsigned(&url)
        .expect("client")
        .with_retry(FAST_RETRY);
    let outcome = push.to_user("ada", json!(1), None).await.expect("pushed");
    assert_eq!(outcome.answer.delivered, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 3, "two 429s, then the push");
}

/// The retries are bounded: past the policy's attempts the caller gets the 429, named.
#[tokio::test]
async fn a_push_throttled_on_every_attempt_fails_as_throttled() {
    let (url, seen) = throttling_server(usize::MAX).await;
    let push = PushClient::unsigned(&url)
        .expect("client")
        .with_retry(FAST_RETRY);
    let err = push
        .to_user("ada", json!(1), None)
        .await
        .expect_err("throttled");
    assert!(err.is_throttled(), "{err}");
    assert!(err.to_string().contains("Too Many Requests"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "max_attempts, no more");

    // Without retries, one request.
    let (url, seen) = throttling_server(usize::MAX).await;
    let push = PushClient::unsigned(&url)
        .expect("client")
        .with_retry(RetryPolicy::NONE);
    let err = push.to_user("ada", json!(1), None).await.expect_err("429");
    assert_eq!(err.status(), Some(429));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
