//! What the tests that run the `wsstack-local` binary share.

use std::process::Child;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_wsstack-local");
pub const WAIT: Duration = Duration::from_secs(15);

/// The child process, killed if a test ends before it exited.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if started.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => panic!("wsstack-local did not exit within {WAIT:?}"),
            Err(e) => panic!("waiting for wsstack-local: {e}"),
        }
    }
}
