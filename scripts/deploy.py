#!/usr/bin/env python3
"""Deploys (or destroys) one stage of a synthesized wsstack cloud assembly with the aws CLI.

    scripts/deploy.py check   --stage dev     # stage file, credentials, region: before building
    scripts/deploy.py deploy  --stage dev     # what `make deploy STAGE=dev` runs after synth
    scripts/deploy.py destroy --stage dev     # `make destroy STAGE=dev`

Deploy publishes the file assets that `cdk.out/{Stack}.assets.json` lists (the handler zips and
the template) to the CDK bootstrap bucket, or to ASSETS_BUCKET (created if missing) with the
template's `AssetsBucket` parameter pointed at it, then runs `aws cloudformation deploy` and
prints the stack's outputs.

Everything that can be checked is checked before anything is uploaded: the stage file, the
assembly, every asset file, stand-in code, the credentials and the region. The AWS account,
region and profile come from the usual AWS environment (AWS_PROFILE, AWS_REGION or
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for a local emulator).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP_QUALIFIER = "hnb659fds"


class DeployError(Exception):
    """A problem found before or during a deploy, with what to do about it."""


def aws(*args, capture=True):
    """Runs the aws CLI; returns its stdout, or raises DeployError with its stderr."""
    cmd = ["aws", *args]
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


def bucket_exists(bucket):
    try:
        aws("s3api", "head-bucket", "--bucket", bucket)
        return True
    except DeployError:
        return False


def deploy(args):
    stack = find_stack(args.cdk_out, args.stage, args.stages_dir)
    reg = region()
    account = caller_account()
    chosen = os.environ.get("ASSETS_BUCKET", "")
    bootstrap = f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{account}-{reg}"
    bucket = chosen or bootstrap
    if not bucket_exists(bucket):
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

    print(f"deploy: stage {args.stage} -> stack {stack['stack_name']} (account {account}, {reg})")
    for source, key, _ in stack["files"]:
        print(f"deploy: upload {source.name} -> s3://{bucket}/{key}")
        aws("s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(source))

    command = [
        "cloudformation", "deploy",
        "--template-file", str(stack["template_file"]),
        "--stack-name", stack["stack_name"],
        "--capabilities", "CAPABILITY_IAM",
        "--no-fail-on-empty-changeset",
    ]
    if chosen:
        command += ["--parameter-overrides", f"AssetsBucket={bucket}"]
    # Templates over CloudFormation's 51,200-byte inline limit go through the bucket.
    if stack["template_file"].stat().st_size > 51200:
        command += ["--s3-bucket", bucket]
    aws(*command, capture=False)

    outputs = json.loads(aws(
        "cloudformation", "describe-stacks", "--stack-name", stack["stack_name"],
        "--query", "Stacks[0].Outputs", "--output", "json",
    )) or []
    for o in outputs:
        print(f"{o['OutputKey']:<22} {o['OutputValue']}")
    if not outputs:
        print("deploy: the stack reports no outputs")


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


def check(args):
    """What can fail before a build: the stage file, the credentials, the region."""
    stack_name = stack_name_of(args.stage, args.stages_dir)
    reg = region()
    account = caller_account()
    print(f"deploy: stage {args.stage} (stack {stack_name}) to account {account}, region {reg}")


def destroy(args):
    stack_name = stack_name_of(args.stage, args.stages_dir)
    region()
    caller_account()
    print(f"destroy: deleting stack {stack_name}")
    aws("cloudformation", "delete-stack", "--stack-name", stack_name)
    aws("cloudformation", "wait", "stack-delete-complete", "--stack-name", stack_name)
    print(
        f"destroy: {stack_name} deleted. Resources with DeletionPolicy Retain (the connections "
        "table and the log groups of stages with `retain = true`, such as prod) are left in the "
        "account; delete them by hand if you mean to. Uploaded assets stay in the assets bucket."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["check", "deploy", "destroy"])
    parser.add_argument("--stage", required=True, help="the stage (a file in the stages folder)")
    parser.add_argument("--cdk-out", default=str(ROOT / "cdk.out"), help="the cloud assembly (default: cdk.out)")
    parser.add_argument("--stages-dir", default=str(ROOT / "stages"), help="the stage files (default: stages)")
    args = parser.parse_args()
    # aws CLI v1 reads only AWS_DEFAULT_REGION; v2 and the SDKs read AWS_REGION first.
    if os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"]
    try:
        {"check": check, "deploy": deploy, "destroy": destroy}[args.action](args)
    except DeployError as e:
        print(f"{args.action}: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
