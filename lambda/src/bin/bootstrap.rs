//! The Lambda function behind every handler: one binary, one zip, shared by every function of
//! the stack. Each function's `Handler` property names its handler (`connect`, `send-message`,
//! ..., and `authorizer` and `fanout-worker`, which are not routes); Lambda passes it to the process as
//! `_HANDLER`, and [`wsstack_lambda::run_lambda`] dispatches on it. An unknown or missing name
//! fails the init.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(wsstack_lambda::run_lambda().await?)
}
