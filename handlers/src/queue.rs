//! The queue fan-out jobs travel through: SQS in AWS, memory in the local gateway and tests.
//! Both pass one contract suite (`tests/tests/queue_contract.rs`, SQS on moto's server).
//!
//! Only what the fan-out needs: send bodies, receive a few with a visibility timeout, delete
//! what was handled. In Lambda the event source mapping receives and deletes; the local gateway
//! does both itself with [`MemoryQueue`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Largest message body SQS accepts (256 KiB; the `MaximumMessageSize` default).
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html>
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Entries per `SendMessageBatch` call (SQS's limit).
pub const SEND_BATCH: usize = 10;

/// A queue operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("job body of {bytes} bytes exceeds the queue's {MAX_BODY_BYTES}-byte limit")]
    TooLarge { bytes: usize },
    /// The service refused some entries of a batch; the others were sent.
    #[error("queue refused {failed} of {sent} messages: {reason}")]
    Partial {
        failed: usize,
        sent: usize,
        reason: String,
    },
    #[error("queue unavailable: {0}")]
    Backend(String),
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    /// What [`Queue::delete`] takes.
    pub receipt_handle: String,
    pub body: String,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends every body; all or an error (a partial failure names how many were refused).
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError>;
    /// Up to `max` messages (at most 10), waiting up to `wait` for the first. A received
    /// message is invisible for the queue's visibility timeout, then comes back unless deleted.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError>;
    /// Deletes a received message; deleting one already deleted succeeds.
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;
}

fn check_sizes(bodies: &[String]) -> Result<(), QueueError> {
    match bodies.iter().find(|b| b.len() > MAX_BODY_BYTES) {
        Some(b) => Err(QueueError::TooLarge { bytes: b.len() }),
        None => Ok(()),
    }
}

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    /// Invisible until then (a receive without delete).
    invisible_until: Option<Instant>,
    /// Changes on every receive, as SQS receipt handles do.
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct MemoryState {
    messages: VecDeque<Stored>,
    next_id: u64,
}

/// An in-process queue with SQS's visibility semantics (at-least-once, unordered retries).
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<MemoryState>>,
    arrived: Arc<Notify>,
    visibility_timeout: Duration,
}

impl MemoryQueue {
    pub fn new(visibility_timeout: Duration) -> Self {
        MemoryQueue {
            state: Arc::default(),
            arrived: Arc::new(Notify::new()),
            visibility_timeout,
        }
    }

    /// Messages in the queue, visible or not.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every operation leaves the state whole; a poisoned lock is safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_visible(&self, max: usize) -> Vec<Received> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut out = Vec::new();
        let mut counter = state.next_id;
        for m in state.messages.iter_mut() {
            if out.len() >= max {
                break;
            }
            if m.invisible_until.is_some_and(|t| t > now) {
                continue;
            }
            counter += 1;
            let receipt = format!("{}#{counter}", m.message_id);
            m.invisible_until = Some(now + self.visibility_timeout);
            m.receipt = Some(receipt.clone());
            out.push(Received {
                message_id: m.message_id.clone(),
                receipt_handle: receipt,
                body: m.body.clone(),
            });
        }
        state.next_id = counter;
        out
    }

    /// When the next invisible message becomes visible again.
    fn next_reappearance(&self) -> Option<Instant> {
        self.lock()
            .messages
            .iter()
            .filter_map(|m| m.invisible_until)
            .min()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        check_sizes(&bodies)?;
        {
            let mut state = self.lock();
            for body in bodies {
                state.next_id += 1;
                let message_id = format!("mem-{:012}", state.next_id);
                state.messages.push_back(Stored {
                    message_id,
                    body,
                    invisible_until: None,
                    receipt: None,
                });
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let max = max.clamp(1, SEND_BATCH);
        let until = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let got = self.take_visible(max);
            if !got.is_empty() || Instant::now() >= until {
                return Ok(got);
            }
            let wake = self.next_reappearance().map_or(until, |t| t.min(until));
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.lock()
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt_handle));
        Ok(())
    }
}

/// The production queue over `aws-sdk-sqs`.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

fn backend_error(err: impl std::error::Error) -> QueueError {
    QueueError::Backend(crate::error_chain(&err))
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        check_sizes(&bodies)?;
        let total = bodies.len();
        for chunk in bodies.chunks(SEND_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(backend_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(backend_error)?;
            if let Some(first) = out.failed().first() {
                return Err(QueueError::Partial {
                    failed: out.failed().len(),
                    sent: total,
                    reason: format!(
                        "{}: {}",
                        first.code(),
                        first.message().unwrap_or("no message")
                    ),
                });
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let max = i32::try_from(max.clamp(1, SEND_BATCH)).unwrap_or(10);
        // Long polling: SQS waits at most 20 s.
        let wait = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    message_id: m.message_id()?.to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}
