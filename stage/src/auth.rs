//! `[auth]`: who may connect. `mode = "none"` (anyone, the username from the query string) or
//! `mode = "jwt"`: a Lambda REQUEST authorizer on `$connect` verifies a JWT from `issuer` for
//! one of `audience`, or from a Cognito user pool the stack creates (`create_user_pool`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use wsstack_auth::TokenSource;

/// An `[auth]` error: the value's span, the field, the message.
type AuthError = (Range<usize>, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    None,
    Jwt,
}

/// One audience or several.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or an array of strings")]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSection {
    mode: Spanned<Mode>,
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<Audience>>,
    jwks_url: Option<Spanned<String>>,
    token_source: Option<Spanned<String>>,
    username_claim: Option<Spanned<String>>,
    create_user_pool: Option<Spanned<bool>>,
    sweep_interval_minutes: Option<Spanned<i64>>,
}

/// Default of `[auth] sweep_interval_minutes`.
pub const DEFAULT_SWEEP_INTERVAL_MINUTES: u32 = 5;
/// Bounds of `[auth] sweep_interval_minutes`: EventBridge rates are whole minutes; a token
/// should not outlive its `exp` by more than an hour.
pub const SWEEP_INTERVAL_MINUTES: std::ops::RangeInclusive<u32> = 1..=60;

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityProvider {
    /// An issuer of the stage file's choosing.
    Issuer {
        issuer: String,
        audiences: Vec<String>,
        /// Default: the `jwks_uri` of the issuer's OpenID discovery document.
        jwks_url: Option<String>,
    },
    /// A Cognito user pool and app client in the stack: the issuer is the pool's, the audience
    /// the client's id.
    UserPool,
}

/// `[auth] mode = "jwt"`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub provider: IdentityProvider,
    pub token_source: TokenSource,
    /// `None`: with the stack's user pool `preferred_username` (only administrators set it),
    /// then `cognito:username`; with another issuer `cognito:username`, then `sub`.
    pub username_claim: Option<String>,
    /// How often the token sweep closes the connections whose token has expired, in minutes.
    pub sweep_interval_minutes: u32,
}

/// `[auth]`, resolved: no authentication, or a JWT authorizer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthSettings {
    #[default]
    None,
    Jwt(JwtSettings),
}

impl AuthSettings {
    pub fn jwt(&self) -> Option<&JwtSettings> {
        match self {
            AuthSettings::None => None,
            AuthSettings::Jwt(j) => Some(j),
        }
    }
}

fn err(span: Range<usize>, field: &str, message: impl Into<String>) -> AuthError {
    (span, format!("auth.{field}"), message.into())
}

/// Checks `[auth]`.
pub(super) fn check(a: &AuthSection) -> Result<AuthSettings, AuthError> {
    if *a.mode.get_ref() == Mode::None {
        check_no_jwt_fields(a)?;
        return Ok(AuthSettings::None);
    }
    let user_pool = a.create_user_pool.as_ref().is_some_and(|b| *b.get_ref());
    let provider = if user_pool {
        user_pool_provider(a)?
    } else {
        issuer_provider(a)?
    };
    Ok(AuthSettings::Jwt(JwtSettings {
        provider,
        token_source: token_source(a)?,
        username_claim: username_claim(a, user_pool)?,
        sweep_interval_minutes: sweep_interval_minutes(a)?,
    }))
}

/// `mode = "none"`: refuses the first field that only means something with `mode = "jwt"`,
/// so that a half-configured authorizer is not silently ignored.
fn check_no_jwt_fields(a: &AuthSection) -> Result<(), AuthError> {
    let extra = [
        ("issuer", a.issuer.as_ref().map(Spanned::span)),
        ("audience", a.audience.as_ref().map(Spanned::span)),
        ("jwks_url", a.jwks_url.as_ref().map(Spanned::span)),
        ("token_source", a.token_source.as_ref().map(Spanned::span)),
        (
            "username_claim",
            a.username_claim.as_ref().map(Spanned::span),
        ),
        (
            "create_user_pool",
            a.create_user_pool.as_ref().map(Spanned::span),
        ),
        (
            "sweep_interval_minutes",
            a.sweep_interval_minutes.as_ref().map(Spanned::span),
        ),
    ];
    if let Some((field, Some(span))) = extra.into_iter().find(|(_, s)| s.is_some()) {
        return Err(err(
            span,
            field,
            format!(
                "`{field}` only applies with mode = \"jwt\"; with mode = \"none\" nobody is authenticated"
            ),
        ));
    }
    Ok(())
}

/// `create_user_pool = true`: the stack's user pool is the provider, so `issuer`, `audience`
/// and `jwks_url` must not be set.
fn user_pool_provider(a: &AuthSection) -> Result<IdentityProvider, AuthError> {
    for (field, span) in [
        ("issuer", a.issuer.as_ref().map(Spanned::span)),
        ("audience", a.audience.as_ref().map(Spanned::span)),
        ("jwks_url", a.jwks_url.as_ref().map(Spanned::span)),
    ] {
        if let Some(span) = span {
            return Err(err(
                span,
                field,
                format!(
                    "`{field}` cannot be set with create_user_pool = true: the stack's user pool is the issuer and its app client the audience"
                ),
            ));
        }
    }
    Ok(IdentityProvider::UserPool)
}

/// An issuer of the stage file's choosing: `issuer` (https), one or more non-empty
/// `audience`s and an optional https `jwks_url`.
fn issuer_provider(a: &AuthSection) -> Result<IdentityProvider, AuthError> {
    let issuer = a.issuer.as_ref().ok_or_else(|| {
        err(
            a.mode.span(),
            "issuer",
            "mode = \"jwt\" needs `issuer` (the tokens' `iss`, an https URL) and `audience`, or create_user_pool = true",
        )
    })?;
    check_https(issuer, "issuer")?;
    let audience = a.audience.as_ref().ok_or_else(|| {
        err(
            issuer.span(),
            "audience",
            "mode = \"jwt\" with an issuer needs `audience`: the client id(s) a token must name in `aud`",
        )
    })?;
    let audiences = match audience.get_ref() {
        Audience::One(a) => vec![a.clone()],
        Audience::Many(v) => v.clone(),
    };
    if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(err(
            audience.span(),
            "audience",
            "the audience must be one or more non-empty strings",
        ));
    }
    let jwks_url = match &a.jwks_url {
        Some(u) => {
            check_https(u, "jwks_url")?;
            Some(u.get_ref().clone())
        }
        None => None,
    };
    Ok(IdentityProvider::Issuer {
        issuer: issuer.get_ref().clone(),
        audiences,
        jwks_url,
    })
}

/// `token_source`, parsed (default: the `token` query parameter, as [`TokenSource`] says).
fn token_source(a: &AuthSection) -> Result<TokenSource, AuthError> {
    Ok(match &a.token_source {
        None => TokenSource::default(),
        Some(s) => s
            .get_ref()
            .parse()
            .map_err(|e| err(s.span(), "token_source", format!("{e}")))?,
    })
}

/// `username_claim`: a valid claim name, and with the stack's user pool not an attribute the
/// users may write themselves (anyone could then pick their username).
fn username_claim(a: &AuthSection, user_pool: bool) -> Result<Option<String>, AuthError> {
    Ok(match &a.username_claim {
        None => None,
        Some(c) if user_pool && crate::USER_WRITABLE_ATTRIBUTES.contains(&c.get_ref().as_str()) => {
            return Err(err(
                c.span(),
                "username_claim",
                format!(
                    "`{}` cannot be the username with create_user_pool = true: the pool's users may set it on themselves; use preferred_username (set by an administrator), cognito:username, sub or email",
                    c.get_ref()
                ),
            ));
        }
        Some(c) if is_claim_name(c.get_ref()) => Some(c.get_ref().clone()),
        Some(c) => {
            return Err(err(
                c.span(),
                "username_claim",
                format!(
                    "`{}` is not a claim name: 1 to 128 letters, digits, `_`, `-`, `.` or `:` (e.g. preferred_username, cognito:username, email)",
                    c.get_ref()
                ),
            ));
        }
    })
}

/// `sweep_interval_minutes`, within [`SWEEP_INTERVAL_MINUTES`] (EventBridge rates are whole
/// minutes); default [`DEFAULT_SWEEP_INTERVAL_MINUTES`].
fn sweep_interval_minutes(a: &AuthSection) -> Result<u32, AuthError> {
    Ok(match &a.sweep_interval_minutes {
        None => DEFAULT_SWEEP_INTERVAL_MINUTES,
        Some(m) => match u32::try_from(*m.get_ref()) {
            Ok(v) if SWEEP_INTERVAL_MINUTES.contains(&v) => v,
            _ => {
                return Err(err(
                    m.span(),
                    "sweep_interval_minutes",
                    format!(
                        "{} is out of range: the token sweep runs every {} to {} minutes (an EventBridge rate in whole minutes)",
                        m.get_ref(),
                        SWEEP_INTERVAL_MINUTES.start(),
                        SWEEP_INTERVAL_MINUTES.end()
                    ),
                ));
            }
        },
    })
}

fn check_https(url: &Spanned<String>, field: &str) -> Result<(), AuthError> {
    let u = url.get_ref();
    let host = u
        .strip_prefix("https://")
        .map(|r| r.split('/').next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        _ => Err(err(
            url.span(),
            field,
            format!(
                "`{u}` is not an https URL: a deployed authorizer fetches keys over https only"
            ),
        )),
    }
}

fn is_claim_name(c: &str) -> bool {
    (1..=128).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | ':'))
}
