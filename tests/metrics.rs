//! `GET /metrics`: Prometheus text with evaluate, ledger, HTTP, rate-limit, lag and
//! checkpoint metrics, no tenant or policy id in any label, and an optional separate
//! address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

async fn scrape(client: &reqwest::Client, base: &str) -> (StatusCode, String) {
    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_evaluations_appends_requests_and_refusals_by_route_template_without_tenant_ids() {
    let svc =
        Service::start(&[("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "1"), ("AUMOS_GOVERNANCE_EVALUATE_BURST_PER_TENANT", "2")]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let body = json!({ "name": "metrics", "rego": "package test.metrics\n\ndefault allow := false\n\nallow if input.score > 0.5\n" });
    let (_, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&body)).await;
    let id = created["policy_id"].as_str().unwrap().to_owned();
    let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/api/v1/policies/{id}/evaluate");
    let mut refused = 0;
    for score in [0.9, 0.1, 0.9, 0.9, 0.9] {
        let (status, _) = svc.call(Method::POST, &path, Some(tenant), Some(&tok), Some(&json!({"input": {"score": score}}))).await;
        refused += usize::from(status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused >= 1, "the burst of 2 is spent by 5 evaluations");
    let (status, text) = scrape(&svc.client, &svc.base).await;
    assert_eq!(status, StatusCode::OK);

    let evaluate = "aumos_governance_http_requests_total{method=\"POST\",route=\"/api/v1/policies/{id}/evaluate\",status=\"200\"}";
    assert!(metric_sample(&text, evaluate).unwrap() >= 2.0, "{text}");
    assert!(
        metric_sample(&text, "aumos_governance_http_requests_total{method=\"POST\",route=\"/api/v1/policies\",status=\"201\"}").unwrap()
            >= 1.0
    );
    let limited = "aumos_governance_http_requests_total{method=\"POST\",route=\"/api/v1/policies/{id}/evaluate\",status=\"429\"}";
    assert!(metric_sample(&text, limited).unwrap() >= refused as f64, "{text}");
    assert!(metric_sample(&text, "aumos_governance_rate_limited_total{limit=\"evaluate\"}").unwrap() >= refused as f64);
    let allowed = "aumos_governance_evaluate_duration_seconds_count{engine=\"embedded\",outcome=\"allowed\"}";
    let denied = "aumos_governance_evaluate_duration_seconds_count{engine=\"embedded\",outcome=\"denied\"}";
    assert!(metric_sample(&text, allowed).unwrap() >= 1.0 && metric_sample(&text, denied).unwrap() >= 1.0, "{text}");
    // Create, activate and at least one decision were appended in batches.
    assert!(metric_sample(&text, "aumos_governance_ledger_append_duration_seconds_count").unwrap_or_else(|| panic!("{text}")) >= 1.0);
    assert!(metric_sample(&text, "aumos_governance_ledger_append_batch_entries_sum").unwrap() >= 3.0);
    assert!(metric_sample(&text, "aumos_governance_ledger_append_batch_bytes_sum").unwrap() > 0.0, "entry text per batch is counted");
    assert!(metric_sample(&text, "aumos_governance_ledger_head_seq").unwrap() >= 3.0);
    assert!(text.contains("aumos_governance_consumer_lag_entries{consumer=\""), "each projector's lag: {text}");
    assert!(text.contains("aumos_governance_consumer_lag_seconds{consumer=\""));
    assert!(metric_sample(&text, "aumos_governance_checkpoint_age_seconds").is_some());

    assert!(!text.contains(&tenant.to_string()) && !text.contains(&id), "no tenant or policy id in any label");
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/nothing/{tenant}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, text) = scrape(&svc.client, &svc.base).await;
    assert!(!text.contains(&tenant.to_string()), "an unmatched path is counted as `unmatched`, not by its text");
    assert!(text.contains("route=\"unmatched\",status=\"404\""), "{text}");
}

#[tokio::test]
async fn with_a_metrics_address_metrics_are_served_there_and_not_on_the_api_address() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let svc = Service::start(&[("AUMOS_METRICS_ADDR", &addr)]).await;
    let (status, _) = scrape(&svc.client, &svc.base).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = scrape(&svc.client, &format!("http://{addr}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("# TYPE aumos_governance_http_requests counter"), "{text}");
    let (status, _) = svc.call(Method::GET, "/health/live", None, None, None).await;
    assert_eq!(status, StatusCode::OK, "the API is still on its own address");
}
