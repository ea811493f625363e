#!/usr/bin/env bash
# `make bench-ledger`: a private audit cluster (so the benchmark's entries stay out of the
# development ledger), then benches/ledger.rs, which prints a report and writes
# target/bench/ledger.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIR=${AUMOS_BENCH_DIR:-/tmp/aumos-governance-bench-ledger}
cargo build --locked --release --bin governance-engine
rm -rf "$DIR"
trap 'target/release/governance-engine dev down --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
set -a
eval "$(target/release/governance-engine dev up --dir "$DIR" --migrate 2>/dev/null)"
set +a
cargo bench --locked --bench ledger
