//! The limits: per-tenant evaluation rate (429 + Retry-After), per-request timeout, Rego
//! source size, page size, decision inputs that only round-trip as exact JSON text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

async fn active_policy(svc: &Service, tenant: Uuid, tok: &str) -> String {
    let (_, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(&policy_body("limits"))).await;
    let id = created["policy_id"].as_str().unwrap().to_owned();
    let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK);
    id
}

#[tokio::test]
async fn evaluate_over_a_tenants_rate_answers_429_with_retry_after_records_nothing_and_spares_other_tenants() {
    let svc =
        Service::start(&[("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "1"), ("AUMOS_GOVERNANCE_EVALUATE_BURST_PER_TENANT", "5")]).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ta, tb) = (token(a, ADMIN), token(b, ADMIN));
    let (pa, pb) = (active_policy(&svc, a, &ta).await, active_policy(&svc, b, &tb).await);
    let before = ledger_count_for(a).await;
    let mut statuses = Vec::new();
    let started = Instant::now();
    for _ in 0..12 {
        let resp = svc
            .client
            .post(format!("{}/api/v1/policies/{pa}/evaluate", svc.base))
            .bearer_auth(&ta)
            .header("X-Tenant-ID", a.to_string())
            .json(&json!({"input": {}}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "Retry-After {retry}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(error_code(&body), "rate_limited");
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    // The burst of 5, plus one token per second the requests took (a slow machine refills more).
    let refilled = started.elapsed().as_secs_f64().ceil() as usize;
    assert!(ok >= 5 && ok <= 5 + refilled && limited >= 1 && ok + limited == 12, "{statuses:?} in {:?}", started.elapsed());
    assert_eq!(ledger_count_for(a).await - before, ok as i64, "a refused evaluation records no decision");
    let (status, _) =
        svc.call(Method::POST, &format!("/api/v1/policies/{pb}/evaluate"), Some(b), Some(&tb), Some(&json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::OK, "another tenant is not limited by A's burst");
}

#[tokio::test]
async fn a_request_that_outlives_the_request_timeout_answers_503_request_timeout() {
    let svc = Service::start(&[("AUMOS_HTTP_REQUEST_TIMEOUT_MS", "300"), ("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "5000")]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let started = Instant::now();
    // Waiting for a ledger position far in the future would take the whole 5 s bound.
    let (status, body) = svc.call(Method::GET, "/api/v1/policies?min_seq=999999999999", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "request_timeout");
    assert!(!body["error"]["request_id"].as_str().unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn rego_over_256_kib_and_pages_over_100_are_refused_and_change_nothing() {
    let svc = Service::start(&[("AUMOS_HTTP_BODY_LIMIT_BYTES", "1048576")]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let big = format!("package big\n\n# {}\nallow := true\n", "x".repeat(256 * 1024));
    let (status, body) =
        svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&json!({"name": "big", "rego": big}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    assert_eq!(ledger_count_for(tenant).await, 0);
    for path in ["/api/v1/policies?page_size=101", "/api/v1/decisions?page_size=101", "/api/v1/decisions?page_size=0"] {
        let (status, body) = svc.call(Method::GET, path, Some(tenant), Some(&tok), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    let (status, page) = svc.call(Method::GET, "/api/v1/decisions?page_size=100", Some(tenant), Some(&tok), None).await;
    assert_eq!((status, page["page_size"].as_i64()), (StatusCode::OK, Some(100)));
}

/// Found by schemathesis: jsonb turned f64::MAX into 309 digits that no longer parse as a
/// double, so the decision could be recorded but never read back.
#[tokio::test]
async fn a_decision_whose_input_holds_extreme_numbers_reads_back_exactly() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let id = active_policy(&svc, tenant, &tok).await;
    let input = json!({"max": f64::MAX, "min": f64::MIN_POSITIVE, "big": u64::MAX, "neg": i64::MIN, "tiny": 5e-324});
    let (status, decided) =
        svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&json!({"input": input}))).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let path = format!("/api/v1/decisions/{}?min_seq={}", decided["decision_id"].as_str().unwrap(), decided["ledger_seq"]);
    let (status, record) = svc.call(Method::GET, &path, Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["input"], input);
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/decisions?policy_id={id}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
}
