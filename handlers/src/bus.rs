//! The stage's EventBridge bus, which forwarded actions are put on (issue 17 item 1): the
//! [`EventBus`] trait, its SDK implementation ([`SdkEventBus`]), and [`put_one`], which puts
//! one event with retries within the invocation's deadline.
//!
//! A `PutEvents` call can succeed while some of its entries fail: the answer's
//! `FailedEntryCount` and each entry's `ErrorCode` say which. `InternalFailure` and
//! `ThrottlingException` are retryable, the other codes are not ("PutEventsResultEntry",
//! <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEventsResultEntry.html>;
//! "Handling failures with PutEvents",
//! <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevents.html>).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tokio::time::Instant;

use crate::fanout::Deadline;

/// Entries per `PutEvents` call (EventBridge's limit).
pub const MAX_ENTRIES: usize = 10;
/// Attempts [`put_one`] makes in all (the SDK's own retries of a call not counted).
pub const MAX_PUT_ATTEMPTS: u32 = 4;
/// Delay before [`put_one`]'s first retry; doubles per retry.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// One `PutEvents` attempt's timeout: the SDK has none by default, and a client waits for the
/// answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// One `PutEvents` call's timeout, the SDK's retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The per-entry error codes worth another attempt.
const RETRYABLE_ENTRY_CODES: &[&str] = &["InternalFailure", "ThrottlingException"];

/// One event to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEntry {
    pub event_bus_name: String,
    pub source: String,
    pub detail_type: String,
    /// A JSON object, as text.
    pub detail: String,
}

/// What the bus did with one entry of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// On the bus, with EventBridge's id of the event.
    Put { event_id: String },
    /// Refused, with the entry's `ErrorCode` and `ErrorMessage`.
    Failed { code: String, message: String },
}

impl EntryResult {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, EntryResult::Failed { code, .. } if RETRYABLE_ENTRY_CODES.contains(&code.as_str()))
    }
}

/// A `PutEvents` call that failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("PutEvents takes 1 to {MAX_ENTRIES} entries, got {0}")]
    EntryCount(usize),
    /// The answer does not have one result per entry, in order.
    #[error("PutEvents answered {answered} results for {sent} entries")]
    Mismatch { sent: usize, answered: usize },
    /// The call failed: a network error, a timeout, a throttled or refused call.
    #[error("PutEvents failed: {reason}")]
    Call { reason: String, retryable: bool },
}

impl BusError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            BusError::Call {
                retryable: true,
                ..
            }
        )
    }
}

/// Where forwarded actions go: EventBridge in AWS; in tests, a recording bus.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Puts 1 to [`MAX_ENTRIES`] entries in one call; `Ok` has one result per entry, in order
    /// (some may have failed).
    async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError>;
}

/// The production bus over `aws-sdk-eventbridge`.
#[derive(Debug, Clone)]
pub struct SdkEventBus {
    client: aws_sdk_eventbridge::Client,
}

impl SdkEventBus {
    /// A client from `sdk_config` (build it with [`crate::aws_sdk_config`] or
    /// [`crate::local_sdk_config`]: they carry the HTTPS client), with attempt and operation
    /// timeouts.
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let config = aws_sdk_eventbridge::config::Builder::from(sdk_config)
            .timeout_config(timeouts)
            .build();
        SdkEventBus {
            client: aws_sdk_eventbridge::Client::from_conf(config),
        }
    }
}

/// A call's failure, retryable when it may be transient: no answer (network, timeout), a 5xx,
/// a throttled call.
fn call_error<E>(err: SdkError<E>) -> BusError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            e.raw().status().is_server_error()
                || matches!(
                    err.code(),
                    Some("ThrottlingException" | "InternalException" | "InternalFailure")
                )
        }
        _ => false,
    };
    BusError::Call {
        reason: crate::error_chain(&err),
        retryable,
    }
}

#[async_trait]
impl EventBus for SdkEventBus {
    async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError> {
        if entries.is_empty() || entries.len() > MAX_ENTRIES {
            return Err(BusError::EntryCount(entries.len()));
        }
        let request: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&e.event_bus_name)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(call_error)?;
        let results: Vec<EntryResult> = out
            .entries()
            .iter()
            .map(|r| match (r.event_id(), r.error_code()) {
                (Some(id), None) if !id.is_empty() => EntryResult::Put {
                    event_id: id.to_owned(),
                },
                (_, code) => EntryResult::Failed {
                    code: code.unwrap_or("NoEventId").to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
            })
            .collect();
        if results.len() != entries.len() {
            return Err(BusError::Mismatch {
                sent: entries.len(),
                answered: results.len(),
            });
        }
        let failed = results
            .iter()
            .filter(|r| matches!(r, EntryResult::Failed { .. }))
            .count();
        if usize::try_from(out.failed_entry_count()).ok() != Some(failed) {
            // The count and the entries disagree: trust the entries, say so.
            tracing::warn!(
                failed_entry_count = out.failed_entry_count(),
                failed,
                "PutEvents' FailedEntryCount does not match its entries"
            );
        }
        Ok(results)
    }
}

/// Why [`put_one`] gave up: nothing is on the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The entry failed with a code no retry can fix (`AccessDeniedException`,
    /// `MalformedDetail`, ...).
    #[error("the bus refused the event: {code}: {message}")]
    Refused { code: String, message: String },
    /// The call failed in a way no retry can fix.
    #[error(transparent)]
    Call(BusError),
    /// Every attempt failed, or the deadline left no time for another.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// Puts one event, retrying retryable failures (a failed entry with a retryable code, a
/// transient call error) with back-off ([`FIRST_RETRY_DELAY`], doubling) up to
/// [`MAX_PUT_ATTEMPTS`] attempts, and never starting a retry the `deadline` leaves no time
/// for; each call is cut at the deadline's hard limit. `Ok` is EventBridge's event id.
///
/// A call that timed out may still have put the event: a retry can then put it twice, so
/// consumers deduplicate on the detail's `messageId`.
pub async fn put_one(
    bus: &dyn EventBus,
    entry: &BusEntry,
    deadline: Option<Deadline>,
) -> Result<String, PutError> {
    put_one_counting_retries(bus, entry, deadline).await.0
}

/// [`put_one`], with the number of retries it made (attempts after the first), which the
/// `forward` handler counts as its `ForwardRetried` metric.
pub async fn put_one_counting_retries(
    bus: &dyn EventBus,
    entry: &BusEntry,
    deadline: Option<Deadline>,
) -> (Result<String, PutError>, u32) {
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1;
    loop {
        let last = match attempt_once(bus, entry, deadline).await {
            Ok(event_id) => return (Ok(event_id), attempt - 1),
            Err(Attempt::Final(e)) => return (Err(e), attempt - 1),
            Err(Attempt::Retryable(text)) => text,
        };
        let retry_at = Instant::now() + delay;
        let in_time = deadline.is_none_or(|d| retry_at < d.stop_starting);
        if attempt >= MAX_PUT_ATTEMPTS || !in_time {
            let gave_up = PutError::GaveUp {
                attempts: attempt,
                last,
            };
            return (Err(gave_up), attempt - 1);
        }
        tracing::info!(attempt, error = %last, "retrying PutEvents");
        tokio::time::sleep_until(retry_at).await;
        delay *= 2;
        attempt += 1;
    }
}

/// How one attempt failed.
enum Attempt {
    Retryable(String),
    Final(PutError),
}

async fn attempt_once(
    bus: &dyn EventBus,
    entry: &BusEntry,
    deadline: Option<Deadline>,
) -> Result<String, Attempt> {
    let call = bus.put(std::slice::from_ref(entry));
    let result = match deadline {
        Some(d) => match tokio::time::timeout_at(d.hard, call).await {
            Ok(r) => r,
            Err(_) => {
                return Err(Attempt::Final(PutError::Call(BusError::Call {
                    reason: "the invocation's deadline came first".to_owned(),
                    retryable: false,
                })));
            }
        },
        None => call.await,
    };
    match result {
        Ok(results) => match results.into_iter().next() {
            Some(EntryResult::Put { event_id }) => Ok(event_id),
            Some(failed @ EntryResult::Failed { .. }) if failed.retryable() => {
                Err(Attempt::Retryable(entry_text(&failed)))
            }
            Some(EntryResult::Failed { code, message }) => {
                Err(Attempt::Final(PutError::Refused { code, message }))
            }
            None => Err(Attempt::Final(PutError::Call(BusError::Mismatch {
                sent: 1,
                answered: 0,
            }))),
        },
        Err(e) if e.retryable() => Err(Attempt::Retryable(e.to_string())),
        Err(e) => Err(Attempt::Final(PutError::Call(e))),
    }
}

fn entry_text(result: &EntryResult) -> String {
    match result {
        EntryResult::Put { event_id } => format!("put as {event_id}"),
        EntryResult::Failed { code, message } => format!("entry failed: {code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Answers each call with the next scripted result; records the calls' instants.
    struct Scripted {
        answers: Mutex<VecDeque<Result<Vec<EntryResult>, BusError>>>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Vec<EntryResult>, BusError>>) -> Self {
            Scripted {
                answers: Mutex::new(answers.into()),
                calls: Mutex::default(),
            }
        }
        fn calls(&self) -> Vec<Instant> {
            self.calls.lock().expect("lock").clone()
        }
    }

    #[async_trait]
    impl EventBus for Scripted {
        async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError> {
            assert_eq!(entries.len(), 1);
            self.calls.lock().expect("lock").push(Instant::now());
            self.answers
                .lock()
                .expect("lock")
                .pop_front()
                .expect("a scripted answer")
        }
    }

    fn entry() -> BusEntry {
        BusEntry {
            event_bus_name: "bus".into(),
            source: "wsstack.dev".into(),
            detail_type: "doThing".into(),
            detail: "{}".into(),
        }
    }

    fn failed(code: &str) -> Result<Vec<EntryResult>, BusError> {
        Ok(vec![EntryResult::Failed {
            code: code.into(),
            message: "no".into(),
        }])
    }

    fn put(id: &str) -> Result<Vec<EntryResult>, BusError> {
        Ok(vec![EntryResult::Put {
            event_id: id.into(),
        }])
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_entry_is_retried_with_back_off_and_put_once() {
        let bus = Scripted::new(vec![
            failed("ThrottlingException"),
            failed("InternalFailure"),
            put("ev-1"),
        ]);
        assert_eq!(put_one(&bus, &entry(), None).await, Ok("ev-1".into()));
        let calls = bus.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1] - calls[0], FIRST_RETRY_DELAY);
        assert_eq!(calls[2] - calls[1], FIRST_RETRY_DELAY * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_give_up_after_the_last_attempt() {
        let answers = (0..MAX_PUT_ATTEMPTS)
            .map(|_| failed("InternalFailure"))
            .collect();
        let bus = Scripted::new(answers);
        let err = put_one(&bus, &entry(), None).await.unwrap_err();
        assert_eq!(
            err,
            PutError::GaveUp {
                attempts: MAX_PUT_ATTEMPTS,
                last: "entry failed: InternalFailure: no".into()
            }
        );
        assert_eq!(bus.calls().len() as u32, MAX_PUT_ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_entry_is_not_retried() {
        let bus = Scripted::new(vec![failed("AccessDeniedException")]);
        let err = put_one(&bus, &entry(), None).await.unwrap_err();
        assert!(
            matches!(err, PutError::Refused { ref code, .. } if code == "AccessDeniedException")
        );
        assert_eq!(bus.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_call_errors_are_retried_others_are_not() {
        let transient = BusError::Call {
            reason: "timeout".into(),
            retryable: true,
        };
        let bus = Scripted::new(vec![Err(transient), put("ev-2")]);
        assert_eq!(put_one(&bus, &entry(), None).await, Ok("ev-2".into()));
        let refused = BusError::Call {
            reason: "ValidationException".into(),
            retryable: false,
        };
        let bus = Scripted::new(vec![Err(refused.clone())]);
        assert_eq!(
            put_one(&bus, &entry(), None).await,
            Err(PutError::Call(refused))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_after_the_deadline_stops_starting() {
        let now = Instant::now();
        // Room for the first retry (50 ms) but not the second (100 ms later).
        let deadline = Deadline {
            stop_starting: now + Duration::from_millis(120),
            hard: now + Duration::from_millis(500),
        };
        let bus = Scripted::new(vec![failed("InternalFailure"), failed("InternalFailure")]);
        let err = put_one(&bus, &entry(), Some(deadline)).await.unwrap_err();
        assert!(matches!(err, PutError::GaveUp { attempts: 2, .. }), "{err}");
        assert_eq!(bus.calls().len(), 2);
    }

    /// The retries the `forward` handler counts (`ForwardRetried`): attempts after the first,
    /// whether the last one succeeded or not.
    #[tokio::test(start_paused = true)]
    async fn the_retries_are_counted() {
        let bus = Scripted::new(vec![put("ev-1")]);
        let (put1, retries) = put_one_counting_retries(&bus, &entry(), None).await;
        assert_eq!((put1, retries), (Ok("ev-1".into()), 0));
        let bus = Scripted::new(vec![failed("ThrottlingException"), put("ev-2")]);
        let (put2, retries) = put_one_counting_retries(&bus, &entry(), None).await;
        assert_eq!((put2, retries), (Ok("ev-2".into()), 1));
        let script = (0..MAX_PUT_ATTEMPTS)
            .map(|_| failed("InternalFailure"))
            .collect();
        let (gave_up, retries) =
            put_one_counting_retries(&Scripted::new(script), &entry(), None).await;
        assert!(
            matches!(gave_up, Err(PutError::GaveUp { .. })),
            "{gave_up:?}"
        );
        assert_eq!(retries, MAX_PUT_ATTEMPTS - 1);
    }
}
