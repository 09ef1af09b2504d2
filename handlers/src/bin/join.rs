//! The Lambda function behind the `join` route.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(wsstack_handlers::run_lambda(wsstack_routes::Handler::Join).await?)
}
