//! The deploy path (`scripts/deploy.py`, what `make deploy` runs after synth), rehearsed against
//! moto with dummy credentials: the assets bucket is created, the assets land under the keys the
//! asset manifest names, `aws cloudformation deploy` completes, and what CloudFormation created
//! matches the stage file. A second deploy with a changed stage file updates in place.
//!
//! Issue 8 is rehearsed here too: the preflight checks (reserved concurrency against the
//! account's unreserved concurrency, access logs against API Gateway's CloudWatch role), the
//! `AssetsBucket` parameter passed on every deploy, and termination protection.
//!
//! moto silently skips every `AWS::ApiGatewayV2::*` resource (API, routes, integrations,
//! stage): those are checked by synth's snapshot, assertion and cfn-lint tests instead.
//!
//! A test double stands in front of the aws CLI for the two calls moto does not implement
//! (moto 5.2 answers 404 to `lambda get-account-settings` and 500 to `cloudformation
//! update-termination-protection`): it answers the first with the account limits the test
//! scripts (a new account's quota of 10 by default), records the second, and passes every other
//! call to the real CLI and moto. `apigateway get-account` is moto's own (no CloudWatch role). The
//! functions' code is a small valid zip per handler rather than the arm64 build, which CI does
//! not make; what matters here is that each function points at its own asset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wsstack_routes::{Handler, ROUTES, Table};
use wsstack_synth::assembly::{self, Environment};
use wsstack_synth::assets::{self, AssetSource};
use wsstack_synth::stack::fanout_queue;
use wsstack_synth::stage;
use wsstack_tests::moto::{MOTO_ACCOUNT, MOTO_REGION, Moto};

/// A bucket of the user's own (ASSETS_BUCKET), created by the first deploy.
const BUCKET: &str = "wsstack-rehearsal-assets";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A working folder: a copy of the stage files, handler "zips", and the assembly.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let stages = dir.path().join("stages");
        std::fs::create_dir_all(&stages).expect("mkdir");
        for name in ["dev", "staging", "prod"] {
            std::fs::copy(
                workspace().join("stages").join(format!("{name}.toml")),
                stages.join(format!("{name}.toml")),
            )
            .expect("copy stage file");
        }
        let zip = assets::zip_path(&dir.path().join("lambda"));
        std::fs::create_dir_all(zip.parent().expect("parent")).expect("mkdir");
        // A valid zip built like synth's stand-in but taken from disk as a real build's would
        // be, so it is not labelled a stand-in.
        std::fs::write(&zip, assets::stand_in_zip()).expect("write zip");
        // dev runs the example backend ([example_backend]): its zip, with a comment so that it
        // differs from the handlers'.
        let example =
            assets::binary_zip_path(&dir.path().join("lambda"), assets::EXAMPLE_BACKEND_BINARY);
        std::fs::create_dir_all(example.parent().expect("parent")).expect("mkdir");
        std::fs::write(&example, with_comment(b"job-backend")).expect("write zip");
        Project { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Synthesizes every stage into `cdk.out`, as `make synth` does.
    fn synth(&self, source: AssetSource) {
        let stages = stage::load_all(&self.path("stages")).expect("stages");
        let manifest = stage::manifest::embedded().expect("manifest");
        let stacks = assembly::synthesize(&stages, &manifest, &source, &Environment::default())
            .expect("synth");
        let files = assembly::render(&stacks).expect("render");
        assembly::write(&files, &self.path("cdk.out")).expect("write");
    }

    fn synth_real(&self) {
        self.synth(AssetSource::Built(self.path("lambda")));
    }

    fn deploy(&self, moto: &Moto, action: &str, stage: &str, extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("python3");
        cmd.arg(workspace().join("scripts/deploy.py"))
            .args([action, "--stage", stage, "--cdk-out"])
            .arg(self.path("cdk.out"))
            .arg("--stages-dir")
            .arg(self.path("stages"))
            .envs(moto.aws_env())
            .envs(self.aws_double_env())
            .env_remove("AWS_PROFILE");
        // What `synth --account-needs` prints, from the same library, so check does not build
        // synth inside the test (a bad stage file is left to deploy.py to report).
        if action == "check"
            && let Ok(s) = wsstack_synth::stage::load(&self.path("stages"), stage)
        {
            cmd.args(["--needs", &s.account_needs().to_string()]);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("python3 runs")
    }

    /// deploy.py pointed at the aws CLI double (WSSTACK_AWS_CLI), and the double's settings: where the real CLI is, where it
    /// records calls, and the account limits it answers with (a new account: quota 10).
    fn aws_double_env(&self) -> Vec<(&'static str, String)> {
        let bin = self.path("aws-double");
        if !bin.join("aws").exists() {
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::write(bin.join("aws"), AWS_DOUBLE).expect("write double");
            let mut perms = std::fs::metadata(bin.join("aws"))
                .expect("meta")
                .permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(bin.join("aws"), perms).expect("chmod");
        }
        let real = which("aws");
        vec![
            ("WSSTACK_AWS_CLI", bin.join("aws").display().to_string()),
            ("AWS_DOUBLE_REAL", real.display().to_string()),
            (
                "AWS_DOUBLE_LOG",
                self.path("aws-double/calls.jsonl").display().to_string(),
            ),
            (
                "AWS_DOUBLE_ACCOUNT_SETTINGS",
                NEW_ACCOUNT_SETTINGS.to_owned(),
            ),
        ]
    }

    /// Every call the double recorded, each as its argument list.
    fn all_recorded_calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path("aws-double/calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Vec<String>>(l).expect("call json"))
            .collect()
    }

    /// The calls the double recorded, each as its argument list.
    fn recorded_calls(&self, first_two: [&str; 2]) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path("aws-double/calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Vec<String>>(l).expect("call json"))
            .filter(|c| c.len() >= 2 && c[0] == first_two[0] && c[1] == first_two[1])
            .collect()
    }
}

/// What `aws lambda get-account-settings` tells a brand-new account: a concurrency quota of 10,
/// all of it unreserved.
const NEW_ACCOUNT_SETTINGS: &str = r#"{"AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800, "ConcurrentExecutions": 10, "UnreservedConcurrentExecutions": 10}, "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0}}"#;

/// The aws CLI test double (see the module docs): answers `lambda get-account-settings` with
/// AWS_DOUBLE_ACCOUNT_SETTINGS, records `cloudformation update-termination-protection`, and
/// runs the real CLI for everything else. Every call is logged to AWS_DOUBLE_LOG.
const AWS_DOUBLE: &str = r#"#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AWS_DOUBLE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:2] == ["lambda", "get-account-settings"]:
    print(os.environ["AWS_DOUBLE_ACCOUNT_SETTINGS"])
    sys.exit(0)
if args[:2] == ["cloudformation", "update-termination-protection"]:
    sys.exit(0)
# AWS_DOUBLE_FOREIGN_BUCKET: a bucket of another account (moto does not check owners). Like S3
# (bucket-owner-condition.html), a request naming another expected owner is refused with 403.
foreign = os.environ.get("AWS_DOUBLE_FOREIGN_BUCKET")
if foreign and args[:1] == ["s3api"] and "--expected-bucket-owner" in args:
    if args[args.index("--bucket") + 1] == foreign and args[args.index("--expected-bucket-owner") + 1] != "210987654321":
        operation = {"head-bucket": "HeadBucket", "put-object": "PutObject"}.get(args[1], args[1])
        print(f"An error occurred (403) when calling the {operation} operation: Forbidden", file=sys.stderr)
        sys.exit(254)
real = os.environ["AWS_DOUBLE_REAL"]
os.execv(real, [real, *args])
"#;

/// The first `name` on PATH.
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{name} is not on PATH (pip install awscli)"))
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed (exit {:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clear failure: {out:?}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the aws CLI against moto and parses its JSON answer.
fn aws(moto: &Moto, args: &[&str]) -> Value {
    moto.aws(args)
}

/// An IAM policy document as moto returns it: a JSON object, or a string holding JSON or (a
/// moto quirk) a Python dict's repr with single quotes.
fn policy_document(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s)
            .or_else(|_| serde_json::from_str(&s.replace('\'', "\"")))
            .unwrap_or_else(|e| panic!("unparseable policy document {s}: {e}")),
        other => other.clone(),
    }
}

fn bucket_keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let listing = aws(moto, &["s3api", "list-objects-v2", "--bucket", bucket]);
    let mut keys: Vec<String> = listing["Contents"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|o| o["Key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

fn buckets(moto: &Moto) -> Vec<String> {
    aws(moto, &["s3api", "list-buckets"])["Buckets"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|x| x["Name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Logical ID -> physical ID of the stack's resources.
fn physical_ids(moto: &Moto, stack: &str) -> std::collections::BTreeMap<String, String> {
    aws(
        moto,
        &[
            "cloudformation",
            "list-stack-resources",
            "--stack-name",
            stack,
        ],
    )["StackResourceSummaries"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| {
            Some((
                r["LogicalResourceId"].as_str()?.to_owned(),
                r["PhysicalResourceId"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

const BOOTSTRAP_BUCKET: &str = "cdk-hnb659fds-assets-123456789012-us-east-1";

/// The `update-termination-protection` call deploy.py makes for a stack.
fn protection_call(stack: &str, on: bool) -> Vec<String> {
    let flag = if on {
        "--enable-termination-protection"
    } else {
        "--no-enable-termination-protection"
    };
    [
        "cloudformation",
        "update-termination-protection",
        "--stack-name",
        stack,
        flag,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// New code, unlike any zip deployed before: the same zip with an archive comment (a zip
/// without a comment ends in its 22-byte end record, whose last two bytes are the comment's
/// length).
fn rebuild_zip(project: &Project) {
    std::fs::write(
        assets::zip_path(&project.path("lambda")),
        with_comment(b"rebuilt"),
    )
    .expect("write zip");
}

/// The stand-in zip with an archive comment: valid, and unlike any other.
fn with_comment(comment: &[u8]) -> Vec<u8> {
    let mut zip = assets::stand_in_zip();
    assert_eq!(
        &zip[zip.len() - 2..],
        [0, 0],
        "the zip already has a comment"
    );
    let len = u16::try_from(comment.len()).expect("short comment");
    zip.truncate(zip.len() - 2);
    zip.extend_from_slice(&len.to_le_bytes());
    zip.extend_from_slice(comment);
    zip
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn deploy_rehearsal_against_moto() {
    let moto = Moto::start();
    let project = Project::new();
    project.synth_real();

    let out = ok(project.deploy(&moto, "deploy", "dev", &[("ASSETS_BUCKET", BUCKET)]));
    assert!(out.contains(&format!("creating bucket {BUCKET}")), "{out}");
    assert!(
        out.contains(&format!("account {MOTO_ACCOUNT}, {MOTO_REGION}")),
        "{out}"
    );

    // Every asset of the asset manifest is in the bucket under its key, and nothing else.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(project.path("cdk.out/WsstackDev.assets.json")).expect("assets"),
    )
    .expect("json");
    let mut expected: Vec<String> = manifest["files"]
        .as_object()
        .expect("files")
        .values()
        .map(|f| {
            f["destinations"]["current_account-current_region"]["objectKey"]
                .as_str()
                .expect("key")
                .to_owned()
        })
        .collect();
    expected.sort();
    assert_eq!(
        expected.len(),
        3,
        "the handlers' zip, the example backend's (dev's [example_backend]) and the template"
    );
    // deploy.py hands CloudFormation the template without white space. Only when even that is
    // over CloudFormation's 51,200-byte inline limit is it passed with `--s3-bucket`, and
    // `aws cloudformation deploy` then uploads its own copy, `{md5}.template`: that copy,
    // holding the template, is the only other object.
    let template =
        std::fs::read(project.path("cdk.out/WsstackDev.template.json")).expect("template");
    let compact = serde_json::to_vec(
        &serde_json::from_slice::<Value>(&template).expect("the template is JSON"),
    )
    .expect("serializes");
    let mut keys = bucket_keys(&moto, BUCKET);
    if compact.len() > 51_200 {
        let copies: Vec<String> = keys
            .iter()
            .filter(|k| k.ends_with(".template"))
            .cloned()
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "one CLI copy of the large template: {keys:?}"
        );
        let copy = Command::new("aws")
            .args(["s3", "cp", &format!("s3://{BUCKET}/{}", copies[0]), "-"])
            .envs(moto.aws_env())
            .output()
            .expect("the aws CLI runs");
        assert!(
            copy.status.success(),
            "{}",
            String::from_utf8_lossy(&copy.stderr)
        );
        let parse = |bytes: &[u8]| -> Value { serde_json::from_slice(bytes).expect("JSON") };
        assert_eq!(
            parse(&copy.stdout),
            parse(&template),
            "the CLI's copy is the template"
        );
        keys.retain(|k| k != &copies[0]);
    }
    assert_eq!(keys, expected);

    let ids = physical_ids(&moto, "wsstack-dev");
    let stage = stage::load(&project.path("stages"), "dev").expect("dev stage");

    // The table: key schema, TTL, billing mode.
    let table_name = ids.get("ConnectionsTable").expect("table created");
    let table = &aws(
        &moto,
        &["dynamodb", "describe-table", "--table-name", table_name],
    )["Table"];
    assert_eq!(
        table["KeySchema"],
        serde_json::json!([{"AttributeName": "connectionId", "KeyType": "HASH"}])
    );
    assert_eq!(
        table["BillingModeSummary"]["BillingMode"],
        "PAY_PER_REQUEST"
    );
    // moto's CloudFormation does not apply `TimeToLiveSpecification` (the table reports TTL
    // DISABLED), so check the template CloudFormation holds for the stack instead.
    let deployed = aws(
        &moto,
        &[
            "cloudformation",
            "get-template",
            "--stack-name",
            "wsstack-dev",
        ],
    );
    let body: Value = match &deployed["TemplateBody"] {
        Value::String(s) => serde_json::from_str(s).expect("template json"),
        other => other.clone(),
    };
    assert_eq!(
        body["Resources"]["ConnectionsTable"]["Properties"]["TimeToLiveSpecification"],
        serde_json::json!({"AttributeName": "expiresAt", "Enabled": true})
    );
    let table_arn = table["TableArn"].clone();
    // Issue 17: the user index, keyed by userId.
    let gsis = table["GlobalSecondaryIndexes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(gsis.len(), 1, "{table}");
    assert_eq!(gsis[0]["IndexName"], "byUser");
    assert_eq!(
        gsis[0]["KeySchema"],
        serde_json::json!([{"AttributeName": "userId", "KeyType": "HASH"}])
    );

    // Issue 17: the bridge's bus (the shipped manifest forwards submitJob), and the rule
    // that sends replies on it to the fan-out queue.
    let bus = aws(
        &moto,
        &["events", "describe-event-bus", "--name", "wsstack-dev-bus"],
    );
    assert_eq!(bus["Name"], "wsstack-dev-bus");
    let rule = ids.get("PushReplyRule").expect("reply rule created");
    let rule_name = rule.rsplit('|').next().unwrap_or(rule);
    let targets = aws(
        &moto,
        &[
            "events",
            "list-targets-by-rule",
            "--rule",
            rule_name,
            "--event-bus-name",
            "wsstack-dev-bus",
        ],
    );
    assert!(
        targets["Targets"][0]["Arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:sqs:")),
        "{targets}"
    );

    // The rooms table: keyed by room, then connection.
    let rooms_table_name = ids.get("RoomsTable").expect("rooms table created");
    let rooms_table = &aws(
        &moto,
        &[
            "dynamodb",
            "describe-table",
            "--table-name",
            rooms_table_name,
        ],
    )["Table"];
    assert_eq!(
        rooms_table["KeySchema"],
        serde_json::json!([
            {"AttributeName": "room", "KeyType": "HASH"},
            {"AttributeName": "connectionId", "KeyType": "RANGE"}
        ])
    );
    let rooms_table_arn = rooms_table["TableArn"].clone();

    // dev authenticates nobody: a function per route, no authorizer.
    for h in ROUTES.iter().map(|r| r.handler) {
        let stem = h.logical_id_stem();
        let settings = stage.function(h);
        let name = ids
            .get(&format!("{stem}Function"))
            .expect("function created");
        let f = &aws(&moto, &["lambda", "get-function", "--function-name", name])["Configuration"];
        assert_eq!(f["Runtime"], "provided.al2023", "{stem}");
        assert_eq!(f["Handler"], h.name(), "{stem}");
        // moto's CloudFormation drops `Architectures` (the function reports x86_64): check what
        // CloudFormation was given.
        assert_eq!(
            body["Resources"][format!("{stem}Function")]["Properties"]["Architectures"],
            serde_json::json!(["arm64"]),
            "{stem}"
        );
        assert_eq!(f["MemorySize"], settings.memory_mb, "{stem}");
        assert_eq!(f["Timeout"], settings.timeout_seconds, "{stem}");
        assert_eq!(
            f["Environment"]["Variables"]["TABLE_NAME"],
            table_name.as_str(),
            "{stem}"
        );
        // The code is the handlers' one asset: Lambda's CodeSha256 is base64(sha256(zip)).
        let zip = std::fs::read(assets::zip_path(&project.path("lambda"))).expect("zip");
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip));
        assert_eq!(f["CodeSha256"], sha.as_str(), "{stem} runs other code");

        // The role: exactly the table actions the handler calls.
        let role = ids.get(&format!("{stem}Role")).expect("role created");
        let policies =
            aws(&moto, &["iam", "list-role-policies", "--role-name", role])["PolicyNames"].clone();
        let mut names: Vec<&str> = policies
            .as_array()
            .expect("names")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        names.sort();
        let mut want = vec!["WriteOwnLogs"];
        for (table, policy) in [
            (Table::Connections, "ConnectionsTable"),
            (Table::Rooms, "RoomsTable"),
        ] {
            if !h.table_actions(table).is_empty() {
                want.push(policy);
            }
        }
        if !h.management_operations().is_empty() {
            want.push("ManageConnections");
        }
        if !h.queue_actions().is_empty() {
            want.push(fanout_queue::QUEUE_POLICY);
        }
        want.sort();
        assert_eq!(names, want, "{stem}");
        for (table, policy, arn) in [
            (Table::Connections, "ConnectionsTable", &table_arn),
            (Table::Rooms, "RoomsTable", &rooms_table_arn),
        ] {
            if h.table_actions(table).is_empty() {
                continue;
            }
            let doc = policy_document(
                &aws(
                    &moto,
                    &[
                        "iam",
                        "get-role-policy",
                        "--role-name",
                        role,
                        "--policy-name",
                        policy,
                    ],
                )["PolicyDocument"],
            );
            let statement = &doc["Statement"][0];
            let actions: Vec<&str> = match &statement["Action"] {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                other => panic!("unexpected Action {other}"),
            };
            let expected: Vec<&str> = h
                .table_actions(table)
                .iter()
                .map(|a| a.iam_action())
                .collect();
            assert_eq!(actions, expected, "{stem} {policy}");
            assert_eq!(statement["Resource"], *arn, "{stem}: only its table");
        }

        // A handler that is not a route (the fan-out worker) has no invoke permission: its
        // event source mapping invokes it.
        let Some(route) = h.route() else {
            continue;
        };
        // The invoke permission exists for API Gateway, scoped by a source ARN.
        let policy = aws(&moto, &["lambda", "get-policy", "--function-name", name]);
        let policy: Value =
            serde_json::from_str(policy["Policy"].as_str().expect("policy")).expect("policy json");
        let statement = &policy["Statement"][0];
        assert_eq!(
            statement["Principal"]["Service"], "apigateway.amazonaws.com",
            "{stem}"
        );
        // The API's ID stays `${WebSocketApi}` in moto, which skips the API; the route and
        // stage part is what this checks.
        let source = statement["Condition"]["ArnLike"]["AWS:SourceArn"]
            .as_str()
            .unwrap_or_default();
        let route_key = route.key;
        assert!(
            source.ends_with(&format!("/dev/{route_key}")),
            "{stem}: {statement}"
        );
    }

    // The fan-out queue: hidden 6x the worker's timeout, dead-lettered after the stage's
    // receives; the worker's event source mapping reads it.
    let queue_url = ids.get("FanoutQueue").expect("fan-out queue created");
    let attributes = &aws(
        &moto,
        &[
            "sqs",
            "get-queue-attributes",
            // The aws CLI sends SQS calls to the queue URL's host unless told otherwise.
            "--endpoint-url",
            &moto.endpoint(),
            "--queue-url",
            queue_url,
            "--attribute-names",
            "All",
        ],
    )["Attributes"];
    let worker_timeout = stage.function(Handler::FanoutWorker).timeout_seconds;
    assert_eq!(
        attributes["VisibilityTimeout"],
        (6 * worker_timeout).to_string()
    );
    let redrive: Value = serde_json::from_str(
        attributes["RedrivePolicy"]
            .as_str()
            .expect("a redrive policy"),
    )
    .expect("redrive JSON");
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        stage.fanout.max_receive_count.to_string()
    );
    let worker = ids.get("FanoutWorkerFunction").expect("worker created");
    let mappings = aws(
        &moto,
        &[
            "lambda",
            "list-event-source-mappings",
            "--function-name",
            worker,
        ],
    )["EventSourceMappings"]
        .clone();
    let mappings = mappings.as_array().expect("mappings");
    assert_eq!(mappings.len(), 1, "{mappings:?}");
    assert_eq!(mappings[0]["EventSourceArn"], attributes["QueueArn"]);

    // Termination protection follows the manifest: off for dev (turned off explicitly, so
    // switching it off in a stage file takes effect).
    assert_eq!(
        project.recorded_calls(["cloudformation", "update-termination-protection"]),
        [protection_call("wsstack-dev", false)]
    );

    // Issue 8, item 3: `cloudformation deploy` keeps a parameter's previous value when it is
    // not passed. Deploy again without ASSETS_BUCKET, with new code: the functions must read
    // the bootstrap bucket, where only the new zips are.
    aws(
        &moto,
        &["s3api", "create-bucket", "--bucket", BOOTSTRAP_BUCKET],
    );
    rebuild_zip(&project);
    // A second deploy with a changed stage file updates in place: the same table.
    let dev = project.path("stages/dev.toml");
    let text = std::fs::read_to_string(&dev)
        .expect("read")
        .replace("memory_mb = 256", "memory_mb = 384");
    std::fs::write(&dev, text).expect("write");
    project.synth_real();
    let out = ok(project.deploy(&moto, "deploy", "dev", &[]));
    assert!(out.contains(&format!("s3://{BOOTSTRAP_BUCKET}/")), "{out}");
    let params = aws(
        &moto,
        &[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            "wsstack-dev",
        ],
    )["Stacks"][0]["Parameters"]
        .clone();
    assert_eq!(
        params,
        serde_json::json!([{"ParameterKey": "AssetsBucket", "ParameterValue": ""}]),
        "AssetsBucket kept its previous value"
    );
    let again = physical_ids(&moto, "wsstack-dev");
    let zip = std::fs::read(assets::zip_path(&project.path("lambda"))).expect("zip");
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip));
    for h in ROUTES.iter().map(|r| r.handler) {
        let name = again
            .get(&format!("{}Function", h.logical_id_stem()))
            .expect("function");
        let f = &aws(&moto, &["lambda", "get-function", "--function-name", name]);
        assert_eq!(
            f["Configuration"]["CodeSha256"],
            sha.as_str(),
            "{h:?} still runs the code of the first deploy"
        );
        let key = format!("{}.zip", hex_sha256(&zip));
        assert!(
            bucket_keys(&moto, BOOTSTRAP_BUCKET).contains(&key),
            "{h:?}: {key} not in the bootstrap bucket"
        );
        assert!(
            !bucket_keys(&moto, BUCKET).contains(&key),
            "{h:?}: {key} went to the old bucket"
        );
    }
    assert_eq!(
        again.get("ConnectionsTable"),
        Some(table_name),
        "the table was replaced"
    );
    let table_again = &aws(
        &moto,
        &["dynamodb", "describe-table", "--table-name", table_name],
    )["Table"];
    assert_eq!(table_again["TableArn"], table_arn);
    assert_eq!(table_again["CreationDateTime"], table["CreationDateTime"]);
    let connect = again.get("ConnectFunction").expect("function");
    let f = aws(
        &moto,
        &[
            "lambda",
            "get-function-configuration",
            "--function-name",
            connect,
        ],
    );
    assert_eq!(f["MemorySize"], 384, "the stage change was deployed");

    // Issue 8, item 7: termination protection from the stage file, applied by deploy.py.
    // (With a template change too: moto answers an empty change set with an error, where
    // CloudFormation lets `deploy --no-fail-on-empty-changeset` pass.)
    let text = std::fs::read_to_string(&dev)
        .expect("read")
        .replace("memory_mb = 384", "memory_mb = 512");
    std::fs::write(&dev, format!("termination_protection = true\n{text}")).expect("write");
    project.synth_real();
    ok(project.deploy(&moto, "deploy", "dev", &[]));
    assert_eq!(
        project
            .recorded_calls(["cloudformation", "update-termination-protection"])
            .last(),
        Some(&protection_call("wsstack-dev", true))
    );

    // Issue 19: `deploy.py diff` compares the template the stack holds with the assembly's,
    // through `synth diff`: nothing to show right after the deploy, then a memory change made
    // in the assembly shows as an in-place change of that property (exit 1).
    let synth_bin = wsstack_tests::package_binary("wsstack-synth", "synth");
    let synth_env = [("WSSTACK_SYNTH", synth_bin.to_str().expect("utf8 path"))];
    let same = project.deploy(&moto, "diff", "dev", &synth_env);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&same.stdout),
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(
        same.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    let path = project.path("cdk.out/WsstackDev.template.json");
    let mut changed: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("template")).expect("json");
    changed["Resources"]["SendMessageFunction"]["Properties"]["MemorySize"] =
        serde_json::json!(2048);
    std::fs::write(&path, serde_json::to_vec(&changed).expect("json")).expect("write");
    let diff = project.deploy(&moto, "diff", "dev", &synth_env);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        text.contains("SendMessageFunction")
            && text.contains("MemorySize")
            && text.contains("2048"),
        "{text}"
    );
    let missing = project.deploy(&moto, "diff", "nope", &synth_env);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no stage `nope`"));

    // destroy removes the stack.
    let out = ok(project.deploy(&moto, "destroy", "dev", &[]));
    assert!(out.contains("wsstack-dev deleted"), "{out}");
    let stacks = aws(
        &moto,
        &[
            "cloudformation",
            "list-stacks",
            "--stack-status-filter",
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
        ],
    );
    assert!(
        !stacks["StackSummaries"]
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["StackName"] == "wsstack-dev"),
        "{stacks}"
    );
}

#[test]
fn deploy_refuses_bad_input_before_uploading_anything() {
    let moto = Moto::start();
    let project = Project::new();
    let bucket = "wsstack-rehearsal-errors";
    let env = [("ASSETS_BUCKET", bucket)];

    // No stage file.
    project.synth_real();
    let err = failed(project.deploy(&moto, "deploy", "qa", &env));
    assert!(err.contains("no stage `qa`"), "{err}");
    assert!(err.contains("stages: dev, prod, staging"), "{err}");

    // An asset file missing from the assembly.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(project.path("cdk.out/WsstackDev.assets.json")).expect("assets"),
    )
    .expect("json");
    let first_zip = manifest["files"]
        .as_object()
        .expect("files")
        .values()
        .map(|f| f["source"]["path"].as_str().expect("path").to_owned())
        .find(|p| p.ends_with(".zip"))
        .expect("a zip asset");
    std::fs::remove_file(project.path("cdk.out").join(&first_zip)).expect("remove");
    let err = failed(project.deploy(&moto, "deploy", "dev", &env));
    assert!(
        err.contains(&first_zip) && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains("make synth"), "{err}");

    // Stand-in code is never deployed.
    project.synth(AssetSource::StandIn);
    let err = failed(project.deploy(&moto, "deploy", "dev", &env));
    assert!(err.contains("STAND-IN code"), "{err}");

    // No credentials.
    project.synth_real();
    let err = failed(project.deploy(
        &moto,
        "deploy",
        "dev",
        &[
            ("ASSETS_BUCKET", bucket),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
    ));
    assert!(err.contains("no usable AWS credentials"), "{err}");

    // No region.
    let err = failed(project.deploy(
        &moto,
        "deploy",
        "dev",
        &[
            ("ASSETS_BUCKET", bucket),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", ""),
        ],
    ));
    assert!(err.contains("no AWS region"), "{err}");

    // The bootstrap bucket is not there and none was given: say how to bootstrap.
    let err = failed(project.deploy(&moto, "deploy", "dev", &[]));
    assert!(
        err.contains("cdk bootstrap aws://123456789012/us-east-1"),
        "{err}"
    );

    // Nothing was uploaded by any of these.
    assert!(
        !buckets(&moto).iter().any(|b| b == bucket),
        "{:?}",
        buckets(&moto)
    );

    // The pre-build check catches the stage and the credentials too.
    let err = failed(project.deploy(&moto, "check", "qa", &[]));
    assert!(err.contains("no stage `qa`"), "{err}");
    let out = ok(project.deploy(&moto, "check", "dev", &[]));
    assert!(
        out.contains("stage dev (stack wsstack-dev) to account 123456789012, region us-east-1"),
        "{out}"
    );
}

/// Issue 18, item 5: bucket names are global and the bootstrap bucket's is predictable, so
/// every S3 call names the account that must own the bucket (`--expected-bucket-owner`; S3
/// answers 403 otherwise: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html).
/// moto does not check owners, so the aws double answers as S3 does for a bucket of another
/// account; CreateBucket is the one S3 call that takes no owner (a bucket it creates is ours).
#[test]
fn uploads_name_the_bucket_owner_and_another_accounts_bucket_is_refused() {
    let moto = Moto::start();
    let project = Project::new();
    project.synth_real();

    // Someone else created a bucket with the bootstrap bucket's name (and lets anyone write).
    aws(
        &moto,
        &["s3api", "create-bucket", "--bucket", BOOTSTRAP_BUCKET],
    );
    let err = failed(project.deploy(
        &moto,
        "deploy",
        "dev",
        &[("AWS_DOUBLE_FOREIGN_BUCKET", BOOTSTRAP_BUCKET)],
    ));
    assert!(
        err.contains(&format!(
            "bucket {BOOTSTRAP_BUCKET} is not usable as account {MOTO_ACCOUNT}'s"
        )),
        "{err}"
    );
    assert!(err.contains("ASSETS_BUCKET"), "{err}");
    assert!(
        bucket_keys(&moto, BOOTSTRAP_BUCKET).is_empty(),
        "nothing uploaded to another account's bucket"
    );
    assert!(project.recorded_calls(["s3api", "put-object"]).is_empty());
    assert!(
        project
            .recorded_calls(["cloudformation", "deploy"])
            .is_empty()
    );

    // A bucket of our own: every S3 call but CreateBucket names the account.
    ok(project.deploy(&moto, "deploy", "dev", &[("ASSETS_BUCKET", BUCKET)]));
    let calls = project.all_recorded_calls();
    let s3: Vec<&Vec<String>> = calls
        .iter()
        .filter(|c| c.first().is_some_and(|a| a == "s3" || a == "s3api"))
        .collect();
    for op in ["head-bucket", "create-bucket", "put-object"] {
        assert!(s3.iter().any(|c| c[1] == op), "no {op} among {s3:?}");
    }
    for call in s3 {
        if call[1] == "create-bucket" {
            continue;
        }
        let at = call
            .iter()
            .position(|a| a == "--expected-bucket-owner")
            .unwrap_or_else(|| panic!("{call:?} names no bucket owner"));
        assert_eq!(
            call.get(at + 1).map(String::as_str),
            Some(MOTO_ACCOUNT),
            "{call:?}"
        );
    }
}

/// Issue 8, items 1 and 2: `deploy.py check` refuses, before anything is built or uploaded,
/// what a brand-new account cannot give: reserved concurrency (quota 10, from the aws double:
/// moto does not implement get-account-settings) and access logs without API Gateway's
/// CloudWatch role (moto's own get-account has none). dev needs neither and passes.
#[test]
fn preflight_refuses_what_a_new_account_cannot_give() {
    let moto = Moto::start();
    let project = Project::new();

    let out = ok(project.deploy(&moto, "check", "dev", &[]));
    assert!(
        out.contains("account allows it: 0 reserved concurrency, access logs off"),
        "{out}"
    );

    let err = failed(project.deploy(&moto, "check", "prod", &[]));
    assert!(
        err.contains("2 preflight check(s) failed; nothing was built or uploaded"),
        "{err}"
    );
    // What prod's functions reserve together, as synth resolves its stage file (the total
    // grows with the route table, so it is not written here as a literal).
    let reserved = wsstack_synth::stage::load(&project.path("stages"), "prod")
        .expect("prod")
        .account_needs()["reserved"]
        .as_u64()
        .expect("a number");
    assert!(reserved > 10, "prod reserves more than a new account has");
    assert!(
        err.contains(&format!(
            "reserved concurrency: stage prod reserves {reserved} concurrent executions"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "needed:    {reserved} reserved, leaving at least 100 unreserved"
        )),
        "{err}"
    );
    assert!(
        err.contains("available: 10 unreserved of a quota of 10: at most 0 can be reserved"),
        "{err}"
    );
    assert!(
        err.contains("change:    remove reserved_concurrency from stages/prod.toml"),
        "{err}"
    );
    assert!(
        err.contains("access logs: stage prod has [api] access_logs = true"),
        "{err}"
    );
    assert!(
        err.contains("available: none set (aws apigateway get-account"),
        "{err}"
    );
    assert!(
        err.contains("change:    run `make account-setup` once"),
        "{err}"
    );

    // staging reserves nothing but has access logs.
    let err = failed(project.deploy(&moto, "check", "staging", &[]));
    assert!(err.contains("1 preflight check(s) failed"), "{err}");
    assert!(err.contains("access logs: stage staging"), "{err}");

    // The same checks run on the synthesized template before deploy uploads anything.
    project.synth_real();
    let err = failed(project.deploy(&moto, "deploy", "prod", &[("ASSETS_BUCKET", BUCKET)]));
    assert!(
        err.contains(&format!(
            "reserved concurrency: stage prod reserves {reserved}"
        )),
        "{err}"
    );
    assert!(buckets(&moto).is_empty(), "{:?}", buckets(&moto));

    // An account with room: 1,000 unreserved leaves 900 to reserve, enough for prod (synth
    // refuses a stage that reserves more than 900).
    let roomy = r#"{"AccountLimit": {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}}"#;
    let err = failed(project.deploy(
        &moto,
        "check",
        "prod",
        &[("AWS_DOUBLE_ACCOUNT_SETTINGS", roomy)],
    ));
    assert!(err.contains("1 preflight check(s) failed"), "{err}");
    assert!(!err.contains("reserved concurrency"), "{err}");
}

/// A redeploy of a stage that reserves concurrency: the reservations its stack's functions hold
/// today are replaced, not added to, so the preflight counts them as available (Lambda only
/// keeps 100 unreserved across the account; API Reference, PutFunctionConcurrency). Without
/// that credit, the second `make deploy STAGE=prod` on an account with the default quota of
/// 1,000 would be refused although AWS accepts it. The stack here is a stand-in deployed to
/// moto under prod's stack name: one function holding prod's whole reservation.
#[test]
fn preflight_credits_the_reservations_the_stack_already_holds() {
    let moto = Moto::start();
    let project = Project::new();
    let reserved = wsstack_synth::stage::load(&project.path("stages"), "prod")
        .expect("prod")
        .account_needs()["reserved"]
        .as_u64()
        .expect("a number");
    // The account after prod's first deploy: a quota of 1,000, prod's functions holding
    // `reserved` of it.
    let after_first_deploy = format!(
        r#"{{"AccountLimit": {{"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": {}}}}}"#,
        1000 - reserved
    );
    let settings = [("AWS_DOUBLE_ACCOUNT_SETTINGS", after_first_deploy.as_str())];

    // No stack of that name: nothing to credit, so the same numbers are refused.
    let err = failed(project.deploy(&moto, "check", "prod", &settings));
    assert!(
        err.contains(&format!(
            "available: {} unreserved of a quota of 1000: at most {} can be reserved",
            1000 - reserved,
            900 - reserved
        )),
        "{err}"
    );

    let template = serde_json::json!({
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                               "Action": "sts:AssumeRole"}]}}},
            "Held": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "provided.al2023", "Handler": "bootstrap",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"ZipFile": "stand-in"},
                "ReservedConcurrentExecutions": reserved}}
        }
    });
    let file = project.path("held.template.json");
    std::fs::write(&file, template.to_string()).expect("write template");
    // `cloudformation deploy` prints progress, not JSON: run it without the `aws` helper.
    ok(Command::new("aws")
        .args(["cloudformation", "deploy", "--template-file"])
        .arg(&file)
        .args([
            "--stack-name",
            "wsstack-prod",
            "--capabilities",
            "CAPABILITY_IAM",
        ])
        .envs(moto.aws_env())
        .output()
        .expect("the aws CLI runs"));

    // The stack's reservation is credited: only the access-log check is left.
    let err = failed(project.deploy(&moto, "check", "prod", &settings));
    assert!(err.contains("1 preflight check(s) failed"), "{err}");
    assert!(!err.contains("reserved concurrency"), "{err}");
    assert!(err.contains("access logs: stage prod"), "{err}");

    // Credit is not a blank cheque: with 50 unreserved beside the stack's reservation, at most
    // `reserved - 50` can be reserved, and the refusal says where the rest went.
    let tight =
        r#"{"AccountLimit": {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 50}}"#;
    let err = failed(project.deploy(
        &moto,
        "check",
        "prod",
        &[("AWS_DOUBLE_ACCOUNT_SETTINGS", tight)],
    ));
    assert!(
        err.contains(&format!(
            "available: 50 unreserved of a quota of 1000, plus {reserved} that stack wsstack-prod \
             reserves today (a redeploy replaces them): at most {} can be reserved",
            reserved - 50
        )),
        "{err}"
    );
}

/// Issue 8, item 2: `make account-setup` deploys the account setup template synth writes.
/// moto creates the role (and skips `AWS::ApiGateway::Account`, so get-account stays empty).
#[test]
fn account_setup_deploys_its_own_stack() {
    let moto = Moto::start();
    let project = Project::new();
    let dir = project.path("account-setup");
    wsstack_synth::account_setup::write(&dir).expect("account setup template");
    let template = dir.join(format!(
        "{}.template.json",
        wsstack_synth::account_setup::TEMPLATE_STEM
    ));
    let mut cmd = Command::new("python3");
    cmd.arg(workspace().join("scripts/deploy.py"))
        .args(["account-setup", "--template"])
        .arg(&template)
        .envs(moto.aws_env())
        .envs(project.aws_double_env())
        .env_remove("AWS_PROFILE");
    let out = ok(cmd.output().expect("python3 runs"));
    assert!(
        out.contains("stack wsstack-account-setup to account 123456789012, region us-east-1"),
        "{out}"
    );
    let ids = physical_ids(&moto, wsstack_synth::account_setup::STACK_NAME);
    let role = ids
        .get(wsstack_synth::account_setup::ids::ROLE)
        .expect("role created");
    let trust = policy_document(
        &aws(&moto, &["iam", "get-role", "--role-name", role])["Role"]["AssumeRolePolicyDocument"],
    );
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "apigateway.amazonaws.com"
    );
    // moto's CloudFormation neither attaches ManagedPolicyArns nor models
    // AWS::ApiGateway::Account: check what CloudFormation was given.
    let deployed = aws(
        &moto,
        &[
            "cloudformation",
            "get-template",
            "--stack-name",
            wsstack_synth::account_setup::STACK_NAME,
        ],
    );
    let body: Value = match &deployed["TemplateBody"] {
        Value::String(s) => serde_json::from_str(s).expect("template json"),
        other => other.clone(),
    };
    assert_eq!(
        body["Resources"]["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"],
        serde_json::json!({"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]})
    );
    assert_eq!(
        body["Resources"]["ApiGatewayCloudWatchRole"]["Properties"]["ManagedPolicyArns"],
        serde_json::json!([{"Fn::Sub": wsstack_synth::account_setup::PUSH_TO_CLOUDWATCH_POLICY}])
    );

    // Without the template, a clear error.
    let mut cmd = Command::new("python3");
    cmd.arg(workspace().join("scripts/deploy.py"))
        .args(["account-setup", "--template"])
        .arg(project.path("nowhere.json"))
        .envs(moto.aws_env());
    let err = failed(cmd.output().expect("python3 runs"));
    assert!(
        err.contains("does not exist: run `make account-setup`"),
        "{err}"
    );
}
