//! The AWS SDK's configuration: one HTTPS client (rustls on ring) for every SDK client of the
//! workspace, for AWS and for local endpoints.

/// The HTTPS client every SDK client of the workspace uses: rustls on ring, trusting the
/// system's root certificates.
///
/// The SDK crates are built without their `default-https-client` feature (which pulls aws-lc and
/// adds ~0.6 MiB to each Lambda zip), so an SDK config loaded without this client fails its
/// first request with "no HTTP client". Build configs with [`aws_sdk_config`] or
/// [`local_sdk_config`], or pass this to `aws_config::ConfigLoader::http_client`.
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The SDK configuration for AWS: region and credentials from the usual sources (in Lambda, the
/// environment), with [`https_client`].
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// An SDK configuration for a local, non-AWS endpoint (dynalite, the local gateway): fixed
/// dummy credentials and region, so the SDK neither searches the machine for credentials nor
/// falls through to the instance metadata service, and `endpoint_url` as the endpoint of every
/// client built from it.
pub async fn local_sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "wsstack-local",
        ));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
