//! Bad requests get a clear 4xx with the JSON error body and change nothing: the ledger
//! has exactly as many entries afterwards. One test runs the cases in sequence, because
//! the ledger count is global and tests in one binary run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use uuid::Uuid;

fn foreign_token(tenant: Uuid) -> String {
    // Signed by a key the service does not trust.
    let dir = std::env::temp_dir().join(format!("gov-foreign-{}", Uuid::new_v4()));
    governance_engine::adapters::auth::ensure_dev_keypair(&dir).unwrap();
    let pem = std::fs::read(governance_engine::adapters::auth::dev_key_paths(&dir).0).unwrap();
    let cfg = governance_engine::config::Config::from_process_env().unwrap().jwt;
    let t = governance_engine::adapters::auth::mint(
        &pem,
        &cfg,
        "mallory",
        &tenant.to_string(),
        &["governance:admin".into()],
        Duration::from_secs(600),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    t
}

/// A token that expired ten minutes ago, well beyond the verifier's leeway.
fn expired_token(tenant: Uuid) -> String {
    let cfg = governance_engine::config::Config::from_process_env().unwrap().jwt;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = governance_engine::adapters::auth::Claims {
        sub: "test-user".into(),
        tenant_id: tenant.to_string(),
        roles: vec!["governance:admin".into()],
        iss: cfg.issuer,
        aud: cfg.audience,
        exp: now - 600,
        nbf: now - 1200,
        iat: now - 1200,
    };
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(var("AUMOS_JWT_PRIVATE_KEY_FILE")).unwrap()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &claims, &key).unwrap()
}

#[tokio::test]
async fn bad_requests_get_4xx_with_an_error_body_and_change_nothing() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let good = token(tenant, ADMIN);
    let expired = expired_token(tenant);
    let body = policy_body("never-stored");
    let before = ledger_count().await;

    let post = |tok: Option<String>, tenant_header: Option<Uuid>| {
        let svc = &svc;
        let body = body.clone();
        async move { svc.call(Method::POST, "/api/v1/policies", tenant_header, tok.as_deref(), Some(&body)).await }
    };
    type Case<'a> = (&'a str, Option<String>, Option<Uuid>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("missing token", None, Some(tenant), StatusCode::UNAUTHORIZED, "unauthenticated"),
        ("malformed token", Some("not.a.jwt".into()), Some(tenant), StatusCode::UNAUTHORIZED, "unauthenticated"),
        ("expired token", Some(expired), Some(tenant), StatusCode::UNAUTHORIZED, "unauthenticated"),
        ("wrongly signed token", Some(foreign_token(tenant)), Some(tenant), StatusCode::UNAUTHORIZED, "unauthenticated"),
        ("tenant header of another tenant", Some(good.clone()), Some(Uuid::new_v4()), StatusCode::FORBIDDEN, "tenant_mismatch"),
        ("missing tenant header", Some(good.clone()), None, StatusCode::BAD_REQUEST, "invalid_request"),
    ];
    for (what, tok, hdr, status, code) in cases {
        let (got, body) = post(tok, hdr).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(error_code(&body), code, "{what}");
    }

    let raw = |payload: &'static str, content_type: &'static str| {
        let svc = &svc;
        let good = good.clone();
        async move {
            let r = svc
                .client
                .post(format!("{}/api/v1/policies", svc.base))
                .bearer_auth(good)
                .header("X-Tenant-ID", tenant.to_string())
                .header("content-type", content_type)
                .body(payload)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let bodies: Vec<(&str, &'static str, &'static str, StatusCode, &str)> = vec![
        ("malformed JSON", "{\"name\": ", "application/json", StatusCode::BAD_REQUEST, "malformed_json"),
        ("missing rego", r#"{"name":"x"}"#, "application/json", StatusCode::BAD_REQUEST, "invalid_request"),
        ("wrong type", r#"{"name":7,"rego":"package a"}"#, "application/json", StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "unknown field",
            r#"{"name":"x","rego":"package a","owner":"me"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("empty name", r#"{"name":"  ","rego":"package a"}"#, "application/json", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("trailing characters", r#"{"name":"x","rego":"package a"} x"#, "application/json", StatusCode::BAD_REQUEST, "malformed_json"),
        ("not JSON", "name=x", "application/x-www-form-urlencoded", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    ];
    for (what, payload, ct, status, code) in bodies {
        let (got, body) = raw(payload, ct).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(error_code(&body), code, "{what}");
    }
    // A body that fails says where (the path of the field), a nested one too.
    let (_, body) = raw(r#"{"name":7,"rego":"package a"}"#, "application/json").await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("name: invalid type")), "{body}");
    let (_, body) = raw(r#"{"name":"x","rego":"package a","modules":[7]}"#, "application/json").await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("modules[0]: invalid type")), "{body}");

    let (status, body) = svc.post_announcing("/api/v1/policies", tenant, &good, 2 * 1024 * 1024).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");

    let (status, body) = svc.call(Method::DELETE, "/api/v1/policies", Some(tenant), Some(&good), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body), "method_not_allowed");
    let (status, body) = svc.call(Method::GET, "/api/v1/nothing-here", Some(tenant), Some(&good), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = svc.call(Method::GET, "/api/v1/policies/not-a-uuid", Some(tenant), Some(&good), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");

    assert_eq!(ledger_count().await, before, "no rejected request reached the ledger");
    let (status, list) = svc.call(Method::GET, "/api/v1/policies", Some(tenant), Some(&good), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn a_list_filter_holding_nul_is_refused_with_422_not_a_failed_query() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    // Found by schemathesis: a name filter with a NUL byte made the database query fail (500).
    for path in ["/api/v1/policies?name=a%00b&status=inactive", "/api/v1/system-evidence?control=PR%00", "/api/v1/policies?name=%C3%A5%00"]
    {
        let (status, body) = svc.call(Method::GET, path, Some(tenant), Some(&tok), None).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed".to_owned()), "{path}: {body}");
    }
    let (status, body) = svc.call(Method::GET, "/api/v1/policies?name=%C3%A5", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
