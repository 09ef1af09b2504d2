//! `job-backend`: the example backend service (see the crate's library and README.md).
//!
//! In AWS (`AWS_LAMBDA_RUNTIME_API` set) it is a Lambda function behind an EventBridge rule on
//! the stage's bus that matches `submitJob` events, in the stage's own stack where the stage
//! file says `[example_backend] enabled = true` (synth's `stack/example_backend.rs`); it
//! pushes through `PUSH_API_URL` (the stage's `PushApiUrl`), signed with the function role's
//! credentials. On a laptop it is an HTTP server the local gateway's bus posts each event to
//! (`wsstack-local --backend-url`), pushing through the local push API unsigned.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use clap::Parser;
use wsstack_client::{ForwardedEvent, PushClient};
use wsstack_example_job_backend::{ACTION, PUSH_API_URL_VAR, Pace, run_job};

/// Run the example job backend locally: receive the local gateway's forwarded `submitJob`
/// events and push each job's progress to the user who submitted it.
#[derive(Debug, Parser)]
#[command(
    name = "job-backend",
    version,
    after_help = "\
Locally, with make dev (which starts it), or by hand:
  wsstack-local --backend-url http://127.0.0.1:3004/events &   # submitJob: wsstack.toml
  job-backend --listen 127.0.0.1:3004 --push-api-url http://127.0.0.1:3003

In AWS the same binary is a Lambda function: see examples/job-backend/README.md."
)]
struct Args {
    /// Where the local bus posts events.
    #[arg(long, default_value = "127.0.0.1:3004", value_name = "ADDR")]
    listen: SocketAddr,

    /// The push API to report progress through (the local gateway's, not signed).
    #[arg(long, default_value = "http://127.0.0.1:3003", value_name = "URL")]
    push_api_url: String,

    /// Milliseconds between two steps of a job.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    step_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return run_lambda().await;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let push = PushClient::unsigned(&args.push_api_url)?;
    let pace = Pace {
        step: std::time::Duration::from_millis(args.step_ms),
    };
    let app = axum::Router::new()
        .route("/events", axum::routing::post(receive))
        .with_state(Arc::new((push, pace)));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "job-backend: events at http://{}/events, pushing through {}",
        listener.local_addr()?,
        args.push_api_url
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// One event from the local bus: acknowledged at once (as EventBridge hands an event to an
/// asynchronous invocation), the job run in the background.
async fn receive(
    State(parts): State<Arc<(PushClient, Pace)>>,
    body: axum::body::Bytes,
) -> StatusCode {
    let event: ForwardedEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "not a forwarded action's event: refused");
            return StatusCode::BAD_REQUEST;
        }
    };
    if event.detail_type != ACTION {
        tracing::info!(detail_type = ?event.detail_type, "not a job: ignored");
        return StatusCode::OK;
    }
    tokio::spawn(async move {
        let (push, pace) = &*parts;
        match run_job(&event.detail, push, *pace).await {
            Ok(updates) => tracing::info!(
                user = %event.detail.user_id,
                updates = updates.len(),
                "job done"
            ),
            Err(e) => tracing::warn!(error = %e, "job progress could not be pushed"),
        }
    });
    StatusCode::ACCEPTED
}

/// The Lambda function: one `submitJob` event per invocation, progress pushed through
/// `PUSH_API_URL` with the role's credentials. An error makes Lambda retry the event.
async fn run_lambda() -> anyhow::Result<()> {
    tracing_subscriber::fmt().json().init();
    let url = std::env::var(PUSH_API_URL_VAR)
        .with_context(|| format!("{PUSH_API_URL_VAR} is not set"))?;
    let push = Arc::new(PushClient::from_env(&url).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ForwardedEvent>| {
            let push = Arc::clone(&push);
            async move {
                let updates = run_job(&event.payload.detail, &push, Pace::default()).await?;
                Ok::<_, lambda_runtime::Error>(serde_json::json!({"updates": updates.len()}))
            }
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}
