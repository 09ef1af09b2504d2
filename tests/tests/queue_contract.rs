//! One contract, two queues: `MemoryQueue` (the local gateway's) and `SqsQueue` on moto's SQS
//! server must behave alike, or queue mode would be tested locally on something other than what
//! runs in AWS.

use std::collections::HashSet;
use std::time::Duration;

use wsstack_handlers::queue::{MAX_BODY_BYTES, MemoryQueue, Queue, QueueError, Received, SqsQueue};
use wsstack_tests::moto::Moto;

/// The visibility timeout both queues are created with (SQS counts whole seconds).
const VISIBILITY: Duration = Duration::from_secs(1);

/// Receives until `n` messages have come (or 10 empty polls in a row).
async fn receive_n(queue: &dyn Queue, n: usize) -> Vec<Received> {
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < n && empty < 10 {
        let batch = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        assert!(batch.len() <= 10, "at most 10 per receive");
        if batch.is_empty() {
            empty += 1;
        }
        got.extend(batch);
    }
    got
}

/// The contract every `Queue` meets; `queue` starts empty with a 1 s visibility timeout.
async fn contract(queue: &dyn Queue) {
    // Empty: a receive waits, then returns nothing.
    assert_eq!(
        queue.receive(10, Duration::from_secs(1)).await.unwrap(),
        vec![]
    );

    // More than one SendMessageBatch's worth, with JSON and Unicode intact.
    let bodies: Vec<String> = (0..25)
        .map(|i| format!(r#"{{"job":{i},"text":"Zoë 🚀 \"quoted\""}}"#))
        .collect();
    queue.send(bodies.clone()).await.unwrap();
    let got = receive_n(queue, 25).await;
    let received: HashSet<String> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(received, bodies.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(got.len(), 25, "each once while invisible");
    let ids: HashSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), 25, "distinct message ids");

    // Not deleted: back after the visibility timeout, with a new receipt handle.
    let kept = got[0].clone();
    for m in &got[1..] {
        queue.delete(&m.receipt_handle).await.unwrap();
    }
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    let again = receive_n(queue, 1).await;
    assert_eq!(again.len(), 1, "only the undeleted message comes back");
    assert_eq!(again[0].body, kept.body);
    assert_eq!(again[0].message_id, kept.message_id);
    assert_ne!(again[0].receipt_handle, kept.receipt_handle);

    // Deleted (twice: idempotent): gone for good.
    queue.delete(&again[0].receipt_handle).await.unwrap();
    queue.delete(&again[0].receipt_handle).await.unwrap();
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    assert_eq!(
        queue.receive(10, Duration::from_secs(1)).await.unwrap(),
        vec![]
    );

    // A body over the limit is refused, naming its size, and nothing of the call is sent.
    let big = "x".repeat(MAX_BODY_BYTES + 1);
    let err = queue.send(vec!["small".into(), big]).await.unwrap_err();
    assert_eq!(
        err,
        QueueError::TooLarge {
            bytes: MAX_BODY_BYTES + 1
        }
    );
    assert!(
        err.to_string().contains(&(MAX_BODY_BYTES + 1).to_string()),
        "{err}"
    );
    assert_eq!(
        queue.receive(10, Duration::from_secs(1)).await.unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn memory_queue_meets_the_contract() {
    contract(&MemoryQueue::new(VISIBILITY)).await;
}

async fn sqs_client(moto: &Moto) -> aws_sdk_sqs::Client {
    let config = wsstack_handlers::local_sdk_config(Some(&moto.endpoint())).await;
    aws_sdk_sqs::Client::new(&config)
}

#[tokio::test]
async fn sqs_queue_on_moto_meets_the_contract() {
    let moto = Moto::start();
    let client = sqs_client(&moto).await;
    let created = client
        .create_queue()
        .queue_name("wsstack-fanout-contract")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            VISIBILITY.as_secs().to_string(),
        )
        .send()
        .await
        .expect("create queue on moto");
    let url = created.queue_url().expect("queue url").to_owned();
    contract(&SqsQueue::new(client, url)).await;
}

#[tokio::test]
async fn sqs_queue_errors_name_the_failure() {
    let moto = Moto::start();
    let client = sqs_client(&moto).await;
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint());
    let queue = SqsQueue::new(client, missing);
    let err = queue.send(vec!["job".into()]).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Backend(text) if text.contains("NonExistentQueue") || text.contains("does not exist")),
        "{err}"
    );
    let err = queue.receive(1, Duration::from_secs(0)).await.unwrap_err();
    assert!(matches!(err, QueueError::Backend(_)), "{err}");
}
