//! A local OpenID issuer for development and tests: an ephemeral signing key, the discovery
//! document and the JWKS over HTTP on 127.0.0.1, and token minting.
//!
//! `wsstack-local --auth dev` runs one; `wsstack-local token --sub ada` asks it for a token
//! through `POST /token`, an endpoint only this local issuer has. Keys live in memory: a
//! restart makes earlier tokens unverifiable, which is what a dev issuer should do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as ring_sig, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors of the local issuer.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("could not generate a signing key: {0}")]
    KeyGeneration(String),
    #[error("not a usable RSA private key: {0}")]
    RsaKey(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("token lifetime {0:?} is out of range (1 s to 24 h)")]
    Ttl(Duration),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
}

/// A private key with its `kid`, algorithm and public JWK.
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    public_jwk: Value,
}

impl SigningKey {
    /// A fresh P-256 key, for ES256.
    pub fn generate_es256(kid: impl Into<String>) -> Result<Self, IssuerError> {
        let rng = SystemRandom::new();
        let pkcs8 = ring_sig::EcdsaKeyPair::generate_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
        let pair = ring_sig::EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        let kid = kid.into();
        let public_jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok(Self {
            kid,
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public_jwk,
        })
    }

    /// An RSA key from its PKCS#1 DER (RSAPrivateKey), for RS256. ring cannot generate RSA
    /// keys; tests generate them with another crate and hand the DER here.
    pub fn rs256_from_pkcs1_der(kid: impl Into<String>, der: &[u8]) -> Result<Self, IssuerError> {
        let pair =
            ring_sig::RsaKeyPair::from_der(der).map_err(|e| IssuerError::RsaKey(e.to_string()))?;
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let kid = kid.into();
        let public_jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        });
        Ok(Self {
            kid,
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der),
            public_jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public half as a JWK (RFC 7517).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// Signs `claims` under a header with this key's `alg` and `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, IssuerError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs with a header of the caller's choosing (tests forge mismatched headers with it).
    pub fn sign_with_header<T: Serialize>(
        &self,
        header: &Header,
        claims: &T,
    ) -> Result<String, IssuerError> {
        crate::ring_provider::install();
        jsonwebtoken::encode(header, claims, &self.encoding)
            .map_err(|e| IssuerError::Signing(e.to_string()))
    }
}

/// What `POST /token` and [`LocalIssuer::mint`] put in a token.
#[derive(Debug, Clone, Deserialize)]
pub struct MintRequest {
    pub sub: String,
    /// Defaults to `sub`.
    pub username: Option<String>,
    /// Seconds; defaults to one hour.
    pub ttl: Option<u64>,
}

/// The issuer: its URL (`http://127.0.0.1:PORT`), audience and keys. The newest key signs;
/// older ones stay in the JWKS (rotation).
pub struct LocalIssuer {
    url: String,
    audience: String,
    keys: RwLock<Vec<Arc<SigningKey>>>,
    jwks_requests: AtomicUsize,
    serving: CancellationToken,
    addr: SocketAddr,
}

/// The audience the local issuer puts in its tokens unless told otherwise.
pub const LOCAL_AUDIENCE: &str = "wsstack-local";
/// The claim the local issuer puts the username in (`wsstack-local token --username`); the
/// local gateway's authorizer reads it. Tokens come from whoever runs the gateway, so the
/// name is as trustworthy as the issuer: fine for development, and for nothing else.
pub const LOCAL_USERNAME_CLAIM: &str = "preferred_username";

impl LocalIssuer {
    /// Starts an issuer with a fresh ES256 key on `addr` (port 0: a free port). It stops when
    /// the returned value is dropped.
    pub async fn start(addr: SocketAddr, audience: &str) -> Result<Arc<Self>, IssuerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| IssuerError::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| IssuerError::Listen { addr, source })?;
        let issuer = Arc::new(Self {
            url: format!("http://{addr}"),
            audience: audience.to_owned(),
            keys: RwLock::new(vec![Arc::new(SigningKey::generate_es256(random_kid()?)?)]),
            jwks_requests: AtomicUsize::new(0),
            serving: CancellationToken::new(),
            addr,
        });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/token", post(mint_endpoint))
            .with_state(Arc::downgrade(&issuer));
        let stop = issuer.serving.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "local issuer stopped");
            }
        });
        Ok(issuer)
    }

    /// `http://127.0.0.1:PORT`, the `iss` of its tokens.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// How many times the JWKS was served (tests check the cache with it).
    pub fn jwks_requests(&self) -> usize {
        self.jwks_requests.load(Ordering::Relaxed)
    }

    /// The key that signs now.
    pub fn current_key(&self) -> Arc<SigningKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        // Never empty: `start` puts one key in and keys are only ever added.
        Arc::clone(&keys[keys.len() - 1])
    }

    /// Adds a key that signs from now on; the old ones stay published.
    pub fn add_key(&self, key: SigningKey) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(key));
    }

    /// Adds a fresh ES256 key with a new `kid` (key rotation).
    pub fn rotate(&self) -> Result<(), IssuerError> {
        self.add_key(SigningKey::generate_es256(random_kid()?)?);
        Ok(())
    }

    /// The standard claims for `sub`: `iss`, `aud`, `sub`, `preferred_username`, `iat`, `exp`.
    pub fn claims(&self, sub: &str, username: &str, ttl: Duration) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": self.url, "aud": self.audience, "sub": sub,
            "preferred_username": username, "iat": now, "exp": now + ttl.as_secs(),
        })
    }

    /// A token the issuer's verifier accepts.
    pub fn mint(&self, sub: &str, username: &str, ttl: Duration) -> Result<String, IssuerError> {
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(24 * 3600) {
            return Err(IssuerError::Ttl(ttl));
        }
        self.current_key().sign(&self.claims(sub, username, ttl))
    }

    fn jwks_document(&self) -> Value {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        json!({ "keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>() })
    }
}

impl Drop for LocalIssuer {
    fn drop(&mut self) {
        self.serving.cancel();
    }
}

fn random_kid() -> Result<String, IssuerError> {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

type IssuerState = State<std::sync::Weak<LocalIssuer>>;

fn gone() -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

async fn discovery(State(issuer): IssuerState) -> Response {
    let Some(issuer) = issuer.upgrade() else {
        return gone();
    };
    Json(json!({
        "issuer": issuer.url(),
        "jwks_uri": issuer.jwks_url(),
        "id_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "token_endpoint": format!("{}/token", issuer.url()),
    }))
    .into_response()
}

async fn jwks(State(issuer): IssuerState) -> Response {
    let Some(issuer) = issuer.upgrade() else {
        return gone();
    };
    issuer.jwks_requests.fetch_add(1, Ordering::Relaxed);
    Json(issuer.jwks_document()).into_response()
}

async fn mint_endpoint(State(issuer): IssuerState, Query(req): Query<MintRequest>) -> Response {
    let Some(issuer) = issuer.upgrade() else {
        return gone();
    };
    let username = req.username.as_deref().unwrap_or(&req.sub);
    let ttl = Duration::from_secs(req.ttl.unwrap_or(3600));
    if req.sub.is_empty() {
        return (StatusCode::BAD_REQUEST, "sub must not be empty\n").into_response();
    }
    match issuer.mint(&req.sub, username, ttl) {
        Ok(token) => (StatusCode::OK, token).into_response(),
        Err(e @ IssuerError::Ttl(_)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Asks a running local issuer (`wsstack-local --auth dev`) for a token: what
/// `wsstack-local token` does.
pub async fn request_token(
    issuer_url: &str,
    sub: &str,
    username: Option<&str>,
    ttl: Duration,
) -> Result<String, IssuerError> {
    use http_body_util::{BodyExt, Empty};
    let unreachable = |reason: String| IssuerError::Request {
        url: issuer_url.to_owned(),
        reason,
    };
    let mut query = format!("sub={}&ttl={}", encode(sub), ttl.as_secs());
    if let Some(u) = username {
        query.push_str(&format!("&username={}", encode(u)));
    }
    let url = format!("{}/token?{query}", issuer_url.trim_end_matches('/'));
    let request = http::Request::post(&url)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| unreachable("no answer within 5 s".into()))?
        .map_err(|e| unreachable(format!("{e}: is `wsstack-local --auth dev` running?")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(unreachable(format!("HTTP {status}: {text}")))
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
