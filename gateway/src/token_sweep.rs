//! The token sweep, run in-process when the gateway authenticates `$connect` (`--auth dev`):
//! the handlers' own [`Closer`] on a timer, closing each connection whose token has expired
//! through this gateway's `@connections` DELETE, which runs `$disconnect` as API Gateway does.
//! In AWS an EventBridge schedule runs the same code every `[auth] sweep_interval_minutes`.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wsstack_handlers::management::ManagementApi;
use wsstack_handlers::store::ConnectionStore;
use wsstack_handlers::token_sweep::Closer;

/// How often the local gateway sweeps unless `--token-sweep-interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Starts sweeping every `interval` (the first sweep one interval after the start) until
/// `cancel`.
pub(crate) fn start(
    interval: Duration,
    store: Arc<dyn ConnectionStore>,
    api: Arc<dyn ManagementApi>,
    endpoint: String,
    concurrency: usize,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let closer = Closer {
        store,
        api,
        endpoint,
        concurrency,
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // A sweep that overran its interval is not made up for with a burst of sweeps.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticks.tick() => {
                    let now = chrono::Utc::now().timestamp();
                    // No deadline: the next tick waits for this sweep.
                    let report = closer.sweep(now, None).await;
                    if report.listed > 0 {
                        tracing::debug!(?report, "token sweep");
                    }
                }
            }
        }
    })
}
