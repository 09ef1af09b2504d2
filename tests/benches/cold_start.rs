//! Handler cold start: from starting the `bootstrap` process to its first response, under a
//! local Lambda Runtime API, the way Lambda starts a `provided.al2023` function. Prints the
//! median (and spread) of 20 cold starts and the process's peak RSS.
//!
//! The binary is the x86_64 release build (`cargo build --release -p wsstack-lambda --bin
//! bootstrap`, which `make bench` runs first; `BOOTSTRAP=path` to bench another build). It
//! serves `$disconnect` (_HANDLER=disconnect): init (logging, configuration, SDK config and
//! clients), one event, one DynamoDB DeleteItem to a local stand-in that answers at once, so
//! the figure is the process's own cost, not a database's. Each run gets a fresh process and a
//! fresh Runtime API, as each cold start gets a fresh execution environment.
//!
//! Goal: median under 10 ms.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wsstack_tests::lambda_runtime_api::{LambdaRuntimeApi, Outcome, function_env};
use wsstack_tests::{Answer, FakeConnectionsApi};

const RUNS: usize = 20;
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn bootstrap() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("BOOTSTRAP") {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let path = target.join("release/bootstrap");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build --release -p wsstack-lambda --bin \
             bootstrap` (`make bench` does), or set BOOTSTRAP=path",
            path.display()
        ))
    }
}

fn disconnect_event() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../handlers/tests/fixtures/disconnect.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Kills `pid` and reaps it; its peak resident set in KiB.
fn kill_and_peak_rss_kib(pid: u32) -> i64 {
    let pid = libc::pid_t::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
    // SAFETY: kill and wait4 on a child this process spawned and has not reaped yet; `status`
    // and `usage` are zeroed structs we own.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::wait4(pid, &mut status, 0, &mut usage) == pid {
            usage.ru_maxrss
        } else {
            panic!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
        }
    }
}

async fn cold_start(
    binary: &PathBuf,
    dynamodb: &str,
    event: &serde_json::Value,
) -> (Duration, i64) {
    let runtime = LambdaRuntimeApi::start()
        .await
        .unwrap_or_else(|e| panic!("runtime API: {e}"));
    let invocation = runtime
        .queue(event)
        .unwrap_or_else(|e| panic!("queue: {e}"));
    let started = Instant::now();
    // Reaped by `kill_and_peak_rss_kib` with wait4, which also returns its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(binary)
        .env_clear()
        .envs(function_env(&runtime.address(), "disconnect"))
        .env("TABLE_NAME", "Connections")
        // `$disconnect` deletes the connection's memberships too: it needs the rooms table.
        .env("ROOMS_TABLE_NAME", "Rooms")
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb)
        // Errors only: the figure is not about writing log lines to a pipe nobody reads.
        .env("AWS_LAMBDA_LOG_LEVEL", "ERROR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let outcome = invocation.answer(ANSWER_WITHIN).await;
    let elapsed = started.elapsed();
    let rss = kill_and_peak_rss_kib(child.id());
    match outcome {
        Ok(Outcome::Response(body)) => {
            let response: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("response JSON: {e}"));
            assert_eq!(response["statusCode"], 200, "{response}");
        }
        other => panic!("no response: {other:?}"),
    }
    (elapsed, rss)
}

fn median<T: Copy + Ord>(values: &mut [T]) -> T {
    values.sort_unstable();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let binary = match bootstrap() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cold_start: {e}");
            std::process::exit(1);
        }
    };
    // DynamoDB stand-in: every call succeeds at once (DeleteItem answers `{}`).
    let dynamodb = FakeConnectionsApi::start(|_| Answer {
        status: 200,
        error_type: None,
        body: "{}".into(),
    })
    .await;
    let event = disconnect_event();

    // One start to load the binary into the page cache, as a warm Lambda host has it.
    cold_start(&binary, &dynamodb.base_url(), &event).await;
    let mut times = Vec::with_capacity(RUNS);
    let mut rss = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (t, r) = cold_start(&binary, &dynamodb.base_url(), &event).await;
        times.push(t);
        rss.push(r);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (min, max) = (
        times.iter().min().copied().unwrap_or_default(),
        times.iter().max().copied().unwrap_or_default(),
    );
    println!(
        "handler cold start ({}, $disconnect, {RUNS} runs)",
        binary.display()
    );
    println!(
        "  process start to first response: median {:.2} ms (min {:.2}, max {:.2}); goal < 10 ms",
        ms(median(&mut times)),
        ms(min),
        ms(max)
    );
    println!(
        "  peak RSS: median {:.2} MiB (max {:.2} MiB)",
        median(&mut rss) as f64 / 1024.0,
        rss.iter().max().copied().unwrap_or_default() as f64 / 1024.0
    );
}
