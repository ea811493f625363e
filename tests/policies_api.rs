//! Policies over HTTP: create, read back through get and list, paginate and sort.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

#[tokio::test]
async fn a_created_policy_reads_back_through_get_and_list() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, &["policy:author"]);
    let (status, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("model-gate"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "model-gate");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["latest_version"], 1);
    assert!(created["last_seq"].as_i64().unwrap() > 0);
    let id = created["policy_id"].as_str().unwrap();

    let (status, got) = svc.call(Method::GET, &format!("/api/v1/policies/{id}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);

    let (status, list) = svc
        .call(Method::GET, "/api/v1/policies?page=1&page_size=20&sort_by=created_at&sort_order=desc", Some(tenant), Some(&tok), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["page"], 1);
    assert_eq!(list["page_size"], 20);
    assert_eq!(list["items"][0]["policy_id"], id);

    let (status, versions) = svc.call(Method::GET, &format!("/api/v1/policies/{id}/versions"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions["items"][0]["version"], 1);
    assert!(versions["items"][0]["rego"].as_str().unwrap().contains("package test.gate"));
}

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_list_paginates_and_sorts() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    for name in ["bravo", "alpha", "charlie"] {
        let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body(name))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let get = |q: &'static str| {
        let svc = &svc;
        let tok = tok.clone();
        async move { svc.call(Method::GET, &format!("/api/v1/policies?{q}"), Some(tenant), Some(&tok), None).await }
    };
    let (_, page1) = get("page=1&page_size=2&sort_by=name&sort_order=asc").await;
    assert_eq!(names(&page1), ["alpha", "bravo"]);
    assert_eq!(page1["total"], 3);
    let (_, page2) = get("page=2&page_size=2&sort_by=name&sort_order=asc").await;
    assert_eq!(names(&page2), ["charlie"]);
    assert_eq!(page2["total"], 3);
    let (_, desc) = get("sort_by=created_at&sort_order=desc").await;
    assert_eq!(names(&desc), ["charlie", "alpha", "bravo"]);
    let (_, asc) = get("sort_by=created_at&sort_order=asc").await;
    assert_eq!(names(&asc), ["bravo", "alpha", "charlie"]);

    for bad in ["page=0", "page_size=0", "page_size=101", "sort_by=rego", "sort_order=sideways", "page=abc"] {
        let (status, body) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), "invalid_request", "{bad}");
    }
}

#[tokio::test]
async fn the_request_id_is_echoed_or_generated() {
    let svc = Service::start(&[]).await;
    let r = svc.client.get(format!("{}/api/v1/policies", svc.base)).header("X-Request-ID", "trace-me-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-me-42");
    let r = svc.client.get(format!("{}/health/live", svc.base)).send().await.unwrap();
    assert!(Uuid::parse_str(r.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn a_caller_without_a_writing_role_cannot_create() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, &["auditor"]);
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("x"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "forbidden");
}
