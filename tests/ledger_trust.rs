//! Trust in the ledger's key and checkpoints: a signing key readable by others stops
//! start-up; the audit database refuses a checkpoint beyond the head; the notary ignores a
//! checkpoint its key did not sign. The forging tests run on an embedded stack of their
//! own: a forged checkpoint in the shared audit database would disturb every other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use sqlx::PgConnection;
use uuid::Uuid;

#[test]
fn a_signing_key_readable_by_others_stops_start_up_naming_the_file_and_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("gov-key-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ledger.pem");
    std::fs::copy(var("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
        .arg("serve")
        .env("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE", &key)
        .env("AUMOS_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env_remove("AUMOS_KAFKA_BOOTSTRAP_SERVERS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("chmod 600 {}", key.display())), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn connect_to(url: &str) -> PgConnection {
    use sqlx::Connection;
    PgConnection::connect(url).await.unwrap()
}

async fn head(reader: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT max(seq) FROM gov_audit_trail_entries").fetch_one(reader).await.unwrap()
}

fn forged_insert(size: i64) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query("INSERT INTO gov_audit_checkpoints (tree_size, root_hash, origin, key_id, note) VALUES ($1, $2, 'x', 'x', 'forged')")
        .bind(size)
        .bind(vec![7u8; 32])
}

#[tokio::test]
async fn the_audit_database_refuses_a_checkpoint_beyond_the_ledger_head() {
    let e = Embedded::start(&[]).await;
    let t = Uuid::new_v4();
    let tok = e.token(t, "governance:admin");
    let (status, _) = e.svc.call(Method::POST, "/api/v1/policies", Some(t), Some(&tok), Some(&policy_body("beyond"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut w = connect_to(e.stack.urls().audit_writer.expose()).await;
    let err = forged_insert(9_000_000_000_000_000_000).execute(&mut w).await.unwrap_err().to_string();
    assert!(err.contains("beyond the ledger head"), "{err}");
    let err = sqlx::query("SELECT gov_ledger_add_checkpoint(9000000000000000000, $1, 'x', 'x', 'forged')")
        .bind(vec![7u8; 32])
        .execute(&mut w)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("beyond the ledger head"), "through the function too: {err}");
    drop(w);
    e.finish().await;
}

#[tokio::test]
async fn the_notary_ignores_a_checkpoint_its_key_did_not_sign() {
    let e = Embedded::start(&[]).await;
    let svc = &e.svc;
    let t = Uuid::new_v4();
    let tok = e.token(t, "governance:admin");
    let urls = e.stack.urls();
    let mut r = connect_to(urls.audit_reader.expose()).await;
    let mut w = connect_to(urls.audit_writer.expose()).await;
    // The writer role inserts a forged checkpoint at the head (retrying if a real one won
    // the race for that size).
    let mut forged_at = None;
    for i in 0..10 {
        svc.call(Method::POST, "/api/v1/policies", Some(t), Some(&tok), Some(&policy_body(&format!("forge{i}")))).await;
        let h = head(&mut r).await;
        if forged_insert(h).execute(&mut w).await.is_ok() {
            forged_at = Some(h);
            break;
        }
    }
    let forged_at = forged_at.expect("a forged checkpoint row was inserted");
    let (status, _) = svc.call(Method::POST, "/api/v1/policies", Some(t), Some(&tok), Some(&policy_body("after"))).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, cp) = svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(t), Some(&tok), None).await;
    assert_eq!(status, StatusCode::CREATED, "{cp}");
    assert!(cp["tree_size"].as_i64().unwrap() > forged_at && cp["note"] != "forged", "{cp}");
    let (status, latest) = svc.call(Method::GET, "/api/v1/ledger/checkpoints/latest", Some(t), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(latest["note"], "forged");
    let (status, _) = svc
        .call(Method::GET, &format!("/api/v1/ledger/consistency?from={forged_at}&to={}", cp["tree_size"]), Some(t), Some(&tok), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no proof is given from a checkpoint that does not verify");
    drop((r, w));
    e.finish().await;
}
