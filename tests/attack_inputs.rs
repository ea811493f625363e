//! Hostile inputs that are accepted: the costliest a tenant may have decided. The engine
//! is sent, the ledger records and the read model keeps the input's canonical text, and
//! another tenant stays served meanwhile.
//!
//! Run beside another appending service, one of its evaluations was once answered 503: a
//! batch of ~1 MiB entries lost the race for the next seq to the other process's fast
//! appends on each of the appender's careful attempts. The fast path now yields to a
//! careful one (`ledger_concurrency` holds that test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Costly inputs a tenant may have decided: a quarter of the body limit (every entry stays
/// under the 1 MB a plain Kafka producer takes: `kafka_relay` mirrors the whole ledger),
/// keys out of order, escapes, non-ASCII text, numbers at the edges of their types, deep
/// (but parseable) nesting. The engine is sent, the ledger records and the read model keeps
/// exactly the input's canonical text (`serde_json::to_string` of it, keys sorted), which
/// `input_sha256` hashes, so an auditor holding the input reproduces the hash; and another
/// tenant stays served meanwhile.
#[tokio::test]
async fn the_costliest_accepted_inputs_are_recorded_as_their_canonical_text_and_leave_another_tenant_served() {
    use sha2::Digest;
    let svc = attack_service().await;
    let ((a, pa), (b, pb)) = hostile_and_bystander(&svc).await;
    // 100 levels, within the parser's depth limit of 128 with the body's own levels.
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([{"b": 1, "a": 0}, deep]);
    }
    let escapes = "\"\\\n\t\u{1}é€😀\u{7f}</script>".repeat(4_000);
    let inputs = vec![
        json!({"score": 0.9, "zeta": {"b": 1, "a": 2}, "pad": "x".repeat(256 * 1024)}),
        json!({"score": 0.9, "text": escapes}),
        json!({"score": 0.9, "n": [u64::MAX, i64::MIN, 1e300, -0.0, 5e-324, 0.1], "deep": deep}),
        json!({"score": 0.9, "many": (0..5_000).map(|i| (format!("k{}", 4_999 - i), json!(i))).collect::<serde_json::Map<_, _>>()}),
    ];
    let evaluate_a = format!("/api/v1/policies/{pa}/evaluate");
    let flood = (0..3).map(|_| {
        let (a, inputs, path) = (&a, &inputs, &evaluate_a);
        async move {
            let mut decided = Vec::new();
            for input in inputs {
                let (status, d) = a.call(Method::POST, path, Some(json!({"input": input, "rule": "allow"}))).await;
                assert_eq!((status, &d["result"]), (StatusCode::OK, &json!(true)), "{}", d["error"]);
                decided.push((input, d["decision_id"].as_str().unwrap().to_owned(), d["ledger_seq"].as_i64().unwrap()));
            }
            decided
        }
    });
    let served = bystander_served(&b, &pb, 30);
    let (decided, ()) = tokio::join!(futures::future::join_all(flood), served);
    let mut audit = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    for (input, id, seq) in decided.into_iter().flatten() {
        let canonical = serde_json::to_string(input).unwrap();
        let payload: String = sqlx::query_scalar("SELECT payload::text FROM gov_audit_trail_entries WHERE seq = $1")
            .bind(seq)
            .fetch_one(&mut audit)
            .await
            .unwrap();
        let recorded: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(recorded["input_sha256"], json!(hex::encode(sha2::Sha256::digest(canonical.as_bytes()))));
        assert!(payload.contains(&format!("\"input\":{canonical},")), "the ledger holds the input's canonical text as it is");
        let (status, d) = a.call(Method::GET, &format!("/api/v1/decisions/{id}?min_seq={seq}"), None).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(&d["input"], input, "the read model keeps the input");
        assert_eq!(d["input_sha256"], recorded["input_sha256"]);
    }
}

/// Many large decisions at once: the appender splits what is queued into transactions
/// within their byte bound (8 MiB by default: a batch of 2,000 entries near the size limit
/// would exceed what PostgreSQL binds; 1 MiB here, so that any two of these entries queued
/// together are split); each decision is recorded once, none is lost where a batch ends,
/// and another tenant stays served.
#[tokio::test]
async fn many_large_decisions_at_once_are_each_recorded_once_across_batches_and_leave_another_tenant_served() {
    let svc = Service::start(&[
        ("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "0"),
        ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "5000"),
        ("AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES", "1048576"),
    ])
    .await;
    let ((a, pa), (b, pb)) = hostile_and_bystander(&svc).await;
    let evaluate_a = format!("/api/v1/policies/{pa}/evaluate");
    // 24 inputs of ~700 KiB: ~16 MiB queued at once at most, each entry under 1 MB.
    let large = (0..24).map(|i| {
        let (a, path) = (&a, &evaluate_a);
        async move {
            let input = json!({"score": 0.9, "pad": format!("{i:02}").repeat(350 * 1024)});
            let (status, d) = a.call(Method::POST, path, Some(json!({"input": input}))).await;
            assert_eq!((status, &d["result"]), (StatusCode::OK, &json!({"allow": true})), "{}", d["error"]);
            d["ledger_seq"].as_i64().unwrap()
        }
    });
    let (seqs, ()) = tokio::join!(futures::future::join_all(large), bystander_served(&b, &pb, 30));
    let distinct: std::collections::HashSet<i64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), 24, "each decision has a seq of its own: {seqs:?}");
    let mut audit = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    let sizes: Vec<i32> = sqlx::query_scalar("SELECT octet_length(payload::text) FROM gov_audit_trail_entries WHERE seq = ANY($1)")
        .bind(&seqs)
        .fetch_all(&mut audit)
        .await
        .unwrap();
    assert_eq!(sizes.len(), 24, "every decision is in the ledger");
    assert!(sizes.iter().all(|n| *n > 700 * 1024), "each holds its large input: {sizes:?}");
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries WHERE tenant_id = $1 AND event_type = 'PolicyEvaluated'")
            .bind(a.id)
            .fetch_one(&mut audit)
            .await
            .unwrap();
    assert_eq!(recorded, 24, "one record per decision, none twice");
    // Every batch of this service kept within the bound (no single request exceeds it).
    let text = svc.metrics_text().await;
    let all = metric_sample(&text, "aumos_governance_ledger_append_batch_bytes_count").unwrap_or_else(|| panic!("{text}"));
    let within =
        metric_sample(&text, "aumos_governance_ledger_append_batch_bytes_bucket{le=\"1048576.0\"}").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(within, all, "a batch held more than 1 MiB of entry text");
}
