//! The issuer's public keys: parsing a JWKS document, and a per-process cache in front of
//! whatever fetches it (HTTP in Lambda and the gateway, anything in tests).
//!
//! The cache keeps keys for a TTL, refetches once when a token names a `kid` it does not hold
//! (key rotation), and never starts two fetches closer together than `min_fetch_interval`, so a
//! flood of tokens with made-up `kid`s cannot turn into a flood of requests to the issuer. A
//! failed fetch never allows anything: the token is refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// One verification key from a JWKS, with the algorithm it is for. The algorithm comes from
/// the key (its `kty`/`crv`, and its `alg` when present), never from a token's header.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why the keys could not be had. Every one of these refuses the token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the body is over {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("{url}: not a JWKS document: {reason}")]
    NotJwks { url: String, reason: String },
    #[error("{url}: not an OpenID discovery document: {reason}")]
    NotDiscovery { url: String, reason: String },
    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Something that fetches the current JWKS.
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<Vec<PublicKey>, FetchError>;
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<JwkFields>,
}

#[derive(Deserialize)]
struct JwkFields {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document (RFC 7517 section 5). Keys wsstack cannot use (no `kid`, `use` other
/// than `sig`, symmetric, other curves or algorithms) are skipped, not fatal: issuers publish
/// keys for other purposes side by side.
pub fn parse_jwks(url: &str, body: &[u8]) -> Result<Vec<PublicKey>, FetchError> {
    let doc: JwksDocument = serde_json::from_slice(body).map_err(|e| FetchError::NotJwks {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(doc.keys.into_iter().filter_map(usable_key).collect())
}

fn usable_key(jwk: JwkFields) -> Option<PublicKey> {
    let kid = jwk.kid.filter(|k| !k.is_empty())?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let (algorithm, key) = match (jwk.kty.as_deref()?, jwk.alg.as_deref()) {
        ("RSA", None | Some("RS256")) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?,
        ),
        ("EC", None | Some("ES256")) if jwk.crv.as_deref() == Some("P-256") => {
            let (x, y) = (jwk.x?, jwk.y?);
            // P-256 coordinates are 32 bytes each, base64url without padding: 43 characters.
            if x.len() != 43 || y.len() != 43 {
                return None;
            }
            (
                Algorithm::ES256,
                DecodingKey::from_ec_components(&x, &y).ok()?,
            )
        }
        _ => return None,
    };
    Some(PublicKey {
        kid,
        algorithm,
        key,
    })
}

/// Why no key was found for a token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no key with kid {0:?} in the issuer's JWKS")]
    UnknownKid(String),
    #[error("the issuer's JWKS could not be fetched: {0}")]
    Fetch(FetchError),
    #[error(
        "the issuer's JWKS is stale and was fetched less than {0:?} ago; refusing until the next fetch"
    )]
    RateLimited(Duration),
}

/// How long keys are kept, and how often fetches may start.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub min_fetch_interval: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            min_fetch_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct CacheState {
    keys: HashMap<String, Arc<PublicKey>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// The per-process key cache over a [`JwksSource`].
pub struct KeyCache<S> {
    source: S,
    policy: CachePolicy,
    state: RwLock<CacheState>,
    /// Serializes fetches: concurrent misses wait for the one fetch instead of starting more.
    fetching: tokio::sync::Mutex<()>,
}

impl<S: JwksSource> KeyCache<S> {
    pub fn new(source: S, policy: CachePolicy) -> Self {
        Self {
            source,
            policy,
            state: RwLock::new(CacheState::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// The key for `kid`: from the cache while it is fresh, else after one fetch.
    pub async fn key(&self, kid: &str) -> Result<Arc<PublicKey>, KeyError> {
        if let Some(found) = self.cached(kid) {
            return Ok(found);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another task may have fetched while this one waited.
        if let Some(found) = self.cached(kid) {
            return Ok(found);
        }
        let now = Instant::now();
        let (fresh, recently_tried) = {
            let state = self.read();
            (
                self.is_fresh(&state, now),
                state
                    .last_attempt
                    .is_some_and(|t| now.duration_since(t) < self.policy.min_fetch_interval),
            )
        };
        if recently_tried {
            return Err(if fresh {
                KeyError::UnknownKid(kid.to_owned())
            } else {
                KeyError::RateLimited(self.policy.min_fetch_interval)
            });
        }
        self.write().last_attempt = Some(now);
        let fetched = self.source.fetch().await;
        let mut state = self.write();
        match fetched {
            Ok(keys) => {
                state.keys = keys
                    .into_iter()
                    .map(|k| (k.kid.clone(), Arc::new(k)))
                    .collect();
                state.fetched_at = Some(Instant::now());
                state
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))
            }
            Err(e) => Err(KeyError::Fetch(e)),
        }
    }

    fn cached(&self, kid: &str) -> Option<Arc<PublicKey>> {
        let state = self.read();
        if self.is_fresh(&state, Instant::now()) {
            state.keys.get(kid).cloned()
        } else {
            None
        }
    }

    fn is_fresh(&self, state: &CacheState, now: Instant) -> bool {
        state
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < self.policy.ttl)
    }

    // A poisoned lock only means another task panicked mid-update of plain data; the data is
    // still a valid cache (at worst stale), so keep going rather than deny every token forever.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_other_kinds_are_skipped_not_fatal() {
        let doc = br#"{"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "a", "y": "b"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ok", "alg": "RS256", "n": "AQAB", "e": "AQAB"}
        ]}"#;
        let keys = parse_jwks("u", doc).expect("parses");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "ok");
        assert_eq!(keys[0].algorithm, Algorithm::RS256);
    }

    #[test]
    fn a_document_without_keys_is_an_error_naming_the_url() {
        let err = parse_jwks("https://issuer/jwks", b"{\"nope\": 1}").expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("https://issuer/jwks: not a JWKS"),
            "{err}"
        );
    }
}
