//! An example backend service: it runs the jobs clients submit with the forwarded action
//! `submitJob` (declared in the app manifest, `wsstack.toml`) and reports their progress to the
//! submitting user on all of their devices through the stage's push API.
//!
//! A client sends `{"action": "submitJob", "requestId": "r-1", "data": {"steps": 3}}`; wsstack
//! checks it, answers `{"type": "accepted", ...}` and puts it on the stage's bus; this service
//! receives the event ([`wsstack_client::ForwardedEvent`]) and pushes, each with `replyTo`
//! `r-1`: `{"state": "started", "steps": 3}`, then `{"state": "running", "step": n}` per step,
//! then `{"state": "done", "result": ...}`; or `{"state": "rejected", "reason": ...}` for a job
//! it cannot run. wsstack's own code knows nothing of jobs: this is the team's business logic.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use wsstack_client::{ForwardedDetail, PushClient, PushClientError};

/// The forwarded action this service runs.
pub const ACTION: &str = "submitJob";
/// The variable the Lambda function reads the push API's URL from (synth sets it to the
/// stage's `PushApiUrl` where `[example_backend] enabled = true`).
pub const PUSH_API_URL_VAR: &str = "PUSH_API_URL";
/// Most steps a job may have.
pub const MAX_STEPS: u32 = 10;

/// What a client submits as `data`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// How many steps the job runs (1 to [`MAX_STEPS`]).
    pub steps: u32,
}

/// How the job runs: the pause between two steps (the "work").
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub step: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            step: Duration::from_millis(200),
        }
    }
}

/// Pushes a job's updates to the user who submitted it, each answering their `requestId`.
struct Reporter<'a> {
    push: &'a PushClient,
    detail: &'a ForwardedDetail,
    pushed: Vec<Value>,
}

impl Reporter<'_> {
    async fn send(&mut self, update: Value) -> Result<(), PushClientError> {
        let reply_to = self.detail.request_id.as_deref();
        self.push
            .to_user(&self.detail.user_id, update.clone(), reply_to)
            .await?;
        self.pushed.push(update);
        Ok(())
    }
}

/// The job a client asked for, or why it cannot run.
fn job_request(data: &Value) -> Result<JobRequest, String> {
    match serde_json::from_value::<JobRequest>(data.clone()) {
        Ok(r) if (1..=MAX_STEPS).contains(&r.steps) => Ok(r),
        Ok(r) => Err(format!("steps must be 1 to {MAX_STEPS}, got {}", r.steps)),
        Err(e) => Err(format!("data must be {{\"steps\": 1..{MAX_STEPS}}}: {e}")),
    }
}

/// Runs one submitted job, pushing its progress to the user who submitted it (all of their
/// devices); returns the updates pushed.
pub async fn run_job(
    detail: &ForwardedDetail,
    push: &PushClient,
    pace: Pace,
) -> Result<Vec<Value>, PushClientError> {
    let mut reporter = Reporter {
        push,
        detail,
        pushed: Vec::new(),
    };
    let request = match job_request(&detail.data) {
        Ok(r) => r,
        Err(reason) => {
            reporter
                .send(json!({"state": "rejected", "reason": reason}))
                .await?;
            return Ok(reporter.pushed);
        }
    };
    reporter
        .send(json!({"state": "started", "steps": request.steps, "job": detail.message_id}))
        .await?;
    for step in 1..=request.steps {
        tokio::time::sleep(pace.step).await;
        reporter
            .send(json!({"state": "running", "step": step}))
            .await?;
    }
    let squares: Vec<u32> = (1..=request.steps).map(|n| n * n).collect();
    reporter
        .send(json!({"state": "done", "result": {"squares": squares}}))
        .await?;
    Ok(reporter.pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_request_is_checked() {
        assert_eq!(job_request(&json!({"steps": 3})).map(|r| r.steps), Ok(3));
        for (data, names) in [
            (json!({"steps": 0}), "got 0"),
            (json!({"steps": 11}), "got 11"),
            (json!({"step": 1}), "unknown field `step`"),
            (json!("go"), "data must be"),
        ] {
            let err = job_request(&data).map(|r| r.steps).expect_err("refused");
            assert!(err.contains(names), "{data}: {err}");
        }
    }
}
