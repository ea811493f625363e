//! Hostile proof requests. A proof hashes again the entries of the tiles of 16 its smaller
//! subtrees lie in (src/adapters/ledger/notary.rs). A tenant whose decisions carry inputs
//! near the body limit asks for many proofs at once across the tiles they fill; every proof
//! is answered, and another tenant stays served meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn proofs_asked_at_once_over_tiles_of_large_entries_are_answered_and_leave_another_tenant_served() {
    let svc = attack_service().await;
    let ((a, pa), (b, pb)) = hostile_and_bystander(&svc).await;
    // 48 decisions whose recorded inputs are ~700 KB each: three tiles of them at least.
    let pad = "x".repeat(700 * 1024);
    let mut seqs = Vec::new();
    for _ in 0..48 {
        let (status, d) =
            a.call(Method::POST, &format!("/api/v1/policies/{pa}/evaluate"), Some(json!({"input": {"score": 0.9, "pad": pad}}))).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        seqs.push(d["ledger_seq"].as_i64().unwrap());
    }

    let hashed = || async { metric_sample(&svc.metrics_text().await, "aumos_governance_ledger_tiles_hashed_total").unwrap_or(0.0) };
    let before = hashed().await;
    // Every decision's proof four times over, 32 at once.
    let flood = futures::stream::iter(seqs.iter().cycle().take(seqs.len() * 4).map(|seq| {
        let a = &a;
        async move { a.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), None).await }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>();
    let bystander = async {
        let mut slowest = Duration::ZERO;
        let mut last = 0;
        for _ in 0..30 {
            let t = Instant::now();
            let (status, d) =
                b.call(Method::POST, &format!("/api/v1/policies/{pb}/evaluate"), Some(json!({"input": {"score": 0.9}}))).await;
            slowest = slowest.max(t.elapsed());
            assert_eq!(status, StatusCode::OK, "{d}");
            last = d["ledger_seq"].as_i64().unwrap();
        }
        let t = Instant::now();
        let (status, proof) = b.call(Method::GET, &format!("/api/v1/ledger/entries/{last}/proof"), None).await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        (slowest, t.elapsed())
    };
    let (answers, (slowest, own_proof)) = tokio::join!(flood, bystander);
    for (status, proof) in &answers {
        assert_eq!(*status, StatusCode::OK, "{proof}");
    }
    // Each tile is read about once (its right edge again as it grows), not per proof:
    // without the held tiles, these 192 proofs made 385 reads.
    let read = hashed().await - before;
    assert!(read <= seqs.len() as f64, "{read} tile reads for {} proofs", answers.len());
    assert!(slowest < Duration::from_secs(2), "the bystander's slowest evaluation took {slowest:?}");
    // Its proof waits behind the flood's tile reads (one at a time per process): 1.4 s
    // here, 4.0 s without the held tiles.
    assert!(own_proof < Duration::from_secs(10), "the bystander's own proof took {own_proof:?}");
}
