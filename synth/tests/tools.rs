//! The assembly checked by the real tools: `cfn-lint` over every template, the CDK's schema
//! package over the manifests, and the `cdk` CLI reading the assembly. `.ci/run` installs them
//! (pip: cfn-lint; `npm ci --prefix tests`); a missing tool fails the test with what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh assembly of every stage, with stand-in assets.
fn assembly() -> tempfile::TempDir {
    assembly_of(&workspace().join("stages"))
}

/// A fresh assembly of every stage in `stages`, with stand-in assets, in `{tmp}/cdk.out`.
fn assembly_of(stages: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    synth(
        Command::new(env!("CARGO_BIN_EXE_synth"))
            .arg("--stages-dir")
            .arg(stages)
            .args(["--stand-in-assets", "-q", "--out"])
            .arg(tmp.path().join("cdk.out")),
    );
    tmp
}

fn synth(cmd: &mut Command) {
    let out = cmd.output().expect("synth runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(cmd: &mut Command, install: &str) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e}; install it with: {install}"),
    }
}

fn node_tool(name: &str) -> PathBuf {
    let p = workspace().join("tests/node_modules/.bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `npm ci --prefix tests`",
        p.display()
    );
    p
}

fn templates(dir: &Path) -> Vec<PathBuf> {
    let mut t: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".template.json") || n.ends_with(".template.yaml")
        })
        .collect();
    t.sort();
    t
}

#[test]
fn cfn_lint_finds_nothing_in_any_template() {
    let tmp = assembly();
    let files = templates(&tmp.path().join("cdk.out"));
    assert_eq!(files.len(), 6, "three stages, JSON and YAML: {files:?}");
    cfn_lint_clean(&files);
}

/// The optional parts (custom domain, access logs, reserved concurrency: the fixture stage)
/// and the account setup template lint clean too.
#[test]
fn cfn_lint_finds_nothing_in_the_custom_domain_and_account_setup_templates() {
    let tmp = assembly_of(&workspace().join("synth/tests/fixtures/stages"));
    let mut files = templates(&tmp.path().join("cdk.out"));
    synth(
        Command::new(env!("CARGO_BIN_EXE_synth"))
            .arg("--account-setup")
            .arg(tmp.path().join("account-setup"))
            .arg("-q"),
    );
    files.extend(templates(&tmp.path().join("account-setup")));
    assert_eq!(
        files.len(),
        4,
        "a stage and the account setup, JSON and YAML: {files:?}"
    );
    let domain = std::fs::read_to_string(&files[0]).expect("template");
    assert!(
        domain.contains("AWS::ApiGatewayV2::DomainName"),
        "{}",
        files[0].display()
    );
    cfn_lint_clean(&files);
}

fn cfn_lint_clean(files: &[PathBuf]) {
    // Informational rules too (explicit DeletionPolicy on stateful resources and the like).
    let out = run(
        Command::new("cfn-lint")
            .args(["--include-checks", "I", "--"])
            .args(files),
        "pip install cfn-lint",
    );
    assert!(
        out.status.success(),
        "cfn-lint findings (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_cdk_schema_accepts_the_manifest_and_every_asset_manifest() {
    let tmp = assembly();
    let out = run(
        Command::new("node")
            .arg(workspace().join("tests/tools/validate-assembly.js"))
            .arg(tmp.path().join("cdk.out"))
            .current_dir(workspace().join("tests")),
        "Node.js 20 and `npm ci --prefix tests`",
    );
    assert!(
        out.status.success(),
        "schema validation failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary json");
    assert_eq!(
        summary,
        serde_json::json!({"version": "55.0.0", "stacks": 3, "assetManifests": 3})
    );
}

#[test]
fn the_cdk_cli_lists_and_synthesizes_the_assembly() {
    let tmp = assembly();
    let app = tmp.path().join("cdk.out");
    let cdk = node_tool("cdk");
    // No AWS account here: keep the CLI from looking for credentials or phoning home.
    let cdk_cmd = |args: &[&str]| {
        let mut c = Command::new(&cdk);
        c.args(args)
            .arg("--app")
            .arg(&app)
            .args(["--no-notices", "--no-version-reporting"])
            .current_dir(tmp.path())
            .env("CDK_DISABLE_CLI_TELEMETRY", "true")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    };
    let ls = run(&mut cdk_cmd(&["ls"]), "npm ci --prefix tests");
    assert!(
        ls.status.success(),
        "cdk ls failed:\n{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let listed = String::from_utf8_lossy(&ls.stdout);
    for stack in ["WsstackDev", "WsstackStaging", "WsstackProd"] {
        assert!(
            listed.lines().any(|l| l.starts_with(stack)),
            "cdk ls lacks {stack}:\n{listed}"
        );
    }
    let synth = run(&mut cdk_cmd(&["synth", "-q"]), "npm ci --prefix tests");
    assert!(
        synth.status.success(),
        "cdk synth --app cdk.out -q failed:\n{}",
        String::from_utf8_lossy(&synth.stderr)
    );
}

/// `synth diff`'s replacement table (`synth/src/diff/replacement.tsv`) is what cfn-lint's
/// pinned resource schemas say: `scripts/replacement_table.py --check` regenerates it in
/// memory and compares.
#[test]
fn the_replacement_table_matches_cfn_lints_schemas() {
    let out = run(
        Command::new("python3")
            .arg(workspace().join("scripts/replacement_table.py"))
            .arg("--check"),
        "pip install -r tests/requirements.txt (cfn-lint)",
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
