//! The embedded default (`serve` without database URLs) creates its own clusters, and the
//! "no state change without its ledger event" rule holds when the audit cluster is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use governance_engine::devstack::Cluster;
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

    let primary = e.superuser_url(Cluster::Primary);
    let rows_before = policy_rows(&primary).await;
    e.stack.stop(Cluster::Audit).unwrap();
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("must-not-exist"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "ledger_unavailable");
    let status = svc.client.get(format!("{}/health/ready", svc.base)).send().await.unwrap().status();
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
