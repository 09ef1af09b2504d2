//! `wsstack-local` serves the browser client on a port of its own: the page's files over real
//! HTTP, `/config.json` naming the API, nothing new on the API's port, and clear answers when
//! the page's port is taken.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

mod support;

use support::{BIN, Running, WAIT, wait_exit};

/// The banner's lines up to "Ctrl-C to stop.", as `(label, value)`.
struct Banner {
    lines: Vec<(String, String)>,
}

impl Banner {
    fn get(&self, label: &str) -> &str {
        self.lines
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("banner has no {label} line: {:?}", self.lines))
    }
}

fn start(args: &[&str]) -> (Running, Banner) {
    let mut child = Running(
        Command::new(BIN)
            .args(args)
            .args(["--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        if line.starts_with("Ctrl-C") {
            std::thread::spawn(move || lines.for_each(drop));
            return (child, Banner { lines: banner });
        }
        if let Some(rest) = line.strip_prefix("  ")
            && let Some((label, value)) = rest.split_once(char::is_whitespace)
        {
            banner.push((label.to_owned(), value.trim().to_owned()));
        }
    }
    panic!("wsstack-local exited before its banner ended: {banner:?}");
}

/// A GET over a plain socket: status, headers (lowercase names), body.
fn get(base: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut tcp = TcpStream::connect(&addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP answer");
    let mut head = head.lines();
    let status = head
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = head
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[test]
fn the_page_is_served_on_its_own_port_and_names_the_api() {
    let (_gw, banner) = start(&["--port", "0", "--web-port", "0"]);
    let web = banner.get("Browser");
    let ws = banner.get("WebSocket");
    assert!(
        web.starts_with("http://127.0.0.1:") && web.ends_with('/'),
        "{web}"
    );

    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<title>wsstack chat</title>",
        ),
        ("/style.css", "text/css; charset=utf-8", "#log"),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "./wsstack-client.js",
        ),
        (
            "/wsstack-client.js",
            "text/javascript; charset=utf-8",
            "export class WsstackClient",
        ),
        // Issue 18, item 13: the icon the page names, and the path browsers ask for when a
        // page names none (a 404 there is a console error in Chromium on every load).
        ("/favicon.svg", "image/svg+xml", "<svg"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
    ] {
        let (status, headers, body) = get(web, path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), content_type, "{path}");
        assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(body.contains(needle), "{path} lacks {needle}");
    }

    let (_, _, page) = get(web, "/");
    assert!(
        page.contains(r#"<link rel="icon" href="favicon.svg" type="image/svg+xml">"#),
        "the page names its icon"
    );

    let (status, headers, body) = get(web, "/config.json");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "application/json");
    let config: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(config["apiUrl"], ws);

    let (status, _, _) = get(web, "/nothing-here");
    assert_eq!(status, 404);

    // The API's port is unchanged: no page there.
    let api = ws.replace("ws://", "http://");
    let api_root = api.rsplit_once('/').map(|(root, _)| root).expect("stage");
    let (status, _, body) = get(api_root, "/");
    assert_ne!(status, 200);
    assert!(!body.contains("wsstack chat"));
}

#[test]
fn a_web_port_asked_for_and_taken_is_an_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let mut child = Running(
        Command::new(BIN)
            .args(["--port", "0", "--web-port", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let status = wait_exit(&mut child.0);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    assert!(!status.success(), "started with its web port taken");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("--web-port"), "{stderr}");
}

#[test]
fn the_default_web_port_taken_only_costs_the_page() {
    // Hold port 3000 (unless something else already does, which serves as well).
    let _holder = std::net::TcpListener::bind("127.0.0.1:3000");
    let api = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api_port = api.local_addr().expect("addr").port().to_string();
    drop(api);
    let (_gw, banner) = start(&["--port", &api_port]);
    assert_eq!(banner.get("Browser"), "not served");
    assert!(banner.get("WebSocket").contains(&api_port));
}

#[test]
fn no_web_serves_no_page() {
    let (_gw, banner) = start(&["--port", "0", "--no-web"]);
    assert_eq!(banner.get("Browser"), "not served");
}

#[test]
fn help_explains_the_web_options() {
    let out = Command::new(BIN).arg("--help").output().expect("--help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--web-port",
        "--no-web",
        "browser client",
        "http://127.0.0.1:3000/",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
