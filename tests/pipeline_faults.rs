//! Crashes (SIGKILL) in the middle of work: a relay killed mid-batch loses nothing and
//! repeats only with the same ce_id; a projector killed mid-batch applies no event twice
//! and skips none. (Its own binary: it kills processes that lead shared work.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use rdkafka::message::{Headers, Message};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

async fn burst(svc: &Service, tenant: Uuid, tok: &str, n: usize) -> Vec<i64> {
    let (_, p) = svc
        .call(
            Method::POST,
            "/api/v1/policies",
            Some(tenant),
            Some(tok),
            Some(&json!({"name": "burst", "rego": "package b\nallow := true\n"})),
        )
        .await;
    let id = p["policy_id"].as_str().unwrap().to_owned();
    svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(tok), None).await;
    let calls = (0..n).map(|_| {
        let id = id.clone();
        async move {
            svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(tok), Some(&json!({"input": {}}))).await
        }
    });
    futures::stream::iter(calls)
        .buffer_unordered(16)
        .filter_map(|(s, r)| async move { (s == StatusCode::OK).then(|| r["ledger_seq"].as_i64().unwrap()) })
        .collect()
        .await
}

async fn scalar(url_var: &str, sql: &str) -> i64 {
    let mut c = connect(url_var).await;
    sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(&mut c).await.unwrap().unwrap_or(0)
}

fn kafka() -> (&'static str, String) {
    ("AUMOS_KAFKA_BOOTSTRAP_SERVERS", var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))
}

#[tokio::test]
async fn a_relay_killed_mid_batch_loses_nothing_and_repeats_only_with_the_same_ce_id() {
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    // Every one of the 3,000 evaluations must be answered: the 200 ms evaluation deadline
    // is not what this test is about, and a loaded machine can pass it.
    let writer = Service::start(&[("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "5000")]).await;
    let seqs: HashSet<i64> = burst(&writer, tenant, &tok, 3000).await.into_iter().collect();
    assert_eq!(seqs.len(), 3000);
    let head = scalar("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", "SELECT max(seq) FROM gov_audit_trail_entries").await;

    let (k, v) = kafka();
    let start = scalar("AUMOS_DEV_PRIMARY_SUPERUSER_URL", "SELECT max(position) FROM gov_relay_positions WHERE relay = 'kafka'").await;
    let mut relay = Service::start(&[(k, &v)]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pos = scalar("AUMOS_DEV_PRIMARY_SUPERUSER_URL", "SELECT max(position) FROM gov_relay_positions WHERE relay = 'kafka'").await;
        if pos > start || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.kill_hard(); // with the next batch in flight
    let _relay2 = Service::start(&[(k, &v)]).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while scalar("AUMOS_DEV_PRIMARY_SUPERUSER_URL", "SELECT max(position) FROM gov_relay_positions WHERE relay = 'kafka'").await < head {
        assert!(Instant::now() < deadline, "the second relay catches up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tenant_text = tenant.to_string();
    let seen = tokio::task::spawn_blocking(move || {
        let consumer = kafka_consumer(&["governance.audit.entry.written"]);
        let mut seen: HashMap<i64, HashSet<String>> = HashMap::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) && !seqs.iter().all(|s| seen.contains_key(s)) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let tid = m.headers().and_then(|h| {
                    h.iter().find(|x| x.key == "ce_tenantid").and_then(|x| x.value).map(|b| String::from_utf8_lossy(b).into_owned())
                });
                if tid.as_deref() != Some(tenant_text.as_str()) {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                let ce_id = m
                    .headers()
                    .and_then(|h| {
                        h.iter().find(|x| x.key == "ce_id").and_then(|x| x.value).map(|b| String::from_utf8_lossy(b).into_owned())
                    })
                    .unwrap();
                seen.entry(v["seq"].as_i64().unwrap()).or_default().insert(ce_id);
            }
        }
        (seqs.iter().filter(|s| !seen.contains_key(s)).count(), seen.values().all(|ids| ids.len() == 1))
    })
    .await
    .unwrap();
    assert_eq!(seen.0, 0, "no decision entry was lost");
    assert!(seen.1, "a repeated entry always carries the same ce_id");
}

#[tokio::test]
async fn a_projector_killed_mid_batch_applies_no_event_twice_and_skips_none() {
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let mut first = Service::start(&[]).await;
    // Kill once a few hundred decisions are recorded: the burst and the projector are
    // both mid-stream then, whatever the machine's speed.
    let killer = async {
        let query = format!("SELECT count(*) FROM gov_audit_trail_entries WHERE event_type = 'PolicyEvaluated' AND tenant_id = '{tenant}'");
        let deadline = Instant::now() + Duration::from_secs(60);
        while scalar("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", &query).await < 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let work = burst(&first, tenant, &tok, 2000);
    tokio::select! {
        _ = killer => {}
        _ = work => {}
    }
    first.kill_hard();
    let _second = Service::start(&[]).await;
    let head = scalar("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", "SELECT max(seq) FROM gov_audit_trail_entries").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar("AUMOS_DEV_PRIMARY_SUPERUSER_URL", "SELECT position FROM gov_projection_positions WHERE projection = 'decisions'").await
        < head
    {
        assert!(Instant::now() < deadline, "the new leader catches up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_ledger = scalar(
        "AUMOS_GOVERNANCE_AUDIT_DB_READER_URL",
        &format!("SELECT count(*) FROM gov_audit_trail_entries WHERE event_type = 'PolicyEvaluated' AND tenant_id = '{tenant}'"),
    )
    .await;
    let projected =
        scalar("AUMOS_DEV_PRIMARY_SUPERUSER_URL", &format!("SELECT count(*) FROM gov_policy_decisions WHERE tenant_id = '{tenant}'")).await;
    let distinct = scalar(
        "AUMOS_DEV_PRIMARY_SUPERUSER_URL",
        &format!("SELECT count(DISTINCT ledger_seq) FROM gov_policy_decisions WHERE tenant_id = '{tenant}'"),
    )
    .await;
    assert!(in_ledger > 0);
    assert_eq!(projected, in_ledger, "every recorded decision is projected exactly once");
    assert_eq!(distinct, projected, "no event applied twice");
}
