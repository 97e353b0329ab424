#!/usr/bin/env bash
# Runs every `cargo run` command README.md gives, as written, from the
# repository root (a clean clone has nothing else): the quickstart, the demos
# and the banking worker with the README's `curl` checks. Called by
# tests/run-all.sh after the build, so each command only links and runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Commands in ```bash blocks (comments stripped) and inline `cargo run ...`.
mapfile -t commands < <(
  {
    grep -E '^cargo run ' README.md | sed -E 's/[[:space:]]+#.*$//'
    grep -oE '`cargo run [^`]*`' README.md | tr -d '`'
  } | sed -E 's/[[:space:]]+$//' | awk '!seen[$0]++'
)
if [ "${#commands[@]}" -lt 5 ]; then
  echo "[readme] found only ${#commands[@]} cargo run commands in README.md" >&2
  exit 1
fi

for cmd in "${commands[@]}"; do
  case "$cmd" in
    *--bin\ orchestrix-demo-banking-worker*)
      # Long-running: start it, wait for /readyz (bounded), run the README's
      # curl checks, stop it with SIGTERM and expect a clean exit.
      echo "[readme] $cmd (background)" >&2
      bash -c "exec $cmd" >/dev/null 2>/tmp/readme-worker.log &
      pid=$!
      ready=""
      for _ in $(seq 1 600); do
        if curl -fsS localhost:9090/readyz >/dev/null 2>&1; then ready=yes; break; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.5
      done
      if [ -z "$ready" ]; then
        echo "[readme] the worker never became ready" >&2
        cat /tmp/readme-worker.log >&2
        kill "$pid" 2>/dev/null || true
        exit 1
      fi
      grep -E '^curl ' README.md | tr ';' '\n' | sed -E 's/^[[:space:]]+//' | grep -E '^curl ' |
        while read -r check; do
          echo "[readme] $check" >&2
          bash -c "${check/curl /curl -fsS }" >/dev/null
        done
      kill -TERM "$pid"
      wait "$pid"
      ;;
    *)
      echo "[readme] $cmd" >&2
      bash -c "$cmd" >/dev/null
      ;;
  esac
done
echo "[readme] ${#commands[@]} README commands ran" >&2
