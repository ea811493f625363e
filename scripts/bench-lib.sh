# Shared set-up of the benchmark scripts (sourced, not run): a release build, a private pair
# of PostgreSQL clusters under $DIR (so benchmark entries stay out of the development
# ledger), their exports in the environment, and a cleanup that stops whatever the script
# started (pids in $BENCH_PIDS) and removes the clusters.
#   bench_setup NAME [with-services]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# AUMOS_BENCH_BIN: a service binary built before (an A/B of two builds); else this tree's release build.
BIN=${AUMOS_BENCH_BIN:-target/release/governance-engine}
BENCH_PIDS=()

bench_cleanup() {
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$BIN" dev down --dir "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

bench_setup() {
  DIR=${AUMOS_BENCH_DIR:-/tmp/aumos-governance-bench-$1}
  [[ -n "${AUMOS_BENCH_BIN:-}" ]] || cargo build --locked --release --bin governance-engine
  if [[ "${2:-}" == with-services ]]; then
    set -a
    eval "$(scripts/services.sh up)"
    set +a
  fi
  rm -rf "$DIR"
  trap bench_cleanup EXIT
  set -a
  eval "$("$BIN" dev up --dir "$DIR" --migrate 2>/dev/null)"
  set +a
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_ready() { # port
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$1/health/ready" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "service on port $1 did not become ready" >&2
  return 1
}
