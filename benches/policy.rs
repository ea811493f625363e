//! `make bench-policy`: the same policy and ~1 KB input, the same concurrency, three arms:
//! (a) raw `POST /v1/data/...` on the OPA server, (b) our evaluate endpoint with
//! engine=opa, (c) our evaluate endpoint with engine=embedded; durable decision records on
//! in (b) and (c). Then the embedded sandbox's arms (benches/sandbox): its IPC cost, and
//! the noisy neighbour; and the replay of recorded decisions (benches/replay,
//! `replay_decisions_per_s`). Then, only when `BENCH_ARMS` names it (500 uploads take about 25
//! minutes), `opa_load` (benches/opa_load): the time OPA takes to receive
//! `BENCH_OPA_LOAD_N` (default 500) active policies as the OPA sync uploads them, on a
//! private OPA. scripts/bench-policy.sh starts the services; this drives the load, prints a
//! report and writes target/bench/policy.json. `BENCH_ARMS` (e.g. `ipc,noisy`) picks arms;
//! default all but `opa_load`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CONCURRENCY: usize = 16;

mod opa_load;
mod replay;
mod sandbox;
mod support;
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

struct Arm {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
}

async fn drive(name: &str, d: Duration, make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>) -> Arm {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).tcp_nodelay(true).build().unwrap();
    // Warm up connections and caches.
    for _ in 0..50 {
        let _ = make(&client).send().await.unwrap().bytes().await;
    }
    eprintln!("{name}: {CONCURRENCY} concurrent clients for {} s", d.as_secs());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while start.elapsed() < d {
                let t = Instant::now();
                match make(&client).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| if all.is_empty() { 0.0 } else { all[((all.len() - 1) as f64 * p).round() as usize] };
    Arm { rps: all.len() as f64 / elapsed, p50: pct(0.5), p99: pct(0.99), errors }
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

fn evaluate_arm(
    base: String,
    tenant: String,
    token: String,
    id: String,
) -> Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync> {
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

    let arms = std::env::var("BENCH_ARMS").unwrap_or_else(|_| "raw,opa,embedded,ipc,noisy,replay".into());
    let on = |arm: &str| arms.split(',').any(|a| a.trim() == arm);
    let arm = |a: &Arm| json!({"rps": a.rps.round(), "p50_ms": (a.p50 * 1000.0).round() / 1000.0, "p99_ms": (a.p99 * 1000.0).round() / 1000.0, "errors": a.errors});
    let mut report = json!({
        "concurrency": CONCURRENCY, "seconds_per_arm": d.as_secs(), "input_bytes": input().to_string().len(),
        "policy": "opa/model_promotion.rego", "rule": "allow", "decision_records": "durable (ledger, fsync on) in engine_opa and engine_embedded",
    });
    let mut lines = Vec::new();
    // (a) raw OPA, same module, same query.
    let raw = if on("raw") {
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
        let raw_body = json!({"input": input()});
        let raw_url = format!("{opa}/v1/data/aumos/model_promotion/allow");
        let raw = drive("raw OPA", d, Arc::new(move |c: &reqwest::Client| c.post(&raw_url).bearer_auth(&opa_token).json(&raw_body))).await;
        report["raw_opa"] = arm(&raw);
        lines.push(("(a) raw OPA", raw.rps, raw.p50, raw.p99, raw.errors));
        Some(raw.rps)
    } else {
        None
    };
    if on("opa") {
        let id = activate(&svc_opa, &tenant, &token, &rego).await;
        let b = drive("evaluate, engine=opa", d, evaluate_arm(svc_opa.clone(), tenant.clone(), token.clone(), id)).await;
        report["engine_opa"] = arm(&b);
        lines.push(("(b) evaluate, engine=opa", b.rps, b.p50, b.p99, b.errors));
    }
    if on("embedded") {
        let id = activate(&svc_embedded, &tenant, &token, &rego).await;
        let c = drive("evaluate, engine=embedded", d, evaluate_arm(svc_embedded.clone(), tenant.clone(), token.clone(), id)).await;
        report["engine_embedded"] = arm(&c);
        lines.push(("(c) evaluate, engine=embedded", c.rps, c.p50, c.p99, c.errors));
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
    println!("\npolicy evaluation benchmark ({CONCURRENCY} concurrent clients, {} s per arm)", d.as_secs());
    for (name, rps, p50, p99, errors) in &lines {
        println!("  {name:<32} {rps:>8.0} req/s  p50 {p50:>6.3} ms  p99 {p99:>6.3} ms  errors {errors}");
        if let Some(raw) = raw {
            println!("  {:<32} throughput vs (a): {:.2}", "", rps / raw);
        }
    }
    for extra in ["embedded_ipc", "noisy_neighbour", "replay", "replay_simple", "opa_load"] {
        if !report[extra].is_null() {
            println!("  {extra}: {}", report[extra]);
        }
    }
    println!("  wrote target/bench/policy.json");
}
