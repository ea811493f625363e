//! The notary keeps only the tree's right edge in memory: the complete subtree hashes are
//! stored in the audit database, a restarted notary continues the same tree from them
//! (reading only entries they do not cover), proofs come from stored nodes, and stored
//! nodes that contradict the signed checkpoints stop it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use governance_engine::adapters::devstack::Cluster;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

async fn create_policies(svc: &Service, tenant: Uuid, tok: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let (status, body) =
            svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(&policy_body(&format!("{prefix}{i}")))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

async fn checkpoint(svc: &Service, tenant: Uuid, tok: &str) -> Value {
    let (status, cp) = svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::CREATED, "{cp}");
    cp
}

async fn node_count(e: &Embedded) -> i64 {
    let mut su = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM gov_audit_tree_nodes").fetch_one(&mut su).await.unwrap()
}

/// Restarts the service on the same data directory (its clusters stop and start with it).
async fn restart(e: Embedded) -> Embedded {
    let Embedded { svc, dir, stack } = e;
    svc.stop().await;
    let data_dir = dir.display().to_string();
    let svc = Service::spawn(&[("AUMOS_GOVERNANCE_DATA_DIR", data_dir.as_str())], SHARED).await;
    Embedded { svc, dir, stack }
}

#[tokio::test]
async fn the_tree_is_stored_and_a_restarted_notary_continues_it_with_proofs_that_verify() {
    let e = Embedded::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = e.token(tenant, "governance:admin");
    create_policies(&e.svc, tenant, &tok, "a", 5).await;
    let first = checkpoint(&e.svc, tenant, &tok).await;
    let n = first["tree_size"].as_i64().unwrap();
    // Every complete subtree of n leaves, once: 2n - popcount(n) nodes.
    assert_eq!(node_count(&e).await, 2 * n - i64::from(n.count_ones()));

    let e = restart(e).await;
    create_policies(&e.svc, tenant, &tok, "b", 4).await;
    let second = checkpoint(&e.svc, tenant, &tok).await;
    let m = second["tree_size"].as_i64().unwrap();
    assert_eq!(node_count(&e).await, 2 * m - i64::from(m.count_ones()));

    // Proofs from stored nodes verify offline against the signed checkpoints.
    let key = verifier_key_file(&e.svc, tenant, &tok).await;
    let (status, consistency) =
        e.svc.call(Method::GET, &format!("/api/v1/ledger/consistency?from={n}&to={m}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK, "{consistency}");
    let (status, inclusion) = e.svc.call(Method::GET, "/api/v1/ledger/entries/3/proof", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK, "{inclusion}");
    for proof in [consistency, inclusion] {
        let file = e.dir.join(format!("proof-{}.json", Uuid::new_v4()));
        std::fs::write(&file, proof.to_string()).unwrap();
        let (ok, out, err) = cli(&e.dir, &["ledger", "verify-proof", file.to_str().unwrap(), "--public-key", key.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
    }
    e.finish().await;
}

#[tokio::test]
async fn a_stored_node_that_contradicts_the_signed_checkpoint_stops_the_notary_after_a_restart() {
    let e = Embedded::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = e.token(tenant, "governance:admin");
    create_policies(&e.svc, tenant, &tok, "a", 3).await;
    checkpoint(&e.svc, tenant, &tok).await;
    // Level 2, index 0 covers the first four of the six leaves: part of the signed root.
    let mut su = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::raw_sql("SET session_replication_role = replica; UPDATE gov_audit_tree_nodes SET hash = decode(repeat('07', 32), 'hex') WHERE level = 2 AND idx = 0")
        .execute(&mut su)
        .await
        .unwrap();
    drop(su);
    let e = restart(e).await;
    create_policies(&e.svc, tenant, &tok, "b", 1).await;
    let (status, body) = e.svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(e.svc.log().contains("do not give the signed root"), "the log says why");
    e.finish().await;
}
