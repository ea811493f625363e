//! Commands racing on one policy: the ledger's optimistic concurrency lets exactly one of
//! two commands decided on the same state commit (the other is 409), and an activation
//! racing new versions only ever activates a version whose tests ran.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSING: &str = "package gate\n\nallow if input.score >= 0.9\n\ntest_high_score_passes if allow with input as {\"score\": 0.95}\n";

fn failing(n: usize) -> String {
    format!("{PASSING}\ntest_low_score_{n}_passes_too if allow with input as {{\"score\": 0.1}}\n")
}

async fn activations(policy: &str) -> Vec<i64> {
    let mut reader = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    sqlx::query_scalar(
        "SELECT (payload->>'version')::bigint FROM gov_audit_trail_entries \
         WHERE aggregate_id = $1 AND event_type = 'PolicyActivated' ORDER BY seq",
    )
    .bind(policy)
    .fetch_all(&mut reader)
    .await
    .unwrap()
}

fn ok(status: StatusCode) -> bool {
    status == StatusCode::OK || status == StatusCode::CREATED || status == StatusCode::ACCEPTED
}

#[tokio::test]
async fn of_two_activations_decided_on_the_same_state_exactly_one_commits_and_the_other_is_409() {
    let svc = Service::start(&[]).await;
    let t = Tenant::new(&svc);
    let (status, p) = t.call(Method::POST, "/api/v1/policies", Some(json!({"name": "race", "rego": PASSING}))).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let policy = p["policy_id"].as_str().unwrap().to_owned();
    let mut conflicts = 0;
    for round in 0..6 {
        // Two new passing versions, then both activated at once.
        for _ in 0..2 {
            let (status, v) = t.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(json!({"rego": PASSING}))).await;
            assert!(ok(status), "{v}");
        }
        let before = activations(&policy).await.len();
        let path = format!("/api/v1/policies/{policy}/activate");
        let (a, b) = tokio::join!(
            t.call(Method::POST, &path, Some(json!({"version": round * 2 + 2}))),
            t.call(Method::POST, &path, Some(json!({"version": round * 2 + 3})))
        );
        let committed = activations(&policy).await.len() - before;
        let answers = [a, b];
        let successes = answers.iter().filter(|(s, _)| ok(*s)).count();
        assert_eq!(successes, committed, "every success is one activation in the ledger: {answers:?}");
        match successes {
            1 => {
                let (_, refused) = answers.iter().find(|(s, _)| !ok(*s)).unwrap();
                assert_eq!(answers.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).count(), 1, "{answers:?}");
                assert_eq!(error_code(refused), "conflict");
                conflicts += 1;
            }
            // The second was decided after the first committed: both are legitimate.
            2 => {}
            _ => panic!("neither activation committed: {answers:?}"),
        }
    }
    assert!(conflicts > 0, "two activations sent at once raced at least once in six rounds");
}

#[tokio::test]
async fn an_activation_racing_new_versions_only_ever_activates_a_version_whose_tests_ran() {
    let svc = Service::start(&[]).await;
    let t = Tenant::new(&svc);
    let (status, p) = t.call(Method::POST, "/api/v1/policies", Some(json!({"name": "race", "rego": PASSING}))).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let policy = p["policy_id"].as_str().unwrap().to_owned();
    let (status, a) = t.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), None).await;
    assert!(ok(status), "{a}");
    // Every new version fails its tests; "activate the newest" races each of them.
    for n in 0..8 {
        let (versions, activate) = (format!("/api/v1/policies/{policy}/versions"), format!("/api/v1/policies/{policy}/activate"));
        let ((vs, v), (as_, a)) =
            tokio::join!(t.call(Method::POST, &versions, Some(json!({"rego": failing(n)}))), t.call(Method::POST, &activate, None));
        assert!(ok(vs), "{v}");
        assert!(
            as_ == StatusCode::UNPROCESSABLE_ENTITY || as_ == StatusCode::CONFLICT,
            "the newest version fails its tests (or version 1 is already active): {as_} {a}"
        );
        if as_ == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(error_code(&a), "policy_tests_failed", "{a}");
        }
    }
    assert_eq!(activations(&policy).await, vec![1], "only the tested version 1 was ever activated");
}
