//! The OPA engine's batches (src/adapters/engine/opa/batch.rs), on the real OPA server:
//! concurrent evaluations of one version leave in one query and each gets the answer it
//! gets alone, errors included; a version OPA lost is uploaded again under a batch.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use aggregates::facts::JsonText;
use std::sync::Arc;
use std::time::Duration;

use common::var;
use governance_engine::adapters::engine::opa::OpaEngine;
use governance_engine::adapters::engine::{EngineError, PolicyEngine, PolicyModule, PolicySource, PreparedPolicy};
use serde_json::{json, Value};

fn opa() -> OpaEngine {
    OpaEngine::new(reqwest::Client::new(), &var("AUMOS_GOVERNANCE_OPA_URL"), Duration::from_secs(5))
        .with_token(Some(governance_engine::config::Secret::new(var("AUMOS_GOVERNANCE_OPA_TOKEN"))))
}

fn module(rego: &str) -> PolicyModule {
    let mut source = PolicySource::single(rego);
    // A nested package: its document is a key of the main package's.
    source.modules.push("package batch.check.sub\n\nv := input.n\n".to_owned());
    PolicyModule { policy_id: uuid::Uuid::new_v4(), version: 1, package: String::new(), source }
}

/// Defined only on some inputs, a value computed from the input, and a complete rule whose
/// two definitions conflict (an evaluation error, which fails a whole batch query) when
/// `input.c` holds.
const POLICY: &str = "package batch.check\n\nallow if input.ok\n\ndouble := input.n * 2\n\nr := 1 if input.c\n\nr := 2 if input.c\n\n\
     default d := \"no\"\n\nd := \"yes\" if input.ok\n\nf(x) := x + 1\n\nnames contains n if some n in input.names\n";

/// (rule, input) pairs of every kind of answer: a value, undefined, an evaluation error, a
/// rule the version does not have, a default rule, a function's name, a partial set, a
/// nested package.
fn cases() -> Vec<(String, Value)> {
    let mut cases = Vec::new();
    for i in 0..60i64 {
        let (rule, input) = match i % 10 {
            0 => ("allow", json!({"ok": true})),
            1 => ("allow", json!({"ok": false})),
            2 => ("double", json!({"n": i})),
            // One conflict: the batch holding it fails as a whole, the others do not.
            3 => ("r", json!({"c": i == 3})),
            4 => ("missing", json!({"ok": true})),
            5 => ("d", json!({"ok": i % 4 == 1})),
            6 => ("f", json!({"n": i})),
            7 => ("names", json!({"names": ["a", format!("n{i}")]})),
            8 => ("sub", json!({"n": i})),
            _ => ("double", json!({"n": i, "pad": "x".repeat(usize::try_from(i).unwrap() * 100)})),
        };
        cases.push((rule.to_owned(), input));
    }
    cases
}

/// What must agree between a batched answer and the same evaluation alone: the value, or
/// the kind of error (messages name each version's own namespace).
fn outcome(r: &Result<Option<Value>, EngineError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("error {:?}", std::mem::discriminant(e)),
    }
}

/// `(sum, count)` of the batcher's items-per-query histogram, read from the metrics.
fn queries_and_items() -> (f64, f64) {
    let text = governance_engine::adapters::metrics::get().render();
    let read =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or_default();
    (read("aumos_governance_opa_query_items_sum"), read("aumos_governance_opa_query_items_count"))
}

async fn concurrently(policy: &Arc<dyn PreparedPolicy>, cases: &[(String, Value)]) -> Vec<Result<Option<Value>, EngineError>> {
    let inputs: Vec<JsonText> = cases.iter().map(|(_, input)| JsonText::of(input).unwrap()).collect();
    futures::future::join_all(cases.iter().zip(&inputs).map(|((rule, _), input)| policy.evaluate(Some(rule), Some(input)))).await
}

#[tokio::test]
async fn concurrent_evaluations_of_one_version_share_queries_and_each_gets_the_answer_it_gets_alone() {
    let engine = opa();
    let batched = engine.prepare(&module(POLICY)).await.unwrap();
    // The same policy, never batched: it mentions a builtin OPA answers once per query.
    let alone = engine.prepare(&module(&format!("{POLICY}\n# rand.intn\n"))).await.unwrap();
    let cases = cases();
    // A rule name joins batches once a query alone answered it (a function's name never does).
    for rule in ["allow", "double", "r", "missing", "d", "f", "names", "sub"] {
        let _ = batched.evaluate(Some(rule), Some(&JsonText::of(&json!({})).unwrap())).await;
    }

    let (items_before, queries_before) = queries_and_items();
    let got = concurrently(&batched, &cases).await;
    let (items_after, queries_after) = queries_and_items();
    let (items, queries) = (items_after - items_before, queries_after - queries_before);
    eprintln!("{items} evaluations in {queries} queries");
    assert!(queries >= 1.0 && items > queries, "some queries carried several evaluations: {items} in {queries}");

    for ((rule, input), got) in cases.iter().zip(&got) {
        let want = alone.evaluate(Some(rule), Some(&JsonText::of(input).unwrap())).await;
        assert_eq!(outcome(got), outcome(&want), "{rule} on {input}");
    }
    // Each kind of answer was met: a value, undefined and an evaluation error.
    assert!(got.iter().any(|r| matches!(r, Ok(Some(Value::Bool(true))))));
    assert!(got.iter().any(|r| matches!(r, Ok(None))));
    assert!(got.iter().any(Result::is_err), "the conflicting items fail, each alone");
    // The conflicting item, and the six queries of a function's name (refused as alone).
    assert_eq!(got.iter().filter(|r| r.is_err()).count(), 7, "only these fail: {got:?}");

    assert!(got.iter().any(|r| matches!(r, Ok(Some(Value::String(s))) if s == "no")), "a default rule's value");
    // Rules that are not one name, and evaluations without an input or with an input of
    // `null`, go alone.
    assert_eq!(
        outcome(&batched.evaluate(Some("d"), Some(&JsonText::of(&Value::Null).unwrap())).await),
        outcome(&alone.evaluate(Some("d"), Some(&JsonText::of(&Value::Null).unwrap())).await)
    );
    let dotted = batched.evaluate(Some("allow.x"), Some(&JsonText::of(&json!({"ok": true})).unwrap())).await;
    assert_eq!(outcome(&dotted), outcome(&alone.evaluate(Some("allow.x"), Some(&JsonText::of(&json!({"ok": true})).unwrap())).await));
    assert_eq!(batched.evaluate(Some("allow"), None).await.unwrap(), None);
}

#[tokio::test]
async fn a_batch_of_a_version_opa_lost_uploads_it_again_and_answers() {
    let engine = opa();
    let m = module(POLICY);
    let policy = engine.prepare(&m).await.unwrap();
    // OPA loses the version (as after a restart): all its modules and its batch module.
    engine.unload_all(&OpaEngine::module_ids(&m)).await.unwrap();
    assert!(!engine.is_loaded(&m).await.unwrap());

    assert_eq!(
        policy.evaluate(Some("double"), Some(&JsonText::of(&json!({"n": 1})).unwrap())).await.unwrap(),
        Some(json!(2)),
        "alone, it uploads the version"
    );
    engine.unload_all(&OpaEngine::module_ids(&m)).await.unwrap();
    let cases: Vec<(String, Value)> = (0..24i64).map(|n| ("double".to_owned(), json!({"n": n}))).collect();
    let got = concurrently(&policy, &cases).await;
    for ((_, input), got) in cases.iter().zip(got) {
        assert_eq!(got.unwrap(), Some(json!(input["n"].as_i64().unwrap() * 2)), "{input}");
    }
    let held = reqwest::Client::new()
        .get(format!("{}/v1/policies", var("AUMOS_GOVERNANCE_OPA_URL")))
        .bearer_auth(var("AUMOS_GOVERNANCE_OPA_TOKEN"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let ids: Vec<&str> = held["result"].as_array().unwrap().iter().filter_map(|p| p["id"].as_str()).collect();
    for id in OpaEngine::module_ids(&m) {
        assert!(ids.contains(&id.as_str()), "{id} is held again");
    }
}

#[tokio::test]
async fn a_version_whose_package_has_a_quoted_segment_is_prepared_as_before_without_a_batch_module() {
    let engine = opa();
    let m = module("package batch[\"quoted-seg\"]\n\ndouble := input.n * 2\n");
    engine.prepare(&m).await.unwrap();
    assert!(OpaEngine::module_ids(&m).iter().all(|id| !id.ends_with("/batch")), "{:?}", OpaEngine::module_ids(&m));
}
