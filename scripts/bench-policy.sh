#!/usr/bin/env bash
# `make bench-policy`: OPA from scripts/services.sh, private PostgreSQL clusters, two
# release services (engine=opa and engine=embedded), then benches/policy.rs.
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
cargo bench --locked --bench policy
