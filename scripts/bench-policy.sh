#!/usr/bin/env bash
# `make bench-policy`: OPA from scripts/services.sh, two release services (engine=opa and
# engine=embedded), each on private PostgreSQL clusters of its own, a private empty OPA for
# the opa_load arm, then benches/policy.rs.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
bench_setup policy with-services
unset AUMOS_KAFKA_BOOTSTRAP_SERVERS
P_OPA=$(free_port); P_EMB=$(free_port)
# Each service has a pair of clusters of its own, as a single deployment has. On one
# shared ledger, the idle service was a second replica of the busy one: it could win the
# leadership of some projectors (then applying the other's decisions read back from the
# audit database, not from the appending process's memory), and its standbys and notary
# read and hashed every entry the other appended. Which one led changed from run to run.
EMB_DIR="$DIR-embedded"
rm -rf "$EMB_DIR"
trap 'bench_cleanup; "$BIN" dev down --dir "$EMB_DIR" >/dev/null 2>&1 || true; rm -rf "$EMB_DIR"' EXIT
# Only its databases: its keys (tokens, checkpoints) stay the first pair's.
EMB_EXPORTS=$("$BIN" dev up --dir "$EMB_DIR" --migrate 2>/dev/null | grep -E '^export (AUMOS_DATABASE_|AUMOS_GOVERNANCE_AUDIT_DB_|AUMOS_DEV_)')
RUST_LOG=warn AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT=0 AUMOS_HTTP_ADDR=127.0.0.1:$P_OPA AUMOS_GOVERNANCE_POLICY_ENGINE=opa "$BIN" serve >"$DIR.opa.log" 2>&1 & BENCH_PIDS+=($!)
(set -a; eval "$EMB_EXPORTS"; set +a
 RUST_LOG=warn AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT=0 AUMOS_HTTP_ADDR=127.0.0.1:$P_EMB AUMOS_GOVERNANCE_POLICY_ENGINE=embedded exec "$BIN" serve) >"$DIR.embedded.log" 2>&1 & BENCH_PIDS+=($!)
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

# The other half of opa_load: what a restarted OPA costs when its policies persist in its
# disk storage (opa/config.yaml). N copies of the same policy, namespaced as the service
# namespaces them, are given to an OPA with disk storage at start-up (compiled once), then
# OPA is killed (-9, as an allocation bomb kills it) and started again without them: the
# time until it holds all N again, read back from its store and compiled once at boot.
opa_restart_from_disk() {
  local n=${BENCH_OPA_LOAD_N:-500} port store mods pid t0 boot restart
  port=$(free_port); store="$DIR.opa-store"; mods="$DIR.opa-modules"
  rm -rf "$store" "$mods"; mkdir -p "$mods"
  python3 - "$n" "$mods" <<'PY'
import re, sys, uuid
n, out = int(sys.argv[1]), sys.argv[2]
rego = open("opa/model_promotion.rego").read()
for i in range(n):
    ns = f"aumos_policies.p{uuid.uuid4().hex}_v1."
    src = re.sub(r"(?m)^package\s+(\S+)", lambda m: "package " + ns + m.group(1), rego, count=1)
    open(f"{out}/m{i:04d}.rego", "w").write(src + "\naumos_module_loaded := true\n")
PY
  start_opa() { # paths...
    (ulimit -v 4194304; exec "$AUMOS_DEV_OPA_BIN" run --server --addr "127.0.0.1:$port" --log-level error \
      --config-file opa/config.yaml --set "storage.disk.directory=$store" \
      --authentication=token --authorization=basic opa/system/authz.rego "$@") >>"$DIR.opa-restart.log" 2>&1 &
    pid=$!
  }
  held() { curl -fsS -H "Authorization: Bearer $AUMOS_GOVERNANCE_OPA_TOKEN" "http://127.0.0.1:$port/v1/policies" 2>/dev/null \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["result"]))' 2>/dev/null || echo 0; }
  wait_held() {
    local deadline=$((SECONDS + 600))
    while (( $(held) < n + 1 )); do
      (( SECONDS < deadline )) || { echo "opa_load: OPA did not hold $n policies within 600 s ($DIR.opa-restart.log)" >&2; exit 1; }
      sleep 0.05
    done
  }
  t0=$(date +%s.%N); start_opa "$mods"; wait_held; boot=$(echo "$(date +%s.%N) - $t0" | bc)
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  t0=$(date +%s.%N); start_opa; wait_held; restart=$(echo "$(date +%s.%N) - $t0" | bc)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$store" "$mods"
  echo "opa_load: $n policies given at start-up (compiled once) held after $boot s; after kill -9, restarted from disk storage: $restart s" >&2
  python3 - "$n" "$boot" "$restart" <<'PY'
import json, sys
n, boot, restart = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
path = "target/bench/policy.json"
report = json.load(open(path))
report.setdefault("opa_load", {})["restart"] = {
    "modules": n, "given_at_start_up_compiled_once_seconds": round(boot, 2),
    "restart_after_kill_from_disk_storage_seconds": round(restart, 2),
    "mechanism": "OPA disk storage (opa/config.yaml); the time until GET /v1/policies lists all N again",
}
json.dump(report, open(path, "w"), indent=2)
PY
}
# A few seconds: part of every run, while the uploads in turn run only when BENCH_ARMS
# names opa_load (500 take about 25 minutes).
if [[ -z "${BENCH_ARMS:-}" || ",$BENCH_ARMS," == *,opa_load,* ]]; then
  opa_restart_from_disk
fi
