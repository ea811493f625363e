#!/usr/bin/env bash
# `make bench-pipeline`: Kafka from scripts/services.sh, a private pair of PostgreSQL
# clusters, one release service with the relay on, then benches/pipeline.rs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIR=${AUMOS_BENCH_DIR:-/tmp/aumos-governance-bench-pipeline}
cargo build --locked --release --bin governance-engine
BIN=target/release/governance-engine
set -a
eval "$(scripts/services.sh up)"
set +a
rm -rf "$DIR"
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  "$BIN" dev down --dir "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
set -a
eval "$("$BIN" dev up --dir "$DIR" --migrate 2>/dev/null)"
set +a
# Topics of its own: the benchmark's private ledger must not mix into the shared topics.
export AUMOS_KAFKA_TOPIC_PREFIX="bench-$(date +%s)-"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=warn AUMOS_HTTP_ADDR=127.0.0.1:$PORT "$BIN" serve >"$DIR.log" 2>&1 & pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
TENANT=$(python3 -c 'import uuid; print(uuid.uuid4())')
export BENCH_SERVICE_URL=http://127.0.0.1:$PORT BENCH_TENANT=$TENANT
export BENCH_TOKEN=$("$BIN" dev token --tenant "$TENANT" --roles governance:admin)
cargo bench --locked --bench pipeline
