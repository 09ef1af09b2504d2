//! serverless-offline as the third server of the broadcast bench (BENCH_SERVERLESS_OFFLINE=1):
//! the project in `gateway/benches/serverless-offline/` (serverless 3, serverless-offline 13,
//! a sendMessage handler that broadcasts as wsstack's does), installed with `npm ci` when asked
//! for, started as a child process on free ports of 127.0.0.1, killed (its whole process
//! group) when dropped, on failure too.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Server;

/// The project folder, next to this bench.
fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/serverless-offline")
}

/// Fails with a clear message when `tool` is not on PATH.
fn require(tool: &str) -> anyhow::Result<String> {
    let out = Command::new(tool)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "BENCH_SERVERLESS_OFFLINE=1 needs `{tool}` on PATH (Node.js 20 or later with npm); \
                 install Node.js or run the bench without BENCH_SERVERLESS_OFFLINE"
            )
        })?;
    if !out.status.success() {
        bail!("`{tool} --version` failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `npm ci` in the project folder, unless node_modules was installed from the current
/// package-lock.json already (npm's hidden lockfile is newer than it). The bench calls it
/// before measuring anything, so a missing Node.js fails at once.
pub fn install() -> anyhow::Result<()> {
    let dir = project_dir();
    let dir = dir.as_path();
    let node = require("node")?;
    let npm = require("npm")?;
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(dir.join("package-lock.json"));
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    if matches!((lock, installed), (Some(l), Some(i)) if i >= l) {
        println!("serverless-offline: node {node}, npm {npm}, already installed");
        return Ok(());
    }
    println!(
        "serverless-offline: node {node}, npm {npm}: npm ci in {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .context("run npm ci")?;
    if !status.success() {
        bail!("npm ci in {} failed: {status}", dir.display());
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("bind a free port")?
        .local_addr()?
        .port())
}

/// A running `serverless offline`: the child (its URL is the WebSocket API's), the connections
/// file its handlers share and its log (both in the temp dir, removed on drop: a failure
/// message carries the log's end).
pub struct Offline {
    pub server: Server,
    connections: PathBuf,
    pub log: PathBuf,
}

impl Offline {
    /// Starts serverless-offline (installed by [`install`]) and waits until its WebSocket port
    /// accepts connections.
    pub fn start() -> anyhow::Result<Offline> {
        let dir = project_dir();
        let (http, ws, lambda) = (free_port()?, free_port()?, free_port()?);
        let tmp = std::env::temp_dir();
        let id = std::process::id();
        let connections = tmp.join(format!("wsstack-bench-{id}-connections.txt"));
        let log = tmp.join(format!("wsstack-bench-{id}-serverless-offline.log"));
        std::fs::write(&connections, "").context("create the connections file")?;
        let log_file = std::fs::File::create(&log).context("create the log file")?;
        let mut command = Command::new("node");
        command
            .arg("node_modules/serverless/bin/serverless.js")
            .args(["offline", "start", "--host", "127.0.0.1"])
            .args(["--httpPort", &http.to_string()])
            .args(["--websocketPort", &ws.to_string()])
            .args(["--lambdaPort", &lambda.to_string()])
            .current_dir(&dir)
            .env("CONNECTIONS_FILE", &connections)
            .env("MANAGEMENT_ENDPOINT", format!("http://127.0.0.1:{ws}"))
            // serverless 3 makes no network call with these: no telemetry, no notifications
            // (update checks), no interactive setup.
            .env("SLS_TELEMETRY_DISABLED", "1")
            .env("SLS_NOTIFICATIONS_MODE", "off")
            .env("SLS_INTERACTIVE_SETUP_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group, so that dropping it kills whatever it started.
            .process_group(0);
        let child = command.spawn().context("spawn serverless offline")?;
        let mut offline = Offline {
            server: Server {
                child,
                url: format!("ws://127.0.0.1:{ws}/dev"),
            },
            connections,
            log,
        };
        offline.wait_listening(ws, Duration::from_secs(120))?;
        Ok(offline)
    }

    fn wait_listening(&mut self, port: u16, limit: Duration) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                println!(
                    "serverless-offline: listening on {} after {:.1} s (pid {}, log {})",
                    self.server.url,
                    started.elapsed().as_secs_f64(),
                    self.server.pid(),
                    self.log.display()
                );
                return Ok(());
            }
            if let Some(status) = self.server.child.try_wait()? {
                bail!(
                    "{}",
                    self.failure(&format!("exited before listening ({status})"))
                );
            }
            if started.elapsed() > limit {
                bail!(
                    "{}",
                    self.failure(&format!("not listening after {limit:?}"))
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `what`, with the end of serverless-offline's log.
    pub fn failure(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "serverless-offline: {what}; the end of {}:\n{}",
            self.log.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        let pid = self.server.pid() as libc::pid_t;
        // SAFETY: kill only sends a signal; the child leads its own process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.connections);
        let _ = std::fs::remove_file(&self.log);
        // The Server field's drop reaps the child.
    }
}
