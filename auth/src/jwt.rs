//! JWT verification: RS256 and ES256 only, the key chosen by `kid`, the algorithm fixed by the
//! key (never by the token), `iss` and `aud` exact, `exp` required and `nbf` honoured with at
//! most 60 s leeway, and a size limit checked before anything is decoded.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::jwks::{JwksSource, KeyCache, KeyError};

/// Clock skew tolerated on `exp` and `nbf`, at most.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// Tokens longer than this are refused unread. Cognito ID and access tokens are 1 to 2 KB;
/// 8 KiB leaves room for many custom claims and stays under API Gateway's header limits.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The claims a username is read from, in order, when the stage does not name one: only
/// claims a user cannot set on themselves. `preferred_username` is not one of them: OpenID
/// Connect defines it as the name the user wishes to be called, which relying parties must not
/// rely on (<https://openid.net/specs/openid-connect-core-1_0.html#StandardClaims>), and a Cognito
/// app client without `WriteAttributes` lets every user change it with their own access token
/// (<https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UserPoolClientType.html>).
/// `cognito:username` cannot change after the user is created; `sub` is the issuer's own key.
pub const DEFAULT_USERNAME_CLAIMS: [&str; 2] = ["cognito:username", "sub"];
/// The claims for the user pool a stage with `create_user_pool` gets: `preferred_username`,
/// which that pool's app client does not let users write (only an administrator sets it, with
/// `AdminCreateUser` or `AdminUpdateUserAttributes`), then the immutable `cognito:username`.
pub const USER_POOL_USERNAME_CLAIMS: [&str; 2] = ["preferred_username", "cognito:username"];

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub leeway_secs: u64,
    pub max_token_bytes: usize,
    /// Claims tried in order for the username; the first present non-empty string wins.
    pub username_claims: Vec<String>,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            leeway_secs: MAX_LEEWAY_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            username_claims: DEFAULT_USERNAME_CLAIMS.map(String::from).to_vec(),
        }
    }
}

/// The identity a valid token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub username: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Why a token was refused. The messages name the fault, never the token's content.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted (RS256 and ES256 only)")]
    Algorithm(String),
    #[error("the header has no kid")]
    MissingKid,
    #[error("the header names critical extensions {0:?}, none of which is supported")]
    CriticalHeader(Vec<String>),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the header says {header:?} but key {kid:?} is for {key:?}")]
    AlgorithmMismatch {
        kid: String,
        header: String,
        key: String,
    },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("claim {0:?} is missing")]
    MissingClaim(String),
    #[error("claim {0:?} has the wrong type or value")]
    BadClaim(String),
}

/// Verifies tokens against the keys of one issuer.
pub struct TokenVerifier<S> {
    config: VerifierConfig,
    keys: KeyCache<S>,
}

impl<S: JwksSource> TokenVerifier<S> {
    /// `config.leeway_secs` is capped at [`MAX_LEEWAY_SECS`].
    pub fn new(mut config: VerifierConfig, keys: KeyCache<S>) -> Self {
        config.leeway_secs = config.leeway_secs.min(MAX_LEEWAY_SECS);
        crate::ring_provider::install();
        Self { config, keys }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    pub fn keys(&self) -> &KeyCache<S> {
        &self.keys
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: self.config.max_token_bytes,
            });
        }
        let header = RawHeader::parse(token)?;
        let key = self.keys.key(&header.kid).await?;
        if header.alg != algorithm_name(key.algorithm) {
            return Err(TokenError::AlgorithmMismatch {
                kid: header.kid,
                header: header.alg,
                key: algorithm_name(key.algorithm).to_owned(),
            });
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &key.key,
            &self.validation(key.algorithm),
        )
        .map_err(token_error)?
        .claims;
        self.identity(&claims)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut v = Validation::new(algorithm);
        v.leeway = self.config.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&self.config.audiences);
        v.required_spec_claims = ["exp", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        v
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, TokenError> {
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(TokenError::BadClaim("sub".into())),
            None => return Err(TokenError::MissingClaim("sub".into())),
        };
        let username = self
            .config
            .username_claims
            .iter()
            .find_map(|c| match claims.get(c) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .ok_or_else(|| TokenError::MissingClaim(self.config.username_claims.join(" or ")))?;
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| TokenError::BadClaim("exp".into()))?;
        Ok(Identity {
            sub,
            username,
            expires_at,
        })
    }
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        // The JWKS parser yields only the two above.
        _ => "unsupported",
    }
}

/// The header read by hand before `jsonwebtoken` sees the token, so that `alg: none` and
/// HS* are refused with a reason, and no key is looked up for them.
struct RawHeader {
    alg: String,
    kid: String,
}

impl RawHeader {
    fn parse(token: &str) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "not three dot-separated parts".into(),
            ));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
        let value: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::Malformed("the header is not a JSON object".into()))?;
        let alg = match value.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(TokenError::Malformed("the header has no alg".into())),
        };
        if alg != "RS256" && alg != "ES256" {
            return Err(TokenError::Algorithm(alg));
        }
        if let Some(crit) = value.get("crit") {
            let names = crit
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            return Err(TokenError::CriticalHeader(names));
        }
        match value.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => Ok(Self {
                alg,
                kid: k.clone(),
            }),
            _ => Err(TokenError::MissingKid),
        }
    }
}

fn token_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.into_kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
        ErrorKind::InvalidClaimFormat(c) => TokenError::BadClaim(c),
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            TokenError::Algorithm("mismatch".into())
        }
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with_header(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn none_and_hmac_are_refused_by_name_before_any_key_lookup() {
        for alg in ["none", "HS256", "HS512", "PS256", "RS512", "EdDSA"] {
            let t = token_with_header(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#));
            match RawHeader::parse(&t) {
                Err(TokenError::Algorithm(a)) => assert_eq!(a, alg),
                other => panic!("{alg}: {:?}", other.map(|h| h.alg)),
            }
        }
    }

    #[test]
    fn a_header_needs_a_kid_and_no_crit() {
        let t = token_with_header(r#"{"alg":"RS256"}"#);
        assert!(matches!(RawHeader::parse(&t), Err(TokenError::MissingKid)));
        let t = token_with_header(r#"{"alg":"RS256","kid":"k","crit":["b64"]}"#);
        assert!(matches!(
            RawHeader::parse(&t),
            Err(TokenError::CriticalHeader(c)) if c == ["b64"]
        ));
    }

    #[test]
    fn shapes_that_are_not_jwts() {
        for t in [
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.e30.c2ln",
            "bm90anNvbg.e30.c2ln",
        ] {
            assert!(
                matches!(RawHeader::parse(t), Err(TokenError::Malformed(_))),
                "{t}"
            );
        }
    }
}
