//! Two arms of `make bench-policy` for the embedded engine's sandbox:
//! - IPC cost: the same evaluation in this process (the sandbox's own `Session`, on the
//!   blocking pool) and through one worker process, one at a time, per-call latency;
//! - noisy neighbour: tenant B's trivial evaluate, one request at a time, idle and while
//!   tenant A saturates its share of workers with CPU-bound evaluations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use governance_engine::adapters::engine::embedded::EmbeddedEngine;
use governance_engine::adapters::engine::{PolicyEngine, PolicyModule, PolicySource};
use serde_json::{json, Value};

use super::support::pct;

/// p50 and p99 in ms of sequential calls of `f` for `d`.
async fn sequential<F, Fut>(d: Duration, mut f: F) -> (f64, f64, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (start, mut lat, mut errors) = (Instant::now(), Vec::new(), 0);
    while start.elapsed() < d {
        let t = Instant::now();
        if f().await {
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        } else {
            errors += 1;
        }
    }
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99), errors)
}

fn figures((p50, p99, errors): (f64, f64, usize)) -> Value {
    json!({"p50_ms": (p50 * 1000.0).round() / 1000.0, "p99_ms": (p99 * 1000.0).round() / 1000.0, "errors": errors})
}

/// In-process vs one worker process: the same module, input and rule.
pub async fn ipc(d: Duration, rego: &str, input: &Value) -> Value {
    let module = PolicyModule { policy_id: uuid::Uuid::new_v4(), version: 1, package: String::new(), source: PolicySource::single(rego) };
    let mut config = governance_engine::config::Config::from_env(&governance_engine::config::Env(&|_| None)).unwrap();
    config.sandbox.workers = 1;
    config.sandbox.workers_per_tenant = 1;
    let mut out = serde_json::Map::new();
    let engines: [(&str, EmbeddedEngine); 2] = [
        ("in_process", EmbeddedEngine::new(config.eval_timeout)),
        ("worker_process", EmbeddedEngine::with_workers(&config, env!("CARGO_BIN_EXE_governance-engine").into())),
    ];
    let input = aggregates::facts::JsonText::of(input).unwrap();
    let input = &input;
    for (name, engine) in engines {
        let p = engine.prepare(&module).await.unwrap();
        for _ in 0..100 {
            p.evaluate(Some("allow"), Some(input)).await.unwrap();
        }
        let r = sequential(d, || async { p.evaluate(Some("allow"), Some(input)).await.is_ok() }).await;
        eprintln!("engine {name}: p50 {:.3} ms p99 {:.3} ms", r.0, r.1);
        out.insert(name.to_owned(), figures(r));
    }
    Value::Object(out)
}

/// A policy that keeps a worker busy for tens of milliseconds per evaluation.
const CPU_BOUND: &str = "package bench.cpu\n\nx := sum([1 | some i in numbers.range(1, 300); some j in numbers.range(1, 300)])\n";
const TRIVIAL: &str = "package bench.trivial\n\nallow if input.ok\n";

/// Tenant B's trivial evaluate, idle and while tenant A runs `concurrency` CPU-bound
/// evaluations at a time.
pub async fn noisy_neighbour(d: Duration, base: &str, a: (&str, &str), b: (&str, &str), concurrency: usize) -> Value {
    let trivial = super::activate(base, b.0, b.1, TRIVIAL).await;
    let cpu = super::activate(base, a.0, a.1, CPU_BOUND).await;
    let client = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let eval = |tenant: &str, token: &str, id: &str, rule: &str, input: Value| {
        client
            .post(format!("{base}/api/v1/policies/{id}/evaluate"))
            .bearer_auth(token)
            .header("X-Tenant-ID", tenant)
            .json(&json!({"rule": rule, "input": input}))
    };
    let b_call = || async { eval(b.0, b.1, &trivial, "allow", json!({"ok": true})).send().await.is_ok_and(|r| r.status().is_success()) };
    for _ in 0..50 {
        b_call().await;
    }
    let idle = sequential(d, b_call).await;
    eprintln!("noisy neighbour: B idle p50 {:.3} ms p99 {:.3} ms", idle.0, idle.1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..concurrency {
        let (req, stop) = (eval(a.0, a.1, &cpu, "x", json!({})), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut done, mut refused) = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match req.try_clone().unwrap().send().await {
                    Ok(r) if r.status().is_success() => done += 1,
                    _ => refused += 1,
                }
            }
            (done, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = sequential(d, b_call).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut a_done, mut a_refused) = (0, 0);
    for l in load {
        let (d, r) = l.await.unwrap();
        a_done += d;
        a_refused += r;
    }
    eprintln!("noisy neighbour: B under load p50 {:.3} ms p99 {:.3} ms (A: {a_done} done, {a_refused} refused)", loaded.0, loaded.1);
    json!({
        "b_idle": figures(idle), "b_while_a_saturates": figures(loaded),
        "p99_ratio": ((loaded.1 / idle.1) * 100.0).round() / 100.0,
        "a_concurrency": concurrency, "a_policy": CPU_BOUND, "a_evaluations_done": a_done, "a_refused": a_refused,
    })
}
