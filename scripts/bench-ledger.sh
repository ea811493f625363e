#!/usr/bin/env bash
# `make bench-ledger`: a private audit cluster (so the benchmark's entries stay out of the
# development ledger), then benches/ledger.rs, which prints a report and writes
# target/bench/ledger.json.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup ledger
cargo bench --locked --bench ledger
cargo bench --locked --bench notary
