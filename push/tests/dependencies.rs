//! Crates that say what they are (issue 16 item 5): only the Lambda binary's crate,
//! `wsstack-lambda`, links Lambda's runtime (`lambda_runtime`, `lambda_http`). The `push` CLI,
//! the handlers' library and the local gateway do not, so a change that pulls either back into
//! them fails here. Read from `cargo metadata`'s resolve graph (normal and build dependencies,
//! for the host platform: other platforms' crates, never downloaded here, would make an offline
//! `cargo metadata` fail), offline: it needs only what `Cargo.lock` already names.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const LAMBDA_RUNTIME_CRATES: [&str; 3] =
    ["lambda_runtime", "lambda_http", "lambda_runtime_api_client"];

/// The workspace's resolve graph: each package id's name and the ids of its normal and build
/// dependencies (dev-dependencies are not linked into the package's own targets).
struct Graph {
    names: HashMap<String, String>,
    linked: HashMap<String, Vec<String>>,
}

fn graph() -> Graph {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host_triple(&cargo), "--manifest-path"])
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| panic!("could not run {cargo} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let names = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (text(&p["id"]), text(&p["name"])))
        .collect();
    let linked = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|node| {
            let deps = node["deps"].as_array().expect("deps");
            let linked = deps
                .iter()
                .filter(|d| is_linked(d))
                .map(|d| text(&d["pkg"]));
            (text(&node["id"]), linked.collect())
        })
        .collect();
    Graph { names, linked }
}

/// The platform cargo builds for by default (`host:` in `cargo -vV`).
fn host_triple(cargo: &str) -> String {
    let out = Command::new(cargo)
        .arg("-vV")
        .output()
        .unwrap_or_else(|e| panic!("could not run {cargo} -vV: {e}"));
    let version = String::from_utf8_lossy(&out.stdout);
    version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no `host:` line in {cargo} -vV: {version}"))
        .trim()
        .to_owned()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}

/// A normal or build dependency (`kind` null or "build"), not a dev-dependency.
fn is_linked(dep: &Value) -> bool {
    let kinds = dep["dep_kinds"].as_array().expect("dep_kinds");
    kinds.iter().any(|k| k["kind"].as_str() != Some("dev"))
}

impl Graph {
    /// The names of every crate `package` links, directly or not.
    fn linked_by(&self, package: &str) -> BTreeSet<String> {
        let root = self
            .names
            .iter()
            .find(|(_, name)| name.as_str() == package)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no package {package} in the workspace"));
        let mut seen = BTreeSet::new();
        let mut pending = vec![root];
        while let Some(id) = pending.pop() {
            for dep in self.linked.get(&id).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    pending.push(dep.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }
}

fn lambda_runtime_crates_linked_by(graph: &Graph, package: &str) -> Vec<&'static str> {
    let linked = graph.linked_by(package);
    LAMBDA_RUNTIME_CRATES
        .into_iter()
        .filter(|c| linked.contains(*c))
        .collect()
}

#[test]
fn push_the_handlers_library_and_the_gateway_link_no_lambda_runtime() {
    let graph = graph();
    for package in ["wsstack-push", "wsstack-handlers", "wsstack-gateway"] {
        assert_eq!(
            lambda_runtime_crates_linked_by(&graph, package),
            Vec::<&str>::new(),
            "{package} links Lambda's runtime; only wsstack-lambda (the bootstrap binary) may"
        );
    }
}

/// The walk above is not vacuous: the Lambda binary's crate does link both.
#[test]
fn the_lambda_binary_crate_links_the_lambda_runtime() {
    let graph = graph();
    assert_eq!(
        lambda_runtime_crates_linked_by(&graph, "wsstack-lambda"),
        LAMBDA_RUNTIME_CRATES
    );
}
