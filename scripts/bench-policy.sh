#!/usr/bin/env bash
# `make bench-policy`: OPA from scripts/services.sh, private PostgreSQL clusters, two
# release services (engine=opa and engine=embedded), a private empty OPA for the opa_load
# arm, then benches/policy.rs.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup policy with-services
unset AUMOS_KAFKA_BOOTSTRAP_SERVERS
P_OPA=$(free_port); P_EMB=$(free_port)
RUST_LOG=warn AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT=0 AUMOS_HTTP_ADDR=127.0.0.1:$P_OPA AUMOS_GOVERNANCE_POLICY_ENGINE=opa "$BIN" serve >"$DIR.opa.log" 2>&1 & BENCH_PIDS+=($!)
RUST_LOG=warn AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT=0 AUMOS_HTTP_ADDR=127.0.0.1:$P_EMB AUMOS_GOVERNANCE_POLICY_ENGINE=embedded "$BIN" serve >"$DIR.embedded.log" 2>&1 & BENCH_PIDS+=($!)
wait_ready "$P_OPA"
wait_ready "$P_EMB"
TENANT=$(python3 -c 'import uuid; print(uuid.uuid4())')
export BENCH_OPA_URL=$AUMOS_GOVERNANCE_OPA_URL BENCH_SERVICE_OPA_URL=http://127.0.0.1:$P_OPA BENCH_SERVICE_EMBEDDED_URL=http://127.0.0.1:$P_EMB
export BENCH_TENANT=$TENANT BENCH_TOKEN=$("$BIN" dev token --tenant "$TENANT" --roles governance:admin)
TENANT_B=$(python3 -c 'import uuid; print(uuid.uuid4())')
export BENCH_TENANT_B=$TENANT_B BENCH_TOKEN_B=$("$BIN" dev token --tenant "$TENANT_B" --roles governance:admin)
# The opa_load arm gets an OPA of its own, started empty with the same flags and token as
# scripts/services.sh's (its N modules would otherwise slow every other user of that OPA).
P_OPA_LOAD=$(free_port)
AUMOS_GOVERNANCE_OPA_TOKEN=$AUMOS_GOVERNANCE_OPA_TOKEN "$AUMOS_DEV_OPA_BIN" run --server --addr "127.0.0.1:$P_OPA_LOAD" --log-level error \
  --authentication=token --authorization=basic opa/system/authz.rego >"$DIR.opa-load.log" 2>&1 & BENCH_PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$P_OPA_LOAD/health" >/dev/null 2>&1 && break; sleep 0.1; done
export BENCH_OPA_LOAD_URL=http://127.0.0.1:$P_OPA_LOAD
cargo bench --locked --bench policy
