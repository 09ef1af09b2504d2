# wsstack: every command a user or CI needs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The stage to synthesize or deploy (a file in stages/); empty means every stage for `synth`.
STAGE ?=
# Extra flags for synth, e.g. SYNTH_FLAGS="--account 123456789012 --region eu-west-1".
SYNTH_FLAGS ?=
# The local gateway's port and stage for `make dev`.
PORT ?= 3001
DEV_STAGE ?= dev
# The git ref `make diff` compares the working tree with, and its output format (text, markdown).
BASE ?= HEAD
FORMAT ?= text
# The port of the browser client that `make dev` serves; empty: the gateway's default, 3000
# (and, when 3000 is taken, the API without the page, with a warning).
WEB_PORT ?=

# `make handlers`: the SDK clients a Lambda calls once or a page at a time per invocation, built
# for size (opt-level "z"); see the handlers target.
COLD_SDK_CLIENTS_FOR_SIZE := $(foreach crate,aws-sdk-dynamodb aws-sdk-sqs aws-sdk-eventbridge aws-sdk-sts,--config 'profile.release.package.$(crate).opt-level="z"')

# A stand-in assembly for lints, so `make lint` never touches a real cdk.out.
LINT_OUT := target/lint/cdk.out
# Stages that switch on every optional part (custom domain, ...), linted besides the shipped ones.
LINT_EXTRA_STAGES := synth/tests/fixtures/stages
LINT_EXTRA_OUT := target/lint/extra.out
# The one-time account setup template (API Gateway's CloudWatch Logs role).
ACCOUNT_SETUP_OUT := target/account-setup
LINT_ACCOUNT_SETUP_OUT := target/lint/account-setup
# Every folder of templates `make lint` checks.
LINT_DIRS := $(LINT_OUT) $(LINT_EXTRA_OUT) $(LINT_ACCOUNT_SETUP_OUT)

stage_flag = $(if $(STAGE),--stage $(STAGE),--all)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: dev
dev: ## Run the whole stack on localhost: the API (ws://127.0.0.1:3001/dev), the chat page (http://127.0.0.1:3000/), the push API (http://127.0.0.1:3003) and the example backend (BACKEND=0: without it)
	PORT=$(PORT) WEB_PORT=$(WEB_PORT) DEV_STAGE=$(DEV_STAGE) AUTH=$(AUTH) scripts/dev.sh

.PHONY: token
token: ## Print a token from the local issuer of `make dev AUTH=dev` (USER=ada, TTL=1h)
	@cargo run -q --profile local -p wsstack-gateway --bin wsstack-local -- token --sub $(USER) --ttl $(or $(TTL),1h)

.PHONY: screenshot
screenshot: tools ## Regenerate docs/screenshot.png: two browser pages in a room conversation
	cargo build -q -p wsstack-gateway --bin wsstack-local
	python3 tests/browser/test_chat.py --gateway target/debug/wsstack-local --screenshot docs/screenshot.png

.PHONY: tools
tools: ## Install the test tools (pip: cfn-lint, aws CLI, moto; npm in tests/: dynalite, cdk)
	scripts/install-tools.sh

.PHONY: handlers
handlers: ## Build the Lambda zips for arm64: every route's (target/lambda/bootstrap/bootstrap.zip) and the example backend's (target/lambda/job-backend/bootstrap.zip)
	scripts/install-lambda-tools.sh
	# One binary serves every route: each function's Handler property names its handler.
	# opt-level "s" keeps the zip small (2.90 MiB for arm64 with the push API and the bridge; it was
	# 2.2 MiB, against 2.8 MiB at opt-level 3, before them); the handlers wait on the network.
	# Issue 17's goal is at most 3 MiB. The SDK of aws-smithy-runtime 1.16 made it 3.01 MiB, so the
	# SDK clients off the hot path (a call or a page per invocation) are built for size ("z"):
	# 2.98 MiB. The @connections client, the SDK's runtime and SigV4 (every post of a fan-out)
	# stay at "s".
	CARGO_PROFILE_RELEASE_OPT_LEVEL=s cargo lambda build --release --arm64 --output-format zip -p wsstack-lambda --bin bootstrap $(COLD_SDK_CLIENTS_FOR_SIZE)
	# The example backend service, for the stages with [example_backend] enabled = true (dev).
	CARGO_PROFILE_RELEASE_OPT_LEVEL=s cargo lambda build --release --arm64 --output-format zip -p wsstack-example-job-backend --bin job-backend $(COLD_SDK_CLIENTS_FOR_SIZE)
	@ls -l target/lambda/bootstrap/bootstrap.zip | awk '{printf "  bootstrap.zip %8.2f MiB\n", $$5/1048576}'
	@ls -l target/lambda/job-backend/bootstrap.zip | awk '{printf "  job-backend/bootstrap.zip %8.2f MiB\n", $$5/1048576}'

.PHONY: synth
synth: handlers ## Build the handlers and write cdk.out/ (all stages, or STAGE=prod)
	cargo run --release -q -p wsstack-synth --bin synth -- $(stage_flag) $(SYNTH_FLAGS)

.PHONY: synth-stand-in
synth-stand-in: ## Write cdk.out/ with labelled stand-in code, without building the handlers
	cargo run -q -p wsstack-synth --bin synth -- $(stage_flag) --stand-in-assets $(SYNTH_FLAGS)

.PHONY: diff
diff: ## What the working tree changes in the stacks, against a git ref: make diff BASE=main [STAGE=prod] [FORMAT=markdown]
	@# synth diff exits 1 when something changed: a finding, not a failure of make.
	@status=0; scripts/diff.sh $(BASE) $(if $(STAGE),--stage $(STAGE)) --format $(FORMAT) || status=$$?; \
	  if [ $$status -eq 0 ]; then echo "make diff: no change against $(BASE)"; fi; [ $$status -le 1 ]

.PHONY: deploy
deploy: ## Build, synth and deploy one stage: make deploy STAGE=dev [ASSETS_BUCKET=my-bucket]
	@test -n "$(STAGE)" || { echo "make deploy needs a stage: make deploy STAGE=dev"; exit 2; }
	scripts/deploy.py check --stage $(STAGE)
	$(MAKE) synth STAGE=$(STAGE)
	scripts/deploy.py deploy --stage $(STAGE)

.PHONY: account-setup
account-setup: ## Once per account and region: API Gateway's CloudWatch role, which access logs need
	cargo run -q -p wsstack-synth --bin synth -- account-setup $(ACCOUNT_SETUP_OUT)
	scripts/deploy.py account-setup --template $(ACCOUNT_SETUP_OUT)/WsstackAccountSetup.template.json

.PHONY: destroy
destroy: ## Delete one stage's stack: make destroy STAGE=dev (Retain resources stay)
	@test -n "$(STAGE)" || { echo "make destroy needs a stage: make destroy STAGE=dev"; exit 2; }
	scripts/deploy.py destroy --stage $(STAGE)

.PHONY: lint
lint: tools ## fmt, clippy -D warnings, rustdoc -D warnings, and cfn-lint, checkov, cfn-guard over every template
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
	cargo run -q -p wsstack-synth --bin synth -- --all --stand-in-assets -q --out $(LINT_OUT)
	cargo run -q -p wsstack-synth --bin synth -- --stages-dir $(LINT_EXTRA_STAGES) --stand-in-assets -q --out $(LINT_EXTRA_OUT)
	cargo run -q -p wsstack-synth --bin synth -- account-setup $(LINT_ACCOUNT_SETUP_OUT) -q
	cfn-lint --include-checks I -- $(foreach d,$(LINT_DIRS),$(d)/*.template.json $(d)/*.template.yaml)
	@if [ -f cdk.out/manifest.json ]; then cfn-lint --include-checks I -- cdk.out/*.template.json cdk.out/*.template.yaml; fi
	for d in $(LINT_DIRS); do .venv-checkov/bin/checkov --quiet --compact --framework cloudformation -d $$d; done
	for d in $(LINT_DIRS); do cfn-guard validate --rules tests/guard/wsstack.guard --data $$d --show-summary fail; done
	cfn-guard test --rules-file tests/guard/wsstack.guard --test-data tests/guard/wsstack_tests.yaml > /dev/null
	@echo "lint: clean"

.PHONY: asyncapi
asyncapi: ## Regenerate docs/asyncapi.yaml from the protocol types and the route table
	UPDATE_ASYNCAPI=1 cargo test -q -p wsstack-handlers --test asyncapi the_document_in_the_repository
	node tests/asyncapi/validate.cjs docs/asyncapi.yaml

# The tests `make check` runs: the ones that need no server or tool outside cargo (no dynalite,
# moto, browser, cfn-lint or node). Everything else runs in `make test`.
CHECK_TESTS := --workspace --exclude wsstack-tests --lib --bins \
	--test templates --test review --test stages --test assembly --test diff --test routes --test forward --test binaries --test jwt --test cli --test dependencies --test web

.PHONY: check
check: ## Quick: fmt, clippy and the tests that need no outside server (a warm build: under 2 minutes)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	cargo test -q $(CHECK_TESTS)

.PHONY: test
test: lint ## Every test: lints, unit, snapshot, tool and integration tests
	cargo test --workspace --no-fail-fast

.PHONY: bench
bench: ## Benchmarks that print their figures (synth, handler cold start and fan-out, gateway)
	cargo bench -p wsstack-synth --bench synth
	# The x86_64 release build of the one Lambda binary, for the cold-start figure.
	cargo build --release -p wsstack-lambda --bin bootstrap
	cargo bench -p wsstack-tests --bench cold_start
	cargo bench -p wsstack-handlers --bench fanout
	# CPU per @connections post in the AWS SDK client alone (what bounds the local broadcast).
	cargo bench -p wsstack-handlers --bench management_sdk
	# With serverless-offline measured in the same run (needs Node.js and npm; installs it with npm ci).
	BENCH_SERVERLESS_OFFLINE=1 cargo bench -p wsstack-gateway --bench broadcast
	cargo bench -p wsstack-auth --bench authorizer
	cargo bench -p wsstack-tests --bench bridge
	cargo bench -p wsstack-gateway --bench connect_auth

.PHONY: clean
clean: ## Remove build output and cdk.out
	cargo clean
	rm -rf cdk.out .cdk.out.* target/lint
