//! The fan-out worker Lambda function: runs the fan-out jobs of queue mode from its SQS queue.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(wsstack_handlers::worker::run_lambda().await?)
}
