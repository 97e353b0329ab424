#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each (default 20 s;
# ORCHESTRIX_FUZZ_SECONDS overrides it, e.g. 600 for a longer local run).
# cargo-fuzz needs nightly flags (-Z); on a stable toolchain RUSTC_BOOTSTRAP=1
# lets rustc accept them. A crash leaves its input under fuzz/artifacts/ and
# fails this script; turn it into a regression test in
# tests/chaos/tests/decoders_random.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${ORCHESTRIX_FUZZ_SECONDS:-20}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=$(cargo fuzz list)
# Built once, without a sanitizer: the code under test forbids `unsafe`, so
# what libFuzzer looks for here is panics, hangs and runaway allocations.
cargo fuzz build --sanitizer none
for target in $targets; do
  echo "[fuzz] $target for ${seconds}s" >&2
  mkdir -p "corpus/$target"
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
