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

registry_pid=""
stop_registry() { if [ -n "$registry_pid" ]; then kill -TERM "$registry_pid" 2>/dev/null || true; fi; }
trap stop_registry EXIT

for cmd in "${commands[@]}"; do
  case "$cmd" in
    *"registry serve"*"&")
      # The schema registry the Avro commands after it use: start it in the
      # background, wait for /healthz (bounded), stop it at the end.
      cmd="${cmd%&}"
      echo "[readme] $cmd (background)" >&2
      bash -c "exec $cmd" >/dev/null 2>/tmp/readme-registry.log &
      registry_pid=$!
      listen=$(sed -E 's/.*--listen[[:space:]]+([^[:space:]]+).*/\1/' <<<"$cmd")
      up=""
      for _ in $(seq 1 600); do
        if curl -fsS "http://$listen/healthz" >/dev/null 2>&1; then up=yes; break; fi
        if ! kill -0 "$registry_pid" 2>/dev/null; then break; fi
        sleep 0.5
      done
      if [ -z "$up" ]; then
        echo "[readme] the schema registry never answered /healthz" >&2
        cat /tmp/readme-registry.log >&2
        exit 1
      fi
      ;;
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
      # Bounded: a demo that cannot settle (a service missing) fails the
      # step instead of holding CI until its time limit.
      timeout 600 bash -c "$cmd" >/dev/null
      ;;
  esac
done
echo "[readme] ${#commands[@]} README commands ran" >&2
