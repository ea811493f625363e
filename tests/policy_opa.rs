//! The OPA engine against a real OPA server (each test starts its own, so stopping it
//! disturbs nobody), and against fake servers for the answers a real one rarely gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::opa::Opa;

use axum::routing::{any, get, put};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// A service on a real OPA, with a 5 s evaluation deadline: no test on a real OPA is about
/// the deadline, and on the shared ledger the sync's first pass uploads every active policy
/// of the run into the test's fresh OPA meanwhile (OPA pauses queries while it compiles
/// each upload).
async fn opa_service(opa: &Opa) -> Service {
    service_on(&opa.url(), &opa.token, "5000").await
}

async fn service_on(url: &str, token: &str, timeout_ms: &str) -> Service {
    Service::start(&[
        ("AUMOS_GOVERNANCE_POLICY_ENGINE", "opa"),
        ("AUMOS_GOVERNANCE_OPA_URL", url),
        ("AUMOS_GOVERNANCE_OPA_TOKEN", token),
        ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", timeout_ms),
    ])
    .await
}

async fn active_policy(svc: &Service, tenant: Uuid, tok: &str, rego: &str) -> String {
    let (status, p) =
        svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(&json!({"name": "gate", "rego": rego}))).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let id = p["policy_id"].as_str().unwrap().to_owned();
    let (status, a) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    id
}

async fn evaluate(svc: &Service, tenant: Uuid, tok: &str, id: &str, body: Value) -> (StatusCode, Value) {
    svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(tenant), Some(tok), Some(&body)).await
}

#[tokio::test]
async fn opa_compiles_activates_and_evaluates_and_tenants_packages_never_collide() {
    let opa = Opa::start().await;
    let svc = opa_service(&opa).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ta, tb) = (token(a, ADMIN), token(b, ADMIN));

    let (status, e) = svc
        .call(
            Method::POST,
            "/api/v1/policies",
            Some(a),
            Some(&ta),
            Some(&json!({"name": "x", "rego": "package gate\n\nallow if {\n  input.x >\n}\n"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(error_code(&e), "policy_compile_failed");
    assert!(e["error"]["details"]["errors"][0]["row"].as_u64().is_some(), "OPA's location is kept: {e}");

    let failing = "package gate\n\nallow if input.ok\ntest_allow if allow with input as {\"ok\": false}\n";
    let (_, p) = svc.call(Method::POST, "/api/v1/policies", Some(a), Some(&ta), Some(&json!({"name": "t", "rego": failing}))).await;
    let (status, e) =
        svc.call(Method::POST, &format!("/api/v1/policies/{}/activate", p["policy_id"].as_str().unwrap()), Some(a), Some(&ta), None).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "policy_tests_failed"), "{e}");

    // Same package name in two tenants, opposite answers.
    let pa = active_policy(&svc, a, &ta, "package gate\n\nallow := true\nreasons := [\"a\"]\n").await;
    let pb = active_policy(&svc, b, &tb, "package gate\n\nallow := false\nreasons := [\"b\"]\n").await;
    let (status, ra) = evaluate(&svc, a, &ta, &pa, json!({"input": {}, "rule": "allow"})).await;
    assert_eq!(status, StatusCode::OK, "{ra}");
    assert_eq!((ra["result"].clone(), ra["engine"].clone(), ra["allowed"].clone()), (json!(true), json!("opa"), json!(true)));
    let (_, rb) = evaluate(&svc, b, &tb, &pb, json!({"input": {}, "rule": "allow"})).await;
    assert_eq!((rb["result"].clone(), rb["allowed"].clone()), (json!(false), json!(false)));
    let (_, whole) = evaluate(&svc, a, &ta, &pa, json!({"input": {}})).await;
    assert_eq!(whole["result"], json!({"allow": true, "reasons": ["a"]}), "the whole package, without the service's marker: {whole}");
    let (_, undefined) = evaluate(&svc, a, &ta, &pa, json!({"input": {}, "rule": "missing"})).await;
    assert_eq!((undefined["defined"].clone(), undefined["result"].clone()), (json!(false), Value::Null));

    // Without an input OPA's `input` is undefined; an input of `null` is `null`.
    let (c, tc) = {
        let c = Uuid::new_v4();
        (c, token(c, ADMIN))
    };
    let probe = active_policy(&svc, c, &tc, "package probe\n\nseen := input\n").await;
    let (status, none) = evaluate(&svc, c, &tc, &probe, json!({"rule": "seen"})).await;
    assert_eq!((status, none["defined"].clone()), (StatusCode::OK, json!(false)), "{none}");
    let (_, null) = evaluate(&svc, c, &tc, &probe, json!({"rule": "seen", "input": null})).await;
    assert_eq!((null["defined"].clone(), null["result"].clone()), (json!(true), Value::Null), "{null}");
}

#[tokio::test]
async fn opa_down_answers_503_and_the_service_recovers_when_opa_returns_empty() {
    let mut opa = Opa::start().await;
    let port = opa.port;
    let svc = opa_service(&opa).await;
    let t = Uuid::new_v4();
    let tok = token(t, ADMIN);
    let id = active_policy(&svc, t, &tok, "package gate\n\nallow if input.score > 0.5\n").await;
    let (status, _) = evaluate(&svc, t, &tok, &id, json!({"input": {"score": 0.9}, "rule": "allow"})).await;
    assert_eq!(status, StatusCode::OK);

    opa.stop();
    let before = ledger_count_for(t).await;
    let (status, e) = evaluate(&svc, t, &tok, &id, json!({"input": {"score": 0.9}, "rule": "allow"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(error_code(&e), "policy_engine_unavailable");
    assert!(e["error"].get("allowed").is_none() && e.get("allowed").is_none(), "fail closed");
    assert_eq!(ledger_count_for(t).await, before, "no decision without an answer");
    // Readiness is cached for a second: it turns within a few.
    let mut ready = StatusCode::OK;
    for _ in 0..50 {
        ready = svc.client.get(format!("{}/health/ready", svc.base)).send().await.unwrap().status();
        if ready == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "readiness follows OPA down");

    // A restarted OPA holds no policies; the service uploads what it needs again.
    let _opa = Opa::start_with_token(port, opa.token.clone()).await;
    let (status, r) = evaluate(&svc, t, &tok, &id, json!({"input": {"score": 0.9}, "rule": "allow"})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["result"], json!(true), "the answer is the policy's, not the undefined of a missing module");
    let mut ready = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..150 {
        ready = svc.client.get(format!("{}/health/ready", svc.base)).send().await.unwrap().status();
        if ready == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::OK, "readiness recovers with OPA");
}

#[tokio::test]
async fn opa_restart_is_repaired_at_start_up_from_the_ledger() {
    let opa = Opa::start().await;
    let svc = opa_service(&opa).await;
    let t = Uuid::new_v4();
    let tok = token(t, ADMIN);
    active_policy(&svc, t, &tok, "package gate\n\nallow := true\n").await;
    drop(svc);
    let (port, token) = (opa.port, opa.token.clone());
    drop(opa);
    let fresh = Opa::start_with_token(port, token).await;
    let _svc = opa_service(&fresh).await;
    // Readiness does not wait for the sync's first pass: it uploads the active policies soon.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fresh.modules().await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!fresh.modules().await.is_empty(), "the start-up sync uploaded the active policies");
}

/// A fake OPA that accepts uploads and answers data queries with `answer` after `delay`.
async fn fake_opa(answer: &'static str, delay: Duration) -> String {
    let app = axum::Router::new()
        .route(
            "/v1/policies/{*id}",
            put(|| async { axum::Json(json!({})) })
                .get(|| async { axum::Json(json!({"result": {}})) })
                .delete(|| async { axum::Json(json!({})) }),
        )
        .route("/v1/policies", get(|| async { axum::Json(json!({"result": []})) }))
        .route("/v1/query", any(|| async { axum::Json(json!({"result": [{"ast": {}}]})) }))
        .route("/health", any(|| async { "{}" }))
        .route(
            "/v1/data/{*path}",
            any(move || async move {
                tokio::time::sleep(delay).await;
                ([(axum::http::header::CONTENT_TYPE, "application/json")], answer)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn malformed_or_slow_opa_answers_are_502_and_503_never_allow() {
    for (answer, delay, status, code) in [
        ("[true]", Duration::ZERO, StatusCode::BAD_GATEWAY, "policy_engine_error"),
        ("{\"result\": tru", Duration::ZERO, StatusCode::BAD_GATEWAY, "policy_engine_error"),
        ("{\"result\": true}", Duration::from_millis(800), StatusCode::SERVICE_UNAVAILABLE, "policy_evaluation_timeout"),
    ] {
        let url = fake_opa(answer, delay).await;
        let svc = service_on(&url, "unused", "200").await;
        let t = Uuid::new_v4();
        let tok = token(t, ADMIN);
        // The fake answers the activation's test run the same way, so activate a policy
        // without tests.
        let id = active_policy(&svc, t, &tok, "package gate\n\nallow := true\n").await;
        let (got, e) = evaluate(&svc, t, &tok, &id, json!({"input": {}, "rule": "allow"})).await;
        assert_eq!(got, status, "{answer}: {e}");
        assert_eq!(error_code(&e), code, "{answer}");
    }
}

#[tokio::test]
async fn opa_answers_401_to_anyone_without_the_service_token_and_the_service_works_with_it() {
    let opa = Opa::start().await;
    let client = reqwest::Client::new();
    let policies = format!("{}/v1/policies", opa.url());
    assert_eq!(client.get(&policies).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(&policies).bearer_auth("guess").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let upload = client.put(format!("{}/v1/policies/evil", opa.url())).body("package evil\n\nallow := true\n").send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::UNAUTHORIZED, "no module can be uploaded without the token");
    let query = client.post(format!("{}/v1/data", opa.url())).json(&json!({"input": {}})).send().await.unwrap();
    assert_eq!(query.status(), StatusCode::UNAUTHORIZED, "the data tree cannot be read without the token");
    assert_eq!(client.get(format!("{}/health", opa.url())).send().await.unwrap().status(), StatusCode::OK, "health stays open");

    let svc = opa_service(&opa).await;
    let t = Uuid::new_v4();
    let tok = token(t, ADMIN);
    let id = active_policy(&svc, t, &tok, "package gate\n\nallow := true\n").await;
    let (status, r) = evaluate(&svc, t, &tok, &id, json!({"input": {}, "rule": "allow"})).await;
    assert_eq!((status, r["result"].clone()), (StatusCode::OK, json!(true)), "{r}");
}

#[tokio::test]
async fn a_version_that_is_no_longer_active_is_unloaded_from_opa() {
    let opa = Opa::start().await;
    // A ledger of its own: on the shared one, the sync's first pass uploads every test's
    // active policy into this fresh OPA (each upload recompiles them all), which takes
    // longer than the test waits.
    let url = opa.url();
    let e = Embedded::start(&[
        ("AUMOS_GOVERNANCE_POLICY_ENGINE", "opa"),
        ("AUMOS_GOVERNANCE_OPA_URL", url.as_str()),
        ("AUMOS_GOVERNANCE_OPA_TOKEN", opa.token.as_str()),
    ])
    .await;
    let svc = &e.svc;
    let t = Uuid::new_v4();
    let tok = e.token(t, "governance:admin");
    let id = active_policy(svc, t, &tok, "package gate\n\nallow := true\n").await;
    let simple = Uuid::parse_str(&id).unwrap().simple().to_string();
    // A version is its module and its batch module (which evaluates concurrent queries together).
    let module = |v: u32| vec![format!("aumos/{simple}/v{v}"), format!("aumos/{simple}/v{v}/batch")];
    evaluate(svc, t, &tok, &id, json!({"input": {}})).await;
    let ours = |all: Vec<String>| -> Vec<String> {
        let mut ours: Vec<String> = all.into_iter().filter(|m| m.contains(&simple)).collect();
        ours.sort();
        ours
    };
    let eventually = async |want: Vec<String>| {
        let mut got = Vec::new();
        for _ in 0..100 {
            got = ours(opa.modules().await);
            if got == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("OPA holds {got:?}, expected {want:?}");
    };
    eventually(module(1)).await;

    let body = json!({"rego": "package gate\n\nallow := false\n"});
    let (status, v) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/versions"), Some(t), Some(&tok), Some(&body)).await;
    assert!(status.is_success(), "{v}");
    let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), Some(t), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    eventually(module(2)).await;
    let (_, r) = evaluate(svc, t, &tok, &id, json!({"input": {}, "rule": "allow"})).await;
    assert_eq!(r["result"], json!(false), "the new version answers: {r}");

    let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{id}/deactivate"), Some(t), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    eventually(vec![]).await;
    e.finish().await;
}

/// The embedded engine's list of OPA's builtins (which tells an author that a function it
/// lacks runs on the OPA engine) is the installed OPA's own.
#[test]
fn the_list_of_opa_builtins_is_the_installed_opa_s_own() {
    use governance_engine::adapters::engine::opa_builtins::OPA_BUILTINS;
    let out = Command::new(var("AUMOS_DEV_OPA_BIN")).args(["capabilities", "--current"]).output().unwrap();
    let caps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut theirs: Vec<&str> = caps["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .filter(|n| !n.starts_with("internal.") && n.chars().any(|c| c.is_alphabetic()))
        .collect();
    theirs.sort_unstable();
    theirs.dedup();
    assert_eq!(OPA_BUILTINS, theirs.as_slice());
}

/// OPA's capabilities document marks the builtins that reach outside an evaluation; each
/// must be refused to tenants or known to be harmless, so an OPA upgrade that adds one
/// fails here until it is classified.
#[test]
fn every_builtin_opa_marks_non_deterministic_is_refused_or_known_harmless() {
    use governance_engine::adapters::engine::source::{ALLOWED_NONDETERMINISTIC, FORBIDDEN_BUILTINS};
    let out = Command::new(var("AUMOS_DEV_OPA_BIN")).args(["capabilities", "--current"]).output().unwrap();
    let caps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nondeterministic: Vec<&str> =
        caps["builtins"].as_array().unwrap().iter().filter(|b| b["nondeterministic"] == true).filter_map(|b| b["name"].as_str()).collect();
    for name in FORBIDDEN_BUILTINS {
        assert!(nondeterministic.contains(name), "{name} is refused and OPA marks it: {nondeterministic:?}");
    }
    for name in nondeterministic {
        assert!(FORBIDDEN_BUILTINS.contains(&name) || ALLOWED_NONDETERMINISTIC.contains(&name), "unclassified builtin {name}");
    }
}
