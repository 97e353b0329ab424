#!/usr/bin/env bash
# The whole test suite: starts the services the tests need, then runs format,
# lint, unit, integration and doc tests. This is the command README.md gives and
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=tests/scripts/services.sh
source tests/scripts/services.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[run-all] installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

profile=default
if [ "${CI:-}" = "true" ]; then profile=ci; fi

echo "[run-all] cargo fmt --check" >&2
cargo fmt --all -- --check
echo "[run-all] cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "[run-all] cargo nextest" >&2
cargo nextest run --workspace --locked --profile "$profile"
echo "[run-all] docker/ files (no Docker engine here: YAML, compose and manifest checks)" >&2
bash docker/validate.sh
echo "[run-all] doc tests" >&2
cargo test --workspace --doc --locked
