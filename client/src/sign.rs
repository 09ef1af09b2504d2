//! SigV4 for the push API: every route is `AuthorizationType: AWS_IAM`, so a request carries a
//! Signature Version 4 `Authorization` header for the service `execute-api`
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html>),
//! made with the SDK's own signer (`aws-sigv4`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::push::PushClientError;

/// The service name API Gateway's IAM authorization checks signatures for.
pub const SERVICE: &str = "execute-api";

/// Signs requests with credentials from a provider (the default chain, or fixed ones).
#[derive(Debug, Clone)]
pub struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

impl Signer {
    pub fn new(credentials: SharedCredentialsProvider, region: impl Into<String>) -> Signer {
        Signer {
            credentials,
            region: region.into(),
        }
    }

    /// Fixed credentials (tests, or keys a caller manages itself).
    pub fn with_credentials(credentials: Credentials, region: impl Into<String>) -> Signer {
        Signer::new(SharedCredentialsProvider::new(credentials), region)
    }

    /// Adds the signature headers (`authorization`, `x-amz-date`, and `x-amz-security-token`
    /// with temporary credentials) to `request`, signed at `time`.
    pub async fn sign(
        &self,
        request: &mut http::Request<bytes::Bytes>,
        time: SystemTime,
    ) -> Result<(), PushClientError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| PushClientError::Credentials(e.to_string()))?;
        sign_request(request, credentials, &self.region, SERVICE, time)
    }
}

/// Signs `request` for `service` in `region` at `time`: the crate's `sign` with its default
/// settings (the path normalized and each segment encoded again, as every service but S3
/// expects; no `x-amz-content-sha256` header; a session token signed), its instructions applied
/// to the request. `Signer::sign` calls it for `execute-api`; the tests call it with the test
/// suite's service name.
fn sign_request(
    request: &mut http::Request<bytes::Bytes>,
    credentials: Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), PushClientError> {
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| PushClientError::Signing(e.to_string()))?
        .into();
    let uri = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers,
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| PushClientError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| PushClientError::Signing(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod test_suite;
