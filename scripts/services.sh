#!/usr/bin/env bash
# Installs (into a cache outside the clone) and starts the real services the tests and a
# development shell need, all on 127.0.0.1:
#   - primary and audit PostgreSQL 15 clusters (via `governance-engine dev up`)
#   - Open Policy Agent v1.20.2 (built with `go install`)
#   - Apache Kafka 4.1 in KRaft mode, one node (jars from Maven Central), with a PLAINTEXT
#     listener, a SASL_SSL listener (SCRAM-SHA-512 user) and an SSL listener that requires
#     a client certificate; the CA, server and client certificates are made with openssl
#   - an S3-protocol server for evidence artifacts (moto, from PyPI)
#
#   eval "$(scripts/services.sh up)"     start what is not running, print exports
#   scripts/services.sh status           say what runs
#   scripts/services.sh down             stop everything this script started
#   scripts/services.sh reset            stop, and remove all state (databases, broker data)
#   scripts/services.sh opa-stop|opa-start|kafka-stop|kafka-start|audit-stop|audit-start
#                                         fault injection for tests
#
# Only `export NAME=value` lines go to stdout; progress goes to stderr. Idempotent.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${AUMOS_CACHE_DIR:-$HOME/.cache/aumos-governance}
# Runtime state lives outside the clone and outside $HOME, where the postgres user
# (PostgreSQL refuses to run as root) can reach it.
RUN=${AUMOS_SERVICES_DIR:-/tmp/aumos-governance-services}
PG_PRIMARY_PORT=${AUMOS_SERVICES_PG_PRIMARY_PORT:-55432}
PG_AUDIT_PORT=${AUMOS_SERVICES_PG_AUDIT_PORT:-55433}
OPA_PORT=${AUMOS_SERVICES_OPA_PORT:-58181}
KAFKA_PORT=${AUMOS_SERVICES_KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${AUMOS_SERVICES_KAFKA_CONTROLLER_PORT:-59093}
KAFKA_SASL_SSL_PORT=${AUMOS_SERVICES_KAFKA_SASL_SSL_PORT:-59094}
KAFKA_SSL_PORT=${AUMOS_SERVICES_KAFKA_SSL_PORT:-59095}
KAFKA_SASL_USER=aumos-relay
S3_PORT=${AUMOS_SERVICES_S3_PORT:-59000}
OPA_VERSION=v1.20.2
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
S3_BUCKET=aumos-evidence
BIN=${AUMOS_GOVERNANCE_BIN:-$ROOT/target/debug/governance-engine}

log() { echo "services: $*" >&2; }
die() { echo "services: error: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  die "$1 did not open port $2 within $3 s (logs in $RUN)"
}

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

stop_pid() { # name
  if alive "$1"; then
    local pid; pid=$(cat "$RUN/$1.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "$1 stopped"
  fi
  rm -f "$RUN/$1.pid"
}

# ensure_binary [current]: builds the binary if it is missing (or AUMOS_SERVICES_REBUILD is
# set); with `current`, also brings it up to date with the source (a no-op for cargo when
# it is), since `dev up --migrate` applies the migrations compiled into it: a stale binary
# would migrate the clusters to a schema the source no longer has. A binary given with
# AUMOS_GOVERNANCE_BIN is used as it is.
ensure_binary() {
  local stale=
  [[ "${1:-}" == current && -z "${AUMOS_GOVERNANCE_BIN:-}" ]] && stale=1
  if [[ ! -x "$BIN" || -n "${AUMOS_SERVICES_REBUILD:-}" || -n "$stale" ]]; then
    log "building governance-engine (cargo: nothing to do when it is current)"
    (cd "$ROOT" && cargo build --locked --quiet --bin governance-engine) >&2
  fi
}

# --- PostgreSQL -------------------------------------------------------------
postgres_up() {
  ensure_binary current
  log "postgres: primary on $PG_PRIMARY_PORT, audit on $PG_AUDIT_PORT"
  "$BIN" dev up --dir "$RUN/stack" --primary-port "$PG_PRIMARY_PORT" --audit-port "$PG_AUDIT_PORT" --migrate 2>"$RUN/dev-up.log" \
    || { cat "$RUN/dev-up.log" >&2; die "postgres clusters did not start"; }
}

# --- OPA ----------------------------------------------------------------------
opa_install() {
  # grep without -q: it reads all of `opa version`, which would otherwise die of SIGPIPE and
  # (pipefail) fail the check at random, rebuilding OPA.
  if [[ ! -x "$CACHE/bin/opa" ]] || ! "$CACHE/bin/opa" version 2>/dev/null | grep "${OPA_VERSION#v}" >/dev/null; then
    log "opa: building $OPA_VERSION with go install (cached in $CACHE/bin)"
    mkdir -p "$CACHE/bin" "$CACHE/gopath"
    GOBIN="$CACHE/bin" GOPATH="$CACHE/gopath" GOFLAGS=-modcacherw \
      go install "github.com/open-policy-agent/opa@$OPA_VERSION" >&2
  fi
}

# The token the service (and nobody else) presents to OPA's REST API: made once per RUN
# dir, readable only by its owner. OPA reads it from its environment in the
# system.authz policy (opa/system/authz.rego); tenants' policies cannot call opa.runtime.
opa_token() {
  if [[ ! -s "$RUN/opa.token" ]]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/opa.token")
  fi
  cat "$RUN/opa.token"
}

# OPA runs under a supervisor loop: if a tenant's policy makes it die (out of memory), it
# is started again at once with the same flags, token and configuration. Its address space
# is capped so that a runaway allocation kills OPA, not the machine. Its policies persist
# in its disk storage ($RUN/opa-store, opa/config.yaml), so a restarted OPA compiles them
# once at boot; the service notices the restart (OPA's instance id) and repairs the rest.
opa_start() {
  opa_install
  if ! alive opa; then
    log "opa: starting on $OPA_PORT (token authentication, restarted if it dies)"
    AUMOS_GOVERNANCE_OPA_TOKEN=$(opa_token) OPA_BIN="$CACHE/bin/opa" OPA_ADDR="127.0.0.1:$OPA_PORT" \
      OPA_AUTHZ="$ROOT/opa/system/authz.rego" OPA_LOG="$RUN/opa.log" OPA_MEM_KB="${AUMOS_SERVICES_OPA_MEMORY_KB:-4194304}" \
      OPA_CONFIG="$ROOT/opa/config.yaml" OPA_STORE="$RUN/opa-store" \
      nohup setsid bash -c '
        trap "kill \$child 2>/dev/null; exit 0" TERM INT
        failed_starts=0
        while true; do
          started=$SECONDS
          (ulimit -v "$OPA_MEM_KB"; exec "$OPA_BIN" run --server --addr "$OPA_ADDR" --log-level error \
            --config-file "$OPA_CONFIG" --set "storage.disk.directory=$OPA_STORE" \
            --authentication=token --authorization=basic "$OPA_AUTHZ") >>"$OPA_LOG" 2>&1 &
          child=$!
          wait $child
          rc=$?
          echo "opa exited ($rc); restarting" >>"$OPA_LOG"
          # OPA that cannot start (exit 1 within seconds; a killed one exits 2 or by signal)
          # three times in a row, e.g. a store it cannot open, starts without its stored
          # policies: the store is a cache, the service uploads the active set again.
          if (( rc == 1 && SECONDS - started < 5 )); then failed_starts=$((failed_starts + 1)); else failed_starts=0; fi
          if (( failed_starts >= 3 )); then
            rm -rf "$OPA_STORE.discarded"; mv "$OPA_STORE" "$OPA_STORE.discarded" 2>/dev/null
            echo "opa: could not start 3 times; its disk storage was moved to $OPA_STORE.discarded" >>"$OPA_LOG"
            failed_starts=0
          fi
          sleep 0.2
        done' >/dev/null 2>&1 &
    echo $! >"$RUN/opa.pid"
  fi
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$OPA_PORT/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "opa did not become healthy (see $RUN/opa.log)"
}

# --- Kafka --------------------------------------------------------------------
kafka_install() {
  local libs="$CACHE/kafka-$KAFKA_VERSION/libs"
  if [[ ! -f "$libs/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    log "kafka: fetching $KAFKA_VERSION jars from Maven Central (cached in $CACHE)"
    mvn -B -q -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >&2
  fi
}

# A CA, the broker's certificate (for 127.0.0.1 and localhost) as a PEM keystore, a client
# certificate for the SSL listener, and the SCRAM user's password: made once per RUN dir.
kafka_tls() {
  local tls="$RUN/kafka/tls"
  [[ -s "$tls/server.pem" && -s "$tls/client.key" && -s "$tls/sasl.password" ]] && return 0
  log "kafka: making a test CA, server and client certificates in $tls"
  rm -rf "$tls"
  mkdir -p "$tls"
  (
    cd "$tls"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 -subj "/CN=aumos-governance test Kafka CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 3650 -extfile server.ext 2>/dev/null
    cat server.key server.crt ca.pem >server.pem
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=$KAFKA_SASL_USER" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.crt -days 3650 -extfile client.ext 2>/dev/null
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >sasl.password
    chmod 644 ca.pem client.crt
  ) || die "kafka: openssl could not make the test certificates"
}

# The SCRAM-SHA-512 user of the SASL_SSL listener, stored in the cluster's metadata: added
# (over the PLAINTEXT listener) once per broker data dir.
kafka_scram_user() {
  local dir="$RUN/kafka" libs="$CACHE/kafka-$KAFKA_VERSION/libs" marker="$RUN/kafka/data/.aumos-scram-user"
  [[ -f "$marker" ]] && return 0
  log "kafka: adding the SCRAM-SHA-512 user $KAFKA_SASL_USER"
  java "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$libs/*" kafka.admin.ConfigCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter --entity-type users --entity-name "$KAFKA_SASL_USER" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$dir/tls/sasl.password")]" >"$dir/scram.log" 2>&1 \
    || { cat "$dir/scram.log" >&2; die "kafka: could not add the SCRAM user"; }
  touch "$marker"
}

kafka_start() {
  kafka_install
  local dir="$RUN/kafka" libs="$CACHE/kafka-$KAFKA_VERSION/libs"
  mkdir -p "$dir"
  kafka_tls
  # A broker started by an older version of this script has no TLS listeners: restart it.
  if alive kafka && ! port_open "$KAFKA_SASL_SSL_PORT"; then
    log "kafka: restarting to add the SASL_SSL and SSL listeners"
    stop_pid kafka
  fi
  (umask 077; cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/server.pem
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$dir/tls/server.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.ssl.ssl.client.auth=required
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
EOF
  )
  cat >"$dir/log4j2.properties" <<EOF
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
EOF
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC "-Dlog4j2.configurationFile=$dir/log4j2.properties")
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    log "kafka: formatting KRaft storage"
    java "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format --standalone \
      -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; die "kafka storage format failed"; }
  fi
  if ! alive kafka; then
    log "kafka: starting on $KAFKA_PORT"
    nohup java "${java_opts[@]}" -cp "$libs/*" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
    echo $! >"$RUN/kafka.pid"
  fi
  wait_port kafka "$KAFKA_PORT" 90
  wait_port kafka "$KAFKA_SASL_SSL_PORT" 30
  kafka_scram_user
}

# --- S3 ------------------------------------------------------------------------
venv() {
  if [[ ! -x "$CACHE/venv/bin/python" ]]; then
    python3 -m venv "$CACHE/venv" >&2
  fi
  local stamp="$CACHE/venv/.requirements.sha256" want
  want=$(sha256sum "$ROOT/scripts/requirements-dev.txt" | cut -d' ' -f1)
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "python: installing scripts/requirements-dev.txt into $CACHE/venv"
    "$CACHE/venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/requirements-dev.txt" >&2
    echo "$want" >"$stamp"
  fi
}

s3_start() {
  venv
  if ! alive s3; then
    log "s3 (moto): starting on $S3_PORT"
    nohup "$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$RUN/s3.log" 2>&1 &
    echo $! >"$RUN/s3.pid"
  fi
  wait_port s3 "$S3_PORT" 30
  curl -fsS -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" >/dev/null 2>&1 || true
}

exports() {
  cat "$RUN/stack.env"
  cat <<EOF
export AUMOS_GOVERNANCE_OPA_URL='http://127.0.0.1:$OPA_PORT'
export AUMOS_GOVERNANCE_OPA_TOKEN='$(opa_token)'
export AUMOS_KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:$KAFKA_PORT'
export AUMOS_DEV_KAFKA_SASL_SSL_SERVERS='127.0.0.1:$KAFKA_SASL_SSL_PORT'
export AUMOS_DEV_KAFKA_SSL_SERVERS='127.0.0.1:$KAFKA_SSL_PORT'
export AUMOS_DEV_KAFKA_CA_FILE='$RUN/kafka/tls/ca.pem'
export AUMOS_DEV_KAFKA_CLIENT_CERT_FILE='$RUN/kafka/tls/client.crt'
export AUMOS_DEV_KAFKA_CLIENT_KEY_FILE='$RUN/kafka/tls/client.key'
export AUMOS_DEV_KAFKA_SASL_USERNAME='$KAFKA_SASL_USER'
export AUMOS_DEV_KAFKA_SASL_PASSWORD='$(cat "$RUN/kafka/tls/sasl.password" 2>/dev/null)'
export AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET='s3://$S3_BUCKET/artifacts'
export AWS_ENDPOINT='http://127.0.0.1:$S3_PORT'
export AWS_ALLOW_HTTP='true'
export AWS_ACCESS_KEY_ID='test'
export AWS_SECRET_ACCESS_KEY='test'
export AWS_REGION='us-east-1'
export AUMOS_DEV_SERVICES_DIR='$RUN'
export AUMOS_DEV_PYTHON='$CACHE/venv/bin/python'
export AUMOS_DEV_OPA_BIN='$CACHE/bin/opa'
EOF
}

up() {
  mkdir -p "$RUN" "$CACHE"
  # A new ledger must not meet the Kafka topics of an old one: when the clusters are created
  # afresh, the broker's data goes too.
  if [[ ! -f "$RUN/stack/stack.json" && -d "$RUN/kafka/data" ]]; then
    log "kafka: new clusters, so dropping the broker's old data"
    stop_pid kafka
    rm -rf "$RUN/kafka/data"
  fi
  postgres_up >"$RUN/stack.env"
  opa_start
  kafka_start
  s3_start
  log "all services are up (state in $RUN)"
  exports
}

status() {
  local name
  for name in opa kafka s3; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
  for name in primary audit; do
    if [[ -f "$RUN/stack/pg/$name/postmaster.pid" ]]; then echo "postgres $name: running"; else echo "postgres $name: stopped"; fi
  done
}

down() {
  stop_pid s3
  stop_pid kafka
  stop_pid opa
  if [[ -f "$RUN/stack/stack.json" ]]; then
    ensure_binary
    "$BIN" dev down --dir "$RUN/stack" 2>/dev/null && log "postgres clusters stopped"
  fi
}

pg_ctl_audit() { # start|stop
  local pg_ctl=/usr/lib/postgresql/15/bin/pg_ctl
  local cmd=("$pg_ctl" -D "$RUN/stack/pg/audit" -w -t 60)
  [[ "$1" == start ]] && cmd+=(-l "$RUN/stack/pg/audit.log")
  [[ "$1" == stop ]] && cmd+=(-m fast)
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "${cmd[@]}" "$1" >&2; else "${cmd[@]}" "$1" >&2; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  reset) down; rm -rf "$RUN"; log "state removed ($RUN)" ;;
  env) exports ;;
  opa-stop) stop_pid opa ;;
  opa-start) mkdir -p "$RUN"; opa_start ;;
  kafka-stop) stop_pid kafka ;;
  kafka-start) mkdir -p "$RUN"; kafka_start ;;
  audit-stop) pg_ctl_audit stop ;;
  audit-start) pg_ctl_audit start ;;
  *) echo "usage: $0 up|down|reset|status|env|opa-stop|opa-start|kafka-stop|kafka-start|audit-stop|audit-start" >&2; exit 2 ;;
esac
