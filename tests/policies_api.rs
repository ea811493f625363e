//! Policies over HTTP: create, read back through get and list, paginate and sort.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// The read-your-writes bound for these tests: generous, so a loaded CI machine answers
/// 201 rather than 202 (the bound is not what they test).
const PATIENT: &[(&str, &str)] = &[("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "15000")];

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

async fn create(svc: &Service, tenant: Uuid, tok: &str, body: &Value) -> (StatusCode, Value) {
    svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(body)).await
}

async fn activate(svc: &Service, tenant: Uuid, tok: &str, id: &str) {
    let (status, body) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_second_policy_with_a_taken_name_is_refused_and_nothing_is_recorded() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (status, first) = create(&svc, tenant, &tok, &policy_body("unique-gate")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let before = ledger_count_for(tenant).await;
    let (status, body) = create(&svc, tenant, &tok, &policy_body("unique-gate")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "policy_name_taken");
    assert_eq!(body["error"]["details"]["policy_id"], first["policy_id"]);
    assert_eq!(ledger_count_for(tenant).await, before, "a refused create records nothing");
    // Names are per tenant, and exact: another tenant, or another spelling, is free.
    let other = Uuid::new_v4();
    let (status, _) = create(&svc, other, &token(other, ADMIN), &policy_body("unique-gate")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = create(&svc, tenant, &tok, &policy_body("Unique-gate")).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn racing_creates_of_one_name_leave_exactly_one_policy() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let body = policy_body("raced-gate");
    let results = futures::future::join_all((0..8).map(|_| create(&svc, tenant, &tok, &body))).await;
    // 202: recorded, the read model not caught up yet (a loaded machine).
    let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::ACCEPTED).count();
    assert_eq!(created, 1, "{results:?}");
    for (s, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED && *s != StatusCode::ACCEPTED) {
        assert_eq!((*s, error_code(body)), (StatusCode::CONFLICT, "policy_name_taken".to_owned()));
    }
    let (_, list) = svc.call(Method::GET, "/api/v1/policies?name=raced-gate&min_seq=0", Some(tenant), Some(&tok), None).await;
    assert_eq!(list["total"], 1, "{list}");
}

#[tokio::test]
async fn evaluate_by_name_uses_the_active_version_and_answers_like_evaluate_by_id() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (_, p) = create(&svc, tenant, &tok, &policy_body("name with/slash")).await;
    let id = p["policy_id"].as_str().unwrap();
    let path = "/api/v1/policies/by-name/name%20with%2Fslash/evaluate";
    let input = serde_json::json!({"input": {"score": 0.9}, "rule": "allow"});
    let (status, body) = svc.call(Method::POST, path, Some(tenant), Some(&tok), Some(&input)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "policy_inactive".to_owned()), "a draft is not evaluated");
    activate(&svc, tenant, &tok, id).await;
    let (status, by_name) = svc.call(Method::POST, path, Some(tenant), Some(&tok), Some(&input)).await;
    assert_eq!(status, StatusCode::OK, "{by_name}");
    assert_eq!(
        (by_name["policy_id"].as_str(), by_name["policy_version"].as_i64(), by_name["allowed"].as_bool()),
        (Some(id), Some(1), Some(true))
    );
    let (_, by_id) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&input)).await;
    assert_eq!((by_id["allowed"].clone(), by_id["result"].clone()), (by_name["allowed"].clone(), by_name["result"].clone()));
    // Unknown names, and names of another tenant, are 404.
    let (status, _) = svc.call(Method::POST, "/api/v1/policies/by-name/nope/evaluate", Some(tenant), Some(&tok), Some(&input)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = Uuid::new_v4();
    let (status, _) = svc.call(Method::POST, path, Some(other), Some(&token(other, ADMIN)), Some(&input)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn allowed_is_false_not_absent_when_the_rule_is_undefined() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let body = serde_json::json!({"name": "undefined-gate", "rego": "package test.undef\n\nallow if input.go == true\n"});
    let (_, p) = create(&svc, tenant, &tok, &body).await;
    let id = p["policy_id"].as_str().unwrap();
    activate(&svc, tenant, &tok, id).await;
    let input = serde_json::json!({"input": {"go": false}, "rule": "allow"});
    let (status, d) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&input)).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!((d["defined"].as_bool(), d["allowed"].as_bool()), (Some(false), Some(false)), "{d}");
    let (_, rec) = svc
        .call(
            Method::GET,
            &format!("/api/v1/decisions/{}?min_seq={}", d["decision_id"].as_str().unwrap(), d["ledger_seq"]),
            Some(tenant),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(rec["allowed"], false, "the record answers the same: {rec}");
}

#[tokio::test]
async fn the_policy_list_filters_by_name_and_status() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let mut ids = Vec::new();
    for name in ["Fraud-gate", "fraud-limits", "pii-gate"] {
        let (_, p) = create(&svc, tenant, &tok, &policy_body(name)).await;
        ids.push(p["policy_id"].as_str().unwrap().to_owned());
    }
    activate(&svc, tenant, &tok, &ids[2]).await;
    let list = |q: &'static str| {
        let (svc, tok) = (&svc, tok.clone());
        async move {
            svc.call(Method::GET, &format!("/api/v1/policies?sort_by=name&sort_order=asc&{q}"), Some(tenant), Some(&tok), None).await.1
        }
    };
    assert_eq!(names(&list("name=FRAUD").await), ["Fraud-gate", "fraud-limits"]);
    assert_eq!(list("name=FRAUD").await["total"], 2);
    assert_eq!(names(&list("status=active").await), ["pii-gate"]);
    assert_eq!(names(&list("status=draft&name=gate").await), ["Fraud-gate"]);
    let (status, body) = svc.call(Method::GET, "/api/v1/policies?status=deleted", Some(tenant), Some(&tok), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_request".to_owned()));
}

#[tokio::test]
async fn decisions_filter_by_allowed_version_and_an_inclusive_time_range_and_page_by_keyset() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (_, p) = create(&svc, tenant, &tok, &policy_body("decided-gate")).await;
    let id = p["policy_id"].as_str().unwrap().to_owned();
    activate(&svc, tenant, &tok, &id).await;
    let mut decisions = Vec::new();
    for (i, score) in [0.9, 0.1, 0.8, 0.2, 0.7].iter().enumerate() {
        if i == 3 {
            let v2 = serde_json::json!({"rego": "package test.gate\n\nallow if input.score > 0.0\n"});
            svc.call(Method::POST, &format!("/api/v1/policies/{id}/versions"), Some(tenant), Some(&tok), Some(&v2)).await;
            let (s, _) = svc
                .call(
                    Method::POST,
                    &format!("/api/v1/policies/{id}/activate"),
                    Some(tenant),
                    Some(&tok),
                    Some(&serde_json::json!({"version": 2})),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        let input = serde_json::json!({"input": {"score": score}, "rule": "allow"});
        let (_, d) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&input)).await;
        decisions.push(d);
    }
    let last = decisions.last().unwrap()["ledger_seq"].as_i64().unwrap();
    let get = |q: String| {
        let (svc, tok) = (&svc, tok.clone());
        async move { svc.call(Method::GET, &format!("/api/v1/decisions?min_seq={last}&{q}"), Some(tenant), Some(&tok), None).await.1 }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|d| d["decision_id"].as_str().unwrap().to_owned()).collect()
    };
    let id_of = |i: usize| decisions[i]["decision_id"].as_str().unwrap().to_owned();
    // v1 allowed 0.9 and 0.8, denied 0.1; v2 allows everything above 0.
    assert_eq!(ids(&get("allowed=false".into()).await), [id_of(1)]);
    assert_eq!(ids(&get("allowed=true&version=1".into()).await), [id_of(2), id_of(0)]);
    assert_eq!(get("version=2".into()).await["total"], 2);
    // `to` is inclusive: the instant of a decision finds it.
    let (_, rec) = svc.call(Method::GET, &format!("/api/v1/decisions/{}", id_of(2)), Some(tenant), Some(&tok), None).await;
    let at = rec["decided_at"].as_str().unwrap().replace('+', "%2B");
    assert!(ids(&get(format!("to={at}")).await).contains(&id_of(2)), "to={at} includes the decision made at that instant");
    assert_eq!(ids(&get(format!("from={at}&to={at}")).await), [id_of(2)]);
    // Keyset pages walk the same records as offset pages, in both orders.
    for order in ["desc", "asc"] {
        let (mut walked, mut after) = (Vec::new(), None::<i64>);
        loop {
            let q = match after {
                Some(a) => format!("page_size=2&sort_order={order}&after={a}"),
                None => format!("page_size=2&sort_order={order}"),
            };
            let page = get(q).await;
            assert_eq!(page["total"], 5);
            walked.extend(ids(&page));
            match page["next_after"].as_i64() {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        assert_eq!(walked, ids(&get(format!("page_size=100&sort_order={order}")).await), "{order}");
        assert_eq!(walked.len(), 5);
    }
    let (status, _) = svc.call(Method::GET, "/api/v1/decisions?page=2&after=5", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn masked_input_fields_never_reach_the_ledger_or_the_read_model() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let body = serde_json::json!({"name": "masked-gate", "rego": "package test.mask\n\nallow if input.user.email != \"\"\n",
        "input_mask": {"remove": ["/user/ssn"], "hash": ["/user/email"]}});
    let (status, p) = create(&svc, tenant, &tok, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["input_mask"]["hash"][0], "/user/email");
    let id = p["policy_id"].as_str().unwrap();
    activate(&svc, tenant, &tok, id).await;
    let input =
        serde_json::json!({"input": {"user": {"email": "alice@example.com", "ssn": "078-05-1120", "tier": "gold"}}, "rule": "allow"});
    let (_, d) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(&tok), Some(&input)).await;
    assert_eq!(d["allowed"], true, "the policy still sees the full input: {d}");
    let (_, rec) = svc
        .call(
            Method::GET,
            &format!("/api/v1/decisions/{}?min_seq={}", d["decision_id"].as_str().unwrap(), d["ledger_seq"]),
            Some(tenant),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(rec["input"]["user"]["tier"], "gold", "{rec}");
    assert!(rec["input"]["user"]["email"].as_str().unwrap().starts_with("sha256:"), "{rec}");
    assert!(rec["input"]["user"].get("ssn").is_none(), "{rec}");
    let mut audit = connect("AUMOS_DEV_AUDIT_SUPERUSER_URL").await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM gov_audit_trail_entries WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_all(&mut audit)
        .await
        .unwrap();
    let mut primary = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let projected: Vec<String> = sqlx::query_scalar("SELECT coalesce(input::text, '') FROM gov_policy_decisions WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_all(&mut primary)
        .await
        .unwrap();
    for text in stored.iter().chain(&projected) {
        assert!(!text.contains("alice@example.com") && !text.contains("078-05-1120"), "{text}");
    }
    let (status, body) =
        create(&svc, tenant, &tok, &serde_json::json!({"name": "bad-mask", "rego": "package x\n", "input_mask": {"remove": ["user"]}}))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
