//! `synth diff` end to end: pairs of stage files, derived from the shipped ones, synthesized by
//! the `synth` binary into two assemblies and diffed; and how it fails on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped_stage(name: &str) -> String {
    std::fs::read_to_string(workspace().join("stages").join(format!("{name}.toml")))
        .expect("the shipped stage file")
}

fn fixture_stage(name: &str) -> String {
    std::fs::read_to_string(
        workspace()
            .join("synth/tests/fixtures/stages")
            .join(format!("{name}.toml")),
    )
    .expect("the fixture stage file")
}

/// Synthesizes one stage file's text (as stage `dev`) into `{dir}/{label}/cdk.out`.
fn assembly(dir: &Path, label: &str, stage_text: &str) -> PathBuf {
    let stages = dir.join(label).join("stages");
    std::fs::create_dir_all(&stages).expect("mkdir");
    std::fs::write(stages.join("dev.toml"), stage_text).expect("write stage");
    let out = dir.join(label).join("cdk.out");
    let res = Command::new(env!("CARGO_BIN_EXE_synth"))
        .arg("--stages-dir")
        .arg(&stages)
        .arg("--manifest")
        .arg(workspace().join("wsstack.toml"))
        .args(["--stand-in-assets", "-q", "--out"])
        .arg(&out)
        .output()
        .expect("synth runs");
    assert!(
        res.status.success(),
        "synth {label}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

fn diff(old: &Path, new: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synth"))
        .arg("diff")
        .arg(old)
        .arg(new)
        .args(extra)
        .output()
        .expect("synth diff runs")
}

/// The diff of two stage texts: exit status and standard output.
fn diff_stages(old: &str, new: &str, extra: &[&str]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (
        assembly(tmp.path(), "old", old),
        assembly(tmp.path(), "new", new),
    );
    let out = diff(&a, &b, extra);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

/// The indented property lines under the resource line that starts with `resource`.
fn lines_under<'a>(text: &'a str, resource: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with(resource))
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(str::trim)
        .collect()
}

#[test]
fn a_lambda_memory_change_is_an_in_place_update() {
    let dev = shipped_stage("dev");
    let bigger = format!("{dev}\n[lambda.connect]\nmemory_mb = 512\n");
    let (code, out) = diff_stages(&dev, &bigger, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("[~] ConnectFunction AWS::Lambda::Function (in place)\n"),
        "{out}"
    );
    assert_eq!(
        lines_under(&out, "[~] ConnectFunction"),
        ["Properties.MemorySize: 256 -> 512"]
    );
    assert!(!out.contains("replace"), "{out}");
    // Only that function changed.
    assert_eq!(out.matches("[~]").count(), 1, "{out}");
}

#[test]
fn a_custom_domain_name_change_replaces_the_domain_name() {
    let before = fixture_stage("custom-domain");
    let after = before.replace("name = \"chat.example.com\"", "name = \"talk.example.com\"");
    assert_ne!(before, after, "the fixture names chat.example.com");
    let (code, out) = diff_stages(&before, &after, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("[~] CustomDomainName AWS::ApiGatewayV2::DomainName (REPLACES)\n"),
        "{out}"
    );
    assert!(
        lines_under(&out, "[~] CustomDomainName").contains(
            &"Properties.DomainName: \"chat.example.com\" -> \"talk.example.com\"  [replaces]"
        ),
        "{out}"
    );
    // The mapping names the domain by Ref: its template text is the same, but its create-only
    // DomainName gets the new domain at deploy time.
    assert!(
        out.contains("  [~] CustomDomainApiMapping AWS::ApiGatewayV2::ApiMapping (may replace)\n      Properties.DomainName: ${CustomDomainName} (CustomDomainName is replaced)  [may replace]\n"),
        "{out}"
    );
    assert!(out.contains("2 changed (1 replaced)"), "{out}");
}

#[test]
fn removed_and_added_resources_show_as_such() {
    let dev = shipped_stage("dev");
    let with_access_logs = dev.replace(
        "detailed_metrics = false",
        "detailed_metrics = false\naccess_logs = true",
    );
    assert_ne!(dev, with_access_logs);
    let domain = "\n[domain]\nname = \"chat.example.com\"\ncertificate_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666\"\n";
    let with_domain = format!("{dev}{domain}");
    let (code, out) = diff_stages(&with_access_logs, &with_domain, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("  [-] AccessLogGroup AWS::Logs::LogGroup\n"),
        "{out}"
    );
    assert!(
        out.contains("  [+] CustomDomainName AWS::ApiGatewayV2::DomainName\n"),
        "{out}"
    );
    assert!(
        out.contains("  [+] CustomDomainApiMapping AWS::ApiGatewayV2::ApiMapping\n"),
        "{out}"
    );
    assert!(out.contains("Outputs\n"), "{out}");
    assert!(out.contains("  [+] CustomDomainTarget\n"), "{out}");
}

#[test]
fn an_added_iam_action_shows_as_a_grant() {
    // JWT authentication adds the token sweeper, whose role may scan and delete connections.
    let dev = shipped_stage("dev");
    let jwt = dev.replace(
        "mode = \"none\"",
        "mode = \"jwt\"\nissuer = \"https://issuer.example.com/\"\naudience = \"chat\"",
    );
    assert_ne!(dev, jwt);
    let (code, out) = diff_stages(&dev, &jwt, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("\n  + TokenSweeperRole: dynamodb:Scan on ${ConnectionsTable.Arn}\n"),
        "{out}"
    );
    assert!(
        out.contains("\n  + TokenSweeperRole: dynamodb:DeleteItem on ${ConnectionsTable.Arn}\n"),
        "{out}"
    );
    // The other way round, the same lines are revocations.
    let (_, back) = diff_stages(&jwt, &dev, &[]);
    assert!(
        back.contains("\n  - TokenSweeperRole: dynamodb:Scan on ${ConnectionsTable.Arn}\n"),
        "{back}"
    );
}

#[test]
fn identical_inputs_print_nothing_and_exit_0() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dev = shipped_stage("dev");
    let (a, b) = (
        assembly(tmp.path(), "a", &dev),
        assembly(tmp.path(), "b", &dev),
    );
    for (old, new) in [
        (a.clone(), b.clone()),
        (a.join("WsstackDev.template.json"), b.clone()),
        (
            a.join("WsstackDev.template.json"),
            b.join("WsstackDev.template.json"),
        ),
    ] {
        let out = diff(&old, &new, &[]);
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
    }
    let md = diff(&a, &b, &["--format", "markdown"]);
    assert_eq!(md.status.code(), Some(0));
    assert!(md.stdout.is_empty());
}

#[test]
fn markdown_for_a_pull_request() {
    let dev = shipped_stage("dev");
    let bigger = format!("{dev}\n[lambda.connect]\nmemory_mb = 512\n");
    let (code, out) = diff_stages(&dev, &bigger, &["--format", "markdown"]);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with(
            "## synth diff\n\n### `WsstackDev (wsstack-dev)`: 0 added, 0 removed, 1 changed\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("| ~ | `ConnectFunction` | `AWS::Lambda::Function` | in place |\n"),
        "{out}"
    );
    assert!(
        out.contains("- `ConnectFunction` `Properties.MemorySize`: `256` → `512`\n"),
        "{out}"
    );
}

#[test]
fn missing_or_malformed_input_exits_2_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = assembly(tmp.path(), "good", &shipped_stage("dev"));
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let missing = tmp.path().join("nowhere");
    let out = diff(&missing, &good, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "synth diff: error: {}: no such file or directory\n",
            missing.display()
        )
    );
    assert!(out.stdout.is_empty());

    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).expect("mkdir");
    std::fs::write(broken.join("manifest.json"), "{\"artifacts\": {").expect("write");
    let out = diff(&good, &broken, &[]);
    assert_eq!(out.status.code(), Some(2));
    let manifest = broken.join("manifest.json");
    assert!(
        stderr(&out).starts_with(&format!(
            "synth diff: error: {}: malformed JSON: EOF while parsing an object at line 1 column 15",
            manifest.display()
        )),
        "{}",
        stderr(&out)
    );

    let template = good.join("WsstackDev.template.json");
    std::fs::write(&template, "{\"Resources\": {\"A\": {\"Properties\": {}}}}").expect("write");
    let out = diff(&good, &good, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "synth diff: error: {}: `Resources.A` has no string `Type`\n",
            template.display()
        )
    );
}

/// `make diff`'s script refuses what is not a commit, before it creates a worktree, and a
/// missing BASE (the whole run, two builds, is exercised by hand: `make diff BASE=HEAD~1`).
#[test]
fn the_make_diff_script_refuses_a_bad_ref() {
    let script = workspace().join("scripts/diff.sh");
    let out = Command::new(&script)
        .arg("no-such-ref-anywhere")
        .current_dir(workspace())
        .output()
        .expect("the script runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no-such-ref-anywhere is not a commit of this repository"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage = Command::new(&script).output().expect("the script runs");
    assert_eq!(usage.status.code(), Some(2));
}
