#!/usr/bin/env bash
# `make diff BASE=<git ref>`: what the working tree changes in the synthesized stacks, compared
# with BASE (default HEAD: the uncommitted changes).
#
#   scripts/diff.sh BASE [--stage NAME] [--format text|markdown]
#
# Synthesizes BASE in a temporary `git worktree` (removed on exit, failures included) and the
# working tree as it is (uncommitted edits included), both with stand-in assets so that
# handler code does not show as a change, each with its own stage files and app manifest, then
# runs the working tree's `synth diff` over the two assemblies. Exit status is synth diff's:
# 0 nothing changed (nothing printed), 1 something changed, 2 an error (a synth that fails
# included).
set -euo pipefail

say() { printf 'diff.sh: %s\n' "$*" >&2; }

[[ $# -ge 1 ]] || { say "usage: scripts/diff.sh BASE [--stage NAME] [--format text|markdown]"; exit 2; }
base=$1
shift
stage=()
format=(--format text)
while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=(--stage "${2:?--stage needs a name}"); shift 2 ;;
    --format) format=(--format "${2:?--format needs text or markdown}"); shift 2 ;;
    *) say "unknown argument: $1"; exit 2 ;;
  esac
done

root=$(git rev-parse --show-toplevel)
if ! git -C "$root" rev-parse --verify --quiet "$base^{commit}" >/dev/null; then
  say "$base is not a commit of this repository (a branch, tag or commit: make diff BASE=main)"
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wsstack-diff.XXXXXX")
cleanup() {
  git -C "$root" worktree remove --force "$tmp/base" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  git -C "$root" worktree prune
}
trap cleanup EXIT

git -C "$root" worktree add --quiet --detach "$tmp/base" "$base"

# The working tree's target folder as usual; the base's its own, kept between runs (its
# dependencies compile once). Sharing one would let the two builds overwrite each other's
# `synth` binary, and cargo would run the wrong one.
target=${CARGO_TARGET_DIR:-$root/target}

# synth_in DIR TARGET OUT: the checkout in DIR, built into TARGET, writes its assembly to OUT.
synth_in() {
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo run -q -p wsstack-synth --bin synth -- "${stage[@]}" --stand-in-assets -q --out "$3")
}

synth_in "$tmp/base" "$target/diff-base" "$tmp/base.out" || { say "synth of $base failed"; exit 2; }
synth_in "$root" "$target" "$tmp/new.out" || { say "synth of the working tree failed"; exit 2; }

status=0
(cd "$root" && CARGO_TARGET_DIR=$target cargo run -q -p wsstack-synth --bin synth -- diff "$tmp/base.out" "$tmp/new.out" "${format[@]}") || status=$?
exit "$status"
