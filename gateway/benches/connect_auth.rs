//! `$connect` rate through the gateway with authentication off and on (`--auth dev`: the JWT
//! authorizer verifying an ES256 token from the local issuer before every `$connect`). The
//! goal: with auth, at least half the rate without.
//!
//! Run: `cargo bench -p wsstack-gateway --bench connect_auth`. In-process gateway, in-memory
//! store, 2,000 handshakes, 50 at a time, each client closed right after its handshake.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use wsstack_auth::issuer::{LOCAL_AUDIENCE, LocalIssuer};
use wsstack_auth::{AuthConfig, TokenSource};
use wsstack_gateway::{Gateway, GatewayOptions};
use wsstack_handlers::store::MemoryStore;

const CONNECTIONS: usize = 2_000;
const IN_FLIGHT: usize = 50;

async fn connect_rate(options: GatewayOptions, query: String) -> anyhow::Result<f64> {
    let gw = Gateway::bind(options, Arc::new(MemoryStore::new())).await?;
    let url = format!("{}?{query}", gw.ws_url());
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..CONNECTIONS)
        .map(|_| {
            let url = url.clone();
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
                ws.close(None).await?;
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let took = start.elapsed();
    for r in results {
        r?;
    }
    gw.shutdown(Duration::from_secs(5)).await;
    Ok(CONNECTIONS as f64 / took.as_secs_f64())
}

fn options() -> GatewayOptions {
    GatewayOptions {
        host: Ipv4Addr::LOCALHOST.into(),
        port: 0,
        ..GatewayOptions::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let off = connect_rate(options(), "username=bench".to_owned()).await?;

    let issuer = LocalIssuer::start("127.0.0.1:0".parse()?, LOCAL_AUDIENCE).await?;
    let token = issuer.mint("bench", "bench", Duration::from_secs(3600))?;
    let config = AuthConfig {
        issuer: issuer.url().to_owned(),
        audiences: vec![LOCAL_AUDIENCE.to_owned()],
        jwks_url: None,
        token_source: TokenSource::default(),
        username_claim: None,
    };
    let mut with_auth = options();
    with_auth.authorizer = Some(Arc::new(config.http_authorizer()?));
    let on = connect_rate(with_auth, format!("token={token}")).await?;

    println!("$connect rate through the gateway, {CONNECTIONS} handshakes, {IN_FLIGHT} in flight");
    println!("  auth off: {off:>8.0}/s");
    println!(
        "  auth on:  {on:>8.0}/s  ({:.0}% of off; ES256 token, cached JWKS)",
        100.0 * on / off
    );
    Ok(())
}
