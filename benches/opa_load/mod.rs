//! The `opa_load` arm of `make bench-policy`: how long OPA takes to receive N active
//! policies the way the OPA sync uploads them at its first pass and after an OPA restart
//! (`OpaEngine::prepare`, one `PUT /v1/policies/{id}` per version, in turn), on a private
//! OPA that scripts/bench-policy.sh starts empty for this arm alone.
//!
//! OPA parses and compiles every module it holds on each PUT (and once more when the write
//! commits), so the k-th upload costs about k module compilations and N uploads about
//! N²/2. The arm records the cumulative time at every `step` uploads and the time of one
//! more PUT once all N are held: that is what compiling the whole set once costs, the
//! lower bound of any mechanism that loads the set in one go (a bundle).

use std::time::{Duration, Instant};

use governance_engine::adapters::engine::opa::OpaEngine;
use governance_engine::adapters::engine::{PolicyEngine, PolicyModule, PolicySource};
use governance_engine::config::Secret;
use serde_json::{json, Value};

/// Uploads `n` versions of `rego` (each in its own namespace, as the sync does) and
/// reports the cumulative times.
pub async fn load(opa: &str, token: &str, rego: &str, n: usize, step: usize) -> Value {
    let http = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    // Uploads are not evaluations: the same generous timeout the sync's uploads get.
    let engine = OpaEngine::new(http, opa, Duration::from_secs(600)).with_token(Some(Secret::new(token)));
    let module = |i: usize| PolicyModule {
        policy_id: uuid::Uuid::new_v4(),
        version: 1 + (i % 3) as u32,
        package: String::new(),
        source: PolicySource::single(rego),
    };
    let started = Instant::now();
    let mut marks = Vec::new();
    for i in 0..n {
        engine.prepare(&module(i)).await.unwrap();
        if (i + 1) % step == 0 || i + 1 == n {
            let secs = started.elapsed().as_secs_f64();
            eprintln!("opa_load: {} modules uploaded after {secs:.1} s", i + 1);
            marks.push(json!({"modules": i + 1, "seconds": (secs * 10.0).round() / 10.0}));
        }
    }
    let total = started.elapsed().as_secs_f64();
    let one = Instant::now();
    engine.prepare(&module(n)).await.unwrap();
    let one_more = one.elapsed().as_secs_f64();
    eprintln!("opa_load: {n} modules in {total:.1} s; one more PUT with {n} held: {one_more:.2} s");
    json!({
        "modules": n, "policy": "opa/model_promotion.rego", "mechanism": "PUT /v1/policies/{id} per version, in turn (OpaSync's reconcile)",
        "seconds_total": (total * 10.0).round() / 10.0, "cumulative": marks,
        "one_more_put_seconds_with_all_held": (one_more * 1000.0).round() / 1000.0,
    })
}
