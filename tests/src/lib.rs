//! The test harness the workspace's integration tests share.
//!
//! - [`free_port`]: a port on 127.0.0.1 nobody listens on.
//! - [`Dynalite`]: a DynamoDB-compatible server (npm `dynalite`) on a free port, killed on drop.
//! - [`create_connections_table`]: the connections table as synth declares it, waited for until
//!   ACTIVE.
//! - [`local_sdk_config`]: an SDK configuration for a local endpoint (dummy credentials).
//! - [`FakeConnectionsApi`]: a real HTTP server that answers `@connections` requests the way
//!   API Gateway does, with scripted answers, recording what it received.
//!
//! - [`lambda_runtime_api::LambdaRuntimeApi`]: a local Lambda Runtime API that runs a handler
//!   binary through `lambda_runtime` as Lambda does; [`handlers_binary`] finds (or builds) the
//!   binary, [`lambda_runtime_api::function_env`] is the environment Lambda gives it.
//! - [`moto::Moto`]: a moto server (S3, STS, IAM, Lambda, DynamoDB, CloudFormation) for the
//!   deploy rehearsal.
//!
//! Every server binds 127.0.0.1 only and stops when its guard drops, also when a test panics.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub mod lambda_runtime_api;
pub mod moto;

pub use wsstack_handlers::local_sdk_config;

/// Why the harness could not provide what a test asked for.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("dynalite is not installed ({0} is missing): run `npm ci --prefix tests`")]
    DynaliteMissing(PathBuf),
    #[error("could not start `node` (is Node.js installed and on PATH?): {0}")]
    NodeMissing(io::Error),
    #[error("dynalite exited before it answered: {0}")]
    DynaliteExited(String),
    #[error("{what} did not happen within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("{0} has stopped")]
    Stopped(&'static str),
    #[error("DynamoDB call failed: {0}")]
    DynamoDb(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process can take it before the
/// caller binds it; [`Dynalite::start`] retries with a new port if that happens.
pub fn free_port() -> u16 {
    // Binding port 0 makes the kernel pick an unused port; failing to bind the loopback at all
    // means the machine cannot run any of these tests.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a port on 127.0.0.1: {e}"))
}

/// The directory of this crate (`<workspace>/tests`), where `package.json` and `node_modules`
/// live.
pub fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A binary of the Lambda crate (`bootstrap`, of `wsstack-lambda`) built in the profile this
/// test runs from.
pub fn handlers_binary(name: &str) -> PathBuf {
    package_binary("wsstack-lambda", name)
}

/// The binary `name` of workspace package `package` (`wsstack-lambda`'s `bootstrap`,
/// `wsstack-push`'s `push`) built in the profile this test runs from. `cargo test --workspace`
/// builds it (both crates have integration tests, so cargo builds their binaries); when a
/// narrower command did not, it is built here.
pub fn package_binary(package: &str, name: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    // The test executable is `target/{profile}/deps/{test}-{hash}`.
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    let candidate = profile_dir.join(&file);
    if candidate.is_file() {
        return candidate;
    }
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(["build", "--profile", profile, "-p", package, "--bin", name])
        .current_dir(tests_dir())
        .status()
        .unwrap_or_else(|e| panic!("could not run {cargo} to build {name}: {e}"));
    assert!(
        status.success(),
        "building the {name} binary failed: {status}"
    );
    assert!(
        candidate.is_file(),
        "{} missing after the build",
        candidate.display()
    );
    candidate
}

/// A dynalite process on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct Dynalite {
    child: Child,
    port: u16,
}

impl Dynalite {
    /// Starts dynalite and waits until it accepts connections. Panics with the reason (e.g.
    /// "run `npm ci --prefix tests`") when it cannot.
    pub async fn start() -> Dynalite {
        match Self::try_start().await {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Dynalite::start`], returning the reason instead of panicking.
    pub async fn try_start() -> Result<Dynalite, HarnessError> {
        let script = tests_dir().join("node_modules/.bin/dynalite");
        if !script.exists() {
            return Err(HarnessError::DynaliteMissing(script));
        }
        // The free port may be taken between `free_port` and dynalite's bind: retry a few times.
        let mut last = None;
        for _ in 0..3 {
            match Self::spawn_and_wait(&script, free_port()).await {
                Ok(d) => return Ok(d),
                Err(e @ HarnessError::DynaliteExited(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::DynaliteExited("no attempt made".into())))
    }

    async fn spawn_and_wait(script: &Path, port: u16) -> Result<Dynalite, HarnessError> {
        let child = Command::new("node")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Tables become ACTIVE (and deletions finish) at once instead of after 500 ms.
            .args(["--createTableMs", "0", "--deleteTableMs", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(HarnessError::NodeMissing)?;
        // From here on the guard owns the process: any early return kills it.
        let mut guard = Dynalite { child, port };
        let timeout = Duration::from_secs(30);
        let started = Instant::now();
        loop {
            if let Some(status) = guard.child.try_wait()? {
                return Err(HarnessError::DynaliteExited(format!(
                    "{status} (port {port} taken?)"
                )));
            }
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok()
            {
                return Ok(guard);
            }
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: format!("dynalite listening on 127.0.0.1:{port}"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A DynamoDB client for this server.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&local_sdk_config(Some(&self.endpoint())).await)
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        // Runs on panic unwinding too, so no test leaves a node process behind. An error here
        // means the process is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the connections table (partition key `connectionId`, type S, on-demand billing, and
/// the user index on `userId` projecting `connectedAt` and `expiresAt`, as synth declares it)
/// and waits until it is ACTIVE: dynalite, like DynamoDB, answers `ResourceNotFoundException`
/// to item calls while a table is still CREATING.
pub async fn create_connections_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), HarnessError> {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, Projection, ProjectionType};
    use wsstack_routes::table::{USER_ID_ATTRIBUTE, USER_INDEX, USER_INDEX_ATTRIBUTES};
    let err = |e: &dyn std::error::Error| HarnessError::DynamoDb(wsstack_handlers::error_chain(e));
    let index = GlobalSecondaryIndex::builder()
        .index_name(USER_INDEX)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(USER_ID_ATTRIBUTE)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| err(&e))?,
        )
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(USER_INDEX_ATTRIBUTES.map(str::to_owned).to_vec()))
                .build(),
        )
        .build()
        .map_err(|e| err(&e))?;
    let key = wsstack_handlers::store::ATTR_CONNECTION_ID;
    create_table_with(
        client,
        table,
        &[(key, KeyType::Hash)],
        &[USER_ID_ATTRIBUTE],
        Some(index),
    )
    .await
}

/// Creates the rooms table (partition key `room`, sort key `connectionId`, both S, on-demand,
/// as synth declares it) and waits until it is ACTIVE.
pub async fn create_rooms_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), HarnessError> {
    use wsstack_routes::rooms_table::{PARTITION_KEY, SORT_KEY};
    create_table(
        client,
        table,
        &[(PARTITION_KEY, KeyType::Hash), (SORT_KEY, KeyType::Range)],
    )
    .await
}

/// Creates an on-demand table keyed by `keys` (string attributes) and waits until it is ACTIVE.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[(&str, KeyType)],
) -> Result<(), HarnessError> {
    create_table_with(client, table, keys, &[], None).await
}

/// [`create_table`] with one global secondary index, keyed by `index_keys` (string attributes).
async fn create_table_with(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[(&str, KeyType)],
    index_keys: &[&str],
    index: Option<aws_sdk_dynamodb::types::GlobalSecondaryIndex>,
) -> Result<(), HarnessError> {
    let err = |e: &dyn std::error::Error| HarnessError::DynamoDb(wsstack_handlers::error_chain(e));
    let mut attrs = Vec::new();
    let mut schema = Vec::new();
    for name in index_keys {
        attrs.push(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| err(&e))?,
        );
    }
    for (name, key_type) in keys {
        attrs.push(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| err(&e))?,
        );
        schema.push(
            KeySchemaElement::builder()
                .attribute_name(*name)
                .key_type(key_type.clone())
                .build()
                .map_err(|e| err(&e))?,
        );
    }
    client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attrs))
        .set_key_schema(Some(schema))
        .set_global_secondary_indexes(index.map(|i| vec![i]))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| err(&e))?;
    let timeout = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| err(&e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(HarnessError::Timeout {
                what: format!("table {table} ACTIVE"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request the fake `@connections` server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw path, e.g. `/dev/@connections/abc%3D`.
    pub path: String,
    /// The connection id: the path's last segment, percent-decoded.
    pub connection_id: String,
    pub body: Vec<u8>,
}

/// The message of [`Answer::forbidden`].
pub const FORBIDDEN_MESSAGE: &str = "User: arn:aws:sts::123456789012:assumed-role/wsstack-dev-SendMessageRole/wsstack-dev-SendMessageFunction is not authorized to perform: execute-api:ManageConnections on resource: arn:aws:execute-api:eu-west-1:123456789012:abc123def4/prod/POST/@connections/{connectionId}";

/// An answer of the fake server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Sent as `x-amzn-ErrorType`, the header the SDK reads the error type from.
    pub error_type: Option<String>,
    pub body: String,
}

impl Answer {
    /// API Gateway's answer for a successful call of `method`: 200 for POST (PostToConnection)
    /// and GET (GetConnection, with a fixed connection description), 204 for DELETE.
    pub fn success(method: &str) -> Answer {
        match method {
            "GET" => Answer {
                status: 200,
                error_type: None,
                body: r#"{"connectedAt":"2026-11-26T14:27:06.123Z","identity":{"sourceIp":"203.0.113.7","userAgent":"websocat/1.13"},"lastActiveAt":"2026-11-26T14:27:09.456Z"}"#.into(),
            },
            "DELETE" => Answer {
                status: 204,
                error_type: None,
                body: String::new(),
            },
            _ => Answer {
                status: 200,
                error_type: None,
                body: String::new(),
            },
        }
    }

    /// An error the way API Gateway sends it: status, `x-amzn-ErrorType`, JSON message.
    pub fn error(status: u16, error_type: &str) -> Answer {
        Answer {
            status,
            error_type: Some(error_type.into()),
            body: r#"{"message":null}"#.into(),
        }
    }

    pub fn gone() -> Answer {
        Self::error(410, "GoneException")
    }
    pub fn payload_too_large() -> Answer {
        Self::error(413, "PayloadTooLargeException")
    }
    pub fn limit_exceeded() -> Answer {
        Self::error(429, "LimitExceededException")
    }
    /// The 403 API Gateway sends when the caller's IAM policy does not allow the call, with
    /// the message it sends then.
    pub fn forbidden() -> Answer {
        Answer {
            body: serde_json::json!({"message": FORBIDDEN_MESSAGE}).to_string(),
            ..Self::error(403, "ForbiddenException")
        }
    }
}

type Script = dyn Fn(&RecordedRequest) -> Answer + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1 standing in for API Gateway's `@connections` API, for
/// testing the real SDK client. It answers every request with what `script` returns for it and
/// records it. Stops when dropped.
pub struct FakeConnectionsApi {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeConnectionsApi {
    /// Starts the server; `script` picks the answer to each request.
    pub async fn start(
        script: impl Fn(&RecordedRequest) -> Answer + Send + Sync + 'static,
    ) -> FakeConnectionsApi {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot bind a port on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("bound listener has no address: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let script = script.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    // A broken connection only ends that connection; the client sees the error.
                    let _ = serve_connection(socket, script, recorded).await;
                });
            }
        });
        FakeConnectionsApi {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:{port}` (append `/{stage}` for a callback URL).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for FakeConnectionsApi {
    fn drop(&mut self) {
        // Aborting the accept loop drops the listener, freeing the port.
        self.task.abort();
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        410 => "Gone",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it (keep-alive, as the
/// SDK's pooled client expects).
async fn serve_connection(
    socket: tokio::net::TcpStream,
    script: Arc<Script>,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
) -> io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).await?;
        let connection_id =
            wsstack_gateway::event::percent_decode(path.rsplit('/').next().unwrap_or_default());
        let request = RecordedRequest {
            method,
            path,
            connection_id,
            body,
        };
        let answer = script(&request);
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nx-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n",
            answer.status,
            reason(answer.status),
            answer.body.len()
        );
        if !answer.body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = &answer.error_type {
            head.push_str(&format!("x-amzn-ErrorType: {t}\r\n"));
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await?;
        write.write_all(answer.body.as_bytes()).await?;
        write.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }
}
