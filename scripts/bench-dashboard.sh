#!/usr/bin/env bash
# `make bench-dashboard`: private PostgreSQL clusters, one release service (local-disk
# artifact store under the bench dir), then benches/dashboard.rs (seeds 10 tenants, 5,000
# workflows, 50,000 evidence records; measures the dashboard warm and cold).
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup dashboard
PORT=$(free_port)
unset AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET AUMOS_KAFKA_BOOTSTRAP_SERVERS
RUST_LOG=warn AUMOS_GOVERNANCE_DATA_DIR="$DIR/data" AUMOS_HTTP_ADDR=127.0.0.1:$PORT "$BIN" serve >"$DIR.log" 2>&1 & BENCH_PIDS+=($!)
wait_ready "$PORT"
# The superuser, for the settled measurement's VACUUM (ANALYZE) (benches/dashboard.rs).
export BENCH_SERVICE_URL=http://127.0.0.1:$PORT BENCH_BIN="$(realpath "$BIN")" BENCH_SETTLE_URL=$AUMOS_DEV_PRIMARY_SUPERUSER_URL
cargo bench --locked --bench dashboard
