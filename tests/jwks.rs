//! Token keys from a JWKS URL (EdDSA, ES256 and RS256 keys by `kid`), refetched on an
//! unknown `kid` at most once per interval; and ES256/RS256 from a static PEM.
//! The identity provider is a small axum server in the test that counts its fetches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use governance_engine::adapters::auth::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

fn jwk(name: &str) -> Value {
    serde_json::from_str(&fixture(&format!("{name}.jwk.json"))).unwrap()
}

/// A token signed with fixture key `name`, for `alg`, with header `kid`.
fn sign(name: &str, alg: Algorithm, kid: Option<&str>, tenant: Uuid) -> String {
    let pem = fixture(&format!("{name}.pem"));
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = Claims {
        sub: "jwks-user".into(),
        tenant_id: tenant.to_string(),
        roles: vec!["governance:admin".into()],
        iss: std::env::var("AUMOS_JWT_ISSUER").unwrap_or_else(|_| "aumos-dev".into()),
        aud: std::env::var("AUMOS_JWT_AUDIENCE").unwrap_or_else(|_| "aumos-governance".into()),
        exp: now + 300,
        nbf: now,
        iat: now,
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A stand-in identity provider serving a JWKS and counting fetches.
struct Provider {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: Vec<Value>) -> Provider {
        let keys = Arc::new(Mutex::new(keys));
        let hits = Arc::new(AtomicUsize::new(0));
        let (k, h) = (keys.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (k, h) = (k.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "keys": *k.lock().unwrap() }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider { url, keys, hits }
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn start_with_jwks(provider: &Provider, min_refresh: &str) -> Service {
    var("AUMOS_DATABASE_URL");
    Service::spawn(
        &[
            ("AUMOS_JWT_JWKS_URL", provider.url.as_str()),
            ("AUMOS_JWT_JWKS_MIN_REFRESH_SECONDS", min_refresh),
            ("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP", "true"),
        ],
        &["AUMOS_JWT_PUBLIC_KEY_FILE", "AUMOS_KAFKA_BOOTSTRAP_SERVERS"],
    )
    .await
}

async fn list_as(svc: &Service, tenant: Uuid, token: &str) -> (StatusCode, Value) {
    svc.call(Method::GET, "/api/v1/policies", Some(tenant), Some(token), None).await
}

#[tokio::test]
async fn tokens_signed_by_each_kind_of_jwks_key_are_accepted_and_others_are_not() {
    let provider = Provider::start(vec![jwk("ed25519-a"), jwk("es256"), jwk("rs256")]).await;
    let svc = start_with_jwks(&provider, "3600").await;
    let tenant = Uuid::new_v4();
    for (name, alg) in [("ed25519-a", Algorithm::EdDSA), ("es256", Algorithm::ES256), ("rs256", Algorithm::RS256)] {
        let kid = format!("test-{name}");
        let (status, body) = list_as(&svc, tenant, &sign(name, alg, Some(&kid), tenant)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    // A token without kid, a kid naming another key, and a key of the set used with the
    // wrong algorithm all fail.
    let rejected = [
        sign("ed25519-a", Algorithm::EdDSA, None, tenant),
        sign("ed25519-b", Algorithm::EdDSA, Some("test-ed25519-a"), tenant),
        sign("rs256", Algorithm::RS256, Some("test-es256"), tenant),
    ];
    for token in rejected {
        let (status, body) = list_as(&svc, tenant, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(error_code(&body), "unauthenticated");
    }
}

#[tokio::test]
async fn unknown_kids_refetch_the_set_at_most_once_per_interval_and_a_rotated_key_is_picked_up() {
    let provider = Provider::start(vec![jwk("ed25519-a")]).await;
    let svc = start_with_jwks(&provider, "2").await;
    let tenant = Uuid::new_v4();
    assert_eq!(provider.hits(), 1, "fetched once at start-up");

    // A flood of made-up kids: every token is refused, and the provider sees at most one
    // more fetch (the interval may have passed since start-up), not one per token.
    for _ in 0..40 {
        let kid = Uuid::new_v4().to_string();
        let (status, _) = list_as(&svc, tenant, &sign("ed25519-a", Algorithm::EdDSA, Some(&kid), tenant)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let after_flood = provider.hits();
    assert!(after_flood <= 2, "{after_flood} fetches for 40 unknown kids");

    // The provider rotates in key b. Once the interval has passed, the first token with
    // b's kid refetches the set and is accepted.
    provider.keys.lock().unwrap().push(jwk("ed25519-b"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = list_as(&svc, tenant, &sign("ed25519-b", Algorithm::EdDSA, Some("test-ed25519-b"), tenant)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(provider.hits(), after_flood + 1);
    // Known kids need no fetch.
    let (status, _) = list_as(&svc, tenant, &sign("ed25519-a", Algorithm::EdDSA, Some("test-ed25519-a"), tenant)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(provider.hits(), after_flood + 1);
}

#[tokio::test]
async fn static_pem_keys_verify_es256_and_rs256_tokens_and_refuse_the_other_algorithm() {
    var("AUMOS_DATABASE_URL");
    let tenant = Uuid::new_v4();
    for (name, alg, config, other) in [
        ("es256", Algorithm::ES256, "ES256", ("rs256", Algorithm::RS256)),
        ("rs256", Algorithm::RS256, "RS256", ("es256", Algorithm::ES256)),
    ] {
        let public = format!("{FIXTURES}/{name}.pub.pem");
        let svc = Service::spawn(
            &[("AUMOS_JWT_PUBLIC_KEY_FILE", public.as_str()), ("AUMOS_JWT_ALGORITHM", config)],
            &["AUMOS_KAFKA_BOOTSTRAP_SERVERS"],
        )
        .await;
        let (status, body) = list_as(&svc, tenant, &sign(name, alg, None, tenant)).await;
        assert_eq!(status, StatusCode::OK, "{config}: {body}");
        let (status, _) = list_as(&svc, tenant, &sign(other.0, other.1, None, tenant)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{config} refuses a {:?} token", other.1);
    }
}

#[tokio::test]
async fn keys_older_than_the_max_age_are_refetched_and_a_removed_key_stops_verifying() {
    let provider = Provider::start(vec![jwk("ed25519-a")]).await;
    var("AUMOS_DATABASE_URL");
    let svc = Service::spawn(
        &[
            ("AUMOS_JWT_JWKS_URL", provider.url.as_str()),
            ("AUMOS_JWT_JWKS_MIN_REFRESH_SECONDS", "1"),
            ("AUMOS_JWT_JWKS_MAX_AGE_SECONDS", "1"),
            ("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP", "true"),
        ],
        &["AUMOS_JWT_PUBLIC_KEY_FILE", "AUMOS_KAFKA_BOOTSTRAP_SERVERS"],
    )
    .await;
    let before = provider.hits();
    // Polled (a loaded machine may be late by a refresh tick), with no request to the
    // service meanwhile: only the max age can make it fetch.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while provider.hits() == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(provider.hits() > before, "keys older than the max age are refetched");
    let tenant = Uuid::new_v4();
    let (status, _) = list_as(&svc, tenant, &sign("ed25519-a", Algorithm::EdDSA, Some("test-ed25519-a"), tenant)).await;
    assert_eq!(status, StatusCode::OK);
    // The provider dropped the key: once the set is refetched, tokens signed with it fail.
    provider.keys.lock().unwrap().clear();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let other = Uuid::new_v4();
        let (status, _) = list_as(&svc, other, &sign("ed25519-a", Algorithm::EdDSA, Some("test-ed25519-a"), other)).await;
        if status == StatusCode::UNAUTHORIZED || std::time::Instant::now() >= deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a key the provider removed stops verifying");
}

/// Starts the service on an HTTPS JWKS at `url`, trusting `ca_file` if given.
async fn start_on_https(url: &str, ca_file: Option<&std::path::Path>) -> Service {
    var("AUMOS_DATABASE_URL");
    let ca = ca_file.map(|p| p.display().to_string()).unwrap_or_default();
    let mut env = vec![("AUMOS_JWT_JWKS_URL", url), ("AUMOS_JWT_JWKS_MIN_REFRESH_SECONDS", "1")];
    if ca_file.is_some() {
        env.push(("AUMOS_TLS_CA_FILE", ca.as_str()));
    }
    Service::spawn(&env, &["AUMOS_JWT_PUBLIC_KEY_FILE", "AUMOS_KAFKA_BOOTSTRAP_SERVERS"]).await
}

#[tokio::test]
async fn a_jwks_over_https_is_trusted_through_the_ca_file_and_redirects_are_not_followed() {
    let ca = common::tls::TestCa::new("identity provider CA");
    let dir = std::env::temp_dir().join(format!("gov-jwks-tls-{}", Uuid::new_v4()));
    let ca_file = ca.ca_file(&dir);
    let keys = json!({ "keys": [jwk("ed25519-a")] }).to_string();
    let port = ca
        .serve_https(Arc::new(move |path: &str| match path {
            "/jwks.json" => ("200 OK".to_owned(), keys.clone()),
            _ => ("302 Found\r\nLocation: /jwks.json".to_owned(), String::new()),
        }))
        .await;
    let tenant = Uuid::new_v4();
    let token = sign("ed25519-a", Algorithm::EdDSA, Some("test-ed25519-a"), tenant);

    let svc = start_on_https(&format!("https://localhost:{port}/jwks.json"), Some(&ca_file)).await;
    assert_eq!(list_as(&svc, tenant, &token).await.0, StatusCode::OK, "keys fetched over HTTPS verify tokens");
    svc.stop().await;

    let svc = start_on_https(&format!("https://localhost:{port}/jwks.json"), None).await;
    assert_eq!(
        list_as(&svc, tenant, &token).await.0,
        StatusCode::UNAUTHORIZED,
        "a server the system roots do not vouch for is not trusted"
    );
    svc.stop().await;

    let svc = start_on_https(&format!("https://localhost:{port}/moved"), Some(&ca_file)).await;
    assert_eq!(list_as(&svc, tenant, &token).await.0, StatusCode::UNAUTHORIZED, "a redirect is not followed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plain_http_jwks_stops_start_up_unless_the_development_variable_allows_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
        .arg("serve")
        .env("AUMOS_JWT_JWKS_URL", "http://127.0.0.1:9/jwks.json")
        .env_remove("AUMOS_JWT_PUBLIC_KEY_FILE")
        .env_remove("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("AUMOS_JWT_JWKS_URL") && stderr.contains("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP"), "{stderr}");
}
