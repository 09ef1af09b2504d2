//! The authorizer against a real issuer: the local issuer serving its discovery document and
//! JWKS over HTTP on a free 127.0.0.1 port, keys generated here. Every bad token of issue 10 is
//! refused with its status (401 when there is no token, 403 otherwise); good RS256 and ES256
//! tokens pass; a rotated key is picked up; fetches are cached and rate-limited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use wsstack_auth::authorizer::AuthorizerRequest;
use wsstack_auth::http_source::{HttpJwksSource, KeysLocation};
use wsstack_auth::issuer::{LOCAL_AUDIENCE, LOCAL_USERNAME_CLAIM, LocalIssuer, SigningKey};
use wsstack_auth::jwks::{CachePolicy, KeyCache, KeyError};
use wsstack_auth::jwt::{TokenVerifier, USER_POOL_USERNAME_CLAIMS, VerifierConfig};
use wsstack_auth::{AuthConfig, Authorizer, TokenError, TokenSource, Verdict};

const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abc123/dev/$connect";

async fn issuer() -> Arc<LocalIssuer> {
    LocalIssuer::start("127.0.0.1:0".parse().expect("addr"), LOCAL_AUDIENCE)
        .await
        .expect("issuer starts")
}

/// The authorizer as the local gateway runs it: the name from the local issuer's claim.
fn authorizer_for(issuer: &LocalIssuer, policy: CachePolicy) -> Authorizer<HttpJwksSource> {
    authorizer_with_claims(issuer, policy, &[LOCAL_USERNAME_CLAIM])
}

/// The authorizer reading the username from `claims`; none: the default claims.
fn authorizer_with_claims(
    issuer: &LocalIssuer,
    policy: CachePolicy,
    claims: &[&str],
) -> Authorizer<HttpJwksSource> {
    let source = HttpJwksSource::new(KeysLocation::Discovery {
        issuer: issuer.url().to_owned(),
    })
    .expect("source");
    let mut config = VerifierConfig::new(issuer.url(), vec![LOCAL_AUDIENCE.to_owned()]);
    if !claims.is_empty() {
        config.username_claims = claims.iter().map(|c| c.to_string()).collect();
    }
    Authorizer::new(
        TokenSource::default(),
        TokenVerifier::new(config, KeyCache::new(source, policy)),
    )
}

fn request(token: Option<&str>) -> AuthorizerRequest {
    AuthorizerRequest {
        kind: "REQUEST".into(),
        method_arn: METHOD_ARN.into(),
        query_string_parameters: token.map(|t| HashMap::from([("token".into(), t.to_owned())])),
        ..Default::default()
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(issuer: &LocalIssuer) -> Value {
    issuer.claims("user-1", "ada", Duration::from_secs(600))
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

/// A token with any header and any signature bytes, for the forgeries ring would never sign.
fn forged(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn rsa_key(kid: &str) -> SigningKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key");
    let der = private.to_pkcs1_der().expect("der");
    SigningKey::rs256_from_pkcs1_der(kid, der.as_bytes()).expect("ring accepts the key")
}

async fn refusal(auth: &Authorizer<HttpJwksSource>, token: Option<&str>) -> (u16, Verdict) {
    let verdict = auth.decide(&request(token)).await;
    let response = verdict.response(METHOD_ARN);
    assert!(!response.allows(), "{verdict:?} must not allow");
    assert!(response.context.is_empty(), "a Deny carries no identity");
    (verdict.refusal_status().expect("refused"), verdict)
}

/// Name, token (None: no query parameter), expected status, check of the refusal reason.
type BadTokenCase = (&'static str, Option<String>, u16, fn(&TokenError) -> bool);

#[tokio::test]
async fn fourteen_bad_tokens_are_refused_each_with_its_status_and_reason() {
    let issuer = issuer().await;
    let auth = authorizer_for(&issuer, CachePolicy::default());
    let key = issuer.current_key();
    let good = claims(&issuer);
    let sign = |c: &Value| key.sign(c).expect("signs");

    // Signature of another key under this key's kid.
    let other = SigningKey::generate_es256(key.kid()).expect("key");
    let bad_signature = other.sign(&good).expect("signs");
    // The public key as an HMAC secret: the classic algorithm-confusion forgery.
    let public_bytes = serde_json::to_vec(key.public_jwk()).expect("jwk");
    let header_hs = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_hs.to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_bytes),
        signing_input.as_bytes(),
    );
    let hs256_with_public_key = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    let mut unknown_kid_header = Header::new(Algorithm::ES256);
    unknown_kid_header.kid = Some("no-such-kid".into());
    let oversized = sign(&with(good.clone(), "pad", json!("x".repeat(9000))));

    let cases: Vec<BadTokenCase> = vec![
        ("missing", None, 401, |_| true),
        ("empty", Some(String::new()), 401, |_| true),
        ("not a JWT", Some("hello".into()), 403, |e| {
            matches!(e, TokenError::Malformed(_))
        }),
        ("bad signature", Some(bad_signature), 403, |e| {
            *e == TokenError::BadSignature
        }),
        (
            "alg none",
            Some(forged(json!({"alg": "none", "kid": key.kid()}), &good, b"")),
            403,
            |e| matches!(e, TokenError::Algorithm(a) if a == "none"),
        ),
        (
            "HS256 signed with the public key",
            Some(hs256_with_public_key),
            403,
            |e| matches!(e, TokenError::Algorithm(a) if a == "HS256"),
        ),
        (
            "unknown kid",
            Some(
                key.sign_with_header(&unknown_kid_header, &good)
                    .expect("signs"),
            ),
            403,
            |e| matches!(e, TokenError::Key(KeyError::UnknownKid(k)) if k == "no-such-kid"),
        ),
        (
            "expired beyond the leeway",
            Some(sign(&with(good.clone(), "exp", json!(now() - 61)))),
            403,
            |e| *e == TokenError::Expired,
        ),
        (
            "not yet valid beyond the leeway",
            Some(sign(&with(good.clone(), "nbf", json!(now() + 120)))),
            403,
            |e| *e == TokenError::NotYetValid,
        ),
        (
            "wrong issuer",
            Some(sign(&with(
                good.clone(),
                "iss",
                json!("http://127.0.0.1:1"),
            ))),
            403,
            |e| *e == TokenError::WrongIssuer,
        ),
        (
            "wrong audience",
            Some(sign(&with(good.clone(), "aud", json!("someone-else")))),
            403,
            |e| *e == TokenError::WrongAudience,
        ),
        (
            "missing sub",
            Some(sign(&without(good.clone(), "sub"))),
            403,
            |e| *e == TokenError::MissingClaim("sub".into()),
        ),
        ("oversized", Some(oversized), 403, |e| {
            matches!(e, TokenError::TooLarge { max: 8192, .. })
        }),
        (
            "nbf of the wrong type (CVE-2026-25537)",
            Some(sign(&with(good.clone(), "nbf", json!("99999999999")))),
            403,
            |e| matches!(e, TokenError::BadClaim(c) if c == "nbf"),
        ),
        (
            "header alg that does not match the key",
            Some(forged(
                json!({"alg": "RS256", "kid": key.kid()}),
                &good,
                b"sig",
            )),
            403,
            |e| matches!(e, TokenError::AlgorithmMismatch { .. }),
        ),
        (
            "exp of the wrong type",
            Some(sign(&with(good.clone(), "exp", json!("never")))),
            403,
            // Refused as unreadable: exp is required, and a string is no timestamp.
            |e| matches!(e, TokenError::BadClaim(c) | TokenError::MissingClaim(c) if c == "exp"),
        ),
    ];
    for (name, token, status, reason_ok) in cases {
        let (got, verdict) = refusal(&auth, token.as_deref()).await;
        assert_eq!(got, status, "{name}: {verdict:?}");
        if let Verdict::Deny(reason) = &verdict {
            assert!(reason_ok(reason), "{name}: wrong reason {reason:?}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_jwks_denies() {
    let issuer = issuer().await;
    let token = issuer
        .mint("user-1", "ada", Duration::from_secs(60))
        .expect("mint");
    let url = issuer.url().to_owned();
    drop(issuer); // nothing listens there any more
    let config = AuthConfig {
        issuer: url,
        audiences: vec![LOCAL_AUDIENCE.into()],
        jwks_url: None,
        token_source: TokenSource::default(),
        username_claim: None,
    };
    let auth = config.http_authorizer().expect("authorizer");
    let (status, verdict) = refusal(&auth, Some(&token)).await;
    assert_eq!(status, 403);
    assert!(
        matches!(verdict, Verdict::Deny(TokenError::Key(KeyError::Fetch(_)))),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn a_jwks_answering_an_error_or_garbage_denies() {
    let issuer = issuer().await;
    let token = issuer
        .mint("u", "ada", Duration::from_secs(60))
        .expect("mint");
    for path in ["/no-such-document", "/token"] {
        let source = HttpJwksSource::new(KeysLocation::Jwks(format!("{}{path}", issuer.url())))
            .expect("source");
        let verifier = TokenVerifier::new(
            VerifierConfig::new(issuer.url(), vec![LOCAL_AUDIENCE.into()]),
            KeyCache::new(source, CachePolicy::default()),
        );
        let err = verifier.verify(&token).await.expect_err("denied");
        assert!(
            matches!(err, TokenError::Key(KeyError::Fetch(_))),
            "{path}: {err:?}"
        );
    }
}

#[tokio::test]
async fn good_es256_and_rs256_tokens_are_allowed_with_their_identity() {
    let issuer = issuer().await;
    issuer.add_key(rsa_key("rsa-1"));
    let auth = authorizer_for(&issuer, CachePolicy::default());
    // ES256 from the issuer's first key, RS256 from the RSA key added after it.
    assert_eq!(issuer.current_key().algorithm(), Algorithm::RS256);
    let rs_token = issuer
        .mint("user-rs", "grace", Duration::from_secs(300))
        .expect("mint");

    let verdict = auth.decide(&request(Some(&rs_token))).await;
    let Verdict::Allow(identity) = &verdict else {
        panic!("RS256 refused: {verdict:?}");
    };
    assert_eq!(identity.sub, "user-rs");
    assert_eq!(identity.username, "grace");
    let response = verdict.response(METHOD_ARN);
    assert!(response.allows());
    assert_eq!(response.principal_id, "user-rs");
    assert_eq!(response.context["username"], "grace");
    assert_eq!(response.context["sub"], "user-rs");

    let es_issuer = self::issuer().await;
    let es_auth = authorizer_for(&es_issuer, CachePolicy::default());
    assert_eq!(es_issuer.current_key().algorithm(), Algorithm::ES256);
    let es_token = es_issuer
        .mint("user-es", "ada", Duration::from_secs(300))
        .expect("mint");
    match es_auth.decide(&request(Some(&es_token))).await {
        Verdict::Allow(id) => {
            assert_eq!((id.sub.as_str(), id.username.as_str()), ("user-es", "ada"))
        }
        other => panic!("ES256 refused: {other:?}"),
    }
}

#[tokio::test]
async fn within_the_leeway_and_with_a_list_audience_a_token_is_allowed() {
    let issuer = issuer().await;
    let auth = authorizer_for(&issuer, CachePolicy::default());
    let c = with(claims(&issuer), "exp", json!(now() - 30));
    let c = with(c, "nbf", json!(now() + 30));
    let c = with(c, "aud", json!(["other", LOCAL_AUDIENCE]));
    let token = issuer.current_key().sign(&c).expect("sign");
    assert!(matches!(
        auth.decide(&request(Some(&token))).await,
        Verdict::Allow(_)
    ));
}

/// The name others see must be one the user cannot choose (issue 18, item 1): by default the
/// authorizer ignores `preferred_username`, which OpenID Connect leaves to the user and which a
/// Cognito app client without `WriteAttributes` lets every user rewrite with their own access
/// token (https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UserPoolClientType.html).
#[tokio::test]
async fn by_default_a_self_chosen_preferred_username_is_not_the_name() {
    let issuer = issuer().await;
    let auth = authorizer_with_claims(&issuer, CachePolicy::default(), &[]);
    let key = issuer.current_key();
    // Mallory set preferred_username to "ada" on herself.
    let forged = with(claims(&issuer), "preferred_username", json!("ada"));
    let cognito = key
        .sign(&with(forged.clone(), "cognito:username", json!("mallory")))
        .expect("sign");
    let bare = key.sign(&forged).expect("sign");
    for (token, expected) in [(cognito, "mallory"), (bare, "user-1")] {
        match auth.decide(&request(Some(&token))).await {
            Verdict::Allow(id) => assert_eq!(id.username, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
}

/// What synth gives the authorizer of a stage with `create_user_pool`: that pool's app client
/// lets no user write `preferred_username` (an administrator sets it), so the name comes from
/// it, then from the immutable `cognito:username`; never from another claim.
#[tokio::test]
async fn the_user_pool_setting_reads_preferred_username_then_cognito_username() {
    let issuer = issuer().await;
    let vars: HashMap<&str, String> = HashMap::from([
        (wsstack_auth::config::ENV_ISSUER, issuer.url().to_owned()),
        (
            wsstack_auth::config::ENV_AUDIENCE,
            LOCAL_AUDIENCE.to_owned(),
        ),
        (
            wsstack_auth::config::ENV_USERNAME_CLAIM,
            USER_POOL_USERNAME_CLAIMS.join(","),
        ),
    ]);
    let config = AuthConfig::from_vars(|v| vars.get(v).cloned()).expect("config");
    let auth = config.http_authorizer().expect("authorizer");
    let key = issuer.current_key();
    let pool = with(claims(&issuer), "cognito:username", json!("3f1c-uuid"));
    let named = key.sign(&pool).expect("sign");
    let unnamed = key
        .sign(&with(
            without(pool.clone(), "preferred_username"),
            "name",
            json!("ada"),
        ))
        .expect("sign");
    for (token, expected) in [(named, "ada"), (unnamed, "3f1c-uuid")] {
        match auth.decide(&request(Some(&token))).await {
            Verdict::Allow(id) => assert_eq!(id.username, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refetch() {
    let issuer = issuer().await;
    let auth = authorizer_for(
        &issuer,
        CachePolicy {
            ttl: Duration::from_secs(600),
            min_fetch_interval: Duration::ZERO,
            ..CachePolicy::default()
        },
    );
    let first = issuer
        .mint("u", "ada", Duration::from_secs(60))
        .expect("mint");
    assert!(matches!(
        auth.decide(&request(Some(&first))).await,
        Verdict::Allow(_)
    ));
    assert!(matches!(
        auth.decide(&request(Some(&first))).await,
        Verdict::Allow(_)
    ));
    assert_eq!(
        issuer.jwks_requests(),
        1,
        "the second token is served from the cache"
    );

    issuer.rotate().expect("rotate");
    let second = issuer
        .mint("u", "ada", Duration::from_secs(60))
        .expect("mint");
    assert!(matches!(
        auth.decide(&request(Some(&second))).await,
        Verdict::Allow(_)
    ));
    assert_eq!(issuer.jwks_requests(), 2, "one refetch for the new kid");
    assert!(matches!(
        auth.decide(&request(Some(&first))).await,
        Verdict::Allow(_)
    ));
    assert_eq!(issuer.jwks_requests(), 2);
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_authorizer_flood_the_issuer() {
    let issuer = issuer().await;
    let interval = Duration::from_millis(300);
    let auth = authorizer_for(
        &issuer,
        CachePolicy {
            ttl: Duration::from_secs(600),
            min_fetch_interval: interval,
            ..CachePolicy::default()
        },
    );
    let good = issuer
        .mint("u", "ada", Duration::from_secs(60))
        .expect("mint");
    assert!(matches!(
        auth.decide(&request(Some(&good))).await,
        Verdict::Allow(_)
    ));
    let key = issuer.current_key();
    let made_up = |i: usize| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(format!("made-up-{i}"));
        key.sign_with_header(&header, &claims(&issuer))
            .expect("sign")
    };
    for i in 0..20 {
        assert_eq!(refusal(&auth, Some(&made_up(i))).await.0, 403);
    }
    assert_eq!(
        issuer.jwks_requests(),
        1,
        "inside the interval: no refetch at all"
    );
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    for i in 20..40 {
        assert_eq!(refusal(&auth, Some(&made_up(i))).await.0, 403);
    }
    assert_eq!(
        issuer.jwks_requests(),
        2,
        "after the interval: one refetch, then none"
    );
    // And concurrent misses share one fetch.
    let issuer = self::issuer().await;
    let auth = Arc::new(authorizer_for(&issuer, CachePolicy::default()));
    let token = issuer
        .mint("u", "ada", Duration::from_secs(60))
        .expect("mint");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (auth, token) = (Arc::clone(&auth), token.clone());
            tokio::spawn(async move { auth.decide(&request(Some(&token))).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.expect("task"), Verdict::Allow(_)));
    }
    assert_eq!(issuer.jwks_requests(), 1);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let issuer = issuer().await;
    // The configured issuer differs from what the document at that URL says (trailing path).
    let source = HttpJwksSource::new(KeysLocation::Discovery {
        issuer: format!("{}/", issuer.url()),
    })
    .expect("source");
    let verifier = TokenVerifier::new(
        VerifierConfig::new(format!("{}/", issuer.url()), vec![LOCAL_AUDIENCE.into()]),
        KeyCache::new(source, CachePolicy::default()),
    );
    let token = issuer
        .mint("u", "ada", Duration::from_secs(60))
        .expect("mint");
    let err = verifier.verify(&token).await.expect_err("refused");
    assert!(
        err.to_string().contains("not an OpenID discovery document"),
        "{err}"
    );
}

#[tokio::test]
async fn the_mint_endpoint_answers_tokens_and_refuses_bad_requests() {
    use http_body_util::{BodyExt, Empty};
    let issuer = issuer().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let post = |q: &str| {
        http::Request::post(format!("{}/token?{q}", issuer.url()))
            .body(Empty::new())
            .expect("request")
    };
    let ok = client
        .request(post("sub=ada&ttl=60"))
        .await
        .expect("answer");
    assert_eq!(ok.status(), 200);
    let token = String::from_utf8(
        ok.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    let auth = authorizer_for(&issuer, CachePolicy::default());
    assert!(
        matches!(auth.decide(&request(Some(&token))).await, Verdict::Allow(id) if id.username == "ada")
    );
    for bad in ["sub=", "sub=a&ttl=0", "sub=a&ttl=999999", "ttl=5"] {
        let r = client.request(post(bad)).await.expect("answer");
        assert_eq!(r.status(), 400, "{bad}");
    }
}
