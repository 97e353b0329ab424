#!/usr/bin/env bash
# The whole test suite: installs and starts the services the tests need
# (PostgreSQL, NATS JetStream, Apache Kafka, a CQL server), then runs format,
# lint, unit, integration and doc tests. This is the command README.md gives
# and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() {
  echo "[run-all] $(($(date +%s) - started))s: $* (disk free: $(df -h --output=avail . | tail -1 | tr -d ' '))" >&2
}

# A clean CI clone builds every crate once: incremental compilation would only
# add its caches (about as large as the build itself) to a disk that a full
# workspace build, the doc build and the fuzz build already fill by several GB.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

step "services"
# shellcheck source=tests/scripts/services.sh
source tests/scripts/services.sh

# The web console's browser test (core/cli/tests/console_browser.rs) drives
# Debian's headless Chromium through chromedriver; under CI it fails without them.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  step "installing chromium and chromium-driver"
  apt-get install -y chromium chromium-driver >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y chromium chromium-driver >/dev/null; }
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

profile=default
if [ "${CI:-}" = "true" ]; then profile=ci; fi

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo nextest"
cargo nextest run --workspace --locked --profile "$profile"
step "testkit containers path (no Docker engine here: its configuration only)"
cargo clippy -p orchestrix-testkit --features containers --all-targets --locked -- -D warnings
cargo nextest run -p orchestrix-testkit --features containers --locked --profile "$profile" -E 'test(/^containers::/)'
step "docker/ files (no Docker engine here: YAML, compose and manifest checks)"
bash docker/validate.sh
step "doc tests (the guide's code included)"
cargo test --workspace --doc --locked
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "README commands"
bash tests/readme-commands.sh
step "fuzzing: cargo fuzz, ${ORCHESTRIX_FUZZ_SECONDS:-20} s per target (fuzz/run.sh)"
bash fuzz/run.sh
step "done"
