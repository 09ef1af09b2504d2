//! The `wsstack-local` binary as a user runs it: its help, a taken port, and a stop by SIGTERM
//! (1001 to every client, `$disconnect`, exit status 0).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::{BIN, Running, WAIT, wait_exit};

#[test]
fn help_explains_every_option() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--host",
        "--port",
        "--stage",
        "--store",
        "--dynamodb-endpoint",
        "--table",
        "--idle-timeout",
        "--max-connection-duration",
        "--integration-timeout",
        "--stages-dir",
        "--log-level",
        "--auth",
        "--issuer-port",
        "--forward-action",
        "--backend-url",
        "token",
        "@connections",
    ] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
}

#[test]
fn a_bad_stage_file_or_integration_timeout_fails_naming_it() {
    let dir = std::env::temp_dir().join(format!("wsstack-cli-stages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("broken.toml"), "[lambda]\ntimeout_seconds = 0\n").expect("write");
    let stages_dir = dir.to_string_lossy().into_owned();
    for (args, needle) in [
        (
            vec![
                "--port",
                "0",
                "--stages-dir",
                &stages_dir,
                "--stage",
                "broken",
            ],
            "broken.toml",
        ),
        (
            vec!["--port", "0", "--integration-timeout", "30s"],
            "50ms to 29s",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_in_use_fails_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let mut child = Running(
        Command::new(BIN)
            .args(["--port", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let status = wait_exit(&mut child.0);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
    }
    assert!(!status.success(), "started on a taken port");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut child = Running(
        Command::new(BIN)
            .args(["--port", "0", "--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    // The banner names both URLs; the first line with ws:// is the WebSocket URL.
    let (url, connections_url) = tokio::task::spawn_blocking(move || {
        let mut ws = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if let Some(pos) = line.find("ws://") {
                ws = Some(line[pos..].trim().to_owned());
            }
            if let Some(pos) = line.find("http://") {
                let urls = (ws.expect("ws URL first"), line[pos..].trim().to_owned());
                // Keep reading what follows, as a terminal would.
                std::thread::spawn(move || lines.for_each(drop));
                return urls;
            }
        }
        panic!("wsstack-local exited before printing its URLs");
    })
    .await
    .expect("banner");
    assert!(url.ends_with("/dev"), "{url}");
    assert!(
        connections_url.ends_with("/dev/@connections"),
        "{connections_url}"
    );

    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("{url}?username=sig")),
    )
    .await
    .expect("handshake timed out")
    .expect("connect");
    ws.send(Message::text(r#"{"action":"sendMessage","data":"up"}"#))
        .await
        .expect("send");
    let echo = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no echo");
    assert!(matches!(echo, Some(Ok(Message::Text(t))) if t.contains("\"up\"")));

    let pid = i32::try_from(child.0.id()).expect("pid");
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let close = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no close frame");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    // Answering the close lets the gateway finish at once.
    drop(ws);
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child.0);
        drop(child);
        status
    })
    .await
    .expect("wait");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// `wsstack-local --auth dev` prints its issuer; `wsstack-local token --sub ada` prints a token
/// that issuer signed; a client connects with it and speaks as ada, and without it is refused.
#[tokio::test]
async fn auth_dev_and_the_token_command_let_a_user_in_and_nobody_else() {
    let mut child = Running(
        Command::new(BIN)
            .args([
                "--port",
                "0",
                "--issuer-port",
                "0",
                "--no-web",
                "--auth",
                "dev",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (ws_url, issuer) = tokio::task::spawn_blocking(move || {
        let mut ws = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if ws.is_none()
                && let Some(pos) = line.find("ws://")
            {
                ws = Some(line[pos..].trim().to_owned());
            }
            if line.trim_start().starts_with("Issuer") {
                let url = line
                    .split_whitespace()
                    .nth(1)
                    .expect("issuer URL")
                    .to_owned();
                std::thread::spawn(move || lines.for_each(drop));
                return (ws.expect("ws URL first"), url);
            }
        }
        panic!("wsstack-local exited before printing its issuer");
    })
    .await
    .expect("banner");
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");

    let out = Command::new(BIN)
        .args(["token", "--sub", "ada", "--ttl", "10m", "--issuer", &issuer])
        .output()
        .expect("run token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let refused = tokio_tungstenite::connect_async(format!("{ws_url}?username=ada")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("without a token: {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("{ws_url}?token={token}")),
    )
    .await
    .expect("handshake timed out")
    .expect("connect with the token");
    ws.send(Message::text(r#"{"action":"sendMessage","data":"hi"}"#))
        .await
        .expect("send");
    let echo = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("echo timed out")
        .expect("a frame")
        .expect("no error");
    let frame: serde_json::Value =
        serde_json::from_str(echo.to_text().expect("text")).expect("json");
    assert_eq!(frame["from"], "ada");

    // A stopped issuer: the token command says what is wrong.
    let out = Command::new(BIN)
        .args(["token", "--sub", "ada", "--issuer", "http://127.0.0.1:1"])
        .output()
        .expect("run token");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://127.0.0.1:1"), "{err}");
    assert!(err.contains("wsstack-local --auth dev"), "{err}");
}
