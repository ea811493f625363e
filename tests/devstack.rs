//! The local clusters of the embedded default (`make run`, `dev up`): a port taken by
//! another process between its choice and the cluster's start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use governance_engine::adapters::devstack::{Cluster, LocalStack};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

fn pg_bin() -> std::path::PathBuf {
    std::env::var("AUMOS_GOVERNANCE_PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()).into()
}

/// The port of a cluster's URL.
fn port(stack: &LocalStack, c: Cluster) -> u16 {
    let url = stack.superuser_url(c, "postgres");
    let (_, rest) = url.split_once("@127.0.0.1:").unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_cluster_whose_chosen_port_another_process_took_starts_on_a_new_port_that_later_runs_keep() {
    let dir = std::env::temp_dir().join(format!("gov-devstack-{}", Uuid::new_v4()));
    let stack = LocalStack::up(&dir, &pg_bin(), None).await.unwrap();
    let (primary, audit) = (port(&stack, Cluster::Primary), port(&stack, Cluster::Audit));
    stack.stop_all().unwrap();
    // Another process binds the audit cluster's port while it is stopped.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", audit)).unwrap();

    let again = LocalStack::up(&dir, &pg_bin(), None).await.unwrap();
    let moved = port(&again, Cluster::Audit);
    assert_ne!(moved, audit, "the audit cluster moved off the taken port");
    assert_eq!(port(&again, Cluster::Primary), primary, "the primary's port was free and stays");
    let mut c = PgConnection::connect(&again.superuser_url(Cluster::Audit, "postgres")).await.unwrap();
    let serving: i32 = sqlx::query_scalar("SELECT current_setting('port')::int").fetch_one(&mut c).await.unwrap();
    assert_eq!(serving, i32::from(moved), "the cluster serves on the port its URL names");
    c.close().await.unwrap();
    again.stop_all().unwrap();

    // The move is kept: the next start of the same stack uses the new port.
    let third = LocalStack::up(&dir, &pg_bin(), None).await.unwrap();
    assert_eq!(port(&third, Cluster::Audit), moved);
    third.stop_all().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_cluster_whose_given_port_is_taken_is_not_moved_and_its_start_fails() {
    let dir = std::env::temp_dir().join(format!("gov-devstack-{}", Uuid::new_v4()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = LocalStack::up(&dir, &pg_bin(), Some((free, taken_port))).await;
    assert!(refused.is_err(), "a port the caller gave is the caller's: the start fails rather than moving");
    if let Ok(stack) = LocalStack::open_existing(&dir, &pg_bin()) {
        let _ = stack.stop_all();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
