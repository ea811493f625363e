//! The embedded default (`serve` without database URLs) creates its own clusters, and the
//! "no state change without its ledger event" rule holds when the audit cluster is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use governance_engine::adapters::devstack::Cluster;
use reqwest::{Method, StatusCode};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

async fn policy_rows(url: &str) -> i64 {
    let mut su = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM gov_governance_policies").fetch_one(&mut su).await.unwrap()
}

#[tokio::test]
async fn embedded_default_serves_and_a_dead_audit_cluster_fails_commands_with_503_and_changes_nothing() {
    let e = Embedded::start(&[]).await;
    let svc = &e.svc;
    let tenant = Uuid::new_v4();
    let tok = e.token(tenant, "governance:admin,policy:author");

    let (status, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("embedded"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["policy_id"].as_str().unwrap();
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/policies/{id}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);

    // Evidence on the embedded default lands on the local disk, at its content address.
    let wf = serde_json::json!({"regulation": "iso42001", "name": "AIMS", "audit_period_start": "2026-01-01", "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
    let (status, w) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(tenant), Some(&tok), Some(&wf)).await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let metadata = serde_json::json!({"workflow_id": w["workflow_id"], "control_ids": ["GV.OC-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    let upload = |bytes: Vec<u8>| svc.upload_evidence(tenant, &tok, &metadata, reqwest::multipart::Part::bytes(bytes));
    let stored = |bytes: &[u8]| {
        use sha2::Digest;
        e.dir.join("artifacts/sha256").join(hex::encode(sha2::Sha256::digest(bytes))).exists()
    };
    let first = b"policy document v1".to_vec();
    assert_eq!(upload(first.clone()).await.status(), StatusCode::CREATED);
    assert!(stored(&first));

    let primary = e.superuser_url(Cluster::Primary);
    let rows_before = policy_rows(&primary).await;
    e.stack.stop(Cluster::Audit).unwrap();
    // No ledger, no evidence: 503, and the artifact is neither stored nor left in staging.
    let second = b"policy document v2".to_vec();
    let resp = upload(second.clone()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp.json().await.unwrap()), "ledger_unavailable");
    assert!(!stored(&second), "an artifact whose event was not recorded is removed again");
    let staging = e.dir.join("artifacts/staging");
    assert!(std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) == 0, "nothing is left in staging");
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("must-not-exist"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "ledger_unavailable");
    // Readiness reuses its last report for up to a second (CACHE_FOR): the start-up probe's
    // report may still be that fresh.
    let mut status = StatusCode::OK;
    for _ in 0..30 {
        status = svc.client.get(format!("{}/health/ready", svc.base)).send().await.unwrap().status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "readiness reports the dead audit cluster");
    assert_eq!(policy_rows(&primary).await, rows_before, "the primary database is unchanged");

    e.stack.start(Cluster::Audit).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        let (status, _) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("after-recovery"))).await;
        if status == StatusCode::CREATED {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ok, "commands succeed again once the audit cluster is back");

    let stack = e.stack.clone();
    let dir = e.dir.clone();
    let log = e.svc.stop().await;
    assert!(log.contains("shutdown complete"), "graceful shutdown: {log}");
    assert!(!stack.is_running(Cluster::Primary) && !stack.is_running(Cluster::Audit), "the embedded clusters stop with the service");
    let _ = std::fs::remove_dir_all(dir);
}
