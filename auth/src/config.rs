//! The authorizer's configuration as the Lambda function receives it: environment variables
//! that synth sets from the stage file's `[auth]` table.

use crate::authorizer::{Authorizer, TokenSource};
use crate::http_source::{HttpJwksSource, KeysLocation, check_url};
use crate::jwks::{CachePolicy, FetchError, KeyCache};
use crate::jwt::{TokenVerifier, VerifierConfig};

use wsstack_routes::EnvVar;

// The names are the route table's ([`EnvVar`]), where synth reads them too.
pub const ENV_ISSUER: &str = EnvVar::AuthIssuer.name();
pub const ENV_AUDIENCE: &str = EnvVar::AuthAudience.name();
pub const ENV_JWKS_URL: &str = EnvVar::AuthJwksUrl.name();
pub const ENV_TOKEN_SOURCE: &str = EnvVar::AuthTokenSource.name();
pub const ENV_USERNAME_CLAIM: &str = EnvVar::AuthUsernameClaim.name();

/// A bad or missing setting, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Everything the authorizer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub issuer: String,
    /// One or more; a token must name at least one of them in `aud`.
    pub audiences: Vec<String>,
    /// Without it, the JWKS URL comes from the issuer's discovery document.
    pub jwks_url: Option<String>,
    pub token_source: TokenSource,
    /// The claim the username comes from, or several separated by commas, tried in order.
    /// Without it: [`crate::jwt::DEFAULT_USERNAME_CLAIMS`] (`cognito:username`, then `sub`).
    pub username_claim: Option<String>,
}

impl AuthConfig {
    /// Reads the `AUTH_*` variables through `get` (the environment, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |var: &'static str| get(var).filter(|v| !v.trim().is_empty());
        let issuer = non_empty(ENV_ISSUER).ok_or(ConfigError::Missing(ENV_ISSUER))?;
        check_url(&issuer).map_err(|e| invalid(ENV_ISSUER, e))?;
        let audiences: Vec<String> = non_empty(ENV_AUDIENCE)
            .ok_or(ConfigError::Missing(ENV_AUDIENCE))?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        if audiences.is_empty() {
            return Err(ConfigError::Missing(ENV_AUDIENCE));
        }
        let jwks_url = non_empty(ENV_JWKS_URL);
        if let Some(url) = &jwks_url {
            check_url(url).map_err(|e| invalid(ENV_JWKS_URL, e))?;
        }
        let token_source = match non_empty(ENV_TOKEN_SOURCE) {
            Some(s) => s.parse().map_err(|e| ConfigError::Invalid {
                var: ENV_TOKEN_SOURCE,
                reason: format!("{e}"),
            })?,
            None => TokenSource::default(),
        };
        let username_claim = non_empty(ENV_USERNAME_CLAIM);
        if let Some(claims) = &username_claim
            && username_claims(claims).is_empty()
        {
            return Err(ConfigError::Invalid {
                var: ENV_USERNAME_CLAIM,
                reason: format!("{claims:?} names no claim"),
            });
        }
        Ok(Self {
            issuer,
            audiences,
            jwks_url,
            token_source,
            username_claim,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|v| std::env::var(v).ok())
    }

    pub fn verifier_config(&self) -> VerifierConfig {
        let mut c = VerifierConfig::new(self.issuer.clone(), self.audiences.clone());
        if let Some(claims) = &self.username_claim {
            c.username_claims = username_claims(claims);
        }
        c
    }

    pub fn keys_location(&self) -> KeysLocation {
        match &self.jwks_url {
            Some(url) => KeysLocation::Jwks(url.clone()),
            None => KeysLocation::Discovery {
                issuer: self.issuer.clone(),
            },
        }
    }

    /// The authorizer over HTTP(S) JWKS fetches with the default cache policy.
    pub fn http_authorizer(&self) -> Result<Authorizer<HttpJwksSource>, FetchError> {
        let source = HttpJwksSource::new(self.keys_location())?;
        let verifier = TokenVerifier::new(
            self.verifier_config(),
            KeyCache::new(source, CachePolicy::default()),
        );
        Ok(Authorizer::new(self.token_source.clone(), verifier))
    }
}

/// `AUTH_USERNAME_CLAIM`'s claims: one, or several separated by commas.
fn username_claims(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn invalid(var: &'static str, e: FetchError) -> ConfigError {
    ConfigError::Invalid {
        var,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_full_configuration_reads_back() {
        let c = AuthConfig::from_vars(vars(&[
            (ENV_ISSUER, "https://issuer.example"),
            (ENV_AUDIENCE, "a, b"),
            (ENV_TOKEN_SOURCE, "header:Auth"),
            (ENV_USERNAME_CLAIM, "email"),
        ]))
        .expect("valid");
        assert_eq!(c.audiences, ["a", "b"]);
        assert_eq!(c.token_source, TokenSource::Header("Auth".into()));
        assert_eq!(c.verifier_config().username_claims, ["email"]);
        assert_eq!(
            c.keys_location(),
            KeysLocation::Discovery {
                issuer: "https://issuer.example".into()
            }
        );
    }

    #[test]
    fn several_username_claims_are_tried_in_order() {
        let c = AuthConfig::from_vars(vars(&[
            (ENV_ISSUER, "https://issuer.example"),
            (ENV_AUDIENCE, "a"),
            (ENV_USERNAME_CLAIM, "preferred_username, cognito:username"),
        ]))
        .expect("valid");
        assert_eq!(
            c.verifier_config().username_claims,
            ["preferred_username", "cognito:username"]
        );
        // Without the variable: only claims a user cannot set on themselves.
        let c = AuthConfig::from_vars(vars(&[
            (ENV_ISSUER, "https://issuer.example"),
            (ENV_AUDIENCE, "a"),
        ]))
        .expect("valid");
        assert_eq!(
            c.verifier_config().username_claims,
            ["cognito:username", "sub"]
        );
    }

    #[test]
    fn each_bad_variable_is_named() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[(ENV_AUDIENCE, "a")], ENV_ISSUER),
            (&[(ENV_ISSUER, "https://i")], ENV_AUDIENCE),
            (
                &[(ENV_ISSUER, "http://i.example"), (ENV_AUDIENCE, "a")],
                ENV_ISSUER,
            ),
            (
                &[(ENV_ISSUER, "https://i"), (ENV_AUDIENCE, " , ")],
                ENV_AUDIENCE,
            ),
            (
                &[
                    (ENV_ISSUER, "https://i"),
                    (ENV_AUDIENCE, "a"),
                    (ENV_TOKEN_SOURCE, "cookie:x"),
                ],
                ENV_TOKEN_SOURCE,
            ),
            (
                &[
                    (ENV_ISSUER, "https://i"),
                    (ENV_AUDIENCE, "a"),
                    (ENV_USERNAME_CLAIM, " , "),
                ],
                ENV_USERNAME_CLAIM,
            ),
        ];
        for (pairs, var) in cases {
            let err = AuthConfig::from_vars(vars(pairs)).expect_err("refused");
            assert!(err.to_string().starts_with(var), "{var}: {err}");
        }
    }
}
