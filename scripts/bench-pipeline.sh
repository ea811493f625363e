#!/usr/bin/env bash
# `make bench-pipeline`: Kafka from scripts/services.sh, private PostgreSQL clusters, one
# release service with the relay on, then benches/pipeline.rs.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup pipeline with-services
# Topics of its own: the benchmark's private ledger must not mix into the shared topics.
export AUMOS_KAFKA_TOPIC_PREFIX="bench-$(date +%s)-"
PORT=$(free_port)
# One tenant offers the whole load: without lifting its evaluation rate limit (2,000/s by
# default), 2,500/s offered were answered 429 beyond ~2,200/s and the lags measured at that.
RUST_LOG=warn AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT=0 AUMOS_HTTP_ADDR=127.0.0.1:$PORT "$BIN" serve >"$DIR.log" 2>&1 & BENCH_PIDS+=($!)
wait_ready "$PORT"
TENANT=$(python3 -c 'import uuid; print(uuid.uuid4())')
export BENCH_SERVICE_URL=http://127.0.0.1:$PORT BENCH_TENANT=$TENANT
export BENCH_TOKEN=$("$BIN" dev token --tenant "$TENANT" --roles governance:admin)
cargo bench --locked --bench pipeline
