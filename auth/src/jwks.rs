//! The issuer's public keys: parsing a JWKS document, and a per-process cache in front of
//! whatever fetches it (HTTP in Lambda and the gateway, anything in tests).
//!
//! The cache keeps keys for a TTL, refetches once when a token names a `kid` it does not hold
//! (key rotation), and never starts two fetches closer together than `min_fetch_interval`, so a
//! flood of tokens with made-up `kid`s cannot turn into a flood of requests to the issuer.
//!
//! A failed refresh does not throw away keys that were good: for at most
//! [`CachePolicy::max_stale`] past their TTL the cached keys keep verifying tokens (each failed
//! refresh is logged), so an issuer that is briefly unreachable does not refuse everyone. A
//! failed fetch never allows anything by itself: a token whose `kid` is not among the cached
//! keys, or one that arrives after that bound, is refused.
//!
//! Time is `tokio::time`'s, so tests run TTLs and intervals in virtual time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

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

/// How long keys are kept, how often fetches may start, and how long keys outlive their TTL
/// while refreshes fail.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub min_fetch_interval: Duration,
    /// How long past `ttl` the cached keys still verify tokens while every refresh fails. Past
    /// `ttl + max_stale` without a successful fetch, tokens are refused.
    pub max_stale: Duration,
}

/// The default [`CachePolicy::max_stale`]: an hour, long enough to ride out an issuer's outage
/// or a network fault, short enough that a key the issuer withdrew stops working soon after
/// the issuer is reachable again (a successful fetch replaces the cached keys at once).
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            min_fetch_interval: Duration::from_secs(10),
            max_stale: DEFAULT_MAX_STALE,
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

    /// The key for `kid`: from the cache while it is fresh, else after one fetch; when that
    /// fetch fails (or one failed less than `min_fetch_interval` ago), from the stale cache for
    /// at most `max_stale` past the TTL.
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
        let (fresh, recently_tried, stale) = {
            let state = self.read();
            (
                self.is_fresh(&state, now),
                state
                    .last_attempt
                    .is_some_and(|t| now.duration_since(t) < self.policy.min_fetch_interval),
                self.stale_key(&state, now, kid),
            )
        };
        if recently_tried {
            // A refresh failed moments ago (a successful one would have made the cache fresh):
            // keep serving the keys it failed to replace, within the bound.
            if let Some(key) = stale {
                return Ok(key);
            }
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
            Err(e) => {
                let now = Instant::now();
                match self.stale_key(&state, now, kid) {
                    Some(key) => {
                        let age = state.fetched_at.map(|t| now.duration_since(t));
                        tracing::warn!(
                            error = %e,
                            keys_age_secs = age.map_or(0, |a| a.as_secs()),
                            ttl_secs = self.policy.ttl.as_secs(),
                            max_stale_secs = self.policy.max_stale.as_secs(),
                            "refreshing the issuer's JWKS failed; verifying with the cached keys until they are max_stale past their TTL"
                        );
                        Ok(key)
                    }
                    None => Err(KeyError::Fetch(e)),
                }
            }
        }
    }

    /// `kid`'s cached key if the cache, fresh or not, is at most `max_stale` past its TTL.
    fn stale_key(&self, state: &CacheState, now: Instant, kid: &str) -> Option<Arc<PublicKey>> {
        let fetched_at = state.fetched_at?;
        let limit = self.policy.ttl.saturating_add(self.policy.max_stale);
        if now.duration_since(fetched_at) < limit {
            state.keys.get(kid).cloned()
        } else {
            None
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A JWKS source that serves key "k1" (and "k2" once `rotated`) until told to fail.
    #[derive(Default)]
    struct Flaky {
        failing: AtomicBool,
        rotated: AtomicBool,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl JwksSource for Arc<Flaky> {
        async fn fetch(&self) -> Result<Vec<PublicKey>, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(FetchError::Unreachable {
                    url: "https://issuer.example/jwks".into(),
                    reason: "connection refused".into(),
                });
            }
            let kids: &[&str] = if self.rotated.load(Ordering::SeqCst) {
                &["k2"]
            } else {
                &["k1"]
            };
            let keys: Vec<String> = kids
                .iter()
                .map(|k| format!(r#"{{"kty": "RSA", "kid": "{k}", "n": "AQAB", "e": "AQAB"}}"#))
                .collect();
            parse_jwks(
                "u",
                format!(r#"{{"keys": [{}]}}"#, keys.join(",")).as_bytes(),
            )
        }
    }

    fn cache() -> (Arc<Flaky>, KeyCache<Arc<Flaky>>) {
        let source = Arc::new(Flaky::default());
        let cache = KeyCache::new(Arc::clone(&source), CachePolicy::default());
        (source, cache)
    }

    // Issue 18, item 6: a failed refresh used to refuse every token for at least
    // `min_fetch_interval` although the cached keys were still good.
    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_serving_the_cached_keys_up_to_max_stale() {
        let (source, cache) = cache();
        let policy = CachePolicy::default();
        assert!(cache.key("k1").await.is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);

        // Past the TTL the issuer is unreachable: the refresh fails, the cached key still works.
        source.failing.store(true, Ordering::SeqCst);
        tokio::time::advance(policy.ttl + Duration::from_secs(1)).await;
        assert!(cache.key("k1").await.is_ok(), "served from the stale cache");
        assert_eq!(
            source.fetches.load(Ordering::SeqCst),
            2,
            "one refresh tried"
        );
        // Within the fetch interval: no new fetch, still served.
        for _ in 0..5 {
            assert!(cache.key("k1").await.is_ok());
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        // A kid the cache never held is refused: a failed fetch allows nothing by itself.
        assert!(matches!(
            cache.key("other").await,
            Err(KeyError::RateLimited(_))
        ));
        tokio::time::advance(policy.min_fetch_interval).await;
        assert!(matches!(cache.key("other").await, Err(KeyError::Fetch(_))));

        // Just before ttl + max_stale: still served (a refresh tried every interval at most).
        tokio::time::advance(policy.max_stale - policy.min_fetch_interval - Duration::from_secs(2))
            .await;
        assert!(cache.key("k1").await.is_ok());
        // Past it: refused, whether a fetch is tried or not.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            cache.key("k1").await,
            Err(KeyError::RateLimited(_))
        ));
        tokio::time::advance(policy.min_fetch_interval).await;
        assert!(matches!(cache.key("k1").await, Err(KeyError::Fetch(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_refresh_replaces_the_stale_keys_at_once() {
        let (source, cache) = cache();
        let policy = CachePolicy::default();
        assert!(cache.key("k1").await.is_ok());
        source.failing.store(true, Ordering::SeqCst);
        tokio::time::advance(policy.ttl + Duration::from_secs(1)).await;
        assert!(cache.key("k1").await.is_ok());
        // The issuer is back and has withdrawn k1 for k2: k1 stops working at the next fetch.
        source.failing.store(false, Ordering::SeqCst);
        source.rotated.store(true, Ordering::SeqCst);
        tokio::time::advance(policy.min_fetch_interval).await;
        assert!(matches!(
            cache.key("k1").await,
            Err(KeyError::UnknownKid(_))
        ));
        assert!(cache.key("k2").await.is_ok());
        // And the stale allowance starts again from that fetch.
        source.failing.store(true, Ordering::SeqCst);
        tokio::time::advance(policy.ttl + policy.max_stale - Duration::from_secs(1)).await;
        assert!(cache.key("k2").await.is_ok());
    }

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
