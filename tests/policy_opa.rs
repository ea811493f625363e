//! The OPA engine against a real OPA server (each test starts its own, so stopping it
//! disturbs nobody), and against fake servers for the answers a real one rarely gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::routing::{any, put};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

struct Opa {
    child: Child,
    port: u16,
}

impl Opa {
    async fn start_on(port: u16) -> Opa {
        let child = Command::new(var("AUMOS_DEV_OPA_BIN"))
            .args(["run", "--server", "--addr", &format!("127.0.0.1:{port}"), "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned from here on, so Drop reaps it on every path.
        let opa = Opa { child, port };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                return opa;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("OPA did not start");
    }
    async fn start() -> Opa {
        Self::start_on(free_port()).await
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Opa {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn opa_service(url: &str, timeout_ms: &str) -> Service {
    Service::start(&[
        ("AUMOS_GOVERNANCE_POLICY_ENGINE", "opa"),
        ("AUMOS_GOVERNANCE_OPA_URL", url),
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
    let svc = opa_service(&opa.url(), "200").await;
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
}

#[tokio::test]
async fn opa_down_answers_503_and_the_service_recovers_when_opa_returns_empty() {
    let mut opa = Opa::start().await;
    let port = opa.port;
    let svc = opa_service(&opa.url(), "200").await;
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
    let ready = svc.client.get(format!("{}/health/ready", svc.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A restarted OPA holds no policies; the service uploads what it needs again.
    let _opa = Opa::start_on(port).await;
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
    let svc = opa_service(&opa.url(), "200").await;
    let t = Uuid::new_v4();
    let tok = token(t, ADMIN);
    active_policy(&svc, t, &tok, "package gate\n\nallow := true\n").await;
    drop(svc);
    let port = opa.port;
    drop(opa);
    let fresh = Opa::start_on(port).await;
    let _svc = opa_service(&fresh.url(), "200").await;
    // Readiness waits for the first sync, so by now every active policy is back.
    let modules: Value = reqwest::get(format!("{}/v1/policies", fresh.url())).await.unwrap().json().await.unwrap();
    assert!(!modules["result"].as_array().unwrap().is_empty(), "the start-up sync uploaded the active policies");
}

/// A fake OPA that accepts uploads and answers data queries with `answer` after `delay`.
async fn fake_opa(answer: &'static str, delay: Duration) -> String {
    let app = axum::Router::new()
        .route("/v1/policies/{*id}", put(|| async { axum::Json(json!({})) }).get(|| async { axum::Json(json!({"result": {}})) }))
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
        ("{\"result\": true}", Duration::from_millis(800), StatusCode::SERVICE_UNAVAILABLE, "policy_engine_unavailable"),
    ] {
        let url = fake_opa(answer, delay).await;
        let svc = opa_service(&url, "200").await;
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
