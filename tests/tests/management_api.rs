//! `SdkManagementApi` through the real `aws-sdk-apigatewaymanagement` client against a real HTTP
//! server answering the way API Gateway's `@connections` API does: the error mapping is only
//! worth something if the SDK itself parsed the answers.

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use wsstack_handlers::management::{ManagementApi, ManagementError, SdkManagementApi};
use wsstack_tests::{Answer, FakeConnectionsApi, local_sdk_config};

/// A server that answers by connection id: `gone`, `too-large`, `throttled`, `forbidden`,
/// `broken` (500 without an error type), anything else succeeds.
async fn server() -> FakeConnectionsApi {
    FakeConnectionsApi::start(|req| match req.connection_id.as_str() {
        "gone" => Answer::gone(),
        "too-large" => Answer::payload_too_large(),
        "throttled" => Answer::limit_exceeded(),
        "forbidden" => Answer::forbidden(),
        "broken" => Answer {
            status: 500,
            error_type: None,
            body: "{}".into(),
        },
        "bare-403" => Answer {
            status: 403,
            error_type: None,
            body: String::new(),
        },
        // A 410 without the header, as a proxy that strips headers would pass it on.
        "bare-410" => Answer {
            status: 410,
            error_type: None,
            body: String::new(),
        },
        _ => Answer::success(&req.method),
    })
    .await
}

async fn api() -> SdkManagementApi {
    // No retries: a 429 or 500 would otherwise be retried with backoff, slowing the test and
    // recording extra requests.
    let config = local_sdk_config(None).await;
    let config = config
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    SdkManagementApi::new(&config)
}

#[tokio::test]
async fn post_reaches_the_stage_scoped_path_with_the_raw_body() {
    let server = server().await;
    let endpoint = format!("{}/dev", server.base_url());
    api()
        .await
        .post_to_connection(
            &endpoint,
            "CqEs4dW0DoECJ1g=",
            Bytes::from_static(b"{\"hi\":1}"),
        )
        .await
        .unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/dev/@connections/CqEs4dW0DoECJ1g%3D");
    assert_eq!(reqs[0].connection_id, "CqEs4dW0DoECJ1g=");
    assert_eq!(reqs[0].body, b"{\"hi\":1}");
}

#[tokio::test]
async fn post_errors_map_to_what_the_caller_must_do() {
    let server = server().await;
    let endpoint = format!("{}/dev", server.base_url());
    let api = api().await;
    for (id, expected) in [
        ("gone", ManagementError::Gone),
        ("bare-410", ManagementError::Gone),
        ("too-large", ManagementError::PayloadTooLarge),
        ("throttled", ManagementError::Throttled),
        // The service's message is kept: it names the role, the action and the resource.
        (
            "forbidden",
            ManagementError::Forbidden(wsstack_tests::FORBIDDEN_MESSAGE.into()),
        ),
        ("bare-403", ManagementError::Forbidden(String::new())),
    ] {
        let err = api
            .post_to_connection(&endpoint, id, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err, expected, "{id}");
    }
    let err = api
        .post_to_connection(&endpoint, "broken", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ManagementError::Other(text) if text.contains("500")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_other() {
    let port = wsstack_tests::free_port();
    let err = api()
        .await
        .post_to_connection(&format!("http://127.0.0.1:{port}/dev"), "a", Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ManagementError::Other(_)), "{err:?}");
}

#[tokio::test]
async fn get_connection_parses_api_gateways_answer() {
    let server = server().await;
    let endpoint = format!("{}/prod", server.base_url());
    let info = api().await.get_connection(&endpoint, "abc").await.unwrap();
    assert_eq!(
        info.connected_at,
        Some(Utc.timestamp_millis_opt(1_795_703_226_123).unwrap())
    );
    assert_eq!(
        info.last_active_at,
        Some(Utc.timestamp_millis_opt(1_795_703_229_456).unwrap())
    );
    assert_eq!(info.source_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(info.user_agent.as_deref(), Some("websocat/1.13"));
    assert_eq!(server.requests()[0].method, "GET");
    assert_eq!(server.requests()[0].path, "/prod/@connections/abc");
    let err = api()
        .await
        .get_connection(&endpoint, "gone")
        .await
        .unwrap_err();
    assert_eq!(err, ManagementError::Gone);
}

#[tokio::test]
async fn delete_connection_accepts_204_and_maps_410() {
    let server = server().await;
    let endpoint = format!("{}/prod", server.base_url());
    let api = api().await;
    api.delete_connection(&endpoint, "abc").await.unwrap();
    assert_eq!(
        api.delete_connection(&endpoint, "gone").await.unwrap_err(),
        ManagementError::Gone
    );
    let reqs = server.requests();
    assert_eq!(reqs[0].method, "DELETE");
    assert_eq!(reqs[0].path, "/prod/@connections/abc");
}

#[tokio::test]
async fn one_api_serves_several_endpoints() {
    let (a, b) = (server().await, server().await);
    let api = api().await;
    for _ in 0..2 {
        for s in [&a, &b] {
            api.post_to_connection(&format!("{}/dev", s.base_url()), "x", Bytes::new())
                .await
                .unwrap();
        }
    }
    assert_eq!(a.requests().len(), 2);
    assert_eq!(b.requests().len(), 2);
}
