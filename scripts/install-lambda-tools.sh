#!/usr/bin/env bash
# Installs what building the Lambda zips needs: cargo-lambda (from PyPI, which brings zig as the
# cross linker) and Rust's aarch64 standard library (the functions run on arm64/Graviton).
set -euo pipefail

if ! command -v cargo-lambda >/dev/null 2>&1; then
  echo "install-lambda-tools: pip install cargo-lambda"
  python3 -m pip install --disable-pip-version-check -q "cargo-lambda==1.9.2"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  echo "install-lambda-tools: rustup target add aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi
