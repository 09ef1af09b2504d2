//! Authentication for wsstack's `$connect`: JWT verification (RS256/ES256 against an issuer's
//! JWKS), the Lambda REQUEST authorizer built on it, and a local issuer for development.
//!
//! - [`jwt`]: what a token must satisfy, and why it was refused.
//! - [`jwks`]: parsing key sets and the per-process key cache (TTL, refetch on unknown `kid`,
//!   rate-limited fetches) over any [`jwks::JwksSource`].
//! - [`http_source`]: the HTTP(S) JWKS source, with OpenID discovery.
//! - [`authorizer`]: the REQUEST authorizer's input, verdict and policy answer.
//! - [`config`]: the authorizer's settings from the environment synth sets.
//! - [`issuer`]: the local issuer (`wsstack-local --auth dev`).
//! - [`ring_provider`]: `jsonwebtoken`'s crypto on ring.

pub mod authorizer;
pub mod config;
pub mod http_source;
pub mod issuer;
pub mod jwks;
pub mod jwt;
pub mod ring_provider;

pub use authorizer::{Authorizer, AuthorizerRequest, AuthorizerResponse, TokenSource, Verdict};
pub use config::AuthConfig;
pub use jwt::{Identity, TokenError};
