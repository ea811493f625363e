//! Schemathesis (PyPI, pinned in scripts/requirements-dev.txt) against the live service on
//! the real services, with a valid admin token: every documented operation, positive and
//! negative inputs, checked for server errors, undocumented status codes, content types
//! and response bodies that do not match the documented schema. A panic in a handler
//! would surface as a 500 (and in the log), so it is covered by the same checks.
//!
//! One worker: with several, Python 3.11's `ast` module (which hypothesis uses to describe
//! filters) trips over its own recursion counter across threads (a CPython bug fixed in
//! later releases) and schemathesis reports a runtime error of its own.
//!
//! The run is bounded by `AUMOS_FUZZ_MAX_EXAMPLES` (default 30 generated cases per
//! operation and phase) so that CI stays within its time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn schemathesis_finds_no_server_error_or_schema_violation_in_any_documented_operation() {
    // A short read-your-writes wait: every generated `min_seq` ahead of the ledger waits
    // that long before it is answered, through the same path as with the product's 2 s.
    // With 2 s those waits took about half of the run (8 reads, 3-7 s each in the report,
    // one worker), and the harness's 8 s would near schemathesis's 10 s timeout.
    let svc = Service::start(&[("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "200")]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    // Something to find: an active policy, a decision, and a checkpoint, so the fuzzer's
    // reads reach real rows as well as 404s.
    let (_, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("fuzz"))).await;
    let id = created["policy_id"].as_str().unwrap().to_owned();
    svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(&tok), None).await;
    let (_, decision) =
        svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&json!({"input": {}}))).await;
    svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(&tok), None).await;
    let wf = json!({"regulation": "soc2", "name": "fuzz", "audit_period_start": "2026-01-01", "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
    let (_, workflow) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(tenant), Some(&tok), Some(&wf)).await;
    let workflow_id = workflow["workflow_id"].as_str().unwrap().to_owned();
    let metadata = json!({"workflow_id": workflow_id, "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    let resp = svc.upload_evidence(tenant, &tok, &metadata, reqwest::multipart::Part::bytes(b"fuzz".to_vec())).await;
    let evidence_id = resp.json::<serde_json::Value>().await.unwrap()["evidence_id"].as_str().unwrap().to_owned();

    let python = var("AUMOS_DEV_PYTHON");
    let schemathesis = std::path::Path::new(&python).with_file_name("schemathesis");
    let examples = std::env::var("AUMOS_FUZZ_MAX_EXAMPLES").unwrap_or_else(|_| "30".into());
    let report = std::env::temp_dir().join(format!("gov-fuzz-{tenant}"));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/schemathesis.toml");
    let out = Command::new(schemathesis)
        .args(["--config-file", config, "run", &format!("{}/api/v1/openapi.json", svc.base)])
        .args(["--header", &format!("Authorization: Bearer {tok}")])
        .args(["--header", &format!("X-Tenant-ID: {tenant}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--max-examples", &examples, "--workers", "1", "--seed", "20261128"])
        .args(["--request-timeout", "10", "--suppress-health-check", "too_slow,filter_too_much"])
        .args(["--report", "junit", "--report-dir", report.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("GOV_FUZZ_POLICY_ID", &id)
        .env("GOV_FUZZ_WORKFLOW_ID", &workflow_id)
        .env("GOV_FUZZ_EVIDENCE_ID", &evidence_id)
        .env("GOV_FUZZ_DECISION_ID", decision["decision_id"].as_str().unwrap())
        .env("GOV_FUZZ_LEDGER_SEQ", decision["ledger_seq"].to_string())
        .output()
        .expect("run schemathesis (scripts/services.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = svc.log();
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
    assert!(out.status.success(), "schemathesis failed:\n{stdout}\n{stderr}");
    // It ran the operations, rather than e.g. failing to load the document.
    assert!(stdout.contains("passed"), "{stdout}");
    eprintln!("{stdout}");
}
