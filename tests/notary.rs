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

/// What the notary stores for a tree of `n` leaves: every complete subtree of 16 leaves or
/// more (level 4 and up), once; smaller ones are hashed again from their entries.
fn stored_nodes(n: i64) -> i64 {
    (4..63).map(|level| n >> level).sum()
}

async fn node_count(e: &Embedded) -> i64 {
    let mut su = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM gov_audit_tree_nodes").fetch_one(&mut su).await.unwrap()
}

/// A fresh ledger of 24 entries or so (12 policies), with a checkpoint of its size: one full
/// tile of 16 and the right edge inside the next.
async fn a_checkpoint_inside_the_second_tile() -> (Embedded, Uuid, String, i64) {
    let e = Embedded::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = e.token(tenant, "governance:admin");
    create_policies(&e.svc, tenant, &tok, "a", 12).await;
    let n = checkpoint(&e.svc, tenant, &tok).await["tree_size"].as_i64().unwrap();
    assert!(n > 16 && n < 32 && n % 16 != 0, "the tree ends inside the second tile: {n}");
    (e, tenant, tok, n)
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
    let (e, tenant, tok, n) = a_checkpoint_inside_the_second_tile().await;
    assert_eq!(node_count(&e).await, stored_nodes(n));

    let e = restart(e).await;
    create_policies(&e.svc, tenant, &tok, "b", 9).await;
    let second = checkpoint(&e.svc, tenant, &tok).await;
    let m = second["tree_size"].as_i64().unwrap();
    assert!(m > 32 && m % 16 != 0, "{m}");
    assert_eq!(node_count(&e).await, stored_nodes(m));

    proofs_verify_offline(&e, tenant, &tok, n, m).await;
    e.finish().await;
}

/// The consistency proof from checkpoint `n` to `m` and inclusion proofs inside the first
/// tile, in the tile `n` ends in, and of the last entry verify offline against the signed
/// checkpoints.
async fn proofs_verify_offline(e: &Embedded, tenant: Uuid, tok: &str, n: i64, m: i64) {
    let key = verifier_key_file(&e.svc, tenant, tok).await;
    let (status, consistency) =
        e.svc.call(Method::GET, &format!("/api/v1/ledger/consistency?from={n}&to={m}"), Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK, "{consistency}");
    let mut proofs = vec![consistency];
    for seq in [3, n, m] {
        let (status, inclusion) =
            e.svc.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), Some(tenant), Some(tok), None).await;
        assert_eq!(status, StatusCode::OK, "{inclusion}");
        proofs.push(inclusion);
    }
    for proof in proofs {
        let file = e.dir.join(format!("proof-{}.json", Uuid::new_v4()));
        std::fs::write(&file, proof.to_string()).unwrap();
        let (ok, out, err) = cli(&e.dir, &["ledger", "verify-proof", file.to_str().unwrap(), "--public-key", key.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
    }
}

#[tokio::test]
async fn smaller_nodes_stored_by_older_versions_or_the_writer_role_are_never_read_even_wrong_ones() {
    let (e, tenant, tok, n) = a_checkpoint_inside_the_second_tile().await;
    // Every position below level 4 within the first n leaves filled with a wrong hash, as
    // the writer role's gov_ledger_add_tree_nodes accepts (the notary no longer fills them),
    // including the last leaf, which would move where a restarted notary continues.
    let (mut levels, mut idxs) = (Vec::<i16>::new(), Vec::<i64>::new());
    for level in 0..4i16 {
        for idx in 0..(n >> level) {
            levels.push(level);
            idxs.push(idx);
        }
    }
    let hashes = vec![vec![7u8; 32]; levels.len()];
    let mut su = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::query("SET ROLE gov_ledger_writer").execute(&mut su).await.unwrap();
    sqlx::query("SELECT gov_ledger_add_tree_nodes($1, $2, $3)").bind(&levels).bind(&idxs).bind(&hashes).execute(&mut su).await.unwrap();
    // A stored node the notary reads (level 4) cannot be given another hash.
    let refused = sqlx::query("SELECT gov_ledger_add_tree_nodes($1, $2, $3)")
        .bind(vec![4i16])
        .bind(vec![0i64])
        .bind(vec![vec![7u8; 32]])
        .execute(&mut su)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("differs from the one computed"), "{refused}");
    drop(su);

    let e = restart(e).await;
    create_policies(&e.svc, tenant, &tok, "b", 9).await;
    let m = checkpoint(&e.svc, tenant, &tok).await["tree_size"].as_i64().unwrap();
    assert_eq!(node_count(&e).await, stored_nodes(m) + levels.len() as i64, "only subtrees of 16 leaves or more were added");
    proofs_verify_offline(&e, tenant, &tok, n, m).await;
    e.finish().await;
}

#[tokio::test]
async fn a_stored_node_that_contradicts_the_signed_checkpoint_stops_the_notary_after_a_restart() {
    let e = Embedded::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = e.token(tenant, "governance:admin");
    create_policies(&e.svc, tenant, &tok, "a", 9).await;
    let cp = checkpoint(&e.svc, tenant, &tok).await;
    assert!(cp["tree_size"].as_i64().unwrap() > 16, "{cp}");
    // Level 4, index 0 covers the first 16 leaves: part of the signed root, whose last
    // leaves lie beyond the stored nodes (hashed again from their entries at start-up).
    let mut su = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::raw_sql("SET session_replication_role = replica; UPDATE gov_audit_tree_nodes SET hash = decode(repeat('07', 32), 'hex') WHERE level = 4 AND idx = 0")
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

#[tokio::test]
async fn proofs_of_every_entry_of_a_tile_read_and_hash_its_entries_once() {
    let (e, tenant, tok, n) = a_checkpoint_inside_the_second_tile().await;
    let hashed = || async { metric_sample(&e.svc.metrics_text().await, "aumos_governance_ledger_tiles_hashed_total").unwrap_or(0.0) };
    let before = hashed().await;
    // Each proof against the checkpoint of n needs the smaller subtrees of the entry's own
    // tile and of the right edge's.
    for seq in 1..=n {
        let (status, proof) = e.svc.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), Some(tenant), Some(&tok), None).await;
        assert_eq!(status, StatusCode::OK, "{proof}");
    }
    assert_eq!(hashed().await - before, 2.0, "the two tiles, each read once for {n} proofs");
    // The right edge's tile grows: a proof against a larger checkpoint needs more of its
    // leaves than were held, so it is read again (once).
    create_policies(&e.svc, tenant, &tok, "b", 1).await;
    let m = checkpoint(&e.svc, tenant, &tok).await["tree_size"].as_i64().unwrap();
    assert!(m < 32, "{m}");
    let before = hashed().await;
    for seq in [m, m - 1, 1] {
        let (status, proof) = e.svc.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), Some(tenant), Some(&tok), None).await;
        assert_eq!(status, StatusCode::OK, "{proof}");
    }
    assert_eq!(hashed().await - before, 1.0, "the grown tile, read again once");
    proofs_verify_offline(&e, tenant, &tok, n, m).await;
    e.finish().await;
}
