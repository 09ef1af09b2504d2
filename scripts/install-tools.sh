#!/usr/bin/env bash
# Installs what `make test` and `make lint` need, on a fresh machine or an up-to-date one
# (then it only checks, in a few seconds):
#   - Rust: clippy and rustfmt components
#   - Python (pip): cfn-lint, the aws CLI, moto's server — pinned in tests/requirements.txt
#   - Node (npm, local to tests/): dynalite, the cdk CLI, the cloud assembly schema — pinned in
#     tests/package-lock.json
#   - checkov, in its own virtualenv (.venv-checkov: it pins its own cfn-lint)
#   - cfn-guard, with cargo install (a few minutes the first time)
#   - Chromium for the browser test: Debian's `chromium` package with apt-get (as root; else
#     it says what to run). Playwright (pip, above) drives it; it never downloads a browser.
# Building the Lambda zips needs more (cargo-lambda, zig, the aarch64 target):
# scripts/install-lambda-tools.sh, run by `make handlers`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'install-tools: %s\n' "$*"; }

for component in clippy rustfmt; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    say "adding rust component $component"
    rustup component add "$component"
  fi
done

command -v python3 >/dev/null || { say "python3 is required (3.9 or newer)"; exit 1; }
if ! python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q -r tests/requirements.txt; then
  say "pip could not install tests/requirements.txt"
  exit 1
fi
# pyenv puts new console scripts on PATH only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
for tool in cfn-lint aws moto_server; do
  command -v "$tool" >/dev/null || {
    say "$tool was installed but is not on PATH: add pip's script folder ($(python3 -m site --user-base)/bin or the interpreter's bin) to PATH"
    exit 1
  }
done

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "apt-get install chromium (for the browser test)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "the browser test needs Debian's chromium at /usr/bin/chromium: sudo apt-get install chromium"
    exit 1
  fi
fi

command -v npm >/dev/null || { say "Node.js 20 and npm are required"; exit 1; }
# npm ci is the reproducible install; skip it when node_modules already matches the lock file.
if ! cmp -s tests/package-lock.json tests/node_modules/.package-lock.json.wsstack 2>/dev/null; then
  say "npm ci in tests/"
  npm ci --prefix tests --no-audit --no-fund --loglevel=error
  cp tests/package-lock.json tests/node_modules/.package-lock.json.wsstack
fi

CHECKOV_VERSION=3.3.30
if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  say "checkov $CHECKOV_VERSION into .venv-checkov"
  python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install --disable-pip-version-check --root-user-action=ignore -q "checkov==$CHECKOV_VERSION"
fi

CFN_GUARD_VERSION=3.2.1
if [ "$(cfn-guard --version 2>/dev/null)" != "cfn-guard $CFN_GUARD_VERSION" ]; then
  say "cargo install cfn-guard $CFN_GUARD_VERSION (a few minutes)"
  cargo install cfn-guard --locked --version "$CFN_GUARD_VERSION" --quiet
fi
