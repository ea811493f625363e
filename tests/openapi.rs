//! The OpenAPI document against the running service: every documented operation is
//! routed, every route is documented, and what every operation shares is there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn document(svc: &Service) -> Value {
    let resp = svc.client.get(format!("{}/api/v1/openapi.json", svc.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    resp.json().await.unwrap()
}

fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.to_uppercase().parse().unwrap(), path.clone(), op.clone()));
        }
    }
    ops
}

fn is_public(op: &Value) -> bool {
    op["security"].is_null()
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_secured_ones_demand_a_token() {
    let svc = Service::start(&[]).await;
    let doc = document(&svc).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "{} operations", ops.len());
    for (method, template, op) in ops {
        let path = template.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace("{seq}", "1");
        let resp = svc.client.request(method.clone(), format!("{}{path}", svc.base)).send().await.unwrap();
        let status = resp.status();
        if is_public(&op) {
            assert!(status.is_success(), "{method} {template}: {status}");
        } else {
            // Unrouted would be 404 (route not found) or 405; a routed, secured operation
            // asks for the token first.
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {template}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let requirement = &op["security"][0];
            assert!(requirement.get("bearer").is_some() && requirement.get("tenant").is_some(), "{method} {template}");
        }
    }
}

/// Routes can only be added through `utoipa_axum::routes!`, which documents them; a plain
/// axum `.route(...)` anywhere in the service would escape the document.
#[test]
fn no_route_is_registered_outside_the_documented_router() {
    let mut offenders = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for needle in [".route(", ".route_service(", ".nest_service("] {
                    if text.contains(needle) {
                        offenders.push(format!("{}: {needle}", path.display()));
                    }
                }
                if text.matches("Router::new()").count() > text.matches("OpenApiRouter::new()").count() {
                    offenders.push(format!("{}: a plain axum Router", path.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "routes outside routes!(): {offenders:?}");
}

#[tokio::test]
async fn the_roles_table_in_security_md_lists_exactly_the_secured_operations() {
    let svc = Service::start(&[]).await;
    let doc = document(&svc).await;
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().filter(|(_, _, op)| !is_public(op)).map(|(m, p, _)| (m.to_string(), p)).collect();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SECURITY.md")).unwrap();
    let table: BTreeSet<(String, String)> = text
        .lines()
        .filter(|l| l.starts_with("| GET ") || l.starts_with("| POST ") || l.starts_with("| PATCH "))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].to_owned(), cells[1].to_owned())
        })
        .collect();
    assert_eq!(documented, table);
}

#[tokio::test]
async fn every_error_code_and_the_shared_parameters_are_documented() {
    let svc = Service::start(&[]).await;
    let doc = document(&svc).await;
    let codes: BTreeSet<&str> =
        doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for code in governance_engine::error::ErrorCode::ALL {
        assert!(codes.contains(code.as_str()), "{}", code.as_str());
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["components"]["securitySchemes"]["tenant"]["name"], "X-Tenant-ID");
    for (method, path, op) in operations(&doc) {
        assert!(op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "X-Request-ID"), "{method} {path}");
        if !is_public(&op) {
            for status in ["400", "401", "403", "404", "413", "429", "503"] {
                assert!(op["responses"].get(status).is_some(), "{method} {path} documents {status}");
            }
            assert!(op["responses"]["429"]["headers"].get("Retry-After").is_some());
        }
        for p in op["parameters"].as_array().unwrap() {
            assert!(p["schema"].is_object(), "{method} {path} parameter {} has a schema", p["name"]);
        }
    }
}

/// Every `src`/`href` (and CSS `url()`/`@import`) of `html` that points at another origin
/// without an `integrity` attribute on its tag.
fn third_party_without_integrity(html: &str) -> Vec<String> {
    let tag = regex::Regex::new(r"(?is)<[a-z][^>]*>").unwrap();
    let url = regex::Regex::new(r#"(?i)\b(?:src|href|srcset|action|data|poster)\s*=\s*["']?([^"'\s>]+)"#).unwrap();
    let absolute = regex::Regex::new(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)").unwrap();
    let mut found = Vec::new();
    for t in tag.find_iter(html).map(|m| m.as_str()) {
        let integrity = t.to_ascii_lowercase().contains("integrity=\"sha");
        for u in url.captures_iter(t).map(|c| c[1].to_owned()) {
            if absolute.is_match(&u) && !integrity {
                found.push(format!("{u} in {t}"));
            }
        }
    }
    let css = regex::Regex::new(r#"(?i)(?:url\(\s*["']?|@import\s+["']?)((?:[a-z][a-z0-9+.-]*:|//)[^"')\s]*)"#).unwrap();
    found.extend(css.captures_iter(html).map(|c| format!("{} in a style", &c[1])));
    found
}

#[test]
fn the_third_party_check_catches_the_old_unpinned_cdn_script_and_accepts_a_pinned_one() {
    let old = "<script id=\"api-reference\" data-url=\"/api/v1/openapi.json\"></script><script src=\"https://cdn.jsdelivr.net/npm/@scalar/api-reference\"></script>";
    assert_eq!(third_party_without_integrity(old).len(), 1);
    let pinned = "<script src=\"https://cdn.example/x@1.2.3.js\" integrity=\"sha384-abc\" crossorigin=\"anonymous\"></script>";
    assert!(third_party_without_integrity(pinned).is_empty());
    assert_eq!(third_party_without_integrity("<style>@import 'https://fonts.example/a.css';</style>").len(), 1);
}

#[tokio::test]
async fn the_docs_page_lists_every_operation_links_the_document_and_loads_nothing_from_another_origin() {
    let svc = Service::start(&[]).await;
    let doc = document(&svc).await;
    let resp = svc.client.get(format!("{}/api/v1/docs", svc.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"), "no script may run: {csp}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"/api/v1/openapi.json\""), "the page links the document");
    assert!(!html.to_ascii_lowercase().contains("<script"), "the page has no script");
    assert_eq!(third_party_without_integrity(&html), Vec::<String>::new());
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap();
        let row = format!("<tr id=\"op-{id}\"><td class=\"method\">{method}</td><td><code>{path}</code></td>");
        assert!(html.contains(&row), "the page lists {method} {path}");
    }
}

#[test]
fn the_cli_prints_the_same_document_the_service_serves() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine")).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let served = serde_json::to_value(governance_engine::adapters::http::document()).unwrap();
    assert_eq!(doc, served);
}

#[test]
fn every_operation_has_its_own_operation_id() {
    let doc = serde_json::to_value(governance_engine::adapters::http::document()).unwrap();
    let mut seen = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId")).to_owned();
        assert!(seen.insert(id.clone()), "{method} {path}: operationId {id} is used twice");
    }
}

/// The served document passes `openapi-spec-validator` (OpenAPI 3.1 schema and the
/// semantic checks client generators rely on, e.g. unique operationIds).
#[tokio::test]
async fn the_served_document_passes_openapi_spec_validator() {
    let svc = Service::start(&[]).await;
    let doc = document(&svc).await;
    let path = std::env::temp_dir().join(format!("aumos-openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(var("AUMOS_DEV_PYTHON"))
        .args(["-m", "openapi_spec_validator", "--schema", "3.1", path.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "openapi-spec-validator: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK"), "{stdout}");
}
