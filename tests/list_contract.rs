//! The one list contract, checked on every list operation the served OpenAPI document
//! describes (a GET whose answer has an `items` array), so a new list cannot skip it:
//! `page` from 1, `page_size` from 1 to 100, `total`, documented `sort_by` keys each
//! accepted in both `sort_order`s, pages that partition the list, and 400 for anything else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// The read-your-writes bound for these tests: generous, so a loaded CI machine answers
/// 201 rather than 202 (the bound is not what they test).
const PATIENT: &[(&str, &str)] = &[("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "15000")];

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// Answers with `items` that are not offset-paged lists, and why. Everything else follows
/// the contract.
const NOT_PAGED: &[(&str, &str)] = &[
    ("/api/v1/ledger/entries", "a tenant's ledger export: seq-ordered keyset pages of up to 1000 entries, no sort, no total"),
    ("/api/v1/compliance/workflows/{id}/evidence-bundle", "one self-contained document for auditors: every proof against one checkpoint"),
];

/// Follows `$ref`s into `components.schemas`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(doc, &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")]),
        None => v,
    }
}

fn param<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name && p["in"] == "query")
}

/// Every string an enum-like schema allows (plain `enum`, or `oneOf`/`anyOf` with `null`).
fn enum_values(doc: &Value, schema: &Value) -> Vec<String> {
    let s = resolve(doc, schema);
    if let Some(values) = s["enum"].as_array() {
        return values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    }
    ["oneOf", "anyOf"].iter().filter_map(|k| s[k].as_array()).flatten().flat_map(|alt| enum_values(doc, alt)).collect()
}

/// A tenant with at least two of everything a list shows.
async fn populate(svc: &Service, tenant: Uuid, tok: &str) -> (String, String) {
    let mut policy = String::new();
    for name in ["contract-a", "contract-b"] {
        let (s, p) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(&policy_body(name))).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        policy = p["policy_id"].as_str().unwrap().to_owned();
    }
    // Version 2 checks two controls, so its decisions make two roll-ups of system evidence.
    let v2 = json!({"rego": "package test.gate\n\nallow if input.score > 0.7\n",
        "control_checks": [{"control_id": "PR.AA-01"}, {"control_id": "PR.AA-02"}]});
    let (s, _) = svc.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(tenant), Some(tok), Some(&v2)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = svc.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), Some(tenant), Some(tok), None).await;
    assert_eq!(s, StatusCode::OK);
    for score in [0.9, 0.1] {
        let body = json!({"input": {"score": score}, "rule": "allow"});
        let (s, d) = svc.call(Method::POST, &format!("/api/v1/policies/{policy}/evaluate"), Some(tenant), Some(tok), Some(&body)).await;
        assert_eq!(s, StatusCode::OK, "{d}");
    }
    let mut workflow = String::new();
    for name in ["contract-wf-a", "contract-wf-b"] {
        let body = json!({"regulation": "soc2", "name": name, "audit_period_start": "2026-01-01", "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
        let (s, w) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(tenant), Some(tok), Some(&body)).await;
        assert_eq!(s, StatusCode::CREATED, "{w}");
        workflow = w["workflow_id"].as_str().unwrap().to_owned();
    }
    for (i, until) in ["2026-09-30", "2026-12-31"].iter().enumerate() {
        let metadata = json!({"workflow_id": workflow, "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": until});
        let resp = svc.upload_evidence(tenant, tok, &metadata, reqwest::multipart::Part::bytes(vec![b'e', i as u8])).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    (policy, workflow)
}

#[tokio::test]
async fn every_list_operation_pages_sorts_and_refuses_bad_paging_the_same_way() {
    let svc = Service::start(PATIENT).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (policy, workflow) = populate(&svc, tenant, &tok).await;
    let doc: Value = svc.client.get(format!("{}/api/v1/openapi.json", svc.base)).send().await.unwrap().json().await.unwrap();
    let mut checked = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        let schema = resolve(&doc, &op["responses"]["200"]["content"]["application/json"]["schema"]);
        if schema["properties"]["items"]["type"] != "array" {
            continue;
        }
        if NOT_PAGED.iter().any(|(p, _)| p == template) {
            continue;
        }
        for field in ["page", "page_size", "total"] {
            assert!(schema["properties"].get(field).is_some(), "{template} answers {field}");
        }
        assert_eq!(param(op, "page").and_then(|p| p["schema"]["minimum"].as_f64()), Some(1.0), "{template} documents page");
        assert_eq!(param(op, "page_size").and_then(|p| p["schema"]["maximum"].as_f64()), Some(100.0), "{template} documents page_size");
        let orders = enum_values(&doc, &param(op, "sort_order").unwrap_or_else(|| panic!("{template} documents sort_order"))["schema"]);
        assert_eq!(orders, ["asc", "desc"], "{template}");
        let keys = enum_values(&doc, &param(op, "sort_by").unwrap_or_else(|| panic!("{template} documents sort_by"))["schema"]);
        assert!(!keys.is_empty(), "{template} documents its sort keys");

        let path = template
            .replace("/policies/{id}", &format!("/policies/{policy}"))
            .replace("/workflows/{id}", &format!("/workflows/{workflow}"))
            .replace("{code}", "soc2");
        assert!(!path.contains('{'), "{template}: the contract test does not know how to fill its path");
        let get = |query: String| {
            let (svc, tok, path) = (&svc, &tok, &path);
            async move { svc.call(Method::GET, &format!("{path}?{query}"), Some(tenant), Some(tok), None).await }
        };
        for bad in ["page=0", "page_size=0", "page_size=101", "page=x", "sort_order=up", "sort_by=no_such_key", "no_such_filter=1"] {
            let (s, body) = get(bad.to_owned()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{template}?{bad}: {body}");
            assert_eq!(error_code(&body), "invalid_request", "{template}?{bad}");
        }
        let (s, all) = get("page_size=100".into()).await;
        assert_eq!(s, StatusCode::OK, "{template}: {all}");
        let total = all["total"].as_i64().unwrap();
        assert!(total >= 2, "{template}: the tenant has at least two items to list ({total})");
        assert_eq!((all["page"].as_i64(), all["page_size"].as_i64()), (Some(1), Some(100)), "{template}");
        // Pages of one partition the list, and a page past the end is empty.
        let mut paged = Vec::new();
        for page in 1..=total.min(100) {
            let (_, one) = get(format!("page={page}&page_size=1")).await;
            assert_eq!(one["total"], total, "{template} page {page}");
            paged.extend(one["items"].as_array().unwrap().clone());
        }
        assert_eq!(&Value::Array(paged), &all["items"], "{template}: pages of one are the list in order");
        let (_, past) = get(format!("page={}&page_size=100", total / 100 + 2)).await;
        assert_eq!((past["items"].as_array().unwrap().len(), past["total"].as_i64()), (0, Some(total)), "{template}");
        for key in &keys {
            let (s, asc) = get(format!("sort_by={key}&sort_order=asc&page_size=100")).await;
            assert_eq!(s, StatusCode::OK, "{template} sort_by={key}: {asc}");
            let (_, desc) = get(format!("sort_by={key}&sort_order=desc&page_size=100")).await;
            let mut reversed = desc["items"].as_array().unwrap().clone();
            reversed.reverse();
            // Ties are broken by id in the same direction, so the orders are exact mirrors.
            if total <= 100 {
                assert_eq!(&Value::Array(reversed), &asc["items"], "{template}: desc by {key} is asc reversed");
            }
        }
        checked.push(template.clone());
    }
    for expected in ["/api/v1/policies", "/api/v1/decisions", "/api/v1/regulations", "/api/v1/compliance/workflows/{id}/requirements"] {
        assert!(checked.iter().any(|c| c == expected), "{expected} was checked: {checked:?}");
    }
    svc.stop().await;
}
