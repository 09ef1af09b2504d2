//! Issue 17, end to end on a laptop: the shipped manifest's `submitJob`, the local gateway, its
//! local bus, the example backend service (the real `job-backend` binary, as `make dev` runs
//! it) and the push API. A client submits a job from one tab; the sender gets `accepted` in the
//! route's response, and both of the user's tabs receive the job's progress, each frame
//! answering the client's `requestId`.

mod gateway_support;

use std::time::Duration;

use gateway_support::{Client, connect, options, start};
use serde_json::{Value, json};
use wsstack_gateway::GatewayOptions;
use wsstack_gateway::forwarding::{BackendUrl, LocalForwarding};
use wsstack_gateway::push_server::PushServer;

/// The job backend's process, killed on drop (also when the test fails).
struct Backend {
    _process: tokio::process::Child,
    url: String,
}

async fn start_backend(push_api_url: &str) -> Backend {
    let port = wsstack_tests::free_port();
    let process = tokio::process::Command::new(wsstack_tests::package_binary(
        "wsstack-example-job-backend",
        "job-backend",
    ))
    .args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--push-api-url",
        push_api_url,
        "--step-ms",
        "10",
    ])
    .kill_on_drop(true)
    .spawn()
    .expect("job-backend starts");
    // Ready when it accepts connections.
    let addr = format!("127.0.0.1:{port}");
    gateway_support::eventually("job-backend listens", gateway_support::WAIT, || {
        let addr = addr.clone();
        async move { tokio::net::TcpStream::connect(addr).await.is_ok() }
    })
    .await;
    Backend {
        _process: process,
        url: format!("http://127.0.0.1:{port}/events"),
    }
}

/// The sender's `accepted` answer and the job's push frames up to its last, in whichever order
/// they come (a push may overtake the route's answer).
async fn accepted_and_progress(client: &mut Client) -> (Value, Vec<Value>) {
    let mut accepted = None;
    let mut frames = Vec::new();
    let finished = |frames: &[Value]| {
        frames
            .last()
            .is_some_and(|f| f["state"] == "done" || f["state"] == "rejected")
    };
    while accepted.is_none() || !finished(&frames) {
        let frame = tokio::time::timeout(Duration::from_secs(20), client.next_json())
            .await
            .expect("the answer and the job's progress in time");
        if frame["type"] == "accepted" {
            assert!(accepted.is_none(), "a second answer: {frame}");
            accepted = Some(frame);
        } else {
            assert!(!finished(&frames), "a frame after the last push: {frame}");
            assert_eq!(frame["type"], "push", "{}: {frame}", client.name);
            frames.push(frame["data"].clone());
        }
    }
    (accepted.unwrap_or_default(), frames)
}

/// The push frames `client` receives until the job's last one (`done` or `rejected`).
async fn progress(client: &mut Client) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.next_json().await;
        assert_eq!(frame["type"], "push", "{}: {frame}", client.name);
        assert_eq!(frame["replyTo"], "r-1", "{frame}");
        let state = frame["data"]["state"].clone();
        frames.push(frame["data"].clone());
        if state == "done" || state == "rejected" {
            return frames;
        }
    }
}

#[tokio::test]
async fn a_job_submitted_from_one_tab_reports_its_progress_on_every_tab_of_the_user() {
    let actions = wsstack_stage::manifest::embedded()
        .expect("the shipped manifest")
        .forward;
    assert!(actions.iter().any(|a| a.name == "submitJob"), "{actions:?}");
    // The backend needs the push API's URL, the gateway the backend's: the push API's port is
    // chosen first and bound once the gateway runs.
    let push_port = wsstack_tests::free_port();
    let push_url = format!("http://127.0.0.1:{push_port}");
    let backend = start_backend(&push_url).await;
    let (gw, _store) = start(GatewayOptions {
        forwarding: Some(LocalForwarding {
            actions,
            backend_url: Some(BackendUrl::parse(&backend.url).expect("backend url")),
        }),
        ..options()
    })
    .await;
    let _push = PushServer::bind(
        format!("127.0.0.1:{push_port}").parse().expect("addr"),
        gw.push_api().expect("push api"),
        None,
    )
    .await
    .expect("push server");

    let mut phone = connect(&gw, "ada").await;
    let mut laptop = connect(&gw, "ada").await;
    phone
        .send_json(json!({"action": "submitJob", "requestId": "r-1", "data": {"steps": 3}}))
        .await;
    let (accepted, first) = accepted_and_progress(&mut phone).await;
    assert_eq!(
        (
            &accepted["type"],
            &accepted["action"],
            &accepted["requestId"]
        ),
        (&json!("accepted"), &json!("submitJob"), &json!("r-1")),
        "{accepted}"
    );
    let want = [
        json!("started"),
        json!("running"),
        json!("running"),
        json!("running"),
        json!("done"),
    ];
    let rest = tokio::time::timeout(Duration::from_secs(20), progress(&mut laptop))
        .await
        .expect("the job's progress in time");
    for frames in [first, rest] {
        let states: Vec<Value> = frames.iter().map(|f| f["state"].clone()).collect();
        assert_eq!(states, want, "{frames:?}");
        assert_eq!(frames[4]["result"], json!({"squares": [1, 4, 9]}));
    }

    // A job the backend cannot run is answered too, through the same path. Its answer may
    // overtake the route's `accepted` (docs/protocol.md): both are awaited, in either order.
    phone
        .send_json(json!({"action": "submitJob", "requestId": "r-2", "data": {"steps": 99}}))
        .await;
    let (accepted, frames) = accepted_and_progress(&mut phone).await;
    assert_eq!(accepted["requestId"], "r-2", "{accepted}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(
        frames[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("got 99")),
        "{frames:?}"
    );
}
