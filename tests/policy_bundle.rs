//! A policy version as an OPA bundle holds it: a main module, further modules and a data
//! document, recorded with the version and seen by that version only, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const MAIN: &str = "package gate\n\nimport data.lib\n\n\
    default allow := false\n\n\
    allow if {\n  input.model in data.allowed_models\n  input.tokens <= lib.max_tokens\n}\n\n\
    reasons contains r if {\n  not input.model in data.allowed_models\n  r := lib.reason(input.model)\n}\n\n\
    test_allows_a_listed_model if allow with input as {\"model\": \"m1\", \"tokens\": 1}\n";
const LIB: &str = "package lib\n\nmax_tokens := data.limits.tokens\n\nreason(m) := sprintf(\"model %s is not allowed\", [m])\n\n\
    test_limit if max_tokens == 100\n";

fn data() -> Value {
    json!({"allowed_models": ["m1", "m2"], "limits": {"tokens": 100}})
}

impl Tenant<'_> {
    async fn create(&self, body: Value) -> (StatusCode, Value) {
        let mut body = body;
        body["name"] = json!(format!("bundle-{}", uuid::Uuid::new_v4()));
        self.call(Method::POST, "/api/v1/policies", Some(body)).await
    }

    async fn activate(&self, id: &str) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await
    }

    async fn evaluate(&self, id: &str, rule: &str, input: Value) -> Value {
        let (status, r) =
            self.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(json!({"rule": rule, "input": input}))).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        r["result"].clone()
    }
}

async fn modules_and_data_are_recorded_served_and_evaluated(svc: &Service) {
    let t = Tenant::new(svc);
    let (status, p) = t.create(json!({"rego": MAIN, "modules": [LIB], "data": data()})).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let id = p["policy_id"].as_str().unwrap().to_owned();

    let (status, page) = t.call(Method::GET, &format!("/api/v1/policies/{id}/versions"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let v = &page["items"][0];
    assert_eq!(v["modules"], json!([LIB]), "the version serves its further modules: {v}");
    assert_eq!(v["data"], data(), "and its data document: {v}");

    let (status, a) = t.activate(&id).await;
    assert_eq!(status, StatusCode::OK, "the tests of both modules pass: {a}");
    assert_eq!(t.evaluate(&id, "allow", json!({"model": "m2", "tokens": 50})).await, json!(true));
    assert_eq!(t.evaluate(&id, "allow", json!({"model": "m2", "tokens": 500})).await, json!(false), "the limit comes from the data");
    assert_eq!(t.evaluate(&id, "reasons", json!({"model": "x9", "tokens": 1})).await, json!(["model x9 is not allowed"]));

    // A new version with other data: the new data answers, the old version kept its own.
    let body = json!({"rego": MAIN, "modules": [LIB], "data": {"allowed_models": ["x9"], "limits": {"tokens": 100}}});
    let (status, v2) = t.call(Method::POST, &format!("/api/v1/policies/{id}/versions"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    let (status, a) = t.activate(&id).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "version 2's own test fails against its own data: {a}");
    assert!(a.to_string().contains("test_allows_a_listed_model"), "{a}");
    assert_eq!(t.evaluate(&id, "allow", json!({"model": "m1", "tokens": 1})).await, json!(true), "version 1 stays active");

    // Another policy, of this tenant or another, sees none of it.
    for other in [&t, &Tenant::new(svc)] {
        let (status, q) = other.create(json!({"rego": "package gate\n\nleak := data.allowed_models\nlib := data.lib.max_tokens\n"})).await;
        assert_eq!(status, StatusCode::CREATED, "{q}");
        let qid = q["policy_id"].as_str().unwrap().to_owned();
        assert_eq!(other.activate(&qid).await.0, StatusCode::OK);
        assert_eq!(other.evaluate(&qid, "leak", json!({})).await, Value::Null, "another version's data is not in this one's tree");
        assert_eq!(other.evaluate(&qid, "lib", json!({})).await, Value::Null, "nor its modules");
    }
}

async fn bad_modules_and_data_get_a_clear_4xx_and_record_nothing(svc: &Service) {
    let t = Tenant::new(svc);
    let before = ledger_count_for(t.id).await;
    let too_many: Vec<String> = (0..16).map(|i| format!("package m{i}\n\nx := {i}\n")).collect();
    let cases = [
        (json!({"rego": MAIN, "modules": [LIB], "data": [1, 2]}), "data"),
        (json!({"rego": MAIN, "modules": [LIB], "data": "allowed"}), "data"),
        (json!({"rego": MAIN, "modules": too_many, "data": data()}), "modules"),
        (json!({"rego": MAIN, "modules": [""], "data": data()}), "rego"),
        (json!({"rego": MAIN, "modules": ["package lib\n\nmax_tokens := \n"], "data": data()}), "modules[0]"),
        (json!({"rego": MAIN, "modules": [LIB, "package other\n\nallow if http.send({}).status_code == 200\n"]}), "modules[1]"),
        (json!({"rego": MAIN, "modules": [LIB], "data": {"k\u{0}": 1}}), "NUL"),
        // Data where a rule is: OPA's server refuses it, and so does the embedded engine.
        (json!({"rego": MAIN, "modules": [LIB], "data": {"lib": {"max_tokens": 5}}}), "conflicting rule for data path"),
        (json!({"rego": MAIN, "modules": [LIB], "data": {"blob": "x".repeat(1024 * 1024 + 1)}}), "data"),
    ];
    for (body, names) in cases {
        let (status, e) = t.create(body.clone()).await;
        assert!(status.is_client_error(), "{names}: {status} {e}");
        assert!(e["error"]["code"].is_string() && e["error"]["request_id"].is_string(), "a JSON error: {e}");
        assert!(e.to_string().contains(names) || status == StatusCode::PAYLOAD_TOO_LARGE, "the error names {names}: {e}");
    }
    assert_eq!(ledger_count_for(t.id).await, before, "nothing was recorded");
}

/// The most work one version can ask of an engine's upload: 15 further modules whose
/// functions call the next module's in a ring (on OPA, no upload order works, so each goes
/// up as a stub first). It is accepted and answers (on OPA it may instead fail closed at the
/// request deadline), and another tenant evaluating all the while is served every time.
async fn a_ring_of_sixteen_modules_is_accepted_while_another_tenant_stays_served(svc: &Service, may_time_out: bool) {
    let (t, bystander) = (Tenant::new(svc), Tenant::new(svc));
    let (status, b) = bystander.create(json!({"rego": "package b\n\nallow if input.ok\n"})).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let bid = b["policy_id"].as_str().unwrap().to_owned();
    assert_eq!(bystander.activate(&bid).await.0, StatusCode::OK);
    let ring: Vec<String> = (0..15).map(|i| format!("package lib{i}\n\nf(x) := data.lib{}.g(x)\n\ng(x) := x\n", (i + 1) % 15)).collect();
    let hostile = async {
        let (status, p) = t.create(json!({"rego": "package gate\n\nallow if data.lib0.f(true)\n", "modules": ring})).await;
        if may_time_out && status == StatusCode::SERVICE_UNAVAILABLE {
            // OPA compiles everything it holds at each of the ~50 uploads of the check: on a
            // busy OPA that can pass the request deadline. It fails closed, recording nothing.
            assert_eq!(p["error"]["code"], "request_timeout", "{p}");
            assert_eq!(ledger_count_for(t.id).await, 0, "nothing was recorded");
            return;
        }
        assert_eq!(status, StatusCode::CREATED, "{p}");
        let id = p["policy_id"].as_str().unwrap().to_owned();
        let recorded = ledger_count_for(t.id).await;
        let (status, a) = t.activate(&id).await;
        if may_time_out && status == StatusCode::SERVICE_UNAVAILABLE {
            // Activation uploads the version again (and OPA compiles all it holds): the
            // same deadline, the same fail-closed answer, and no activation recorded.
            assert_eq!(a["error"]["code"], "request_timeout", "{a}");
            assert_eq!(ledger_count_for(t.id).await, recorded, "nothing was recorded");
            return;
        }
        assert_eq!(status, StatusCode::OK, "{a}");
        assert_eq!(t.evaluate(&id, "allow", json!({})).await, json!(true));
    };
    let served = async {
        for _ in 0..20 {
            assert_eq!(bystander.evaluate(&bid, "allow", json!({"ok": true})).await, json!(true));
        }
    };
    tokio::join!(hostile, served);
}

#[tokio::test]
async fn a_version_s_further_modules_and_data_document_are_recorded_and_evaluated_on_the_embedded_engine() {
    let svc = Service::start(&[]).await;
    modules_and_data_are_recorded_served_and_evaluated(&svc).await;
    bad_modules_and_data_get_a_clear_4xx_and_record_nothing(&svc).await;
    a_ring_of_sixteen_modules_is_accepted_while_another_tenant_stays_served(&svc, false).await;
}

#[tokio::test]
async fn a_version_s_further_modules_and_data_document_are_recorded_and_evaluated_on_opa() {
    // The bystander's evaluations wait while OPA compiles everything it holds at each of
    // the ring's uploads: the deadline is not what this test is about.
    let svc = Service::start(&[("AUMOS_GOVERNANCE_POLICY_ENGINE", "opa"), ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "5000")]).await;
    modules_and_data_are_recorded_served_and_evaluated(&svc).await;
    bad_modules_and_data_get_a_clear_4xx_and_record_nothing(&svc).await;
    a_ring_of_sixteen_modules_is_accepted_while_another_tenant_stays_served(&svc, true).await;
}
