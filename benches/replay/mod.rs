//! The replay arm of `make bench-policy` (issue #17): a history of recorded decisions on
//! the embedded service, replayed against a new version through the API, timed from the
//! POST to the finished report. Beside it, in the same run, the baseline: the same module
//! evaluated in this process by the sandbox's own engine code (no IPC, no read model, no
//! ledger), over the same inputs in batches, on one thread. Two policies: the library's
//! model-promotion gate with its ~1.2 KB input (`replay_decisions_per_s`), and a one-rule
//! gate with a small input (`replay_simple_decisions_per_s`); every input is distinct.

use std::time::{Duration, Instant};

use governance_engine::adapters::engine::embedded::EmbeddedEngine;
use governance_engine::adapters::engine::{PolicyEngine, PolicyModule, PolicySource};
use serde_json::{json, Value};

use super::support::post_json;

/// Decisions in the replayed history.
const HISTORY: usize = 20_000;
const CONCURRENCY: usize = 16;

/// What a replay arm replays: a policy, its version 2, and the i-th input.
pub struct Case {
    pub name: &'static str,
    pub rego: String,
    pub v2: String,
    pub input: fn(usize) -> Value,
}

/// The library's model-promotion gate; version 2 raises the accuracy threshold.
pub fn model_promotion(rego: &str) -> Case {
    fn input(i: usize) -> Value {
        let mut v = super::input();
        v["model"]["metrics"]["accuracy"] = json!(0.80 + (i % 20) as f64 / 100.0);
        v["context"]["run_id"] = json!(format!("run-{i}"));
        v
    }
    let v2 = rego.replace("\"accuracy\": 0.9,", "\"accuracy\": 0.95,");
    assert_ne!(v2, rego, "the bench policy's threshold moved; update the replacement");
    Case { name: "bench-replay", rego: rego.to_owned(), v2, input }
}

/// A one-rule gate with a small input.
pub fn simple_gate() -> Case {
    fn input(i: usize) -> Value {
        json!({"user": format!("user-{i}"), "score": (i % 100) as f64 / 100.0})
    }
    let rule = |t: &str| format!("package bench.gate\n\ndefault allow := false\n\nallow if input.score >= {t}\n");
    Case { name: "bench-replay-simple", rego: rule("0.5"), v2: rule("0.7"), input }
}

async fn call(c: &reqwest::Client, method: reqwest::Method, url: String, tenant: &str, token: &str, body: Option<&Value>) -> Value {
    let mut r = c.request(method, url).bearer_auth(token).header("X-Tenant-ID", tenant);
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.unwrap().json().await.unwrap()
}

/// Records the history, then replays it `rounds` times; returns the arm's JSON.
pub async fn arm(base: &str, tenant: &str, token: &str, case: &Case, rounds: usize) -> Value {
    let (rego, input) = (case.rego.as_str(), case.input);
    let c = reqwest::Client::new();
    let p = post_json(&c, format!("{base}/api/v1/policies"), tenant, token, &json!({"name": case.name, "rego": rego})).await;
    let id = p["policy_id"].as_str().unwrap_or_else(|| panic!("policy not created: {p}")).to_owned();
    let a = call(&c, reqwest::Method::POST, format!("{base}/api/v1/policies/{id}/activate"), tenant, token, None).await;
    assert_eq!(a["status"], "active", "{a}");
    let started = Instant::now();
    eprintln!("replay: recording {HISTORY} decisions");
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (c, base, tenant, token, id) = (c.clone(), base.to_owned(), tenant.to_owned(), token.to_owned(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for i in (w..HISTORY).step_by(CONCURRENCY) {
                let d = post_json(
                    &c,
                    format!("{base}/api/v1/policies/{id}/evaluate"),
                    &tenant,
                    &token,
                    &json!({"rule": "allow", "input": input(i)}),
                )
                .await;
                last = last.max(d["ledger_seq"].as_i64().expect("a decision"));
            }
            last
        }));
    }
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    let recorded_s = started.elapsed().as_secs_f64();
    // Version 2 raises a threshold: some recorded allows become denies.
    let p = post_json(&c, format!("{base}/api/v1/policies/{id}/versions"), tenant, token, &json!({"rego": case.v2})).await;
    assert!(p["policy_id"].is_string() || p["ledger_seq"].is_i64(), "{p}");
    let page = call(&c, reqwest::Method::GET, format!("{base}/api/v1/decisions?min_seq={last}&page_size=1"), tenant, token, None).await;
    assert!(page["items"].is_array(), "{page}");
    let window = json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"});
    let mut runs = Vec::new();
    let mut report = Value::Null;
    for round in 0..rounds {
        let t = Instant::now();
        let mut r = post_json(&c, format!("{base}/api/v1/policies/{id}/versions/2/replay"), tenant, token, &window).await;
        let replay = r["replay_id"].as_str().unwrap_or_else(|| panic!("replay refused: {r}")).to_owned();
        while r["status"] == "running" {
            tokio::time::sleep(Duration::from_millis(10)).await;
            r = call(&c, reqwest::Method::GET, format!("{base}/api/v1/policies/{id}/replays/{replay}"), tenant, token, None).await;
        }
        let s = t.elapsed().as_secs_f64();
        assert_eq!(r["status"], "done", "{r}");
        let read = r["report"]["read"].as_u64().unwrap_or(0);
        eprintln!("replay round {round}: {read} decisions in {s:.3} s ({:.0}/s)", read as f64 / s);
        runs.push(read as f64 / s);
        report = r["report"]["changed"].clone();
    }
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    // The baseline: the same module and inputs, in this process, in batches of 500.
    let engine = EmbeddedEngine::new(Duration::from_millis(200));
    let module = PolicyModule { policy_id: uuid::Uuid::new_v4(), version: 1, package: String::new(), source: PolicySource::single(rego) };
    let prepared = engine.prepare(&module).await.unwrap();
    let items: Vec<(Option<String>, Option<Value>)> = (0..HISTORY).map(|i| (Some("allow".to_owned()), Some(input(i)))).collect();
    let t = Instant::now();
    for chunk in items.chunks(500) {
        let out = prepared.evaluate_many(chunk.to_vec()).await.unwrap();
        assert!(out.iter().all(Result::is_ok));
    }
    let in_process = HISTORY as f64 / t.elapsed().as_secs_f64();
    json!({
        "history_decisions": HISTORY,
        "history_recorded_per_s": (HISTORY as f64 / recorded_s).round(),
        "replay_runs_per_s": runs.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "replay_decisions_per_s": median.round(),
        "baseline_in_process_decisions_per_s": in_process.round(),
        "replay_vs_in_process": ((median / in_process) * 100.0).round() / 100.0,
        "changed": report,
        "goal_decisions_per_s": 20_000,
    })
}
