//! `make bench-policy`: the same policy and ~1 KB input, at 16 and 64 concurrent clients
//! (`BENCH_CLIENTS`): (0) the load generator against a static endpoint (its own ceiling,
//! benches/generator), (a) raw `POST /v1/data/...` on the OPA server, (b) our evaluate
//! endpoint with engine=opa, (c) our evaluate endpoint with engine=embedded; durable
//! decision records on in (b) and (c), with the appender's batch commit time and size read
//! from the service's `/metrics` before and after each arm. Each arm also reports the CPU the
//! generator used and how busy the machine was. Then the embedded sandbox's arms
//! (benches/sandbox): its IPC cost, and the noisy neighbour; and the replay of recorded
//! decisions (benches/replay, `replay_decisions_per_s`). Then, only when `BENCH_ARMS` names
//! it (500 uploads take about 25 minutes), `opa_load` (benches/opa_load): the time OPA takes
//! to receive `BENCH_OPA_LOAD_N` (default 500) active policies as the OPA sync uploads them,
//! on a private OPA. scripts/bench-policy.sh starts the services; this drives the load,
//! prints a table and writes target/bench/policy.json. `BENCH_ARMS` (e.g. `ipc,noisy`) picks
//! arms; default all but `opa_load`. (a), (b) and (c) run side by side at each client count, in
//! `BENCH_ROUNDS` turns each (default 4): their ratios are then measured under the same drift.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

const CONCURRENCY: usize = 16;

mod generator;
mod opa_load;
mod replay;
mod sandbox;
mod support;
use generator::{drive, Arm, MakeRequest};
use support::histogram;
use support::{env, post_json};

fn input() -> Value {
    let datasets: Vec<Value> =
        (0..8).map(|i| json!({"name": format!("dataset-{i:02}-customer-transactions"), "lineage_verified": true})).collect();
    json!({
        "model": {"name": "credit-scorer-v7", "stage": "staging", "metrics": {"accuracy": 0.93, "f1": 0.88},
                  "bias": {"demographic_parity_difference": 0.04}, "datasets": datasets},
        "approvals": [{"user": "ana@example.com", "role": "ml_lead"}, {"user": "raj@example.com", "role": "risk_officer"}],
        "context": {"pipeline": "promote-to-prod", "run_id": "2026-11-28T10:00:00Z-7f3a", "notes": "x".repeat(300)}
    })
}

/// An answer of the size and shape of an evaluate answer, for the static endpoint.
fn static_answer() -> Value {
    json!({"decision_id": uuid::Uuid::new_v4(), "policy_id": uuid::Uuid::new_v4(), "policy_version": 1, "allowed": true, "result": true,
           "engine": "embedded", "seq": 123_456, "entry_hash": "0".repeat(64), "evaluated_at": "2026-11-29T10:00:00.000000Z"})
}

async fn activate(base: &str, tenant: &str, token: &str, rego: &str) -> String {
    let c = reqwest::Client::new();
    // Names are unique per tenant, and several arms activate policies for the same tenant.
    let name = format!("bench-{}", uuid::Uuid::new_v4());
    let p = post_json(&c, format!("{base}/api/v1/policies"), tenant, token, &json!({"name": name, "rego": rego})).await;
    let id = p["policy_id"].as_str().expect("policy created").to_owned();
    let r = c.post(format!("{base}/api/v1/policies/{id}/activate")).bearer_auth(token).header("X-Tenant-ID", tenant).send().await.unwrap();
    assert!(r.status().is_success(), "activation failed: {}", r.text().await.unwrap());
    id
}

fn evaluate_arm(base: String, tenant: String, token: String, id: String) -> MakeRequest {
    let body = json!({"input": input(), "rule": "allow"});
    Arc::new(move |c: &reqwest::Client| {
        c.post(format!("{base}/api/v1/policies/{id}/evaluate")).bearer_auth(&token).header("X-Tenant-ID", &tenant).json(&body)
    })
}

#[tokio::main]
async fn main() {
    let d = Duration::from_secs(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    let rego = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/opa/model_promotion.rego")).unwrap();
    let (opa, svc_opa, svc_embedded) = (env("BENCH_OPA_URL"), env("BENCH_SERVICE_OPA_URL"), env("BENCH_SERVICE_EMBEDDED_URL"));
    let (tenant, token) = (env("BENCH_TENANT"), env("BENCH_TOKEN"));
    println!("input size: {} bytes", input().to_string().len());

    let arms = std::env::var("BENCH_ARMS").unwrap_or_else(|_| "generator,raw,opa,embedded,ipc,noisy,replay".into());
    let on = |arm: &str| arms.split(',').any(|a| a.trim() == arm);
    let mut report = json!({
        "concurrency": CONCURRENCY, "seconds_per_arm": d.as_secs(), "input_bytes": input().to_string().len(),
        "policy": "opa/model_promotion.rego", "rule": "allow", "decision_records": "durable (ledger, fsync on) in engine_opa and engine_embedded",
    });
    let clients: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| format!("{CONCURRENCY},64"))
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    // Today's keys hold the 16-client figures; other client counts add `_c<N>`.
    let key = |name: &str, c: usize| if c == CONCURRENCY { name.to_owned() } else { format!("{name}_c{c}") };
    let mut rows: Vec<(&str, Arm)> = Vec::new();
    // The generator against a static endpoint: the most it can send here.
    if on("generator") {
        let url = generator::static_server(static_answer());
        let body = json!({"input": input(), "rule": "allow"});
        for &c in &clients {
            let (url, body) = (url.clone(), body.clone());
            let g = drive("generator, static endpoint", c, d, Arc::new(move |cl: &reqwest::Client| cl.post(&url).json(&body))).await;
            report[key("generator_static", c)] = g.json();
            rows.push(("(0) generator, static endpoint", g));
        }
    }
    // (a) raw OPA, same module, same query; (b) and (c) the service's evaluate endpoint.
    // At each client count they run side by side, in BENCH_ROUNDS turns each (default 4),
    // so that a drift of the machine's speed during the run moves all of them alike.
    let rounds: u32 = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    report["rounds_per_arm"] = json!(rounds);
    let mut side_by_side: Vec<(&str, &str, Option<&String>, MakeRequest)> = Vec::new();
    if on("raw") {
        // OPA's API requires the service's token (scripts/services.sh exports it).
        let opa_token = env("AUMOS_GOVERNANCE_OPA_TOKEN");
        let r = reqwest::Client::new()
            .put(format!("{opa}/v1/policies/bench-raw"))
            .bearer_auth(&opa_token)
            .body(rego.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let (raw_body, raw_url) = (json!({"input": input()}), format!("{opa}/v1/data/aumos/model_promotion/allow"));
        let raw: MakeRequest = Arc::new(move |cl: &reqwest::Client| cl.post(&raw_url).bearer_auth(&opa_token).json(&raw_body));
        side_by_side.push(("(a) raw OPA", "raw_opa", None, raw));
    }
    for (arm_name, label, base, engine) in [
        ("opa", "(b) evaluate, engine=opa", &svc_opa, "engine_opa"),
        ("embedded", "(c) evaluate, engine=embedded", &svc_embedded, "engine_embedded"),
    ] {
        if on(arm_name) {
            let id = activate(base, &tenant, &token, &rego).await;
            side_by_side.push((label, engine, Some(base), evaluate_arm(base.clone(), tenant.clone(), token.clone(), id)));
        }
    }
    if !side_by_side.is_empty() {
        for &c in &clients {
            let mut before = Vec::new();
            for (_, _, base, _) in &side_by_side {
                before.push(match base {
                    Some(base) => Some(histogram::scrape(base).await),
                    None => None,
                });
            }
            let named: Vec<(String, MakeRequest)> =
                side_by_side.iter().map(|(label, _, _, make)| (label.to_string(), make.clone())).collect();
            let runs = generator::drive_interleaved(&named, c, d, rounds).await;
            for (((label, name, base, _), run), before) in side_by_side.iter().zip(runs).zip(before) {
                let mut figures = run.json();
                if let (Some(base), Some(before)) = (base, before) {
                    // A service appends only for its own arm's requests, so its difference over
                    // all the turns is that arm's.
                    figures["ledger_appends"] = histogram::appends(&before, &histogram::scrape(base).await);
                }
                report[key(name, c)] = figures;
                rows.push((label, run));
            }
        }
    }
    if on("ipc") {
        report["embedded_ipc"] = sandbox::ipc(d / 2, &rego, &input()).await;
    }
    if on("noisy") {
        let b = (env("BENCH_TENANT_B"), env("BENCH_TOKEN_B"));
        report["noisy_neighbour"] = sandbox::noisy_neighbour(d / 2, &svc_embedded, (&tenant, &token), (&b.0, &b.1), CONCURRENCY).await;
    }
    if on("replay") {
        let r = replay::arm(&svc_embedded, &tenant, &token, &replay::model_promotion(&rego), 3).await;
        report["replay_decisions_per_s"] = r["replay_decisions_per_s"].clone();
        report["replay"] = r;
        let r = replay::arm(&svc_embedded, &tenant, &token, &replay::simple_gate(), 3).await;
        report["replay_simple_decisions_per_s"] = r["replay_decisions_per_s"].clone();
        report["replay_simple"] = r;
    }
    if on("opa_load") {
        let n = std::env::var("BENCH_OPA_LOAD_N").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
        let opa_token = env("AUMOS_GOVERNANCE_OPA_TOKEN");
        report["opa_load"] = opa_load::load(&env("BENCH_OPA_LOAD_URL"), &opa_token, &rego, n, 50).await;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\npolicy evaluation benchmark ({} s per arm; cores: generator's CPU use, busy: the machine's)", d.as_secs());
    println!(
        "  {:<32} {:>7} {:>9} {:>9} {:>9} {:>7} {:>6} {:>5} {:>6}",
        "arm", "clients", "req/s", "p50 ms", "p99 ms", "vs (a)", "errors", "cores", "busy"
    );
    for (name, a) in &rows {
        let raw = rows.iter().find(|(n, r)| n.starts_with("(a)") && r.clients == a.clients).map(|(_, r)| r.rps);
        let ratio = raw.filter(|r| *r > 0.0).map_or("-".to_owned(), |r| format!("{:.2}", a.rps / r));
        println!(
            "  {name:<32} {:>7} {:>9.0} {:>9.3} {:>9.3} {ratio:>7} {:>6} {:>5.2} {:>5.0}%",
            a.clients,
            a.rps,
            a.p50,
            a.p99,
            a.errors,
            a.generator_cores,
            a.machine_busy * 100.0
        );
    }
    for engine in ["engine_opa", "engine_embedded"] {
        if !report[engine]["ledger_appends"].is_null() {
            println!("  {engine} ledger appends ({CONCURRENCY} clients): {}", report[engine]["ledger_appends"]);
        }
    }
    for extra in ["embedded_ipc", "noisy_neighbour", "replay", "replay_simple", "opa_load"] {
        if !report[extra].is_null() {
            println!("  {extra}: {}", report[extra]);
        }
    }
    println!("  wrote target/bench/policy.json");
}
