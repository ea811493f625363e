#!/usr/bin/env bash
# `make test`: starts the real services the tests need (scripts/services.sh), runs the
# format and lint checks, the licence check and every test, then stops the services it
# started. Exits non-zero on any failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${AUMOS_CACHE_DIR:-$HOME/.cache/aumos-governance}
started=0
t0=$(date +%s)
step() { echo "==> $* ($(( $(date +%s) - t0 )) s)" >&2; }

cleanup() {
  local rc=$?
  if [[ $started == 1 && -z "${AUMOS_KEEP_SERVICES:-}" ]]; then
    step "stopping the services this run started"
    scripts/services.sh down || true
  fi
  step "done (exit $rc)"
  exit $rc
}
trap cleanup EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "building"
cargo build --locked --workspace --all-targets

step "starting real services"
if ! scripts/services.sh status | grep -q 'stopped'; then
  echo "services already running; they stay up afterwards" >&2
else
  # Starting them here: start from empty databases and topics, so every run (and CI) sees
  # the same state and nothing accumulates from earlier runs.
  started=1
  scripts/services.sh reset >&2
fi
services_env=$(scripts/services.sh up)
set -a
eval "$services_env"
set +a

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny (licences)"
if [[ ! -x "$CACHE/cargo-tools/bin/cargo-deny" ]]; then
  cargo install --locked cargo-deny@0.20.2 --root "$CACHE/cargo-tools"
fi
"$CACHE/cargo-tools/bin/cargo-deny" --log-level error check licenses

step "opa check, fmt and test (opa/)"
"$AUMOS_DEV_OPA_BIN" check --strict opa/
unformatted=$("$AUMOS_DEV_OPA_BIN" fmt --list opa/)
if [[ -n "$unformatted" ]]; then echo "opa fmt would change: $unformatted" >&2; exit 1; fi
"$AUMOS_DEV_OPA_BIN" test opa/ -v

step "cargo test"
cargo test --workspace --locked --no-fail-fast
