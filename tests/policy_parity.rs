//! The differential test: the whole opa/ library and a corpus of tricky cases, evaluated on
//! the embedded engine and on the real OPA server. They must agree, except for the
//! differences docs/policy-engines.md lists, each of which is asserted here so the document
//! goes stale loudly when an engine changes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::var;
use governance_engine::adapters::engine::embedded::EmbeddedEngine;
use governance_engine::adapters::engine::opa::OpaEngine;
use governance_engine::adapters::engine::{EngineError, PolicyEngine, PolicyModule, PolicySource};
use serde_json::{json, Value};

/// Cases whose results differ between the engines, with the heading in
/// docs/policy-engines.md that explains each.
const DOCUMENTED_DIFFERENCES: &[(&str, &str)] = &[
    ("float_addition", "## Number precision"),
    ("sum_of_floats", "## Number precision"),
    ("json_marshal_float", "## Number formatting"),
    ("sprintf_large_float", "## Number formatting"),
    ("not_with_undefined_membership", "## `not` over an undefined membership test"),
    ("missing_builtin_is_rejected_by_the_embedded_engine", "## Built-ins the embedded engine does not have"),
];

fn module(rego: &str) -> PolicyModule {
    PolicyModule { policy_id: uuid::Uuid::new_v4(), version: 1, package: String::new(), source: PolicySource::single(rego) }
}

async fn both(rego: &str, rule: Option<&str>, input: &Value) -> (Result<Option<Value>, EngineError>, Result<Option<Value>, EngineError>) {
    let timeout = Duration::from_secs(5);
    let embedded = EmbeddedEngine::new(timeout);
    let opa = OpaEngine::new(reqwest::Client::new(), &var("AUMOS_GOVERNANCE_OPA_URL"), timeout)
        .with_token(Some(governance_engine::config::Secret::new(var("AUMOS_GOVERNANCE_OPA_TOKEN"))));
    let m = module(rego);
    let input = aggregates::facts::JsonText::of(input).unwrap();
    let e = match embedded.prepare(&m).await {
        Ok(p) => p.evaluate(rule, Some(&input)).await,
        Err(err) => Err(err),
    };
    let o = match opa.prepare(&m).await {
        Ok(p) => p.evaluate(rule, Some(&input)).await,
        Err(err) => Err(err),
    };
    (e, o)
}

/// Results agree when both are the same value, or both fail at evaluation.
fn agree(e: &Result<Option<Value>, EngineError>, o: &Result<Option<Value>, EngineError>) -> bool {
    match (e, o) {
        (Ok(a), Ok(b)) => a == b,
        (Err(EngineError::Evaluation(_)), Err(EngineError::BadResponse(_) | EngineError::Evaluation(_))) => true,
        // Both reject the source; their messages differ in wording (documented).
        (Err(EngineError::Compile(_)), Err(EngineError::Compile(_))) => true,
        _ => false,
    }
}

fn library_cases() -> Vec<(String, String, Option<String>, Value)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/opa");
    let inputs: Vec<(&str, Value)> = vec![
        (
            "model_promotion",
            json!({"model": {"name": "m", "metrics": {"accuracy": 0.93, "f1": 0.88}, "bias": {"demographic_parity_difference": 0.04}, "datasets": [{"name": "d", "lineage_verified": true}]}, "approvals": [{"user": "a", "role": "ml_lead"}, {"user": "b", "role": "risk_officer"}]}),
        ),
        (
            "model_promotion",
            json!({"model": {"name": "m", "metrics": {"accuracy": 0.7}, "bias": {"demographic_parity_difference": -0.3}, "datasets": [{"name": "d"}]}, "approvals": [], "thresholds": {"f1": 0.5}}),
        ),
        ("model_promotion", json!({})),
        (
            "data_governance",
            json!({"purpose": "training", "destination": {"region": "us-east-1"}, "fields": [{"name": "email", "classification": "pii"}, {"name": "dx", "classification": "special_category"}, {"name": "q", "classification": "weird"}]}),
        ),
        (
            "data_governance",
            json!({"purpose": "analytics", "destination": {"region": "eu-west-1"}, "fields": [{"name": "email", "classification": "pii"}]}),
        ),
        (
            "agent_tool_use",
            json!({"agent": {"id": "bot", "allowed_tools": ["search"], "max_cost_usd": 1}, "tool": {"name": "pay", "impact": "high"}, "call": {"estimated_cost_usd": 2, "arguments": {"q": "DROP TABLE users", "n": 3}}, "session": {"spent_usd": 0.5}}),
        ),
        (
            "agent_tool_use",
            json!({"agent": {"id": "bot", "allowed_tools": ["search"], "max_cost_usd": 1}, "tool": {"name": "search", "impact": "low"}, "call": {"estimated_cost_usd": 0.1, "arguments": {"q": "hello"}}}),
        ),
        (
            "eu_ai_act_high_risk",
            json!({"system": {"name": "s", "use_case": "recruitment"}, "controls": {"risk_management": true, "transparency": true}}),
        ),
        ("eu_ai_act_high_risk", json!({"system": {"name": "s", "use_case": "spam_filter"}})),
    ];
    let mut cases = Vec::new();
    for (file, input) in inputs {
        let rego = std::fs::read_to_string(format!("{root}/{file}.rego")).unwrap();
        for rule in [None, Some("allow"), Some("deny")] {
            cases.push((format!("{file}/{}", rule.unwrap_or("package")), rego.clone(), rule.map(str::to_owned), input.clone()));
        }
    }
    cases
}

fn tricky_cases() -> Vec<(String, String, Option<String>, Value)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/parity/tricky.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    cases
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["rego"].as_str().unwrap().to_owned(),
                c["rule"].as_str().map(str::to_owned),
                c.get("input").cloned().unwrap_or(json!({})),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_embedded_engine_agrees_with_opa_except_where_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy-engines.md")).unwrap();
    let mut undocumented = Vec::new();
    let mut checked = 0;
    for (name, rego, rule, input) in library_cases().into_iter().chain(tricky_cases()) {
        let (e, o) = both(&rego, rule.as_deref(), &input).await;
        checked += 1;
        let documented = DOCUMENTED_DIFFERENCES.iter().find(|(n, _)| *n == name);
        match (agree(&e, &o), documented) {
            (true, None) => {}
            (true, Some(_)) => undocumented.push(format!("{name}: now agrees; remove it from docs/policy-engines.md")),
            (false, Some((_, heading))) => assert!(doc.contains(heading), "{name}: docs/policy-engines.md has no section {heading:?}"),
            (false, None) => undocumented.push(format!("{name}: embedded {e:?} / opa {o:?}")),
        }
    }
    assert!(checked > 50, "the corpus ran ({checked} cases)");
    assert!(undocumented.is_empty(), "undocumented differences:\n{}", undocumented.join("\n"));
}

/// OPA's builtins (from `opa capabilities --current`) that regorus, as this service builds
/// it, does not have: the list in docs/policy-engines.md must be exactly this.
#[test]
fn the_documented_list_of_missing_builtins_is_exact() {
    let out = std::process::Command::new(var("AUMOS_DEV_OPA_BIN")).args(["capabilities", "--current"]).output().unwrap();
    let caps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: std::collections::HashSet<&str> =
        regorus::unstable::BUILTINS.keys().copied().chain(governance_engine::adapters::engine::builtins::names()).collect();
    // Operators' function names, and the ones regorus evaluates without registering.
    let not_builtins = [
        "and", "or", "assign", "eq", "equal", "neq", "gt", "gte", "lt", "lte", "plus", "minus", "mul", "div", "rem", "print", "walk",
        "trace",
    ];
    let mut missing: Vec<String> = caps["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .filter(|n| !n.starts_with("internal.") && !ours.contains(n) && !not_builtins.contains(n))
        .map(str::to_owned)
        .collect();
    missing.sort();
    missing.dedup();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy-engines.md")).unwrap();
    let start = doc.find("```missing-builtins\n").expect("a missing-builtins block") + "```missing-builtins\n".len();
    let len = doc[start..].find("```").unwrap();
    let mut listed: Vec<String> = doc[start..start + len].split_whitespace().map(str::to_owned).collect();
    listed.sort();
    assert_eq!(listed, missing, "update the missing-builtins block of docs/policy-engines.md");
}

#[tokio::test]
async fn every_missing_builtin_is_rejected_by_the_embedded_engine_at_validation() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy-engines.md")).unwrap();
    let start = doc.find("```missing-builtins\n").unwrap() + "```missing-builtins\n".len();
    let len = doc[start..].find("```").unwrap();
    let engine = EmbeddedEngine::new(Duration::from_secs(1));
    for name in doc[start..start + len].split_whitespace() {
        let rego = format!("package t\n\nx := {name}(input.a)\n");
        match engine.check(&PolicySource::single(rego.as_str())).await {
            Err(EngineError::Compile(errors)) => assert_eq!((errors[0].row, errors[0].col), (Some(3), Some(6)), "{name}"),
            other => panic!("{name}: expected a compile error, got {other:?}"),
        }
    }
}
