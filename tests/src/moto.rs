//! A moto server (PyPI `moto[server]`): a local emulator of S3, STS, IAM, Lambda, DynamoDB and
//! CloudFormation, for rehearsing the deploy path without an AWS account.
//!
//! moto's CloudFormation creates tables, roles, functions and permissions, but silently skips
//! every `AWS::ApiGatewayV2::*` resource: the API, routes, integrations and stage are checked by
//! the synth snapshot and lint tests instead.

use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The account moto answers `sts get-caller-identity` with.
pub const MOTO_ACCOUNT: &str = "123456789012";
/// The region the rehearsal deploys to.
pub const MOTO_REGION: &str = "us-east-1";

/// A moto server on 127.0.0.1, killed when dropped (also when a test panics).
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free port and waits until it accepts connections. Panics with
    /// what to install when it cannot.
    pub fn start() -> Moto {
        let mut last = String::new();
        // The free port can be taken before moto binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let child = match Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => panic!(
                    "cannot start moto_server ({e}): pip install 'moto[server]' (make tools)"
                ),
            };
            let mut moto = Moto { child, port };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    last = format!("moto_server exited with {status} (port {port} taken?)");
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if last.is_empty() {
                last = format!("moto_server did not listen on 127.0.0.1:{port} within 30 s");
            }
        }
        panic!("{last}")
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs the aws CLI against this server and parses its JSON answer (`Null` for none);
    /// panics with the CLI's error when it fails.
    pub fn aws(&self, args: &[&str]) -> serde_json::Value {
        let out = std::process::Command::new("aws")
            .args(args)
            .args(["--output", "json"])
            .envs(self.aws_env())
            .output()
            .expect("the aws CLI runs (pip install awscli)");
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).expect("aws answers JSON")
    }

    /// The environment for an AWS CLI (or script) talking to this server: dummy credentials,
    /// the region, the endpoint, and no user configuration files.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", MOTO_REGION.into()),
            ("AWS_REGION", MOTO_REGION.into()),
            // `localhost`, not 127.0.0.1 (the server still listens on 127.0.0.1 only): a
            // template over CloudFormation's 51,200-byte inline limit goes through S3, and moto
            // reads the bucket of a template URL from its path only when the host says
            // `localhost` (moto/cloudformation/utils.py, `get_stack_from_s3_url`); with
            // 127.0.0.1 it takes "127" for the bucket and answers NoSuchBucket.
            (
                "AWS_ENDPOINT_URL",
                format!("http://localhost:{}", self.port),
            ),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_PAGER", String::new()),
            // Without credentials, never wait on the EC2 metadata service.
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
