//! Queue-mode fan-out, run in-process: the handlers' own job and worker code over the memory
//! `Queue`, jobs serialized as on SQS, so a stage whose file says `[fanout] mode = "queue"`
//! behaves locally as it does on AWS (sendMessage answers at once and enqueues one job per
//! segment; the worker posts through this gateway's `@connections`).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wsstack_handlers::audience::{AudienceSource, StackAudience};
use wsstack_handlers::management::ManagementApi;
use wsstack_handlers::membership::MembershipStore;
use wsstack_handlers::queue::MemoryQueue;
use wsstack_handlers::store::ConnectionStore;
use wsstack_handlers::worker::{PAGE_SIZE, Worker};

/// The queue URL the handlers' configuration carries in local queue mode (only logs show it).
pub const LOCAL_QUEUE_URL: &str = "memory://wsstack-local/fanout";
/// How long a receive waits for a job before the worker loop looks at its cancellation again.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// Queue mode's settings, from the stage file's `[fanout]` and `[lambda.fanout-worker]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueMode {
    /// Scan segments (jobs) per broadcast to everyone.
    pub segments: u32,
    /// How long one job may run, as the worker function's timeout does on AWS; the queue hides
    /// a received job 6x this, as synth sets the SQS queue's visibility timeout.
    pub job_time: Duration,
    /// Jobs older than this are dropped (`[fanout] max_job_age_seconds`).
    pub max_job_age: Duration,
}

/// The parts the in-process worker runs on.
pub(crate) struct WorkerParts {
    pub store: Arc<dyn ConnectionStore>,
    pub audience: Arc<dyn AudienceSource>,
    pub memberships: Arc<dyn MembershipStore>,
    pub api: Arc<dyn ManagementApi>,
    /// This gateway's `@connections` endpoint: the only one the worker posts to.
    pub endpoint: String,
    pub concurrency: usize,
    /// The stage's broadcast budget, which the worker charges with what it lists.
    pub broadcast_budget: wsstack_handlers::store::MessageRate,
    /// Where each job's metric line goes (`None`: no metrics).
    pub metrics: Option<wsstack_handlers::metrics::Metrics>,
}

/// The queue `sendMessage` enqueues to, and its worker loop; stopped by `cancel`.
pub(crate) fn start(
    mode: QueueMode,
    parts: WorkerParts,
    cancel: CancellationToken,
) -> (Arc<MemoryQueue>, JoinHandle<()>) {
    let queue = Arc::new(MemoryQueue::new(mode.job_time * 6));
    let worker = Worker {
        store: parts.store,
        audience: Arc::new(StackAudience {
            connections: parts.audience,
            memberships: Some(Arc::clone(&parts.memberships)),
        }),
        api: parts.api,
        queue: queue.clone(),
        memberships: Some(parts.memberships),
        endpoint: parts.endpoint,
        max_job_age: mode.max_job_age,
        concurrency: parts.concurrency,
        page_size: PAGE_SIZE,
        broadcast_budget: Some(parts.broadcast_budget),
        metrics: parts.metrics,
    };
    let polled = queue.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                result = worker.poll_once(polled.as_ref(), RECEIVE_WAIT, mode.job_time) => {
                    if let Err(e) = result {
                        // The memory queue fails only on a job too large for SQS, which
                        // sendMessage's own limits rule out; log and go on.
                        tracing::error!(error = %e, "fan-out worker: queue error");
                    }
                }
            }
        }
    });
    (queue, task)
}
