//! Group commit across processes: two service processes appending at the same time never
//! fork the chain and never leave a gap, and each caller gets its own seq.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use uuid::Uuid;

#[tokio::test]
async fn two_processes_appending_at_once_leave_one_gapless_verified_chain() {
    let (one, two) = tokio::join!(Service::start(&[]), Service::start(&[]));
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    const PER_PROCESS: usize = 150;
    let requests =
        (0..PER_PROCESS * 2).map(|i| {
            let svc = if i % 2 == 0 { &one } else { &two };
            let tok = tok.clone();
            async move {
                (i % 2, svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body(&format!("c{i}")))).await)
            }
        });
    let results: Vec<_> = futures::stream::iter(requests).buffer_unordered(32).collect().await;
    let (mut seqs, mut by_two) = (HashSet::new(), Vec::new());
    for (process, (status, body)) in &results {
        assert!(*status == StatusCode::CREATED || *status == StatusCode::ACCEPTED, "{status}: {body}");
        let seq = body.get("last_seq").or_else(|| body.get("ledger_seq")).and_then(|s| s.as_i64()).unwrap();
        assert!(seqs.insert(seq), "seq {seq} was handed out twice");
        if *process == 1 {
            by_two.push(seq);
        }
    }
    // Each create is two entries in one append: the policy and its per-tenant name claim.
    assert_eq!(ledger_count_for(tenant).await, (PER_PROCESS * 2 * 2) as i64, "exactly the entries of each command, once");

    // The whole ledger verifies, checkpoints included, through the reader role.
    let key_file = verifier_key_file(&one, tenant, &tok).await;
    let (status, _) = one.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
        .args(["ledger", "verify", "--database", "--public-key", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The first process proves entries the second appended, in tiles whose smaller
    // subtrees it hashes again from entries that both processes appended.
    for seq in by_two.iter().step_by(15) {
        let (status, proof) = one.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), Some(tenant), Some(&tok), None).await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        let file = std::env::temp_dir().join(format!("proof-{}.json", Uuid::new_v4()));
        std::fs::write(&file, proof.to_string()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["ledger", "verify-proof", file.to_str().unwrap(), "--public-key", key_file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let _ = std::fs::remove_file(file);
    }
    let _ = std::fs::remove_file(key_file);

    let mut reader = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    let (max, count): (i64, i64) =
        sqlx::query_as("SELECT max(seq), count(*) FROM gov_audit_trail_entries").fetch_one(&mut reader).await.unwrap();
    assert_eq!(max, count, "seq is gapless");
}

/// Starvation across processes: one process appends large entries (its batches take
/// milliseconds to hash and send) while another appends small ones as fast as it can.
/// The careful path of the first holds the append lock; the second's lock-free fast path
/// must yield to it rather than take the next seq again and again, or the first fails
/// closed (503 `ledger_unavailable`) after its careful attempts run out.
#[tokio::test]
async fn a_process_appending_large_entries_is_not_starved_by_another_process_s_fast_appends() {
    let (one, two) = tokio::join!(attack_service(), attack_service());
    let (big, small) = (Tenant::new(&one), Tenant::new(&two));
    let (pbig, psmall) =
        tokio::join!(active_policy(&one, big.id, &big.tok, BYSTANDER_GATE), active_policy(&two, small.id, &small.tok, BYSTANDER_GATE));
    let done = std::sync::atomic::AtomicBool::new(false);
    let large = (0..3).map(|w| {
        let (big, path) = (&big, format!("/api/v1/policies/{pbig}/evaluate"));
        async move {
            for i in 0..6 {
                let input = serde_json::json!({"score": 0.9, "pad": format!("{w}{i}").repeat(300 * 1024)});
                let (status, d) = big.call(Method::POST, &path, Some(serde_json::json!({"input": input}))).await;
                assert_eq!(status, StatusCode::OK, "large append {w}/{i} was not decided: {d}");
            }
        }
    });
    // The other process's evaluations wait for the first one's careful batches (it holds
    // the append lock meanwhile), but each is answered within 5 s.
    let fast = (0..16).map(|_| {
        let (small, path, done) = (&small, format!("/api/v1/policies/{psmall}/evaluate"), &done);
        async move {
            let (mut n, mut slowest) = (0u32, std::time::Duration::ZERO);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let t0 = std::time::Instant::now();
                let (status, d) = small.call(Method::POST, &path, Some(serde_json::json!({"input": {"score": 0.9}}))).await;
                assert_eq!(status, StatusCode::OK, "{d}");
                slowest = slowest.max(t0.elapsed());
                assert!(t0.elapsed() < std::time::Duration::from_secs(5), "an evaluation of the other process waited {:?}", t0.elapsed());
                n += 1;
            }
            (n, slowest)
        }
    });
    let large = async {
        futures::future::join_all(large).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let ((), runs) = tokio::join!(large, futures::future::join_all(fast));
    let done: u32 = runs.iter().map(|(n, _)| n).sum();
    let slowest = runs.iter().map(|(_, s)| *s).max().unwrap_or_default();
    eprintln!("the other process decided {done} evaluations meanwhile; the slowest took {slowest:?}");
    assert!(done > 100, "the other process kept appending meanwhile: {runs:?}");
}
