//! The browser client (`web/`) in a real headless Chromium, driven by Playwright:
//! `tests/browser/test_chat.py` starts this crate's `wsstack-local` on free ports, stops it on
//! every exit, and checks a broadcast, a direct message, an error frame and a reconnection.
//! Needs what `scripts/install-tools.sh` installs (Debian's chromium, Python's playwright).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Far above the ~10 s the script takes, for a machine busy with other builds.
const DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn two_pages_chat_see_an_error_frame_and_reconnect() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/test_chat.py");
    // Output is not captured: each browser check's result shows in `make test`'s log.
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--gateway")
        .arg(env!("CARGO_BIN_EXE_wsstack-local"))
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
