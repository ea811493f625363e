//! The Kafka clients over TLS and SASL, on a real broker: `scripts/services.sh` gives it a
//! SASL_SSL listener (a SCRAM-SHA-512 user) and an SSL listener that requires a client
//! certificate, both with a server certificate from a CA the script makes. Each test runs
//! on embedded clusters of its own, so its relay publishes a ledger of its own from seq 1,
//! under a topic prefix of its own (read back over the PLAINTEXT listener).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

/// A data directory whose embedded clusters outlive the services started on it.
struct Stack {
    dir: PathBuf,
    prefix: String,
}

impl Stack {
    fn new() -> Stack {
        let id = Uuid::new_v4();
        Stack { dir: std::env::temp_dir().join(format!("gov-kafka-tls-{id}")), prefix: format!("tls-{id}.") }
    }

    /// The service on this stack's clusters, relaying to `kafka` (variables) under the prefix.
    async fn serve(&self, kafka: &[(&str, String)]) -> Service {
        let data_dir = self.dir.display().to_string();
        let mut env: Vec<(&str, &str)> = vec![("AUMOS_GOVERNANCE_DATA_DIR", &data_dir), ("AUMOS_KAFKA_TOPIC_PREFIX", &self.prefix)];
        env.extend(kafka.iter().map(|(k, v)| (*k, v.as_str())));
        Service::spawn(&env, SHARED).await
    }

    fn token(&self, tenant: Uuid) -> String {
        let (ok, out, err) = cli(&self.dir, &["dev", "token", "--tenant", &tenant.to_string(), "--roles", "governance:admin"]);
        assert!(ok, "{err}");
        out.trim().to_owned()
    }

    fn audit_topic(&self) -> String {
        format!("{}governance.audit.entry.written", self.prefix)
    }

    fn finish(self) {
        if let Ok(stack) =
            governance_engine::adapters::devstack::LocalStack::open_existing(&self.dir, std::path::Path::new("/usr/lib/postgresql/15/bin"))
        {
            let _ = stack.stop_all();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The SASL_SSL listener with the SCRAM user, `password`, and the broker's CA unless `ca` is false.
fn sasl_ssl(password: &str, ca: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AUMOS_KAFKA_BOOTSTRAP_SERVERS", var("AUMOS_DEV_KAFKA_SASL_SSL_SERVERS")),
        ("AUMOS_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_owned()),
        ("AUMOS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
        ("AUMOS_KAFKA_SASL_USERNAME", var("AUMOS_DEV_KAFKA_SASL_USERNAME")),
        ("AUMOS_KAFKA_SASL_PASSWORD", password.to_owned()),
    ];
    if ca {
        env.push(("AUMOS_KAFKA_SSL_CA_LOCATION", var("AUMOS_DEV_KAFKA_CA_FILE")));
    }
    env
}

/// Creates a policy (the command must succeed whatever Kafka does); returns its id.
async fn create_policy(svc: &Service, tenant: Uuid, tok: &str, name: &str) -> String {
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(&policy_body(name))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["policy_id"].as_str().unwrap().to_owned()
}

/// Waits (over the PLAINTEXT listener) for a message keyed `key` on `topic`.
async fn arrives(topic: String, key: String) {
    tokio::task::spawn_blocking(move || {
        let consumer = kafka_consumer(&[topic.as_str()]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                if m.key() == Some(key.as_bytes()) {
                    consumer.unsubscribe();
                    return;
                }
            }
        }
        panic!("no message keyed {key} on {topic}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_relay_publishes_over_sasl_ssl_and_over_mutual_tls_and_replicate_reads_over_sasl_ssl() {
    let stack = Stack::new();
    let tenant = Uuid::new_v4();
    let sasl = sasl_ssl(&var("AUMOS_DEV_KAFKA_SASL_PASSWORD"), true);

    // SASL_SSL: SCRAM-SHA-512, the broker's certificate verified against its CA (and host).
    let svc = stack.serve(&sasl).await;
    let tok = stack.token(tenant);
    let id = create_policy(&svc, tenant, &tok, "over-sasl-ssl").await;
    arrives(stack.audit_topic(), id).await;
    let (status, ready) = svc.call(Method::GET, "/health/ready", Some(tenant), Some(&tok), None).await;
    assert_eq!(
        (status, ready["status"].as_str(), ready["checks"]["kafka"].as_str()),
        (StatusCode::OK, Some("ready"), Some("ok")),
        "{ready}"
    );
    let (status, cp) = svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::CREATED, "{cp}");
    let size = cp["tree_size"].as_i64().unwrap();
    let key = verifier_key_file(&svc, tenant, &tok).await;

    // `ledger replicate` reads the whole chain and the checkpoint back over SASL_SSL.
    let (topic, sasl_env) = (stack.audit_topic(), sasl.clone());
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"));
        cmd.args(["ledger", "replicate", "--from-kafka", "--public-key", key.to_str().unwrap(), "--topic", &topic]).args([
            "--until-seq",
            &size.to_string(),
            "--idle-exit-seconds",
            "60",
        ]);
        for (k, v) in &sasl_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("OK: verified head seq"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    drop(svc);

    // SSL with a client certificate, on the listener that requires one.
    let mtls = vec![
        ("AUMOS_KAFKA_BOOTSTRAP_SERVERS", var("AUMOS_DEV_KAFKA_SSL_SERVERS")),
        ("AUMOS_KAFKA_SECURITY_PROTOCOL", "ssl".to_owned()),
        ("AUMOS_KAFKA_SSL_CA_LOCATION", var("AUMOS_DEV_KAFKA_CA_FILE")),
        ("AUMOS_KAFKA_SSL_CERTIFICATE_LOCATION", var("AUMOS_DEV_KAFKA_CLIENT_CERT_FILE")),
        ("AUMOS_KAFKA_SSL_KEY_LOCATION", var("AUMOS_DEV_KAFKA_CLIENT_KEY_FILE")),
    ];
    let svc = stack.serve(&mtls).await;
    let id = create_policy(&svc, tenant, &tok, "over-mutual-tls").await;
    arrives(stack.audit_topic(), id).await;
    drop(svc);
    stack.finish();
}

/// Polls the admin's readiness until Kafka is reported unavailable; returns the reason.
async fn kafka_failure_reason(svc: &Service, tenant: Uuid, tok: &str) -> String {
    let start = Instant::now();
    loop {
        let (status, ready) = svc.call(Method::GET, "/health/ready", Some(tenant), Some(tok), None).await;
        assert_eq!(status, StatusCode::OK, "Kafka never makes the service unready: {ready}");
        if let Some(reason) = ready["details"]["errors"]["kafka"].as_str().filter(|r| r.contains("last client error")) {
            assert_eq!((ready["status"].as_str(), ready["checks"]["kafka"].as_str()), (Some("degraded"), Some("unavailable")), "{ready}");
            return reason.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "Kafka was not reported unavailable with a reason: {ready}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What anyone, and what `/metrics`, shows about a relay that cannot connect.
async fn visible_to_operators(svc: &Service, code: &str) {
    let r = svc.client.get(format!("{}/health/ready", svc.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let anonymous: Value = r.json().await.unwrap();
    assert_eq!((anonymous["status"].as_str(), anonymous["checks"]["kafka"].as_str()), (Some("degraded"), Some("unavailable")));
    assert!(anonymous.get("details").is_none(), "no reason for anonymous callers: {anonymous}");
    let metrics = svc.client.get(format!("{}/metrics", svc.base)).send().await.unwrap().text().await.unwrap();
    let counted =
        metrics.lines().any(|l| l.starts_with("aumos_governance_kafka_client_errors_total{") && l.contains(&format!("code=\"{code}\"")));
    assert!(counted, "the error is counted by its code {code}:\n{metrics}");
    let lag: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aumos_governance_consumer_lag_entries{consumer=\"kafka_relay\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the relay's lag is exported:\n{metrics}"));
    assert!(lag > 0, "nothing was published, so the relay lags: {lag}");
}

#[tokio::test]
async fn a_wrong_password_or_a_missing_ca_degrades_health_with_the_reason_for_an_admin_while_commands_succeed() {
    let stack = Stack::new();
    let tenant = Uuid::new_v4();

    let svc = stack.serve(&sasl_ssl("not-the-password", true)).await;
    let tok = stack.token(tenant);
    create_policy(&svc, tenant, &tok, "wrong-password").await;
    let reason = kafka_failure_reason(&svc, tenant, &tok).await;
    assert!(reason.contains("SASL authentication error"), "the admin is told the password was refused: {reason}");
    assert!(!reason.contains("not-the-password"), "the password never prints: {reason}");
    visible_to_operators(&svc, "Authentication").await;
    assert!(!svc.stop().await.contains("not-the-password"), "the password is not logged");

    // The right password, but the broker's CA is not trusted (only the system's CAs are).
    let svc = stack.serve(&sasl_ssl(&var("AUMOS_DEV_KAFKA_SASL_PASSWORD"), false)).await;
    create_policy(&svc, tenant, &tok, "missing-ca").await;
    let reason = kafka_failure_reason(&svc, tenant, &tok).await;
    assert!(reason.contains("certificate verify failed"), "the admin is told the certificate did not verify: {reason}");
    visible_to_operators(&svc, "SSL").await;
    drop(svc);
    stack.finish();
}
