//! Two service processes: exactly one runs each projector, no event is applied twice, the
//! follower still reads its own writes, and when the leader dies the follower takes over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn one_leader_per_projector_no_double_apply_and_failover() {
    let (one, two) = tokio::join!(Service::start(&[]), Service::start(&[]));
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let mut created = 0;
    for i in 0..40 {
        let svc = if i % 2 == 0 { &one } else { &two };
        let (status, p) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body(&format!("l{i}")))).await;
        assert_eq!(status, StatusCode::CREATED, "read-your-writes holds on the follower too: {p}");
        // Read back at once through the other process.
        let other = if i % 2 == 0 { &two } else { &one };
        let seq = p["last_seq"].as_i64().unwrap();
        let (status, _) = other
            .call(
                Method::GET,
                &format!("/api/v1/policies/{}?min_seq={seq}", p["policy_id"].as_str().unwrap()),
                Some(tenant),
                Some(&tok),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        created += 1;
    }
    let leaders = [one.log(), two.log()].iter().filter(|l| l.contains("this process now runs the projector")).count();
    assert!(leaders >= 1, "someone leads");
    let both_lead_policies =
        [one.log(), two.log()].iter().all(|l| l.contains("now runs the projector") && l.contains("\"projection\":\"policies\""));
    assert!(!both_lead_policies, "never two leaders of one projector at once");

    // Exactly one row per created policy: nothing applied twice, nothing skipped.
    let mut app = connect("AUMOS_DATABASE_URL").await;
    sqlx::query("BEGIN").execute(&mut app).await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(tenant.to_string()).execute(&mut app).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM gov_governance_policy_versions").fetch_one(&mut app).await.unwrap();
    sqlx::query("COMMIT").execute(&mut app).await.unwrap();
    assert_eq!(rows, created);

    // Kill whichever leads; the other takes over and keeps projecting.
    let (leader, survivor) = if one.log().contains("\"projection\":\"policies\"") { (one, two) } else { (two, one) };
    drop(leader);
    let (status, p) = survivor
        .call(
            Method::POST,
            "/api/v1/policies",
            Some(tenant),
            Some(&tok),
            Some(&json!({"name": "after-failover", "rego": "package a\nallow := true\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the survivor projects after failover: {p}");
    assert!(survivor.log().contains("this process now runs the projector"));
}

/// A standby tries the leader locks on connections it keeps: over three seconds of standing
/// by, its projectors (polling every 100 ms) open no new database connections.
#[tokio::test]
async fn a_standby_keeps_its_lock_connections_instead_of_opening_new_ones() {
    use governance_engine::adapters::devstack::Cluster;
    use sqlx::Connection;
    let e = Embedded::start(&[]).await;
    let data_dir = e.dir.display().to_string();
    let standby = Service::spawn(&[("AUMOS_GOVERNANCE_DATA_DIR", data_dir.as_str())], SHARED).await;
    let mut su = sqlx::PgConnection::connect(&e.superuser_url(Cluster::Primary)).await.unwrap();
    // Sessions ever established to the database (the statistics are flushed within a
    // second, so the samples are taken after pauses).
    let sessions = async |su: &mut sqlx::PgConnection| -> i64 {
        sqlx::query_scalar("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetch_one(su).await.unwrap()
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let before = sessions(&mut su).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = sessions(&mut su).await;
    assert!(after - before <= 2, "{} sessions were opened in three seconds of standing by", after - before);
    assert!(standby.log().matches("now runs the").count() == 0, "the first process leads everything");
    drop(su);
    standby.stop().await;
    e.finish().await;
}
