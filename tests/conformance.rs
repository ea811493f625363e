//! OPA's own conformance suite on both engines, through the code the service runs: a case
//! becomes a policy version that is validated and tested (`check_and_test`), prepared, and
//! evaluated, as creating, activating and evaluating a policy do.
//!
//! Writes `target/conformance.json` (per engine: passed, failed, refused, divergent,
//! excluded, total, failed_cases) and fails when a case that is not listed in
//! `tests/conformance/known-failures.txt` fails. `AUMOS_CONFORMANCE_BLESS=1` rewrites that
//! list from this run (after a fix, so the list shrinks). See docs/policy-engines.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;
mod conformance {
    pub mod cases;
}

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aggregates::policy::{DataDocument, ExtraModules, VersionSource};
use aggregates::RegoSource;
use conformance::cases::{self, Case, Want, EXCLUSIONS};
use futures::StreamExt;
use governance_engine::adapters::engine::embedded::EmbeddedEngine;
use governance_engine::adapters::engine::opa::OpaEngine;
use governance_engine::adapters::engine::{check_and_test, EngineError, PolicyEngine, PolicyModule, PolicySource};
use serde_json::{json, Value};

const KNOWN_FAILURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/known-failures.txt");

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Passed,
    /// Refused at validation (a 422 from the service) although OPA answers.
    Refused(String),
    /// Accepted, then answered differently from OPA (or accepted what OPA rejects).
    Divergent(String),
}

fn brief(e: &EngineError) -> String {
    let text = match e {
        EngineError::Compile(errs) => errs.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    };
    text.chars().take(200).collect()
}

fn show(v: &Option<Value>) -> String {
    v.as_ref().map_or_else(|| "undefined".to_owned(), |v| v.to_string().chars().take(200).collect())
}

/// Runs one case as the service does: validate and test, prepare, evaluate.
async fn run(engine: &dyn PolicyEngine, case: &Case) -> (Outcome, Option<PolicyModule>) {
    // As the API takes it: the main module, further modules and the data document, each
    // checked by the same domain types.
    let source = match version_source(case) {
        Ok(source) => source,
        Err(e) => return (Outcome::Refused(format!("refused: {e}")), None),
    };
    let module = PolicyModule { policy_id: uuid::Uuid::new_v4(), version: 1, package: String::new(), source: source.clone() };
    let validated = match check_and_test(engine, &source).await {
        Ok(_) => engine.prepare(&module).await.map(Some),
        Err(e) => Err(e),
    };
    let prepared = match (validated, &case.want) {
        (Ok(Some(p)), _) => p,
        (Ok(None), _) => unreachable!(),
        // A refused upload may have left some of the version's modules in OPA: unloaded too.
        (Err(EngineError::Compile(_) | EngineError::TestsFailed(_)), Want::Error { compile: true, .. }) => {
            return (Outcome::Passed, Some(module))
        }
        (Err(e @ (EngineError::Compile(_) | EngineError::TestsFailed(_))), _) => {
            return (Outcome::Refused(format!("refused: {}", brief(&e))), Some(module))
        }
        (Err(e), _) => return (Outcome::Divergent(format!("validation failed: {}", brief(&e))), Some(module)),
    };
    let input = case.input.as_ref().map(|v| aggregates::facts::JsonText::of(v).unwrap());
    let got = prepared.evaluate(case.rule.as_deref(), input.as_ref()).await;
    let outcome = match (&case.want, got) {
        (Want::Value(want), Ok(got)) => match (want, &got) {
            (Some(w), Some(g)) if cases::same_result(w, g, case.unordered) => Outcome::Passed,
            (None, None) => Outcome::Passed,
            _ => Outcome::Divergent(format!("answered {} where OPA answers {}", show(&got), show(want))),
        },
        (Want::Value(want), Err(e)) => Outcome::Divergent(format!("error ({}) where OPA answers {}", brief(&e), show(want))),
        (Want::Error { compile: true, code }, _) => Outcome::Divergent(format!("accepted a policy OPA rejects ({code})")),
        (Want::Error { .. }, Err(EngineError::Evaluation(_) | EngineError::BadResponse(_))) => Outcome::Passed,
        (Want::Error { code, .. }, Err(e)) => Outcome::Divergent(format!("{} where OPA reports {code}", brief(&e))),
        (Want::Error { code, .. }, Ok(got)) => Outcome::Divergent(format!("answered {} where OPA reports {code}", show(&got))),
    };
    (outcome, Some(module))
}

/// The case's version as the service's domain types accept it.
fn version_source(case: &Case) -> Result<PolicySource, aggregates::IdError> {
    let rego = RegoSource::parse(&case.modules[0])?;
    let modules = ExtraModules::parse(case.modules[1..].iter().map(|m| RegoSource::parse(m)).collect::<Result<_, _>>()?)?;
    let data = DataDocument::from_value(case.data.clone().unwrap_or_default())?;
    Ok(PolicySource::of(&VersionSource { rego, modules, data }))
}

/// Removes what a case uploaded to OPA (so later uploads do not recompile it all).
async fn unload(opa: &OpaEngine, module: &PolicyModule) {
    let _ = opa.unload_all(&OpaEngine::module_ids(module)).await;
}

#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    refused: usize,
    divergent: usize,
    failed_cases: BTreeMap<String, String>,
}

async fn run_all(engine: Arc<dyn PolicyEngine>, cases: &[Case], concurrency: usize, opa: Option<&OpaEngine>) -> Tally {
    let results: Vec<(String, Outcome)> = futures::stream::iter(cases.iter())
        .map(|case| {
            let engine = engine.clone();
            let owned = case.clone();
            async move {
                // A panic inside an engine is a divergence of that case, not the end of the run.
                let (outcome, module) = tokio::spawn(async move { run(engine.as_ref(), &owned).await })
                    .await
                    .unwrap_or_else(|e| (Outcome::Divergent(format!("the engine panicked: {e}")), None));
                if let (Some(opa), Some(module)) = (opa, module) {
                    unload(opa, &module).await;
                }
                (case.note.clone(), outcome)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut tally = Tally::default();
    for (note, outcome) in results {
        match outcome {
            Outcome::Passed => tally.passed += 1,
            Outcome::Refused(why) => {
                tally.refused += 1;
                tally.failed_cases.insert(note, why);
            }
            Outcome::Divergent(why) => {
                tally.divergent += 1;
                tally.failed_cases.insert(note, why);
            }
        }
    }
    tally
}

fn known_failures() -> BTreeSet<(String, String)> {
    std::fs::read_to_string(KNOWN_FAILURES)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" | ").map(|(e, n)| (e.to_owned(), n.to_owned())))
        .collect()
}

fn target_dir() -> std::path::PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opa_conformance_cases_that_passed_before_still_pass_on_both_engines() {
    let dir = cases::cases_dir();
    assert!(dir.is_dir(), "OPA's conformance cases are not at {} (scripts/services.sh up installs OPA)", dir.display());
    let raw = cases::load(&dir);
    assert!(raw.len() > 2000, "expected OPA's ~2,300 cases, found {}", raw.len());
    let mut counted = Vec::new();
    let mut excluded: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &raw {
        match cases::express(case) {
            Ok(c) => counted.push(c),
            Err(reason) => *excluded.entry(reason).or_default() += 1,
        }
    }
    let excluded_total: usize = excluded.values().sum();
    let reasons: Vec<Value> =
        EXCLUSIONS.iter().map(|(key, reason)| json!({"reason": reason, "count": excluded.get(key).copied().unwrap_or(0)})).collect();

    let timeout = Duration::from_secs(10);
    // An OPA of its own: every upload compiles all the modules OPA holds, so the other
    // tests' policies in the shared OPA would only slow the run down.
    let server = common::opa::Opa::start().await;
    let opa = OpaEngine::new(reqwest::Client::new(), &server.url(), timeout)
        .with_token(Some(governance_engine::config::Secret::new(server.token.clone())));
    #[allow(clippy::type_complexity)]
    let engines: Vec<(&str, Arc<dyn PolicyEngine>, usize, Option<&OpaEngine>)> = vec![
        ("embedded", Arc::new(EmbeddedEngine::new(timeout)), 2, None),
        // OPA recompiles every loaded module on each upload and removal (about eight per
        // case), so the cost of a case grows with the cases in flight. Measured on the
        // 2-core machine: 1 at a time 63.9 s, 2 61.7 s, 3 63.1 s, 4 78.9 s, 8 97.7-119.8 s.
        ("opa", Arc::new(opa.clone()), 2, Some(&opa)),
    ];
    let mut report = serde_json::Map::new();
    let mut failures = BTreeSet::new();
    for (name, engine, concurrency, opa) in engines {
        let started = std::time::Instant::now();
        let tally = run_all(engine, &counted, concurrency, opa).await;
        eprintln!(
            "{name}: {} of {} counted cases pass ({} refused, {} divergent, {excluded_total} excluded) in {:.1?}",
            tally.passed,
            counted.len(),
            tally.refused,
            tally.divergent,
            started.elapsed()
        );
        failures.extend(tally.failed_cases.keys().map(|n| (name.to_owned(), n.clone())));
        report.insert(
            name.into(),
            json!({
                "passed": tally.passed,
                "failed": tally.refused + tally.divergent,
                "refused": tally.refused,
                "divergent": tally.divergent,
                "excluded": excluded_total,
                "total": raw.len(),
                "failed_cases": tally.failed_cases,
            }),
        );
    }
    report.insert("excluded_reasons".into(), Value::Array(reasons));
    let out = target_dir().join("conformance.json");
    std::fs::create_dir_all(target_dir()).unwrap();
    std::fs::write(&out, serde_json::to_string_pretty(&Value::Object(report)).unwrap()).unwrap();
    eprintln!("wrote {}", out.display());

    if std::env::var("AUMOS_CONFORMANCE_BLESS").is_ok_and(|v| v == "1") {
        let mut text = String::from(
            "# OPA conformance cases that fail today, as `<engine> | <case note>` (tests/conformance.rs).\n\
             # A fix removes lines: regenerate with `AUMOS_CONFORMANCE_BLESS=1 make conformance`.\n",
        );
        for (engine, note) in &failures {
            text.push_str(&format!("{engine} | {note}\n"));
        }
        std::fs::write(KNOWN_FAILURES, text).unwrap();
        return;
    }
    let known = known_failures();
    let new: Vec<_> = failures.difference(&known).collect();
    let fixed: Vec<_> = known.difference(&failures).collect();
    assert!(
        new.is_empty(),
        "{} conformance case(s) fail that passed before (see target/conformance.json), e.g. {:?}",
        new.len(),
        new.iter().take(20).collect::<Vec<_>>()
    );
    if !fixed.is_empty() {
        eprintln!(
            "{} case(s) listed in tests/conformance/known-failures.txt now pass: remove them \
             (AUMOS_CONFORMANCE_BLESS=1 make conformance), e.g. {:?}",
            fixed.len(),
            fixed.iter().take(20).collect::<Vec<_>>()
        );
    }
}
