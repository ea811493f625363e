//! What each role can do on the audit cluster: the writer only appends, the reader only
//! reads, and nobody (the owner included) updates, deletes or truncates the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

async fn ensure_an_entry_exists() {
    let svc = Service::start(&[]).await;
    let t = Uuid::new_v4();
    let (status, _) = svc.call(Method::POST, "/api/v1/policies", Some(t), Some(&token(t, ADMIN)), Some(&policy_body("roles"))).await;
    assert_eq!(status, StatusCode::CREATED);
}

fn denied(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>, what: &str) {
    let err = result.expect_err(what).to_string();
    assert!(err.contains("permission denied"), "{what}: {err}");
}

#[tokio::test]
async fn the_writer_role_is_denied_select_update_delete_and_truncate() {
    ensure_an_entry_exists().await;
    let mut w = connect("AUMOS_GOVERNANCE_AUDIT_DB_URL").await;
    denied(sqlx::query("SELECT * FROM gov_audit_trail_entries").execute(&mut w).await, "select");
    denied(sqlx::query("UPDATE gov_audit_trail_entries SET actor = 'mallory'").execute(&mut w).await, "update");
    denied(sqlx::query("DELETE FROM gov_audit_trail_entries").execute(&mut w).await, "delete");
    denied(sqlx::query("TRUNCATE gov_audit_trail_entries").execute(&mut w).await, "truncate");
}

#[tokio::test]
async fn the_reader_role_can_only_select() {
    ensure_an_entry_exists().await;
    let mut r = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries").fetch_one(&mut r).await.unwrap();
    assert!(n > 0);
    denied(sqlx::query("UPDATE gov_audit_trail_entries SET actor = 'mallory'").execute(&mut r).await, "update");
    denied(sqlx::query("DELETE FROM gov_audit_trail_entries").execute(&mut r).await, "delete");
    denied(sqlx::query("TRUNCATE gov_audit_trail_entries").execute(&mut r).await, "truncate");
    denied(sqlx::query("INSERT INTO gov_audit_trail_entries (seq) VALUES (999999999)").execute(&mut r).await, "insert");
}

#[tokio::test]
async fn the_owner_is_stopped_by_the_append_only_triggers() {
    ensure_an_entry_exists().await;
    let mut admin = connect("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL").await;
    for sql in [
        "UPDATE gov_audit_trail_entries SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM gov_audit_trail_entries WHERE seq = 1",
        "TRUNCATE gov_audit_trail_entries",
    ] {
        let err = sqlx::query(sql).execute(&mut admin).await.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // Even a superuser is stopped while the triggers are in force.
    let mut su = connect("AUMOS_DEV_AUDIT_SUPERUSER_URL").await;
    let err = sqlx::query("DELETE FROM gov_audit_trail_entries WHERE seq = 1").execute(&mut su).await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");
}

#[tokio::test]
async fn an_insert_that_skips_a_seq_breaks_the_chain_or_forks_it_is_rejected() {
    ensure_an_entry_exists().await;
    let mut admin = connect("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL").await;
    let head: i64 = sqlx::query_scalar("SELECT max(seq) FROM gov_audit_trail_entries").fetch_one(&mut admin).await.unwrap();
    let insert = |seq: i64, prev: Vec<u8>| {
        sqlx::query(
            "INSERT INTO gov_audit_trail_entries (seq, tenant_id, aggregate_type, aggregate_id, aggregate_seq, event_type, event_version, \
             payload, actor, recorded_at, prev_hash, hash) VALUES ($1, gen_random_uuid(), 'X', gen_random_uuid()::text, 1, 'E', '1', '{}', 'a', now(), $2, $2)",
        )
        .bind(seq)
        .bind(prev)
    };
    // Gapless and linked: the chain constraint (each entry references its predecessor's
    // seq and hash).
    let gap = insert(head + 2, vec![0u8; 32]).execute(&mut admin).await.unwrap_err().to_string();
    assert!(gap.contains("gov_audit_trail_entries_chain"), "{gap}");
    let broken = insert(head + 1, vec![9u8; 32]).execute(&mut admin).await.unwrap_err().to_string();
    assert!(broken.contains("gov_audit_trail_entries_chain"), "{broken}");
    // No fork: a second entry at a position, even a new genesis.
    let fork = insert(head, vec![0u8; 32]).execute(&mut admin).await.unwrap_err().to_string();
    assert!(fork.contains("gov_audit_trail_entries_pkey"), "{fork}");
    let genesis = insert(1, vec![0u8; 32]).execute(&mut admin).await.unwrap_err().to_string();
    assert!(genesis.contains("gov_audit_trail_entries_pkey"), "{genesis}");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries WHERE seq > $1").bind(head).fetch_one(&mut admin).await.unwrap();
    assert_eq!(count, 0, "nothing was added");
}

/// On an empty ledger, the first entry must be seq 1 with the zero prev_hash.
#[tokio::test]
async fn the_genesis_entry_must_be_seq_one_with_the_zero_prev_hash() {
    use governance_engine::adapters::devstack::Cluster;
    use sqlx::Connection;
    let e = Embedded::start(&[]).await;
    let mut su = sqlx::PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::query("SET ROLE gov_ledger_admin").execute(&mut su).await.unwrap();
    let empty: i64 = sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries").fetch_one(&mut su).await.unwrap();
    if empty == 0 {
        let insert = |seq: i64, prev: Vec<u8>| {
            sqlx::query(
                "INSERT INTO gov_audit_trail_entries (seq, tenant_id, aggregate_type, aggregate_id, aggregate_seq, event_type, event_version, \
                 payload, actor, recorded_at, prev_hash, hash) VALUES ($1, gen_random_uuid(), 'X', gen_random_uuid()::text, 1, 'E', '1', '{}', 'a', now(), $2, $2)",
            )
            .bind(seq)
            .bind(prev)
        };
        let wrong = insert(1, vec![9u8; 32]).execute(&mut su).await.unwrap_err().to_string();
        assert!(wrong.contains("gov_audit_trail_entries_genesis"), "{wrong}");
        let not_one = insert(2, vec![0u8; 32]).execute(&mut su).await.unwrap_err().to_string();
        assert!(not_one.contains("gov_audit_trail_entries_chain"), "{not_one}");
    } else {
        panic!("a fresh stack's ledger should be empty before the first command, found {empty} entries");
    }
    drop(su);
    e.finish().await;
}

#[tokio::test]
async fn the_primary_app_role_cannot_connect_to_the_audit_cluster() {
    let app_url = var("AUMOS_DATABASE_URL");
    let audit_url = var("AUMOS_GOVERNANCE_AUDIT_DB_URL");
    // Same credentials as the app role, pointed at the audit cluster's host and port.
    let audit_host = audit_url.rsplit_once('@').unwrap().1;
    let app_creds = app_url.split_once("://").unwrap().1.rsplit_once('@').unwrap().0;
    for db in ["aumos_governance_audit", "postgres"] {
        let host = audit_host.split_once('/').unwrap().0;
        let url = format!("postgres://{app_creds}@{host}/{db}");
        let err = PgConnection::connect(&url).await.expect_err("the app role must not reach the audit cluster").to_string();
        assert!(err.contains("password authentication failed") || err.contains("does not exist"), "{err}");
    }
}

/// A ledger row as the chain check sees it: (seq, prev_hash, hash).
type Row = (i64, Vec<u8>, Vec<u8>);

/// The chain is checked per statement: a multi-row INSERT (the appender's batches) is
/// refused whole if any row leaves a gap or breaks the link, inside the statement or to
/// the entry before it, and accepted in any row order when it extends the chain.
#[tokio::test]
async fn a_multi_row_insert_with_a_gap_or_a_broken_link_anywhere_is_refused_whole() {
    use governance_engine::adapters::devstack::Cluster;
    let e = Embedded::start(&[]).await;
    let mut c = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::query("SET ROLE gov_ledger_writer").execute(&mut c).await.unwrap();
    let h = |n: u8| vec![n; 32];
    let zero = vec![0u8; 32];
    // Rows as (seq, prev_hash, hash); entry n's hash is [n; 32].
    let insert = |rows: Vec<Row>| {
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let prevs: Vec<Vec<u8>> = rows.iter().map(|r| r.1.clone()).collect();
        let hashes: Vec<Vec<u8>> = rows.iter().map(|r| r.2.clone()).collect();
        sqlx::query(
            "INSERT INTO gov_audit_trail_entries (seq, tenant_id, aggregate_type, aggregate_id, aggregate_seq, event_type, event_version, \
             payload, actor, recorded_at, prev_hash, hash) \
             SELECT s, gen_random_uuid(), 'X', gen_random_uuid()::text, 1, 'E', '1', '{}', 'a', now(), p, h \
             FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[]) AS u(s, p, h)",
        )
        .bind(seqs)
        .bind(prevs)
        .bind(hashes)
    };
    let mut tx = c.begin().await.unwrap();
    let empty: i64 =
        sqlx::query_scalar("SELECT head_seq FROM gov_ledger_begin_append('{}', '{}', '{}')").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(empty, 0, "a fresh stack's ledger is empty");
    // Accepted: a genesis batch, then a batch whose rows come out of order.
    insert(vec![(1, zero.clone(), h(1)), (2, h(1), h(2))]).execute(&mut *tx).await.unwrap();
    insert(vec![(4, h(3), h(4)), (3, h(2), h(3))]).execute(&mut *tx).await.unwrap();
    let refused: Vec<(&str, Vec<Row>, &str)> = vec![
        ("a gap inside the statement", vec![(5, h(4), h(5)), (7, h(5), h(7))], "gov_audit_trail_entries_chain"),
        ("a broken link inside the statement", vec![(5, h(4), h(5)), (6, h(9), h(6))], "gov_audit_trail_entries_chain"),
        ("a first row not linked to the head", vec![(5, h(9), h(5)), (6, h(5), h(6))], "gov_audit_trail_entries_chain"),
        ("a first row past the head", vec![(6, h(5), h(6)), (7, h(6), h(7))], "gov_audit_trail_entries_chain"),
        ("one seq twice", vec![(5, h(4), h(5)), (5, h(4), h(5))], "gov_audit_trail_entries_pkey"),
        ("a second genesis", vec![(1, zero.clone(), h(1))], "gov_audit_trail_entries_pkey"),
    ];
    for (what, rows, constraint) in refused {
        sqlx::query("SAVEPOINT attempt").execute(&mut *tx).await.unwrap();
        let err = insert(rows).execute(&mut *tx).await.expect_err(what);
        let db = err.as_database_error().unwrap();
        assert_eq!(db.constraint(), Some(constraint), "{what}: {err}");
        assert!(err.to_string().contains(constraint), "{what}: the message names the constraint: {err}");
        sqlx::query("ROLLBACK TO SAVEPOINT attempt").execute(&mut *tx).await.unwrap();
    }
    let head: i64 = sqlx::query_scalar("SELECT head_seq FROM gov_ledger_begin_append('{}', '{}', '{}')").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(head, 4, "only the two accepted statements were added");
    // Nothing of this is kept: the private stack's ledger stays empty.
    tx.rollback().await.unwrap();
    drop(c);
    e.finish().await;
}
