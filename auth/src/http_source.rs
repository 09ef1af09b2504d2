//! Fetching the JWKS over HTTP(S): from a configured `jwks_url`, or from the `jwks_uri` of the
//! issuer's OpenID discovery document (OpenID Connect Discovery 1.0, section 4), whose `issuer`
//! must equal the configured issuer exactly (section 4.3).
//!
//! HTTPS with the system's roots over rustls on ring; plain HTTP only to a loopback host (the
//! local issuer, tests). Bounded in time and in size: a slow or huge answer is a failed fetch,
//! which refuses tokens.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::jwks::{FetchError, JwksSource, PublicKey, parse_jwks};

/// Largest JWKS or discovery document read. Cognito's JWKS is about 1 KB.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Per request, connection included: the authorizer is on the `$connect` path.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysLocation {
    /// The JWKS itself.
    Jwks(String),
    /// The issuer; the JWKS URL comes from its discovery document.
    Discovery { issuer: String },
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A [`JwksSource`] over HTTP(S).
pub struct HttpJwksSource {
    location: KeysLocation,
    client: HttpsClient,
    timeout: Duration,
}

impl HttpJwksSource {
    /// Fails when a URL is neither HTTPS nor HTTP to a loopback host, or when the system's
    /// root certificates cannot be loaded.
    pub fn new(location: KeysLocation) -> Result<Self, FetchError> {
        match &location {
            KeysLocation::Jwks(url) => check_url(url)?,
            KeysLocation::Discovery { issuer } => check_url(issuer)?,
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| FetchError::Unreachable {
                url: "(system root certificates)".into(),
                reason: e.to_string(),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            location,
            client,
            timeout: FETCH_TIMEOUT,
        })
    }

    pub fn location(&self) -> &KeysLocation {
        &self.location
    }

    async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        check_url(url)?;
        let uri: http::Uri =
            url.parse()
                .map_err(|e: http::uri::InvalidUri| FetchError::BadUrl {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FetchError::BadUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let unreachable = |reason: String| FetchError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(format!("{e:?}")))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                });
            }
            Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge {
                            url: url.to_owned(),
                            max: MAX_DOCUMENT_BYTES,
                        }
                    } else {
                        unreachable(e.to_string())
                    }
                })
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
    }

    async fn jwks_url(&self) -> Result<String, FetchError> {
        let issuer = match &self.location {
            KeysLocation::Jwks(url) => return Ok(url.clone()),
            KeysLocation::Discovery { issuer } => issuer,
        };
        let url = discovery_url(issuer);
        let body = self.get(&url).await?;
        let doc: DiscoveryDocument =
            serde_json::from_slice(&body).map_err(|e| FetchError::NotDiscovery {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if doc.issuer != *issuer {
            return Err(FetchError::NotDiscovery {
                url,
                reason: format!("its issuer {:?} is not {issuer:?}", doc.issuer),
            });
        }
        check_url(&doc.jwks_uri)?;
        Ok(doc.jwks_uri)
    }
}

#[async_trait]
impl JwksSource for HttpJwksSource {
    async fn fetch(&self) -> Result<Vec<PublicKey>, FetchError> {
        // The discovery document is read on every fetch, not cached: fetches are rare (TTL,
        // rate limit) and an issuer may move its JWKS.
        let url = self.jwks_url().await?;
        let body = self.get(&url).await?;
        parse_jwks(&url, &body)
    }
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

/// `{issuer}/.well-known/openid-configuration`, without doubling a trailing slash.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// HTTPS anywhere; HTTP only to 127.0.0.0/8, `localhost` or `[::1]`.
pub fn check_url(url: &str) -> Result<(), FetchError> {
    let bad = |reason: &str| FetchError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(bad(
            "plain http is allowed only to a loopback host; use https",
        )),
        _ => Err(bad("not an http(s) URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for ok in [
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
            "http://127.0.0.1:3002",
            "http://127.5.0.1/x",
            "http://localhost:8080/jwks.json",
            "http://[::1]:9000/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/jwks.json",
            "http://10.0.0.1/",
            "ftp://x/",
            "jwks.json",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn discovery_url_of_an_issuer_with_or_without_slash() {
        assert_eq!(
            discovery_url("https://i.example/pool/"),
            "https://i.example/pool/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://i.example/pool"),
            "https://i.example/pool/.well-known/openid-configuration"
        );
    }
}
