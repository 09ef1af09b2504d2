//! Issue 17 item 6: the example backend service (`examples/job-backend`) deploys with a stage,
//! synthesized by synth's own model where the stage file says `[example_backend] enabled = true`
//! (the shipped `dev` only): a rule on the stage's bus for the stage's `submitJob` events,
//! targeting the example's function (its own zip), which pushes through the stage's push API
//! with a role that attaches the stage's push policy. Checked in the synthesized assembly, then
//! deployed with the whole dev stack on moto's CloudFormation as `scripts/deploy.py` deploys it
//! (the assets uploaded under the keys the asset manifest names, the compact template through
//! the bucket). cfn-lint, checkov and cfn-guard check the same template in `make lint`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wsstack_routes::bridge::event_source;
use wsstack_synth::assembly::{self, Environment};
use wsstack_synth::assets::{self, AssetSource, EXAMPLE_BACKEND_BINARY};
use wsstack_synth::stack::example_backend;
use wsstack_synth::stage;
use wsstack_tests::moto::Moto;

const BUCKET: &str = "wsstack-example-assets";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped stages synthesized with "built" zips (distinct for the handlers and the
/// example), written to `{dir}/cdk.out` as `make synth` writes it.
struct Synthesized {
    dir: tempfile::TempDir,
}

impl Synthesized {
    fn new() -> Synthesized {
        let dir = tempfile::tempdir().expect("tempdir");
        let lambda = dir.path().join("lambda");
        for (binary, content) in [
            (assets::BINARY, assets::stand_in_zip()),
            (EXAMPLE_BACKEND_BINARY, example_zip()),
        ] {
            let zip = assets::binary_zip_path(&lambda, binary);
            std::fs::create_dir_all(zip.parent().expect("parent")).expect("mkdir");
            std::fs::write(&zip, content).expect("write zip");
        }
        let stages = stage::load_all(&workspace().join("stages")).expect("stages");
        let manifest = stage::manifest::embedded().expect("manifest");
        let source = AssetSource::Built(lambda);
        let stacks = assembly::synthesize(&stages, &manifest, &source, &Environment::default())
            .expect("synth");
        let files = assembly::render(&stacks).expect("render");
        assembly::write(&files, &dir.path().join("cdk.out")).expect("write");
        Synthesized { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("cdk.out").join(rel)
    }

    fn json(&self, rel: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(rel)).expect(rel)).expect("JSON")
    }
}

/// A valid zip unlike the handlers' (the stand-in with an archive comment), so each function's
/// code can be told apart.
fn example_zip() -> Vec<u8> {
    let mut zip = assets::stand_in_zip();
    let comment = b"job-backend";
    zip.truncate(zip.len() - 2);
    zip.extend_from_slice(&u16::try_from(comment.len()).expect("short").to_le_bytes());
    zip.extend_from_slice(comment);
    zip
}

/// The example's own names agree with what synth writes: the action the rule matches and the
/// variable the function reads.
#[test]
fn synth_and_the_example_agree_on_the_action_and_the_variable() {
    assert_eq!(example_backend::ACTION, wsstack_example_job_backend::ACTION);
    assert_eq!(
        example_backend::PUSH_API_URL_VAR,
        wsstack_example_job_backend::PUSH_API_URL_VAR
    );
    let manifest = stage::manifest::embedded().expect("manifest");
    assert!(
        manifest
            .forward
            .iter()
            .any(|a| a.name == example_backend::ACTION)
    );
}

#[test]
fn the_dev_stack_runs_the_example_backend_and_only_dev() {
    let s = Synthesized::new();
    let t = s.json("WsstackDev.template.json");
    let r = &t["Resources"];
    let rule = &r["JobBackendRule"];
    assert_eq!(rule["Type"], "AWS::Events::Rule");
    assert_eq!(
        rule["Properties"]["EventPattern"],
        json!({"source": [event_source("dev")], "detail-type": ["submitJob"]})
    );
    assert_eq!(
        rule["Properties"]["EventBusName"],
        json!({"Fn::GetAtt": ["EventBus", "Name"]})
    );
    assert_eq!(
        rule["Properties"]["Targets"],
        json!([{"Arn": {"Fn::GetAtt": ["JobBackendFunction", "Arn"]}, "Id": "JobBackend"}])
    );
    let permission = &r["JobBackendPermission"]["Properties"];
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(
        permission["SourceArn"],
        json!({"Fn::GetAtt": ["JobBackendRule", "Arn"]})
    );
    assert_eq!(
        permission["FunctionName"],
        json!({"Fn::GetAtt": ["JobBackendFunction", "Arn"]})
    );
    let f = &r["JobBackendFunction"]["Properties"];
    // The same expression as the stage's PushApiUrl output.
    assert_eq!(
        f["Environment"]["Variables"]["PUSH_API_URL"],
        t["Outputs"]["PushApiUrl"]["Value"]
    );
    assert_eq!(f["Role"], json!({"Fn::GetAtt": ["JobBackendRole", "Arn"]}));
    // The role attaches the managed policy the PushPolicyArn output names.
    let role = &r["JobBackendRole"]["Properties"];
    assert_eq!(role["ManagedPolicyArns"], json!([{"Ref": "PushPolicy"}]));
    assert_eq!(
        role["ManagedPolicyArns"][0],
        t["Outputs"]["PushPolicyArn"]["Value"]
    );
    // Its own zip, listed in the stage's asset manifest.
    let hash = hex_sha256(&example_zip());
    assert_eq!(f["Code"]["S3Key"], format!("{hash}.zip"));
    let assets = s.json("WsstackDev.assets.json");
    assert_eq!(
        assets["files"][&hash]["displayName"],
        "WsstackDev Example Backend Code"
    );
    assert!(s.path(&format!("asset.{hash}.zip")).exists());

    for id in ["WsstackStaging", "WsstackProd"] {
        let other = s.json(&format!("{id}.template.json"));
        let ids: Vec<&String> = other["Resources"]
            .as_object()
            .expect("resources")
            .keys()
            .filter(|k| k.starts_with("JobBackend"))
            .collect();
        assert!(ids.is_empty(), "{id}: {ids:?}");
        let assets = s.json(&format!("{id}.assets.json"));
        assert!(assets["files"].get(&hash).is_none(), "{id}");
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What CloudFormation created: logical ID to physical ID.
fn physical_ids(moto: &Moto, stack: &str) -> std::collections::BTreeMap<String, String> {
    let listed = moto.aws(&[
        "cloudformation",
        "list-stack-resources",
        "--stack-name",
        stack,
    ]);
    listed["StackResourceSummaries"]
        .as_array()
        .expect("summaries")
        .iter()
        .filter_map(|r| {
            Some((
                r["LogicalResourceId"].as_str()?.to_owned(),
                r["PhysicalResourceId"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Uploads the dev stack's assets under their keys and deploys its compact template through
/// the bucket, as `scripts/deploy.py deploy` does.
fn deploy_dev(moto: &Moto, s: &Synthesized) {
    moto.aws(&["s3api", "create-bucket", "--bucket", BUCKET]);
    let manifest = s.json("WsstackDev.assets.json");
    for asset in manifest["files"].as_object().expect("files").values() {
        let source = s.path(asset["source"]["path"].as_str().expect("path"));
        let key = asset["destinations"]["current_account-current_region"]["objectKey"]
            .as_str()
            .expect("key");
        let body = source.to_string_lossy().into_owned();
        moto.aws(&[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            key,
            "--body",
            &body,
        ]);
    }
    let template = s.json("WsstackDev.template.json");
    let compact = s.dir.path().join("compact.template.json");
    std::fs::write(&compact, serde_json::to_vec(&template).expect("JSON")).expect("write");
    let out = Command::new("aws")
        .args(["cloudformation", "deploy", "--template-file"])
        .arg(&compact)
        .args([
            "--stack-name",
            "wsstack-dev",
            "--capabilities",
            "CAPABILITY_IAM",
            "--s3-bucket",
            BUCKET,
            "--parameter-overrides",
            &format!("AssetsBucket={BUCKET}"),
        ])
        .envs(moto.aws_env())
        .output()
        .expect("the aws CLI runs");
    assert!(
        out.status.success(),
        "deploy: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_example_backend_deploys_with_the_dev_stack() {
    let moto = Moto::start();
    let s = Synthesized::new();
    deploy_dev(&moto, &s);
    let stacks = moto.aws(&[
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        "wsstack-dev",
    ]);
    let stack = &stacks["Stacks"][0];
    assert_eq!(stack["StackStatus"], "CREATE_COMPLETE", "{stacks}");
    let ids = physical_ids(&moto, "wsstack-dev");

    // The rule on the stage's bus, its pattern and its target: the example's function.
    let rule_id = ids.get("JobBackendRule").expect("rule created");
    let rule_name = rule_id.rsplit('|').next().unwrap_or(rule_id);
    let rule = moto.aws(&[
        "events",
        "describe-rule",
        "--name",
        rule_name,
        "--event-bus-name",
        "wsstack-dev-bus",
    ]);
    let pattern: Value =
        serde_json::from_str(rule["EventPattern"].as_str().expect("a pattern")).expect("JSON");
    assert_eq!(
        pattern,
        json!({"source": ["wsstack.dev"], "detail-type": ["submitJob"]})
    );
    let function_name = ids.get("JobBackendFunction").expect("function created");
    let function =
        &moto.aws(&["lambda", "get-function", "--function-name", function_name])["Configuration"];
    let targets = moto.aws(&[
        "events",
        "list-targets-by-rule",
        "--rule",
        rule_name,
        "--event-bus-name",
        "wsstack-dev-bus",
    ]);
    assert_eq!(
        targets["Targets"][0]["Arn"], function["FunctionArn"],
        "{targets}"
    );

    // Its code is the example's zip: Lambda's CodeSha256 is base64(sha256(zip)).
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(example_zip()));
    assert_eq!(function["CodeSha256"], sha.as_str());
    // It pushes through the stage's push API: the template gives it the PushApiUrl output's
    // expression (checked above); moto, which skips API Gateway v2 and so writes no outputs,
    // resolves the region and suffix around the API's ID.
    let url = function["Environment"]["Variables"]["PUSH_API_URL"]
        .as_str()
        .unwrap_or_default();
    assert!(
        url.starts_with("https://") && url.ends_with(".execute-api.us-east-1.amazonaws.com"),
        "{function}"
    );
    // Only that rule may invoke it.
    let policy = moto.aws(&["lambda", "get-policy", "--function-name", function_name]);
    let policy: Value =
        serde_json::from_str(policy["Policy"].as_str().expect("policy")).expect("policy json");
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(
        statement["Condition"]["ArnLike"]["AWS:SourceArn"], rule["Arn"],
        "{statement}"
    );

    // The role writes its own logs. moto's CloudFormation creates the role without attaching
    // its ManagedPolicyArns (list-attached-role-policies answers []), so the push policy's
    // attachment is checked in the template CloudFormation holds, and the policy it names was
    // created.
    let role = ids.get("JobBackendRole").expect("role created");
    assert!(
        function["Role"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&format!("/{role}"))),
        "{function}"
    );
    let inline = moto.aws(&["iam", "list-role-policies", "--role-name", role]);
    assert_eq!(inline["PolicyNames"], json!(["WriteOwnLogs"]));
    let deployed = moto.aws(&[
        "cloudformation",
        "get-template",
        "--stack-name",
        "wsstack-dev",
    ]);
    let body: Value = match &deployed["TemplateBody"] {
        Value::String(text) => serde_json::from_str(text).expect("template JSON"),
        other => other.clone(),
    };
    assert_eq!(
        body["Resources"]["JobBackendRole"]["Properties"]["ManagedPolicyArns"],
        json!([{"Ref": "PushPolicy"}])
    );
    let push_policy = ids.get("PushPolicy").expect("push policy created");
    assert!(push_policy.contains(":policy/"), "{push_policy}");
}
