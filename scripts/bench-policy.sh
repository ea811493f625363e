#!/usr/bin/env bash
# `make bench-policy`: OPA from scripts/services.sh, a private pair of PostgreSQL clusters
# (decision records stay out of the development ledger), two release services (engine=opa
# and engine=embedded), then benches/policy.rs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIR=${AUMOS_BENCH_DIR:-/tmp/aumos-governance-bench-policy}
cargo build --locked --release --bin governance-engine
BIN=target/release/governance-engine
set -a
eval "$(scripts/services.sh up)"
set +a
rm -rf "$DIR"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$BIN" dev down --dir "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
set -a
eval "$("$BIN" dev up --dir "$DIR" --migrate 2>/dev/null)"
unset AUMOS_KAFKA_BOOTSTRAP_SERVERS
set +a
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
P_OPA=$(port); P_EMB=$(port)
RUST_LOG=warn AUMOS_HTTP_ADDR=127.0.0.1:$P_OPA AUMOS_GOVERNANCE_POLICY_ENGINE=opa "$BIN" serve >"$DIR.opa.log" 2>&1 & pids+=($!)
RUST_LOG=warn AUMOS_HTTP_ADDR=127.0.0.1:$P_EMB AUMOS_GOVERNANCE_POLICY_ENGINE=embedded "$BIN" serve >"$DIR.embedded.log" 2>&1 & pids+=($!)
for p in $P_OPA $P_EMB; do
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$p/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
done
TENANT=$(python3 -c 'import uuid; print(uuid.uuid4())')
export BENCH_OPA_URL=$AUMOS_GOVERNANCE_OPA_URL BENCH_SERVICE_OPA_URL=http://127.0.0.1:$P_OPA BENCH_SERVICE_EMBEDDED_URL=http://127.0.0.1:$P_EMB
export BENCH_TENANT=$TENANT BENCH_TOKEN=$("$BIN" dev token --tenant "$TENANT" --roles governance:admin)
cargo bench --locked --bench policy
