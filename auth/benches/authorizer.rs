//! Authorizer latency with a cached JWKS: one `Authorizer::authorize` per token (token lookup,
//! header check, key from the cache, signature, claims, policy answer), for ES256 and RS256
//! (2048-bit) tokens from the local issuer over real HTTP. Prints median and p99; the goal is
//! under 1 ms per token.
//!
//! Run: `cargo bench -p wsstack-auth --bench authorizer`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wsstack_auth::authorizer::AuthorizerRequest;
use wsstack_auth::http_source::{HttpJwksSource, KeysLocation};
use wsstack_auth::issuer::{LOCAL_AUDIENCE, LocalIssuer, SigningKey};
use wsstack_auth::jwks::{CachePolicy, KeyCache};
use wsstack_auth::jwt::{TokenVerifier, VerifierConfig};
use wsstack_auth::{Authorizer, TokenSource};

const WARMUP: usize = 200;
const SAMPLES: usize = 5_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let issuer = LocalIssuer::start("127.0.0.1:0".parse()?, LOCAL_AUDIENCE).await?;
    let es_token = issuer.mint("user-1", "ada", Duration::from_secs(3600))?;
    let rsa = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        SigningKey::rs256_from_pkcs1_der("rsa-bench", key.to_pkcs1_der()?.as_bytes())?
    };
    issuer.add_key(rsa);
    let rs_token = issuer.mint("user-1", "ada", Duration::from_secs(3600))?;

    let source = HttpJwksSource::new(KeysLocation::Discovery {
        issuer: issuer.url().to_owned(),
    })?;
    let auth = Authorizer::new(
        TokenSource::default(),
        TokenVerifier::new(
            VerifierConfig::new(issuer.url(), vec![LOCAL_AUDIENCE.to_owned()]),
            KeyCache::new(source, CachePolicy::default()),
        ),
    );
    println!("authorizer latency, cached JWKS, {SAMPLES} tokens each (after {WARMUP} warm-up)");
    for (name, token) in [("ES256", es_token), ("RS256", rs_token)] {
        let request = AuthorizerRequest {
            kind: "REQUEST".into(),
            method_arn: "arn:aws:execute-api:eu-west-1:123456789012:abc/dev/$connect".into(),
            query_string_parameters: Some(HashMap::from([("token".into(), token)])),
            ..Default::default()
        };
        let mut times = Vec::with_capacity(SAMPLES);
        for i in 0..WARMUP + SAMPLES {
            let start = Instant::now();
            let response = auth.authorize(&request).await;
            let took = start.elapsed();
            anyhow::ensure!(response.allows(), "{name}: the token was refused");
            if i >= WARMUP {
                times.push(took);
            }
        }
        times.sort();
        println!(
            "  {name}: median {:>7.1} µs   p99 {:>7.1} µs   max {:>7.1} µs",
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            times[times.len() - 1].as_secs_f64() * 1e6,
        );
    }
    println!("  JWKS fetches during the run: {}", issuer.jwks_requests());
    Ok(())
}
