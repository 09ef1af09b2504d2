//! `docs/asyncapi.yaml`: current with the protocol types, and valid to the AsyncAPI project's
//! own parser (npm `@asyncapi/parser`, installed by `make tools` into `tests/node_modules`).

use std::path::PathBuf;
use std::process::Command;

use wsstack_handlers::protocol::{ASYNCAPI_PATH, asyncapi_yaml};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `UPDATE_ASYNCAPI=1` (what `make asyncapi` sets) rewrites the file instead of comparing.
#[test]
fn the_document_in_the_repository_is_the_one_the_types_generate() {
    let path = workspace().join(ASYNCAPI_PATH);
    let generated = asyncapi_yaml().expect("the document serializes");
    if std::env::var_os("UPDATE_ASYNCAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/asyncapi.yaml");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{ASYNCAPI_PATH} is stale (or missing): the protocol types or the route table changed. \
         Run `make asyncapi` and commit the result."
    );
}

#[test]
fn the_asyncapi_parser_finds_no_error() {
    let root = workspace();
    let parser = root.join("tests/node_modules/@asyncapi/parser");
    assert!(
        parser.exists(),
        "{} is missing: run `make tools` (npm ci in tests/)",
        parser.display()
    );
    let out = Command::new("node")
        .arg(root.join("tests/asyncapi/validate.cjs"))
        .arg(root.join(ASYNCAPI_PATH))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "@asyncapi/parser refused {ASYNCAPI_PATH}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("errors: 0"), "{stdout}");
}
