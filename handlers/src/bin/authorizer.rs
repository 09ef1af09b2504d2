//! The Lambda REQUEST authorizer of the `$connect` route (stages with `[auth] mode = "jwt"`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(wsstack_handlers::run_lambda(wsstack_routes::Handler::Authorizer).await?)
}
