//! The Lambda function behind every route: one binary, one zip, shared by every function of the
//! stack. Each function's `Handler` property names its handler (`connect`,
//! `send-message`, ...); Lambda passes it to the process as `_HANDLER`, and
//! [`wsstack_handlers::run_lambda`] dispatches on it. An unknown or missing name fails the init.
//! The queue-mode fan-out worker is not a route; its function's `Handler` is
//! [`wsstack_handlers::worker::HANDLER_NAME`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let handler = std::env::var(wsstack_handlers::config::HANDLER).ok();
    if handler.as_deref() == Some(wsstack_handlers::worker::HANDLER_NAME) {
        return Ok(wsstack_handlers::worker::run_lambda().await?);
    }
    Ok(wsstack_handlers::run_lambda().await?)
}
