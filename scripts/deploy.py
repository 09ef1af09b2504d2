#!/usr/bin/env python3
"""Deploys (or destroys) one stage of a synthesized wsstack cloud assembly with the aws CLI.

    scripts/deploy.py check   --stage dev     # stage, credentials, region, account: before building
    scripts/deploy.py deploy  --stage dev     # what `make deploy STAGE=dev` runs after synth
    scripts/deploy.py destroy --stage dev     # `make destroy STAGE=dev`
    scripts/deploy.py diff    --stage dev     # what deploying cdk.out's dev would change in the
                                              # deployed stack (`synth diff`; exit 0, 1 or 2)
    scripts/deploy.py account-setup --template target/account-setup/WsstackAccountSetup.template.json
                                              # `make account-setup`, once per account and region

Deploy publishes the file assets that `cdk.out/{Stack}.assets.json` lists (the handler zips and
the template) to the CDK bootstrap bucket, or to ASSETS_BUCKET (created if missing) with the
template's `AssetsBucket` parameter pointed at it, then runs `aws cloudformation deploy` and
prints the stack's outputs.

Everything that can be checked is checked before anything is uploaded: the stage file, the
assembly, every asset file, stand-in code, the credentials and the region, and what the account
must allow (its unreserved Lambda concurrency; API Gateway's CloudWatch role when the stage has
access logs). Each refusal says what is needed, what is available, and what to change. The AWS account,
region and profile come from the usual AWS environment (AWS_PROFILE, AWS_REGION or
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for a local emulator).
"""

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_QUALIFIER = "hnb659fds"
# The stack `make account-setup` deploys (synth/src/account_setup.rs).
ACCOUNT_SETUP_STACK = "wsstack-account-setup"


class DeployError(Exception):
    """A problem found before or during a deploy, with what to do about it."""


# The aws CLI to run: `aws` from PATH unless WSSTACK_AWS_CLI names another (the deploy rehearsal
# puts a test double there for the calls its emulator lacks).
AWS_CLI = os.environ.get("WSSTACK_AWS_CLI") or "aws"


def aws(*args, capture=True):
    """Runs the aws CLI; returns its stdout, or raises DeployError with its stderr."""
    cmd = [AWS_CLI, *args]
    try:
        proc = subprocess.run(cmd, capture_output=capture, text=True, check=False)
    except FileNotFoundError:
        raise DeployError("the aws CLI is not installed: pip install awscli (or see make tools)")
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip() if capture else ""
        raise DeployError(f"`aws {' '.join(args[:2])}` failed (exit {proc.returncode}): {detail}")
    return proc.stdout if capture else ""


def load_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DeployError(f"{path} does not exist: {what}")
    except json.JSONDecodeError as e:
        raise DeployError(f"{path} is not valid JSON ({e}): synthesize again")


def find_stack(cdk_out, stage, stages_dir):
    """The stack artifact of `stage` in the assembly, checked for what a deploy needs."""
    stage_file = Path(stages_dir) / f"{stage}.toml"
    if not stage_file.exists():
        known = sorted(p.stem for p in Path(stages_dir).glob("*.toml"))
        raise DeployError(
            f"no stage `{stage}`: {stage_file} does not exist (stages: {', '.join(known) or 'none'})"
        )
    manifest = load_json(Path(cdk_out) / "manifest.json", "run `make synth` first")
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template_file = Path(cdk_out) / artifact["properties"]["templateFile"]
        template = load_json(template_file, "the assembly is incomplete: synthesize again")
        if template.get("Resources", {}).get("WebSocketStage", {}).get("Properties", {}).get("StageName") != stage:
            continue
        for logical_id, resource in template["Resources"].items():
            if "wsstack:stand-in" in resource.get("Metadata", {}):
                raise DeployError(
                    f"{template_file}: {logical_id} has STAND-IN code (synthesized with "
                    "--stand-in-assets): build the handlers and synthesize with `make synth`"
                )
        assets_id = next(
            (d for d in artifact.get("dependencies", []) if manifest["artifacts"].get(d, {}).get("type") == "cdk:asset-manifest"),
            None,
        )
        if assets_id is None:
            raise DeployError(f"{artifact_id} has no asset manifest: synthesize again")
        assets_file = Path(cdk_out) / manifest["artifacts"][assets_id]["properties"]["file"]
        assets = load_json(assets_file, "the assembly is incomplete: synthesize again")
        files = []
        for asset_hash, asset in sorted(assets.get("files", {}).items()):
            source = Path(cdk_out) / asset["source"]["path"]
            if not source.exists():
                raise DeployError(
                    f"asset {asset.get('displayName', asset_hash)}: {source} does not exist: "
                    "build the handlers and synthesize with `make synth`"
                )
            destination = next(iter(asset["destinations"].values()))
            files.append((source, destination["objectKey"], destination["bucketName"]))
        return {
            "id": artifact_id,
            "stack_name": artifact["properties"]["stackName"],
            "termination_protection": bool(artifact["properties"].get("terminationProtection", False)),
            "template_file": template_file,
            "files": files,
        }
    raise DeployError(
        f"{cdk_out} has no stack for stage `{stage}`: run `make synth STAGE={stage}` first"
    )


def caller_account():
    try:
        identity = json.loads(aws("sts", "get-caller-identity", "--output", "json"))
    except DeployError as e:
        raise DeployError(
            "no usable AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY): {e}"
        )
    return identity["Account"]


def region():
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        configured = aws("configure", "get", "region").strip()
    except DeployError:
        configured = ""
    if not configured:
        raise DeployError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    return configured


# Every S3 call names the account that must own the bucket (`--expected-bucket-owner`): bucket
# names are global and the bootstrap bucket's is predictable, so a bucket of that name in
# another account would otherwise receive the uploads. S3 answers 403 when the owner differs
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html). The only
# S3 call without it is CreateBucket, which does not take it: a bucket it creates is ours.
def bucket_exists(bucket, account):
    """Whether `bucket` exists and `account` owns it; raises DeployError if it exists but S3
    refuses it for that owner (another account's bucket, or one these credentials cannot read)."""
    try:
        aws("s3api", "head-bucket", "--bucket", bucket, "--expected-bucket-owner", account)
        return True
    except DeployError as e:
        if "(404)" in str(e) or "Not Found" in str(e):
            return False
        raise DeployError(
            f"bucket {bucket} is not usable as account {account}'s: S3 refused it for that owner "
            f"(it belongs to another account, or these credentials may not read it). Nothing was "
            f"uploaded. Set ASSETS_BUCKET to a bucket of account {account}. ({e})"
        )


# Lambda keeps at least this much of an account's concurrency unreserved
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
MIN_UNRESERVED_CONCURRENCY = 100


def refusal(what, needed, available, change):
    """One preflight refusal, as printed: what is wrong, needed, available, what to change."""
    return f"{what}\n    needed:    {needed}\n    available: {available}\n    change:    {change}"


def stack_reservations(stack_name):
    """The concurrency the stack's functions reserve today: 0 when the stack does not exist.

    A redeploy replaces these reservations rather than adding to them, so they count as
    available: Lambda only requires that at least 100 stay unreserved across the account
    (API Reference, PutFunctionConcurrency:
    https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html)."""
    try:
        listing = json.loads(aws("cloudformation", "describe-stack-resources", "--stack-name", stack_name, "--output", "json"))
    except DeployError as e:
        if "does not exist" in str(e):
            return 0
        raise
    total = 0
    for resource in listing.get("StackResources", []):
        name = resource.get("PhysicalResourceId")
        if resource.get("ResourceType") != "AWS::Lambda::Function" or not name:
            continue
        try:
            current = json.loads(aws("lambda", "get-function-concurrency", "--function-name", name, "--output", "json") or "{}")
        except DeployError as e:
            # A function the stack lists but Lambda no longer has (deleted by hand) reserves nothing.
            if "ResourceNotFoundException" in str(e):
                continue
            raise
        total += int(current.get("ReservedConcurrentExecutions") or 0)
    return total


def account_refusals(stage, stack_name, needs, account, reg):
    """What the account must allow for the stage: its unreserved Lambda concurrency and API
    Gateway's CloudWatch role. `needs` holds `reserved` (total reserved concurrency) and
    `access_logs`. Returns the refusals, empty when the account allows the stage."""
    refusals = []
    if needs["reserved"] > 0:
        limits = json.loads(aws("lambda", "get-account-settings", "--output", "json")).get("AccountLimit", {})
        unreserved = int(limits.get("UnreservedConcurrentExecutions", 0))
        quota = int(limits.get("ConcurrentExecutions", 0))
        held = stack_reservations(stack_name)
        reservable = max(unreserved + held - MIN_UNRESERVED_CONCURRENCY, 0)
        if needs["reserved"] > reservable:
            held_note = f", plus {held} that stack {stack_name} reserves today (a redeploy replaces them)" if held else ""
            refusals.append(refusal(
                f"reserved concurrency: stage {stage} reserves {needs['reserved']} concurrent executions, "
                f"more than account {account} can give in {reg}",
                f"{needs['reserved']} reserved, leaving at least {MIN_UNRESERVED_CONCURRENCY} unreserved "
                "(Lambda's minimum)",
                f"{unreserved} unreserved of a quota of {quota}{held_note}: at most {reservable} can be reserved",
                f"remove reserved_concurrency from stages/{stage}.toml (or lower the total to {reservable}), "
                "or ask for a higher 'Concurrent executions' quota (Service Quotas, AWS Lambda)",
            ))
    if needs["access_logs"]:
        settings = json.loads(aws("apigateway", "get-account", "--output", "json"))
        role = settings.get("cloudwatchRoleArn", "")
        if not role:
            refusals.append(refusal(
                f"access logs: stage {stage} has [api] access_logs = true, which needs API Gateway's "
                "CloudWatch role (without it CloudFormation fails the stage and rolls back)",
                f"an account-level cloudwatchRoleArn in API Gateway's settings of account {account}, {reg}",
                "none set (aws apigateway get-account shows no cloudwatchRoleArn)",
                "run `make account-setup` once for this account and region, "
                f"or set [api] access_logs = false in stages/{stage}.toml",
            ))
    return refusals


def refuse_if_any(refusals):
    if refusals:
        raise DeployError(
            f"{len(refusals)} preflight check(s) failed; nothing was built or uploaded:\n  - "
            + "\n  - ".join(refusals)
        )


def template_needs(template):
    """What a synthesized template asks of the account: its functions' reserved concurrency,
    and whether its stage writes access logs."""
    resources = template.get("Resources", {}).values()
    return {
        "reserved": sum(
            int(r.get("Properties", {}).get("ReservedConcurrentExecutions", 0))
            for r in resources if r.get("Type") == "AWS::Lambda::Function"
        ),
        "access_logs": any(
            "AccessLogSettings" in r.get("Properties", {})
            for r in resources if r.get("Type") == "AWS::ApiGatewayV2::Stage"
        ),
    }


def deploy(args):
    stack = find_stack(args.cdk_out, args.stage, args.stages_dir)
    reg = region()
    account = caller_account()
    # Checked again on what synth wrote, exactly, before anything is uploaded.
    needs = template_needs(load_json(stack["template_file"], "synthesize again"))
    refuse_if_any(account_refusals(args.stage, stack["stack_name"], needs, account, reg))
    chosen = os.environ.get("ASSETS_BUCKET", "")
    bootstrap = f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{account}-{reg}"
    bucket = chosen or bootstrap
    if not bucket_exists(bucket, account):
        if not chosen:
            raise DeployError(
                f"the CDK bootstrap bucket {bucket} does not exist: run `npx cdk bootstrap "
                f"aws://{account}/{reg}` once, or set ASSETS_BUCKET to a bucket of yours"
            )
        print(f"deploy: creating bucket {bucket}")
        create = ["s3api", "create-bucket", "--bucket", bucket]
        if reg != "us-east-1":
            create += ["--create-bucket-configuration", f"LocationConstraint={reg}"]
        aws(*create)
        # CreateBucket takes no expected owner; confirm the owner before anything is uploaded.
        if not bucket_exists(bucket, account):
            raise DeployError(f"bucket {bucket} was created but S3 does not find it for account {account}")

    print(f"deploy: stage {args.stage} -> stack {stack['stack_name']} (account {account}, {reg})")
    for source, key, _ in stack["files"]:
        print(f"deploy: upload {source.name} -> s3://{bucket}/{key}")
        aws(
            "s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(source),
            "--expected-bucket-owner", account,
        )

    # CloudFormation takes at most 51,200 bytes of template inline (the CloudFormation quotas
    # page: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html).
    # Synth writes readable, indented JSON; the same template without the white space is about
    # 40 % smaller, so deploy that, and go through the bucket only when even that is too large.
    compact = Path(tempfile.mkdtemp(prefix="wsstack-deploy-")) / stack["template_file"].name
    compact.write_text(json.dumps(load_json(stack["template_file"], "synthesize again"), separators=(",", ":")))
    command = [
        "cloudformation", "deploy",
        "--template-file", str(compact),
        "--stack-name", stack["stack_name"],
        "--capabilities", "CAPABILITY_IAM",
        "--no-fail-on-empty-changeset",
    ]
    # Always passed: `cloudformation deploy` keeps a parameter's previous value when it is not
    # given, so a deploy without ASSETS_BUCKET after one with it would read the old bucket.
    command += ["--parameter-overrides", f"AssetsBucket={chosen}"]
    # Templates over CloudFormation's 51,200-byte inline limit go through the bucket.
    # `cloudformation deploy` has no --expected-bucket-owner: the bucket's owner was checked
    # (head-bucket, then every put-object) just before.
    if compact.stat().st_size > 51200:
        command += ["--s3-bucket", bucket]
    aws(*command, capture=False)

    # The manifest's terminationProtection (the stage file's `termination_protection`), applied
    # both ways so that turning it off in the stage file takes effect too.
    protect = stack["termination_protection"]
    aws(
        "cloudformation", "update-termination-protection", "--stack-name", stack["stack_name"],
        "--enable-termination-protection" if protect else "--no-enable-termination-protection",
    )
    print(f"deploy: termination protection {'on' if protect else 'off'} for {stack['stack_name']}")

    outputs = json.loads(aws(
        "cloudformation", "describe-stacks", "--stack-name", stack["stack_name"],
        "--query", "Stacks[0].Outputs", "--output", "json",
    )) or []
    for o in outputs:
        print(f"{o['OutputKey']:<22} {o['OutputValue']}")
    if not outputs:
        print("deploy: the stack reports no outputs")


def synth_command():
    """The synth binary to run: WSSTACK_SYNTH, else `cargo run` of the workspace's."""
    synth = os.environ.get("WSSTACK_SYNTH")
    return shlex.split(synth) if synth else ["cargo", "run", "-q", "-p", "wsstack-synth", "--bin", "synth", "--"]


def diff(args):
    """What deploying the assembly's stage would change in the stack CloudFormation holds: the
    template the stack was deployed with (`get-template`, as submitted) against the assembly's,
    through `synth diff`. Returns its exit status: 0 nothing changed, 1 something did."""
    stage_file = Path(args.stages_dir) / f"{args.stage}.toml"
    if not stage_file.exists():
        raise DeployError(f"no stage `{args.stage}`: {stage_file} does not exist")
    stack_name = stack_name_of(args.stage, args.stages_dir)
    manifest = load_json(Path(args.cdk_out) / "manifest.json", "run `make synth` first")
    template_file = next(
        (
            Path(args.cdk_out) / a["properties"]["templateFile"]
            for a in manifest.get("artifacts", {}).values()
            if a.get("type") == "aws:cloudformation:stack" and a["properties"].get("stackName") == stack_name
        ),
        None,
    )
    if template_file is None:
        raise DeployError(f"{args.cdk_out} has no stack {stack_name}: run `make synth STAGE={args.stage}` first")
    region()
    deployed = json.loads(
        aws("cloudformation", "get-template", "--stack-name", stack_name, "--template-stage", "Original", "--output", "json")
    ).get("TemplateBody")
    if isinstance(deployed, str):
        try:
            deployed = json.loads(deployed)
        except json.JSONDecodeError:
            raise DeployError(f"the template {stack_name} holds is not JSON (YAML?): synth diff reads JSON templates")
    with tempfile.TemporaryDirectory() as tmp:
        deployed_file = Path(tmp) / f"{stack_name}.deployed.template.json"
        deployed_file.write_text(json.dumps(deployed))
        cmd = synth_command() + ["diff", str(deployed_file), str(template_file)]
        if args.format:
            cmd += ["--format", args.format]
        out = subprocess.run(cmd, cwd=ROOT, text=True)
    if out.returncode not in (0, 1):
        raise DeployError(f"{' '.join(cmd)} failed (exit {out.returncode})")
    return out.returncode


def stack_name_of(stage, stages_dir):
    """The stack name a stage file gives (`stack_name`), or the default `wsstack-<stage>`."""
    import tomllib

    path = Path(stages_dir) / f"{stage}.toml"
    try:
        return tomllib.loads(path.read_text()).get("stack_name", f"wsstack-{stage}")
    except FileNotFoundError:
        raise DeployError(f"no stage `{stage}`: {path} does not exist")
    except tomllib.TOMLDecodeError as e:
        raise DeployError(f"{path}: {e}")


def stage_needs(stage, stages_dir, given):
    """What a stage asks of the account (total reserved concurrency, access logs), as synth
    resolves the stage file (`synth needs`): one source of truth for defaults and
    per-handler overrides. Building synth is quick and builds no handler; `given` (--needs,
    JSON) skips it, for callers that computed it with the synth library."""
    if given:
        return json.loads(given)
    cmd = synth_command() + ["needs", "--stage", stage, "--stages-dir", str(stages_dir)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        # A bad stage file: synth names the file, line and field.
        raise DeployError(out.stderr.strip() or f"{' '.join(cmd)} failed")
    return json.loads(out.stdout.splitlines()[0])


def check(args):
    """What can fail before a build: the stage file, the credentials, the region, and what the
    account must allow for the stage."""
    stack_name = stack_name_of(args.stage, args.stages_dir)
    reg = region()
    account = caller_account()
    needs = stage_needs(args.stage, args.stages_dir, args.needs)
    refuse_if_any(account_refusals(args.stage, stack_name, needs, account, reg))
    print(f"deploy: stage {args.stage} (stack {stack_name}) to account {account}, region {reg}")
    print(
        f"deploy: account allows it: {needs['reserved']} reserved concurrency, "
        f"access logs {'on (CloudWatch role set)' if needs['access_logs'] else 'off'}"
    )


def account_setup(args):
    """Deploys the one-time account setup stack: API Gateway's CloudWatch Logs role."""
    template = Path(args.template)
    if not template.exists():
        raise DeployError(f"{template} does not exist: run `make account-setup` (it synthesizes it first)")
    reg = region()
    account = caller_account()
    print(f"account-setup: stack {ACCOUNT_SETUP_STACK} to account {account}, region {reg}")
    aws(
        "cloudformation", "deploy", "--template-file", str(template),
        "--stack-name", ACCOUNT_SETUP_STACK, "--capabilities", "CAPABILITY_IAM",
        "--no-fail-on-empty-changeset", capture=False,
    )
    role = json.loads(aws("apigateway", "get-account", "--output", "json")).get("cloudwatchRoleArn", "")
    print(f"account-setup: API Gateway's CloudWatch role: {role or '(not reported by this endpoint)'}")


def destroy(args):
    stack_name = stack_name_of(args.stage, args.stages_dir)
    region()
    caller_account()
    print(f"destroy: deleting stack {stack_name}")
    try:
        aws("cloudformation", "delete-stack", "--stack-name", stack_name)
    except DeployError as e:
        if "TerminationProtection" in str(e) or "termination protection" in str(e).lower():
            raise DeployError(
                f"{stack_name} has termination protection (termination_protection = true in "
                f"stages/{args.stage}.toml): set it to false and `make deploy STAGE={args.stage}`, "
                "then destroy"
            )
        raise
    aws("cloudformation", "wait", "stack-delete-complete", "--stack-name", stack_name)
    print(
        f"destroy: {stack_name} deleted. Resources with DeletionPolicy Retain (the connections "
        "table and the log groups of stages with `retain = true`, such as prod) are left in the "
        "account; delete them by hand if you mean to. Uploaded assets stay in the assets bucket."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["check", "deploy", "destroy", "diff", "account-setup"])
    parser.add_argument("--stage", help="the stage (a file in the stages folder); all but account-setup")
    parser.add_argument("--template", help="account-setup: the template `synth account-setup` wrote")
    parser.add_argument(
        "--needs",
        help="check: what the stage asks of the account, as JSON from `synth needs` "
        "(default: run synth for it; WSSTACK_SYNTH overrides the synth command)",
    )
    parser.add_argument("--format", choices=["text", "markdown"], help="diff: synth diff's output format")
    parser.add_argument("--cdk-out", default=str(ROOT / "cdk.out"), help="the cloud assembly (default: cdk.out)")
    parser.add_argument("--stages-dir", default=str(ROOT / "stages"), help="the stage files (default: stages)")
    args = parser.parse_args()
    # aws CLI v1 reads only AWS_DEFAULT_REGION; v2 and the SDKs read AWS_REGION first.
    if os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"]
    if args.action == "account-setup" and not args.template:
        parser.error("account-setup needs --template")
    if args.action != "account-setup" and not args.stage:
        parser.error(f"{args.action} needs --stage")
    try:
        if args.action == "diff":
            sys.exit(diff(args))
        {"check": check, "deploy": deploy, "destroy": destroy, "account-setup": account_setup}[args.action](args)
    except DeployError as e:
        print(f"{args.action}: error: {e}", file=sys.stderr)
        # synth diff's convention: 2 is an error, 1 a change.
        sys.exit(2 if args.action == "diff" else 1)


if __name__ == "__main__":
    main()
