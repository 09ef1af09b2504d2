//! The Lambda binaries fail their init, naming the variable, when the configuration is bad:
//! Lambda then reports an init error instead of failing every request.

use std::process::Command;

fn run(bin: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin);
    for var in [
        "TABLE_NAME",
        "BROADCAST_CONCURRENCY",
        "CALLBACK_URL",
        "AWS_LAMBDA_RUNTIME_API",
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

#[test]
fn a_missing_table_name_fails_init() {
    for bin in [
        env!("CARGO_BIN_EXE_connect"),
        env!("CARGO_BIN_EXE_disconnect"),
        env!("CARGO_BIN_EXE_send-message"),
        env!("CARGO_BIN_EXE_default"),
    ] {
        let (ok, text) = run(bin, &[]);
        assert!(!ok, "{bin}");
        assert!(
            text.contains("environment variable TABLE_NAME is required but not set"),
            "{bin}: {text}"
        );
        // The JSON log line Lambda's logging config asks for.
        assert!(text.contains(r#""level":"ERROR""#), "{bin}: {text}");
    }
}

#[test]
fn a_bad_concurrency_fails_init() {
    let (ok, text) = run(
        env!("CARGO_BIN_EXE_send-message"),
        &[
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
