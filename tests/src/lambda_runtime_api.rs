//! A local Lambda Runtime API: what a custom runtime's `bootstrap` talks to inside Lambda, on a
//! free port of 127.0.0.1, so a handler binary runs through `lambda_runtime` exactly as in AWS.
//!
//! The endpoints and headers are those of the Lambda developer guide, "Using the Lambda runtime
//! API for custom runtimes" (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>),
//! version `2018-06-01`:
//!
//! - `GET /2018-06-01/runtime/invocation/next`: long-polls for the next event; answers 200 with
//!   the event as body and `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn`, `Lambda-Runtime-Trace-Id`.
//! - `POST /2018-06-01/runtime/invocation/{AwsRequestId}/response`: the function's result; 202.
//! - `POST /2018-06-01/runtime/invocation/{AwsRequestId}/error`: a function error (body
//!   `{"errorMessage", "errorType"}`, header `Lambda-Runtime-Function-Error-Type`); 202.
//! - `POST /2018-06-01/runtime/init/error`: the runtime failed to initialize; 202.
//!
//! A test queues an event with [`LambdaRuntimeApi::invoke`] and gets back what the function
//! posted. The server stops when dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

use crate::HarnessError;

/// The API version in every path.
const VERSION: &str = "2018-06-01";
/// The ARN the invocations name, as Lambda sends it.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:wsstack-test";
/// How long each invocation may run, as its deadline header tells the function.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the function posted for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST .../response`: the function's result, as sent.
    Response(Vec<u8>),
    /// `POST .../error` or `POST /runtime/init/error`.
    Error {
        /// The `Lambda-Runtime-Function-Error-Type` header.
        error_type: Option<String>,
        /// The body (`{"errorMessage", "errorType"}`).
        body: Vec<u8>,
    },
}

impl Outcome {
    /// The response parsed as JSON; `Err` names what was posted instead.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        match self {
            Outcome::Response(body) => serde_json::from_slice(body).map_err(|e| {
                format!(
                    "response is not JSON ({e}): {}",
                    String::from_utf8_lossy(body)
                )
            }),
            Outcome::Error { error_type, body } => Err(format!(
                "function error {error_type:?}: {}",
                String::from_utf8_lossy(body)
            )),
        }
    }
}

struct Queued {
    request_id: String,
    event: Bytes,
}

struct Shared {
    queue: mpsc::UnboundedSender<Queued>,
    /// The runtime's long poll takes events from here, one poller at a time.
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    /// Invocations handed out and not answered yet.
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Outcome>>,
    invocations: AtomicU64,
}

impl Shared {
    fn answer(&self, request_id: &str, outcome: Outcome) -> StatusCode {
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request_id);
        match waiter {
            Some(tx) => {
                // The test may have given up waiting; the answer is then dropped.
                let _ = tx.send(outcome);
                StatusCode::ACCEPTED
            }
            // An id that was never handed out, or was answered already.
            None => StatusCode::BAD_REQUEST,
        }
    }
}

/// An event queued for the function, not answered yet.
pub struct Invocation {
    request_id: String,
    rx: oneshot::Receiver<Outcome>,
}

impl Invocation {
    /// What the function posted for this event, waiting up to `within`.
    pub async fn answer(self, within: Duration) -> Result<Outcome, HarnessError> {
        match tokio::time::timeout(within, self.rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => Err(HarnessError::Timeout {
                what: format!("an answer to invocation {}", self.request_id),
                after: within,
            }),
        }
    }
}

/// A Lambda Runtime API on 127.0.0.1, stopped on drop.
pub struct LambdaRuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl LambdaRuntimeApi {
    /// Starts the server on a free port.
    pub async fn start() -> Result<LambdaRuntimeApi, HarnessError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (queue, next) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue,
            next: tokio::sync::Mutex::new(next),
            waiting: Mutex::default(),
            init_error: Mutex::default(),
            invocations: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                &format!("/{VERSION}/runtime/invocation/next"),
                get(next_invocation),
            )
            .route(
                &format!("/{VERSION}/runtime/invocation/{{request_id}}/response"),
                post(invocation_response),
            )
            .route(
                &format!("/{VERSION}/runtime/invocation/{{request_id}}/error"),
                post(invocation_error),
            )
            .route(&format!("/{VERSION}/runtime/init/error"), post(init_error))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            // Ends when the task is aborted on drop; a failing accept loop ends the server and
            // the waiting test times out naming what did not happen.
            let _ = axum::serve(listener, app).await;
        });
        Ok(LambdaRuntimeApi { addr, shared, task })
    }

    /// `127.0.0.1:{port}`: the value of `AWS_LAMBDA_RUNTIME_API` for the function process.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `event` for the function and waits up to `within` for what it posts back.
    pub async fn invoke(
        &self,
        event: &serde_json::Value,
        within: Duration,
    ) -> Result<Outcome, HarnessError> {
        self.queue(event)?.answer(within).await
    }

    /// Queues `event` for the function's next poll; [`Invocation::answer`] waits for what it
    /// posts back. (Queue first, then start the process, to time a cold start.)
    pub fn queue(&self, event: &serde_json::Value) -> Result<Invocation, HarnessError> {
        let n = self.shared.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        let request_id = format!("00000000-0000-4000-8000-{n:012}");
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.clone(), tx);
        self.shared
            .queue
            .send(Queued {
                request_id: request_id.clone(),
                event: Bytes::from(event.to_string()),
            })
            .map_err(|_| HarnessError::Stopped("the Lambda Runtime API"))?;
        Ok(Invocation { request_id, rx })
    }

    /// What the runtime posted to `/runtime/init/error`, if it did.
    pub fn init_error(&self) -> Option<Outcome> {
        self.shared
            .init_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for LambdaRuntimeApi {
    fn drop(&mut self) {
        // Aborting the server drops the listener, freeing the port.
        self.task.abort();
    }
}

fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

async fn next_invocation(State(shared): State<Arc<Shared>>) -> Response {
    let queued = shared.next.lock().await.recv().await;
    let Some(Queued { request_id, event }) = queued else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let deadline = epoch_ms(SystemTime::now() + FUNCTION_TIMEOUT).to_string();
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline),
        (
            "lambda-runtime-invoked-function-arn",
            FUNCTION_ARN.to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-6745d3a2-1b2c3d4e5f6a7b8c9d0e1f2a;Parent=1a2b3c4d5e6f7a8b;Sampled=0".to_owned(),
        ),
    ];
    let mut response = event.into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    shared.answer(&request_id, Outcome::Response(body.to_vec()))
}

fn error_outcome(headers: &HeaderMap, body: Bytes) -> Outcome {
    Outcome::Error {
        error_type: headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
    }
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    shared.answer(&request_id, error_outcome(&headers, body))
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    *shared.init_error.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(error_outcome(&headers, body));
    StatusCode::ACCEPTED
}

/// The environment Lambda gives a `provided.al2023` function whose `Handler` is `handler`
/// ("Defined runtime environment variables",
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>),
/// with dummy credentials: `AWS_LAMBDA_RUNTIME_API`, `_HANDLER`, the function's name, memory
/// and version, region, JSON logs. Add the function's own variables (`TABLE_NAME`, ...) and
/// `AWS_ENDPOINT_URL_*` to point its SDK clients at local stand-ins.
pub fn function_env(runtime_api: &str, handler: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("_HANDLER", handler.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "wsstack-test".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_SESSION_TOKEN", "local".to_owned()),
        // Nothing from the machine's AWS setup, and never the instance metadata service.
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// Keeps a started function's standard output line by line, as Lambda takes it to CloudWatch
/// Logs (where embedded metric format lines become metrics). The process must have been
/// started with `stdout(Stdio::piped())`; without a pipe nothing is kept.
pub fn stdout_lines(process: &mut tokio::process::Child) -> Arc<Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(stdout) = process.stdout.take() {
        let kept = lines.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_invocation_nobody_answers_times_out_naming_it() {
        let api = LambdaRuntimeApi::start().await.expect("starts");
        let err = api
            .invoke(&serde_json::json!({}), Duration::from_millis(50))
            .await
            .expect_err("no function polls");
        assert_eq!(
            err.to_string(),
            "an answer to invocation 00000000-0000-4000-8000-000000000001 did not happen within 50ms"
        );
    }

    #[tokio::test]
    async fn answers_reach_their_invocation_and_unknown_ids_are_refused() {
        let api = LambdaRuntimeApi::start().await.expect("starts");
        let invocation = api.queue(&serde_json::json!({"n": 1})).expect("queued");
        assert_eq!(
            api.shared
                .answer(&invocation.request_id, Outcome::Response(b"{}".to_vec())),
            StatusCode::ACCEPTED
        );
        assert_eq!(
            invocation
                .answer(Duration::from_secs(1))
                .await
                .expect("answered"),
            Outcome::Response(b"{}".to_vec())
        );
        assert_eq!(
            api.shared
                .answer("never-handed-out", Outcome::Response(Vec::new())),
            StatusCode::BAD_REQUEST
        );
    }
}
