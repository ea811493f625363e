//! Kafka down: commands still succeed (the ledger is the source of truth); once the broker
//! is back every event arrives, in per-aggregate order, and any duplicate repeats its
//! ce_id. (Its own test binary: it stops the shared broker.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::message::{Headers, Message};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

fn services(cmd: &str) {
    let out =
        std::process::Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh")).arg(cmd).output().unwrap();
    assert!(out.status.success(), "services.sh {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the broker again however the test ends, so later tests find it running.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh")).arg("kafka-start").output();
    }
}

#[tokio::test]
async fn with_kafka_down_commands_succeed_and_every_event_arrives_once_it_is_back() {
    let svc = Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let _back = BrokerBack;
    services("kafka-stop");
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, p) = svc
            .call(
                Method::POST,
                "/api/v1/policies",
                Some(tenant),
                Some(&tok),
                Some(&json!({"name": format!("k{i}"), "rego": "package k\nallow := true\n"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "commands do not need Kafka: {p}");
        let id = p["policy_id"].as_str().unwrap().to_owned();
        let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(&tok), None).await;
        assert_eq!(status, StatusCode::OK);
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    services("kafka-start");

    let wanted: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let got = tokio::task::spawn_blocking(move || {
        let consumer = kafka_consumer(&["governance.audit.entry.written"]);
        let mut per_aggregate: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                if !wanted.contains(&key) {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                let ce_id = m
                    .headers()
                    .and_then(|h| h.iter().find(|x| x.key == "ce_id").map(|x| String::from_utf8_lossy(x.value.unwrap()).into_owned()))
                    .unwrap();
                per_aggregate.entry(key).or_default().push((v["seq"].as_i64().unwrap(), ce_id));
                let complete = per_aggregate.len() == wanted.len()
                    && per_aggregate.values().all(|v| v.iter().map(|(s, _)| *s).collect::<std::collections::HashSet<_>>().len() >= 2);
                if complete {
                    return per_aggregate;
                }
            }
        }
        panic!("not every event arrived: {per_aggregate:?}");
    })
    .await
    .unwrap();
    for (key, events) in got {
        // Per-aggregate order; a duplicate (at-least-once) repeats the same ce_id.
        let mut last = 0;
        let mut ids_by_seq: HashMap<i64, String> = HashMap::new();
        for (seq, ce_id) in events {
            assert!(seq >= last, "{key}: order per aggregate");
            last = seq;
            if let Some(previous) = ids_by_seq.insert(seq, ce_id.clone()) {
                assert_eq!(previous, ce_id, "a duplicate carries the same ce_id");
            }
        }
    }
}
