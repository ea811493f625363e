//! The embedded default (`serve` without database URLs) creates its own clusters, and the
//! "no state change without its ledger event" rule holds when the audit cluster is down.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use governance_engine::devstack::{Cluster, LocalStack, PRIMARY_DB};
use reqwest::{Method, StatusCode};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// Every variable that would point the service at the shared services.
const SHARED: &[&str] = &[
    "AUMOS_DATABASE_URL",
    "AUMOS_DATABASE_MIGRATION_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_READER_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL",
    "AUMOS_JWT_PUBLIC_KEY_FILE",
    "AUMOS_JWT_PRIVATE_KEY_FILE",
    "AUMOS_KAFKA_BOOTSTRAP_SERVERS",
    "AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET",
];

fn dev_token(data_dir: &str, tenant: Uuid) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"));
    cmd.args(["dev", "token", "--tenant", &tenant.to_string(), "--roles", "governance:admin,policy:author"]);
    for k in SHARED {
        cmd.env_remove(k);
    }
    let out = cmd.env("AUMOS_GOVERNANCE_DATA_DIR", data_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.lines().count(), 1, "dev token prints only the token");
    token.trim().to_owned()
}

async fn policy_rows(stack: &LocalStack) -> i64 {
    let mut su = PgConnection::connect(&stack.superuser_url(Cluster::Primary, PRIMARY_DB)).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM gov_governance_policies").fetch_one(&mut su).await.unwrap()
}

#[tokio::test]
async fn embedded_default_serves_and_a_dead_audit_cluster_fails_commands_with_503_and_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("gov-embedded-{}", Uuid::new_v4()));
    let data_dir = dir.display().to_string();
    let svc = Service::spawn(&[("AUMOS_GOVERNANCE_DATA_DIR", &data_dir)], SHARED).await;
    let tenant = Uuid::new_v4();
    let tok = dev_token(&data_dir, tenant);

    let (status, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("embedded"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["policy_id"].as_str().unwrap();
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/policies/{id}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);

    let stack = LocalStack::open_existing(&dir, std::path::Path::new("/usr/lib/postgresql/15/bin")).unwrap();
    let rows_before = policy_rows(&stack).await;
    stack.stop(Cluster::Audit).unwrap();
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("must-not-exist"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "ledger_unavailable");
    let (status, _) = svc.client.get(format!("{}/health/ready", svc.base)).send().await.map(|r| (r.status(), ())).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "readiness reports the dead audit cluster");
    assert_eq!(policy_rows(&stack).await, rows_before, "the primary database is unchanged");

    stack.start(Cluster::Audit).unwrap();
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

    let log = svc.stop().await;
    assert!(log.contains("shutdown complete"), "graceful shutdown: {log}");
    assert!(!stack.is_running(Cluster::Primary) && !stack.is_running(Cluster::Audit), "the embedded clusters stop with the service");
    let _ = std::fs::remove_dir_all(dir);
}
