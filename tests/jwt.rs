//! Token verification rejects what it must: `alg: none`, HS* tokens (algorithm confusion
//! with the public key as the HMAC secret), missing tenant or subject, wrong issuer or
//! audience, `nbf` in the future; and `exp`/`nbf` allow the configured small leeway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn claims(tenant: Uuid) -> Value {
    let cfg = governance_engine::config::Config::from_process_env().unwrap().jwt;
    json!({"sub": "jwt-test", "tenant_id": tenant.to_string(), "roles": ["governance:admin"], "iss": cfg.issuer, "aud": cfg.audience,
           "exp": now() + 300, "nbf": now() - 10, "iat": now() - 10})
}

fn signed(c: &Value) -> String {
    let key = EncodingKey::from_ed_pem(&std::fs::read(var("AUMOS_JWT_PRIVATE_KEY_FILE")).unwrap()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), c, &key).unwrap()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn every_forged_or_incomplete_token_is_rejected_and_leeway_is_small() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let get = |tok: String| {
        let svc = &svc;
        async move { svc.call(Method::GET, "/api/v1/policies", Some(tenant), Some(&tok), None).await }
    };
    let (status, _) = get(signed(&claims(tenant))).await;
    assert_eq!(status, StatusCode::OK, "the well-formed token is accepted");

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push(("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(tenant)))));
    let public_pem = std::fs::read(var("AUMOS_JWT_PUBLIC_KEY_FILE")).unwrap();
    let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(tenant), &EncodingKey::from_secret(&public_pem)).unwrap();
    cases.push(("HS256 signed with the public key (algorithm confusion)", hs));
    for (what, field) in [("no tenant claim", "tenant_id"), ("no subject", "sub")] {
        let mut c = claims(tenant);
        c.as_object_mut().unwrap().remove(field);
        cases.push((what, signed(&c)));
    }
    for (what, field, value) in [
        ("wrong issuer", "iss", json!("https://evil.example")),
        ("wrong audience", "aud", json!("another-service")),
        ("not yet valid beyond the leeway", "nbf", json!(now() + 3600)),
        ("expired beyond the leeway", "exp", json!(now() - 3600)),
        ("tenant claim not a UUID", "tenant_id", json!("acme")),
    ] {
        let mut c = claims(tenant);
        c[field] = value;
        cases.push((what, signed(&c)));
    }
    let ledger_before = ledger_count_for(tenant).await;
    for (what, tok) in cases {
        let (status, body) = get(tok).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(error_code(&body), "unauthenticated", "{what}");
    }
    assert_eq!(ledger_count_for(tenant).await, ledger_before);

    // Clock skew within the leeway is tolerated.
    let mut c = claims(tenant);
    c["exp"] = json!(now() - 5);
    let (status, _) = get(signed(&c)).await;
    assert_eq!(status, StatusCode::OK, "exp 5 s ago is within the leeway");
}
