//! The `bootstrap` binary fails its init, naming the variable, when the handler setting or the
//! configuration is bad: Lambda then reports an init error instead of failing every request.

use std::process::Command;

fn run(bin: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin);
    for var in [
        "_HANDLER",
        "TABLE_NAME",
        "ROOMS_TABLE_NAME",
        "BROADCAST_CONCURRENCY",
        "CALLBACK_URL",
        "AWS_LAMBDA_RUNTIME_API",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
        "AUTH_JWKS_URL",
        "AUTH_TOKEN_SOURCE",
        "AUTH_USERNAME_CLAIM",
        "EVENT_BUS_NAME",
        "EVENT_SOURCE",
        "FORWARDED_ACTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_bootstrap");

#[test]
fn a_missing_table_name_fails_init() {
    let route_handlers = wsstack_routes::ROUTES.iter().map(|r| r.handler.name());
    for handler in route_handlers {
        let (ok, text) = run(BOOTSTRAP, &[("_HANDLER", handler)]);
        assert!(!ok, "{handler}");
        assert!(
            text.contains("environment variable TABLE_NAME is required but not set"),
            "{handler}: {text}"
        );
        // The JSON log line Lambda's logging config asks for.
        assert!(text.contains(r#""level":"ERROR""#), "{handler}: {text}");
    }
}

#[test]
fn the_authorizer_fails_init_naming_a_missing_or_bad_auth_variable() {
    let (ok, text) = run(BOOTSTRAP, &[("_HANDLER", "authorizer")]);
    assert!(!ok);
    assert!(text.contains("AUTH_ISSUER is not set"), "{text}");
    assert!(text.contains(r#""level":"ERROR""#), "{text}");
    let (ok, text) = run(
        BOOTSTRAP,
        &[
            ("_HANDLER", "authorizer"),
            ("AUTH_ISSUER", "http://issuer.example"),
            ("AUTH_AUDIENCE", "client"),
        ],
    );
    assert!(!ok);
    assert!(
        text.contains(
            "AUTH_ISSUER: http://issuer.example: plain http is allowed only to a loopback host"
        ),
        "{text}"
    );
}

#[test]
fn an_unknown_handler_setting_fails_init_naming_the_value_and_the_valid_names() {
    // `bootstrap` is what the per-route binaries' functions had as `Handler`: a stack deployed
    // with the old template and the new zip must say so, not serve the wrong route.
    let (ok, text) = run(
        BOOTSTRAP,
        &[("_HANDLER", "bootstrap"), ("TABLE_NAME", "Connections")],
    );
    assert!(!ok);
    // Every handler of the route table, in its order.
    let names: Vec<&str> = wsstack_routes::Handler::names().collect();
    assert!(
        text.contains(&format!(
            r#"Error: environment variable _HANDLER="bootstrap" names no handler: valid names are {}"#,
            names.join(", ")
        )),
        "{text}"
    );
    assert!(text.contains(r#""level":"ERROR""#), "{text}");
}

/// The handlers the route table lets use the rooms table need its name; the others do not.
#[test]
fn a_missing_rooms_table_name_fails_the_init_of_the_handlers_that_use_rooms() {
    for h in wsstack_routes::Handler::ALL {
        if h.table_actions(wsstack_routes::Table::Rooms).is_empty() {
            continue;
        }
        let (ok, text) = run(
            BOOTSTRAP,
            &[("_HANDLER", h.name()), ("TABLE_NAME", "Connections")],
        );
        assert!(!ok, "{h:?}");
        assert!(
            text.contains("environment variable ROOMS_TABLE_NAME is required but not set"),
            "{h:?}: {text}"
        );
        assert!(text.contains(r#""level":"ERROR""#), "{h:?}: {text}");
    }
}

/// The fan-out worker (not a route) is dispatched by the same binary; it re-enqueues what its
/// deadline leaves, so it needs the queue's URL before the first event.
#[test]
fn the_fanout_worker_without_a_queue_url_fails_init_naming_the_variable() {
    let (ok, text) = run(
        BOOTSTRAP,
        &[
            ("_HANDLER", "fanout-worker"),
            ("TABLE_NAME", "Connections"),
            ("ROOMS_TABLE_NAME", "Rooms"),
        ],
    );
    assert!(!ok);
    assert!(
        text.contains("environment variable FANOUT_QUEUE_URL is required but not set"),
        "{text}"
    );
    assert!(text.contains(r#""level":"ERROR""#), "{text}");
}

/// The worker posts only to its own endpoint (issue 18, item 4): without `CALLBACK_URL` it has
/// none, and says so before the first event.
#[test]
fn the_fanout_worker_without_a_callback_url_fails_init_naming_the_variable() {
    let (ok, text) = run(
        BOOTSTRAP,
        &[
            ("_HANDLER", "fanout-worker"),
            ("TABLE_NAME", "Connections"),
            ("ROOMS_TABLE_NAME", "Rooms"),
            ("FANOUT_QUEUE_URL", "http://127.0.0.1:9/queue"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    assert!(!ok);
    assert!(
        text.contains("environment variable CALLBACK_URL is required but not set"),
        "{text}"
    );
}

/// The token sweeper (not a route) is dispatched by the same binary to its own loop; a
/// scheduled event names no API, so it needs the `@connections` endpoint before the first one.
#[test]
fn the_token_sweeper_without_a_callback_url_fails_init_naming_the_variable() {
    let (ok, text) = run(
        BOOTSTRAP,
        &[("_HANDLER", "token-sweeper"), ("TABLE_NAME", "Connections")],
    );
    assert!(!ok);
    assert!(
        text.contains("environment variable CALLBACK_URL is required but not set"),
        "{text}"
    );
    assert!(text.contains(r#""level":"ERROR""#), "{text}");
}

#[test]
fn a_missing_handler_setting_fails_init() {
    let (ok, text) = run(BOOTSTRAP, &[("TABLE_NAME", "Connections")]);
    assert!(!ok);
    assert!(
        text.contains(
            "environment variable _HANDLER is not set: set the function's Handler property to one of connect, disconnect, send-message, default"
        ),
        "{text}"
    );
}

#[test]
fn a_bad_concurrency_fails_init() {
    let (ok, text) = run(
        BOOTSTRAP,
        &[
            ("_HANDLER", "send-message"),
            ("TABLE_NAME", "Connections"),
            ("BROADCAST_CONCURRENCY", "0"),
        ],
    );
    assert!(!ok);
    // The error as `main` prints it to stderr (the JSON log line escapes the quotes).
    assert!(
        text.contains(r#"Error: environment variable BROADCAST_CONCURRENCY="0" is invalid"#),
        "{text}"
    );
}

/// The `forward` handler puts every accepted action on the stage's bus: without the bus, or
/// with a list of actions it cannot read, it fails its init naming the variable.
#[test]
fn the_forward_handler_without_its_bus_or_with_bad_actions_fails_init_naming_the_variable() {
    let base = [("_HANDLER", "forward"), ("TABLE_NAME", "Connections")];
    let (ok, text) = run(BOOTSTRAP, &base);
    assert!(!ok);
    assert!(
        text.contains("environment variable EVENT_BUS_NAME is required but not set"),
        "{text}"
    );
    let mut bad = base.to_vec();
    bad.extend([
        ("EVENT_BUS_NAME", "wsstack-dev"),
        ("EVENT_SOURCE", "wsstack.dev"),
        (
            "FORWARDED_ACTIONS",
            r#"[{"name": "doThing", "maxDataBytes": "big"}]"#,
        ),
    ]);
    let (ok, text) = run(BOOTSTRAP, &bad);
    assert!(!ok);
    assert!(
        text.contains("environment variable FORWARDED_ACTIONS=") && text.contains("line 1 column"),
        "{text}"
    );
    assert!(text.contains(r#""level":"ERROR""#), "{text}");
}
