//! The Lambda function behind the `leave` route.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(wsstack_handlers::run_lambda(wsstack_routes::Handler::Leave).await?)
}
