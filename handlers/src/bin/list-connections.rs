//! The Lambda function behind the `listConnections` route.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(wsstack_handlers::run_lambda(wsstack_routes::Handler::ListConnections).await?)
}
