//! The `push` binary from the outside: its help, and its errors before any network call.

use std::process::Command;

#[test]
fn push_explains_itself() {
    let out = Command::new(env!("CARGO_BIN_EXE_push"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--endpoint",
        "--stage",
        "--connection-id",
        "--all",
        "--table",
        "--dynamodb-endpoint",
        "--region",
        "--data",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_push"))
        .args([
            "--endpoint",
            "http://127.0.0.1:1",
            "--stage",
            "dev",
            "--data",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "neither --connection-id nor --all");
}

/// Against AWS without a region anywhere (no --region, not an execute-api endpoint, no
/// AWS_REGION, no profile), push stops before calling anything and says where a region comes
/// from.
#[test]
fn push_without_a_region_says_where_one_comes_from() {
    let out = Command::new(env!("CARGO_BIN_EXE_push"))
        .args([
            "--endpoint",
            "https://chat.example.com",
            "--stage",
            "prod",
            "--connection-id",
            "abc=",
            "--data",
            "x",
        ])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS region: pass --region"), "{err}");
}

/// `push disconnect --user SUB` closes a user's connections (issue 18); it names what it needs.
#[test]
fn push_disconnect_explains_itself_and_needs_a_user() {
    let out = Command::new(env!("CARGO_BIN_EXE_push"))
        .args(["disconnect", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--user",
        "--endpoint",
        "--stage",
        "--table",
        "--dynamodb-endpoint",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_push"))
        .args([
            "disconnect",
            "--endpoint",
            "http://127.0.0.1:1",
            "--stage",
            "dev",
            "--table",
            "Connections",
        ])
        .env_remove("TABLE_NAME")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--user"), "{err}");
}
