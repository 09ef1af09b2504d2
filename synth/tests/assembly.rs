//! The `synth` binary end to end: what it writes to `cdk.out`, and how it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn stages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages")
}

fn synth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synth"))
        .arg("--stages-dir")
        .arg(stages_dir())
        .args(args)
        .output()
        .expect("synth runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "synth failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

#[test]
fn writes_one_stack_per_stage_with_its_assets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cdk.out");
    ok(synth(&[
        "--stand-in-assets",
        "--out",
        out.to_str().expect("utf8"),
    ]));

    let manifest = read_json(&out.join("manifest.json"));
    assert_eq!(manifest["version"], "55.0.0");
    let artifacts = manifest["artifacts"].as_object().expect("artifacts");
    // Functions: one per route, the fan-out worker, the push API, the forward handler (synth
    // runs where there is no wsstack.toml, so with the built-in manifest, which forwards
    // submitJob), and the authorizer and the token sweeper where the stage authenticates (jwt
    // in staging and prod); the example backend where the stage runs it (dev).
    for (id, stack, protected, functions) in [
        (
            "WsstackDev",
            "wsstack-dev",
            false,
            wsstack_routes::ROUTES.len() + 4,
        ),
        (
            "WsstackStaging",
            "wsstack-staging",
            false,
            wsstack_routes::ROUTES.len() + 5,
        ),
        (
            "WsstackProd",
            "wsstack-prod",
            true,
            wsstack_routes::ROUTES.len() + 5,
        ),
    ] {
        let a = &artifacts[id];
        assert_eq!(a["type"], "aws:cloudformation:stack");
        // The stage file's `termination_protection` (true in prod only).
        assert_eq!(a["properties"]["terminationProtection"], protected, "{id}");
        assert_eq!(a["environment"], "aws://unknown-account/unknown-region");
        assert_eq!(a["properties"]["stackName"], stack);
        assert_eq!(
            a["properties"]["templateFile"],
            format!("{id}.template.json")
        );
        assert_eq!(
            a["dependencies"],
            serde_json::json!([format!("{id}.assets")])
        );
        assert_eq!(
            artifacts[&format!("{id}.assets")]["type"],
            "cdk:asset-manifest"
        );
        assert!(out.join(format!("{id}.template.yaml")).exists());

        // Every function's S3Key is an asset of the asset manifest, and the file is there
        // with that hash.
        let template = read_json(&out.join(format!("{id}.template.json")));
        let assets = read_json(&out.join(format!("{id}.assets.json")));
        let mut keys = 0;
        for (_, r) in template["Resources"].as_object().expect("resources") {
            if r["Type"] != "AWS::Lambda::Function" {
                continue;
            }
            keys += 1;
            let key = r["Properties"]["Code"]["S3Key"].as_str().expect("key");
            let hash = key.strip_suffix(".zip").expect(".zip");
            let asset = &assets["files"][hash];
            assert_eq!(asset["source"]["packaging"], "file");
            let dest = &asset["destinations"]["current_account-current_region"];
            assert_eq!(
                dest["bucketName"],
                "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"
            );
            assert_eq!(dest["objectKey"], key);
            let file = out.join(asset["source"]["path"].as_str().expect("path"));
            assert_eq!(
                hex::encode(Sha256::digest(std::fs::read(file).expect("asset file"))),
                hash
            );
        }
        assert_eq!(keys, functions, "{id}");
        // The stand-in is labelled in the template and in the manifest.
        assert!(
            serde_json::to_string(&template)
                .expect("json")
                .contains("wsstack:stand-in")
        );
        assert_eq!(
            a["metadata"][format!("/{id}")][0]["type"],
            "aws:cdk:warning"
        );
    }
}

#[test]
fn two_runs_are_byte_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    ok(synth(&[
        "--stand-in-assets",
        "-q",
        "--out",
        a.to_str().expect("utf8"),
    ]));
    ok(synth(&[
        "--stand-in-assets",
        "-q",
        "--out",
        b.to_str().expect("utf8"),
    ]));
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between runs");
    }
}

#[test]
fn real_zips_are_hashed_and_not_labelled_stand_in() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lambda = tmp.path().join("lambda");
    std::fs::create_dir_all(lambda.join("bootstrap")).expect("mkdir");
    std::fs::write(lambda.join("bootstrap/bootstrap.zip"), "zip of bootstrap").expect("write");
    // dev runs the example backend ([example_backend]): its own zip.
    std::fs::create_dir_all(lambda.join("job-backend")).expect("mkdir");
    std::fs::write(
        lambda.join("job-backend/bootstrap.zip"),
        "zip of job-backend",
    )
    .expect("write");
    let out = tmp.path().join("cdk.out");
    ok(synth(&[
        "--stage",
        "dev",
        "--lambda-dir",
        lambda.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]));
    let template = read_json(&out.join("WsstackDev.template.json"));
    let hash = hex::encode(Sha256::digest(b"zip of bootstrap"));
    // One zip, shared by every function; each one's Handler picks its route handler.
    for stem in ["Connect", "Disconnect", "SendMessage", "Default"] {
        assert_eq!(
            template["Resources"][format!("{stem}Function")]["Properties"]["Code"]["S3Key"],
            format!("{hash}.zip"),
            "{stem}"
        );
    }
    assert_eq!(
        std::fs::read(out.join(format!("asset.{hash}.zip"))).expect("copied"),
        b"zip of bootstrap"
    );
    let example = hex::encode(Sha256::digest(b"zip of job-backend"));
    assert_eq!(
        template["Resources"]["JobBackendFunction"]["Properties"]["Code"]["S3Key"],
        format!("{example}.zip")
    );
    assert_eq!(
        std::fs::read(out.join(format!("asset.{example}.zip"))).expect("copied"),
        b"zip of job-backend"
    );
    let assets = read_json(&out.join("WsstackDev.assets.json"));
    let names: Vec<&str> = assets["files"]
        .as_object()
        .expect("files")
        .values()
        .filter_map(|f| f["displayName"].as_str())
        .filter(|n| n.ends_with("Code"))
        .collect();
    let mut names = names;
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "WsstackDev Example Backend Code",
            "WsstackDev Handlers Code"
        ]
    );
    // Rebuilding the handlers rewrites their zips in place; the assembly's asset keeps the
    // content its name promises.
    std::fs::write(lambda.join("bootstrap/bootstrap.zip"), "rebuilt").expect("rewrite");
    assert_eq!(
        std::fs::read(out.join(format!("asset.{hash}.zip"))).expect("copied"),
        b"zip of bootstrap"
    );
    assert!(
        !serde_json::to_string(&template)
            .expect("json")
            .contains("wsstack:stand-in")
    );
    let manifest = read_json(&out.join("manifest.json"));
    assert!(
        manifest["artifacts"].get("WsstackProd").is_none(),
        "only the dev stage was asked for"
    );
}

#[test]
fn a_missing_zip_names_the_file_and_the_make_target_and_keeps_the_old_assembly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cdk.out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("previous"), "kept").expect("write");
    let lambda = tmp.path().join("empty");
    let res = synth(&[
        "--lambda-dir",
        lambda.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains("bootstrap/bootstrap.zip does not exist"),
        "{err}"
    );
    assert!(err.contains("`make handlers`"), "{err}");
    assert!(err.contains("--stand-in-assets"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("previous")).expect("untouched"),
        "kept"
    );
}

/// The example backend's zip is needed only where a stage runs it, and then named.
#[test]
fn the_example_backends_zip_is_needed_where_a_stage_runs_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lambda = tmp.path().join("lambda");
    std::fs::create_dir_all(lambda.join("bootstrap")).expect("mkdir");
    std::fs::write(lambda.join("bootstrap/bootstrap.zip"), "zip").expect("write");
    let out = tmp.path().join("cdk.out");
    let run = |stage: &str| {
        synth(&[
            "--stage",
            stage,
            "--lambda-dir",
            lambda.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ])
    };
    let res = run("dev");
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains("job-backend/bootstrap.zip does not exist"),
        "{err}"
    );
    assert!(err.contains("`make handlers`"), "{err}");
    ok(run("prod"));
    let assets = read_json(&out.join("WsstackProd.assets.json"));
    assert_eq!(
        assets["files"].as_object().expect("files").len(),
        2,
        "the handlers' zip and the template: {assets}"
    );
}

#[test]
fn a_bad_stage_file_fails_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stages = tmp.path().join("stages");
    std::fs::create_dir_all(&stages).expect("mkdir");
    std::fs::write(stages.join("dev.toml"), "[lambda]\nmemory_mb = 64\n").expect("write");
    let out = tmp.path().join("cdk.out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("previous"), "kept").expect("write");
    let res = Command::new(env!("CARGO_BIN_EXE_synth"))
        .args(["--stand-in-assets", "--stages-dir"])
        .arg(&stages)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(res.status.code(), Some(1));
    let err = stderr(&res);
    assert!(
        err.contains(
            "dev.toml:2:13: lambda.memory_mb: 64 is out of range: allowed 128..=10240 MiB"
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("previous")).expect("untouched"),
        "kept"
    );
    // No staging folder is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn a_successful_synth_replaces_the_old_assembly_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cdk.out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("stale"), "old").expect("write");
    ok(synth(&[
        "--stand-in-assets",
        "-q",
        "--stage",
        "prod",
        "--out",
        out.to_str().expect("utf8"),
    ]));
    assert!(!out.join("stale").exists());
    assert!(out.join("WsstackProd.template.json").exists());
}

#[test]
fn an_unknown_stage_lists_the_known_ones() {
    let res = synth(&[
        "--stand-in-assets",
        "--stage",
        "qa",
        "--out",
        "/nonexistent/never-written",
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(stderr(&res).contains("no stage `qa`"), "{}", stderr(&res));
    assert!(
        stderr(&res).contains("(stages found: dev, prod, staging)"),
        "{}",
        stderr(&res)
    );
}

#[test]
fn pinning_the_environment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cdk.out");
    ok(synth(&[
        "--stand-in-assets",
        "-q",
        "--stage",
        "dev",
        "--account",
        "123456789012",
        "--region",
        "eu-west-1",
        "--out",
        out.to_str().expect("utf8"),
    ]));
    let manifest = read_json(&out.join("manifest.json"));
    assert_eq!(
        manifest["artifacts"]["WsstackDev"]["environment"],
        "aws://123456789012/eu-west-1"
    );
    let assets = read_json(&out.join("WsstackDev.assets.json"));
    for (_, file) in assets["files"].as_object().expect("files") {
        assert_eq!(
            file["destinations"]["123456789012-eu-west-1"]["region"],
            "eu-west-1"
        );
    }

    let res = synth(&[
        "--stand-in-assets",
        "--account",
        "12345",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(
        stderr(&res).contains("--account `12345` is not an AWS account ID (12 digits)"),
        "{}",
        stderr(&res)
    );
}

#[test]
fn help_explains_every_flag() {
    let res = Command::new(env!("CARGO_BIN_EXE_synth"))
        .arg("--help")
        .output()
        .expect("runs");
    assert!(res.status.success());
    let help = String::from_utf8_lossy(&res.stdout);
    for flag in [
        "--stage",
        "--all",
        "--stages-dir",
        "--out",
        "--lambda-dir",
        "--stand-in-assets",
        "--account",
        "--region",
        "--quiet",
        "--manifest",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("make handlers"));
}

/// Runs the `synth` binary with exactly `args` (no `--stages-dir` put first: subcommands come
/// before their flags).
fn synth_raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synth"))
        .args(args)
        .output()
        .expect("synth runs")
}

#[test]
fn help_lists_the_subcommands() {
    let help = String::from_utf8_lossy(&ok(synth_raw(&["--help"])).stdout).into_owned();
    for sub in ["build", "needs", "account-setup"] {
        assert!(help.contains(sub), "--help lacks {sub}:\n{help}");
    }
    let build_help =
        String::from_utf8_lossy(&ok(synth_raw(&["build", "--help"])).stdout).into_owned();
    for flag in [
        "--stage",
        "--out",
        "--stand-in-assets",
        "--account",
        "--region",
    ] {
        assert!(build_help.contains(flag), "build --help lacks {flag}");
    }
}

#[test]
fn build_is_what_synth_without_a_subcommand_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (plain, sub) = (dir.path().join("plain"), dir.path().join("sub"));
    let stages = stages_dir();
    let stages = stages.to_str().expect("utf-8 path");
    let common = [
        "--stages-dir",
        stages,
        "--stage",
        "dev",
        "--stand-in-assets",
        "-q",
    ];
    ok(synth_raw(
        &[&common[..], &["--out", plain.to_str().expect("utf-8")]].concat(),
    ));
    ok(synth_raw(
        &[
            &["build"][..],
            &common[..],
            &["--out", sub.to_str().expect("utf-8")],
        ]
        .concat(),
    ));
    for file in ["manifest.json", "WsstackDev.template.json"] {
        assert_eq!(
            std::fs::read(plain.join(file)).expect("plain"),
            std::fs::read(sub.join(file)).expect("sub"),
            "{file}"
        );
    }
}

#[test]
fn needs_prints_what_a_stage_asks_of_the_account() {
    let stages = stages_dir();
    let stages = stages.to_str().expect("utf-8 path");
    let out = ok(synth_raw(&[
        "needs",
        "--stages-dir",
        stages,
        "--stage",
        "prod",
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    let prod = wsstack_synth::stage::load(&stages_dir(), "prod").expect("prod");
    assert_eq!(line, prod.account_needs());
    // The spelling deploy.py used before the subcommands still answers the same.
    let old = ok(synth_raw(&[
        "--stages-dir",
        stages,
        "--stage",
        "prod",
        "--account-needs",
    ]));
    assert_eq!(String::from_utf8_lossy(&old.stdout), text);
    // Every stage without --stage: one line each.
    let all = ok(synth_raw(&["needs", "--stages-dir", stages]));
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 3);
}

#[test]
fn account_setup_writes_its_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(synth_raw(&[
        "account-setup",
        dir.path().to_str().expect("utf-8"),
        "-q",
    ]));
    let template = read_json(&dir.path().join("WsstackAccountSetup.template.json"));
    assert!(
        template["Resources"]
            .as_object()
            .is_some_and(|r| !r.is_empty())
    );
}

#[test]
fn flags_before_a_subcommand_are_refused_with_a_message() {
    let res = synth_raw(&["--stage", "dev", "needs"]);
    assert!(!res.status.success());
    let err = stderr(&res);
    assert!(err.contains("needs") || err.contains("subcommand"), "{err}");
    let res = synth_raw(&["account-setup"]);
    assert!(!res.status.success());
    assert!(stderr(&res).contains("<DIR>"), "{}", stderr(&res));
}

/// Issue 17: `--manifest` names the app manifest; a manifest without forwarded actions gives
/// stacks without the bus and the forward handler, the workspace's gives them; a bad one fails
/// with its file and line before anything is written.
#[test]
fn the_manifest_flag_picks_the_forwarded_actions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |manifest: &Path, stage: &str, out: &str| {
        let out = dir.path().join(out);
        let res = synth(&[
            "--stand-in-assets",
            "--quiet",
            "--stage",
            stage,
            "--manifest",
            manifest.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ]);
        (res, out)
    };
    let template = |manifest: &Path, stage: &str, out: &str| {
        let (res, out) = run(manifest, stage, out);
        ok(res);
        let id = format!("Wsstack{}{}", stage[..1].to_uppercase(), &stage[1..]);
        read_json(&out.join(format!("{id}.template.json")))
    };
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "# no forwarded actions\n").expect("write");
    let t = template(&empty, "prod", "empty.out");
    assert!(t["Resources"].get("EventBus").is_none());
    assert!(t["Resources"].get("ForwardFunction").is_none());
    assert!(t["Resources"].get("PushApi").is_some());
    // dev runs the example backend, which needs submitJob forwarded: the error says so.
    let (res, out) = run(&empty, "dev", "empty-dev.out");
    assert_eq!(res.status.code(), Some(1));
    let e = stderr(&res);
    assert!(
        e.contains("stage `dev`: [example_backend] enabled = true, but the app manifest does not forward `submitJob`"),
        "{e}"
    );
    assert!(!out.exists());

    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsstack.toml");
    let t = template(&shipped, "dev", "shipped.out");
    assert_eq!(
        t["Resources"]["ForwardSubmitJobRoute"]["Properties"]["RouteKey"],
        "submitJob"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[forward]]\nname = \"sendMessage\"\n").expect("write");
    let out = dir.path().join("bad.out");
    let res = synth(&[
        "--stand-in-assets",
        "--manifest",
        bad.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(!res.status.success());
    let e = stderr(&res);
    assert!(
        e.contains(&format!(
            "{}:2:8: forward[0].name: `sendMessage` is a built-in route",
            bad.display()
        )),
        "{e}"
    );
    assert!(!out.exists());
}

/// Issue 17: a second forwarded action added to the manifest alone (no Rust change) is routed
/// as a two-way route, reaches the forward function (its permission and FORWARDED_ACTIONS) in
/// every stage.
#[test]
fn an_action_added_to_the_manifest_alone_is_routed_and_forwarded_in_every_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("wsstack.toml");
    std::fs::write(
        &manifest,
        "[[forward]]\nname = \"submitJob\"\n\n[[forward]]\nname = \"placeOrder\"\nmax_data_bytes = 4096\n",
    )
    .expect("write");
    let out = dir.path().join("out");
    ok(synth(&[
        "--stand-in-assets",
        "--quiet",
        "--all",
        "--manifest",
        manifest.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]));
    for stack in ["WsstackDev", "WsstackStaging", "WsstackProd"] {
        let t = read_json(&out.join(format!("{stack}.template.json")));
        let r = &t["Resources"];
        let route = &r["ForwardPlaceOrderRoute"]["Properties"];
        assert_eq!(route["RouteKey"], "placeOrder", "{stack}");
        assert_eq!(
            route["RouteResponseSelectionExpression"], "$default",
            "{stack}"
        );
        assert_eq!(
            r["ForwardPlaceOrderRouteResponse"]["Properties"]["RouteResponseKey"], "$default",
            "{stack}"
        );
        assert!(r.get("ForwardPlaceOrderPermission").is_some(), "{stack}");
        let env = &r["ForwardFunction"]["Properties"]["Environment"]["Variables"];
        let actions: Vec<serde_json::Value> = serde_json::from_str(
            env["FORWARDED_ACTIONS"]
                .as_str()
                .expect("FORWARDED_ACTIONS"),
        )
        .expect("JSON");
        let names: Vec<&str> = actions.iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(names, ["submitJob", "placeOrder"], "{stack}");
        assert_eq!(actions[1]["maxDataBytes"], 4096, "{stack}");
    }
}
