//! The browser client (`web/`) in a real headless Chromium, driven by Playwright:
//! `tests/browser/test_chat.py` starts this crate's `wsstack-local` on free ports, stops it on
//! every exit, and checks a broadcast, a direct message, an error frame, a reconnection, rooms
//! (join, room messages only to members, leave, invalid names) and dropping duplicate ids.
//! Needs what `scripts/install-tools.sh` installs (Debian's chromium, Python's playwright).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Far above the ~10 s the script takes, for a machine busy with other builds.
const DEADLINE: Duration = Duration::from_secs(300);

/// The example backend's binary (the job panel's check runs it), beside `wsstack-local` in
/// the same profile's folder; built there when missing.
fn job_backend() -> std::path::PathBuf {
    let gateway = Path::new(env!("CARGO_BIN_EXE_wsstack-local"));
    let dir = gateway.parent().expect("the binary's folder");
    let binary = dir.join(format!("job-backend{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--profile", profile])
            .args(["-p", "wsstack-example-job-backend", "--bin", "job-backend"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building job-backend failed: {status}");
    }
    binary
}

#[test]
fn two_pages_chat_see_an_error_frame_and_reconnect() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/test_chat.py");
    // Output is not captured: each browser check's result shows in `make test`'s log.
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--gateway")
        .arg(env!("CARGO_BIN_EXE_wsstack-local"))
        .arg("--job-backend")
        .arg(job_backend())
        .spawn()
        .expect("python3 runs (scripts/install-tools.sh installs the browser test's tools)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the browser test") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser test took over {DEADLINE:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{} failed ({status}); its output above says which check. Missing chromium or playwright? Run scripts/install-tools.sh",
        script.display()
    );
}
