//! The Kafka relay against the real broker: every entry reaches the audit topic in full
//! (and verifies), domain events reach their topics, keyed by aggregate, in order, with
//! CloudEvents headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use ledger::export::ExportEntry;
use ledger::LedgerEntry;
use rdkafka::message::{Headers, Message};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

struct Received {
    topic: String,
    key: String,
    value: Value,
    headers: HashMap<String, String>,
}

/// Collects the messages whose key is one of `keys` (the topics also carry every other
/// test's events) until `done` says enough.
fn consume_until(topics: &[&str], keys: &[&str], done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    let consumer = kafka_consumer(topics);
    let mut got = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if !keys.iter().any(|k| k.as_bytes() == m.key().unwrap_or_default()) {
                continue;
            }
            let headers = m
                .headers()
                .map(|h| h.iter().map(|x| (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())).collect())
                .unwrap_or_default();
            got.push(Received {
                topic: m.topic().to_owned(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                value: serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null),
                headers,
            });
            if done(&got) {
                return got;
            }
        }
    }
    panic!("timed out; received {} messages", got.len());
}

#[tokio::test]
async fn every_entry_reaches_kafka_keyed_ordered_with_cloudevents_headers() {
    let svc = Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (status, p) = svc
        .call(
            Method::POST,
            "/api/v1/policies",
            Some(tenant),
            Some(&tok),
            Some(&json!({"name": "kafka", "rego": "package k\nallow := true\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = p["policy_id"].as_str().unwrap().to_owned();
    svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(&tok), None).await;
    let (_, d) =
        svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&json!({"input": {}}))).await;
    let decision = d["decision_id"].as_str().unwrap().to_owned();

    let topics =
        ["governance.audit.entry.written", "governance.policy.created", "governance.policy.activated", "governance.policy.evaluated"];
    let (pid, did) = (id.clone(), decision.clone());
    let got = tokio::task::spawn_blocking(move || {
        let keys = [pid.clone(), did.clone()];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        consume_until(&topics, &keys, |got| {
            let mine = |t: &str, k: &str| got.iter().any(|m| m.topic == t && m.key == k);
            mine("governance.policy.created", &pid)
                && mine("governance.policy.activated", &pid)
                && mine("governance.policy.evaluated", &did)
                && got.iter().filter(|m| m.topic == "governance.audit.entry.written" && (m.key == pid || m.key == did)).count() >= 3
        })
    })
    .await
    .unwrap();

    let created = got.iter().find(|m| m.topic == "governance.policy.created" && m.key == id).unwrap();
    assert_eq!(created.value["name"], "kafka", "the domain event: {}", created.value);
    let h = &created.headers;
    assert_eq!(h["ce_specversion"], "1.0");
    assert_eq!(h["ce_type"], "com.aumos.governance.PolicyCreated");
    assert_eq!(h["ce_tenantid"], tenant.to_string());
    assert!(h["ce_source"].starts_with("/aumos/governance/"));
    assert!(h["ce_id"].ends_with(&format!("/{}", p["last_seq"])), "ce_id is derived from the ledger seq: {h:?}");
    assert!(chrono::DateTime::parse_from_rfc3339(&h["ce_time"]).is_ok());

    // The audit topic carries each entry in full, and it verifies.
    let audit: Vec<&Received> = got.iter().filter(|m| m.topic == "governance.audit.entry.written" && m.key == id).collect();
    let seqs: Vec<i64> = audit.iter().map(|m| m.value["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "per-aggregate order holds: {seqs:?}");
    for m in audit {
        let export: ExportEntry = serde_json::from_value(m.value.clone()).unwrap();
        let entry = LedgerEntry::try_from(&export).unwrap();
        assert_eq!(hex::encode(entry.computed_hash()), export.hash, "the relayed entry's hash recomputes");
        assert_eq!(export.prev_hash.len(), 64);
        assert!(m.headers["ce_id"].ends_with("/entry"));
    }
    let (_, ready) = svc.call(Method::GET, "/health/ready", Some(tenant), Some(&tok), None).await;
    assert!(ready["details"]["relay_lag_entries"].as_i64().is_some(), "an admin sees the relay's lag: {ready}");
}

#[tokio::test]
async fn a_replication_consumer_verifies_the_chain_and_checkpoints_from_kafka() {
    let svc = Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    for i in 0..5 {
        svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body(&format!("rep{i}")))).await;
    }
    let (status, cp) = svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::CREATED, "{cp}");
    let size = cp["tree_size"].as_i64().unwrap();
    let key = verifier_key_file(&svc, tenant, &tok).await;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args([
                "ledger",
                "replicate",
                "--from-kafka",
                "--public-key",
                key.to_str().unwrap(),
                "--until-seq",
                &size.to_string(),
                "--idle-exit-seconds",
                "60",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK: verified head seq"), "{stdout}");
}

#[tokio::test]
async fn the_replication_consumer_names_the_first_forged_entry() {
    // A mirror topic holding real entries, one of them altered in transit.
    let svc = Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    for i in 0..3 {
        svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body(&format!("fx{i}")))).await;
    }
    let key = verifier_key_file(&svc, tenant, &tok).await;
    let mirror = format!("mirror-{}", Uuid::new_v4());
    let mut reader = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    let head: i64 = sqlx::query_scalar("SELECT max(seq) FROM gov_audit_trail_entries").fetch_one(&mut reader).await.unwrap();
    let pool = sqlx::PgPool::connect(&var("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL")).await.unwrap();
    let entries = governance_engine::adapters::ledger::LedgerReader::new(pool).entries_after(0, head).await.unwrap();
    let producer: rdkafka::producer::FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", var("AUMOS_KAFKA_BOOTSTRAP_SERVERS")).create().unwrap();
    let forged_seq = (head / 2).max(1);
    for e in &entries {
        let mut export = ExportEntry::from(e);
        if e.seq == forged_seq {
            export.actor = "mallory".into();
        }
        let value = serde_json::to_vec(&export).unwrap();
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "ce_type", value: Some("com.aumos.governance.audit.entry.written") });
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&mirror).key(&e.aggregate_id).payload(&value).headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args([
                "ledger",
                "replicate",
                "--from-kafka",
                "--topic",
                &mirror,
                "--public-key",
                key.to_str().unwrap(),
                "--idle-exit-seconds",
                "20",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("first bad seq {forged_seq}:")), "{stderr}");
}

#[tokio::test]
async fn compliance_events_reach_their_topics_keyed_by_aggregate() {
    let svc = Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let body = json!({"regulation": "hipaa", "name": "kafka-wf", "audit_period_start": "2026-01-01", "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
    let (status, w) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(tenant), Some(&tok), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let wid = w["workflow_id"].as_str().unwrap().to_owned();
    let (status, _) = svc
        .call(
            Method::POST,
            &format!("/api/v1/compliance/workflows/{wid}/transitions"),
            Some(tenant),
            Some(&tok),
            Some(&json!({"to": "scoping", "reason": "start"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let metadata = json!({"workflow_id": wid, "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    let resp = svc.upload_evidence(tenant, &tok, &metadata, reqwest::multipart::Part::bytes(b"kafka".to_vec())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let eid = resp.json::<Value>().await.unwrap()["evidence_id"].as_str().unwrap().to_owned();

    let topics =
        ["governance.compliance.workflow.created", "governance.compliance.workflow.status_changed", "governance.evidence.submitted"];
    let (w2, e2) = (wid.clone(), eid.clone());
    let got = tokio::task::spawn_blocking(move || {
        let keys = [w2.clone(), e2.clone()];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        consume_until(&topics, &keys, |got| got.len() >= 3)
    })
    .await
    .unwrap();
    let on = |t: &str| got.iter().find(|m| m.topic == t).unwrap();
    assert_eq!(on("governance.compliance.workflow.created").key, wid);
    assert_eq!(on("governance.compliance.workflow.created").value["regulation"], "hipaa");
    assert_eq!(on("governance.compliance.workflow.status_changed").value["to"], "scoping");
    let evidence = on("governance.evidence.submitted");
    assert_eq!((evidence.key.as_str(), evidence.value["artifact"]["sha256"].as_str().map(str::len)), (eid.as_str(), Some(64)));
    assert_eq!(evidence.headers["ce_type"], "com.aumos.governance.EvidenceSubmitted");
}

#[tokio::test]
async fn every_policy_event_reaches_its_domain_topic_entries_say_their_kind_and_masked_input_stays_out() {
    let bootstrap = var("AUMOS_KAFKA_BOOTSTRAP_SERVERS");
    let svc =
        Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &bootstrap), ("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "15000")]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let body = json!({"name": "kafka-lifecycle", "rego": "package k\nallow := true\n", "input_mask": {"remove": ["/patient"]}});
    let (status, p) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let id = p["policy_id"].as_str().unwrap().to_owned();
    let v2 = json!({"rego": "package k\nallow := false\n"});
    svc.call(Method::POST, &format!("/api/v1/policies/{id}/versions"), Some(tenant), Some(&tok), Some(&v2)).await;
    svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(&tok), None).await;
    let input = json!({"input": {"patient": {"name": "Jane Secret-Patient"}, "ward": 3}});
    let (_, d) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&input)).await;
    let decision = d["decision_id"].as_str().unwrap().to_owned();
    for step in ["deactivate", "archive"] {
        let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/{step}"), Some(tenant), Some(&tok), None).await;
        assert_eq!(status, StatusCode::OK, "{step}");
    }
    let topics = [
        "governance.audit.entry.written",
        "governance.policy.version_added",
        "governance.policy.deactivated",
        "governance.policy.archived",
        "governance.policy.evaluated",
    ];
    let (pid, did) = (id.clone(), decision.clone());
    let got = tokio::task::spawn_blocking(move || {
        let keys = [pid.clone(), did.clone()];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        consume_until(&topics, &keys, |got| {
            let mine = |t: &str, k: &str| got.iter().any(|m| m.topic == t && m.key == k);
            mine("governance.policy.version_added", &pid)
                && mine("governance.policy.deactivated", &pid)
                && mine("governance.policy.archived", &pid)
                && mine("governance.policy.evaluated", &did)
                && got.iter().filter(|m| m.topic == "governance.audit.entry.written").count() >= 6
        })
    })
    .await
    .unwrap();
    let archived = got.iter().find(|m| m.topic == "governance.policy.archived").unwrap();
    assert_eq!(archived.headers["ce_type"], "com.aumos.governance.PolicyArchived");
    for m in got.iter().filter(|m| m.topic == "governance.audit.entry.written") {
        assert_eq!(m.value["kind"], "entry", "an entry message says so: {}", m.value);
    }
    let evaluated = got.iter().find(|m| m.topic == "governance.policy.evaluated").unwrap();
    assert_eq!(evaluated.value["input"], json!({"ward": 3}), "{}", evaluated.value);
    for m in &got {
        assert!(!m.value.to_string().contains("Secret-Patient"), "{}: {}", m.topic, m.value);
    }
}
