//! The policy lifecycle, validation, the test gate and evaluation on the embedded engine,
//! with a decision record for every evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const GATE: &str = "package gate\n\nallow if input.score >= 0.9\n\ntest_high_score_passes if allow with input as {\"score\": 0.95}\n";

impl Tenant<'_> {
    async fn create(&self, rego: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/policies", Some(json!({"name": "gate", "rego": rego}))).await
    }
}

fn tenant(svc: &Service) -> Tenant<'_> {
    Tenant::new(svc)
}

#[tokio::test]
async fn the_lifecycle_moves_through_versions_and_rejects_every_invalid_transition() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let (status, p) = t.create(GATE).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let id = p["policy_id"].as_str().unwrap().to_owned();
    let at = |s: &str| format!("/api/v1/policies/{id}/{s}");

    // draft: deactivate is not allowed, and says what is.
    let (status, e) = t.call(Method::POST, &at("deactivate"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&e), "invalid_transition");
    assert_eq!(e["error"]["details"]["allowed_transitions"], json!(["add_version", "activate", "archive"]));

    let (status, v2) = t.call(Method::POST, &at("versions"), Some(json!({"rego": GATE.replace("0.9", "0.8")}))).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["latest_version"], 2);
    let (status, act) = t.call(Method::POST, &at("activate"), Some(json!({"version": 1}))).await;
    assert_eq!(status, StatusCode::OK, "{act}");
    assert_eq!((act["status"].as_str(), act["active_version"].as_i64()), (Some("active"), Some(1)));
    let (status, e) = t.call(Method::POST, &at("activate"), Some(json!({"version": 1}))).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::CONFLICT, "conflict"));
    let (status, e) = t.call(Method::POST, &at("activate"), Some(json!({"version": 9}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Without a body: the newest version.
    let (status, act) = t.call(Method::POST, &at("activate"), None).await;
    assert_eq!((status, act["active_version"].as_i64()), (StatusCode::OK, Some(2)));
    // active: archive is not allowed until deactivated.
    let (status, e) = t.call(Method::POST, &at("archive"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(e["error"]["details"]["allowed_transitions"], json!(["add_version", "activate", "deactivate"]));
    let (status, _) = t.call(Method::POST, &at("deactivate"), Some(json!({"reason": "replaced"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, arch) = t.call(Method::POST, &at("archive"), Some(json!({"reason": "retired"}))).await;
    assert_eq!((status, arch["status"].as_str()), (StatusCode::OK, Some("archived")));
    // archived: nothing is allowed.
    for action in ["activate", "deactivate", "archive"] {
        let (status, e) = t.call(Method::POST, &at(action), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}");
        assert_eq!(e["error"]["details"]["allowed_transitions"], json!([]), "{action}");
    }
    let (status, e) = t.call(Method::POST, &at("versions"), Some(json!({"rego": GATE}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    // Old versions stay readable.
    let (_, versions) = t.call(Method::GET, &at("versions"), None).await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    assert!(versions["items"][0]["rego"].as_str().unwrap().contains("0.9"));
}

#[tokio::test]
async fn compile_errors_answer_422_with_row_and_column_and_store_nothing() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let before = ledger_count_for(t.id).await;
    for (rego, row, col) in [
        ("package gate\n\nallow if {\n  input.x >\n}\n", 5, 1),
        ("package gate\n\nallow if x > 1\n", 3, 10),
        ("package gate\n\nallow if http.send({\"method\": \"get\", \"url\": \"https://example.com\"}).status_code == 200\n", 3, 10),
        ("package gate\n\nallow if graphql.is_valid(input.query, input.schema)\n", 3, 10),
    ] {
        let (status, e) = t.create(rego).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rego}: {e}");
        assert_eq!(error_code(&e), "policy_compile_failed");
        let first = &e["error"]["details"]["errors"][0];
        assert_eq!((first["row"].as_u64(), first["col"].as_u64()), (Some(row), Some(col)), "{rego}: {e}");
        assert!(first["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, e) = t.create(&format!("package big\n{}", "# padding\n".repeat(30_000))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "oversize Rego: {e}");
    assert_eq!(ledger_count_for(t.id).await, before);
    assert_eq!(before, 0);
}

#[tokio::test]
async fn a_failing_unit_test_blocks_activation_and_lists_the_failures() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let rego = format!("{GATE}\ntest_low_score_passes_too if allow with input as {{\"score\": 0.1}}\n");
    let (_, p) = t.create(&rego).await;
    let id = p["policy_id"].as_str().unwrap();
    let (status, e) = t.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(error_code(&e), "policy_tests_failed");
    assert_eq!(e["error"]["details"]["failed_tests"], json!(["test_low_score_passes_too"]));
    let (_, p) = t.call(Method::GET, &format!("/api/v1/policies/{id}"), None).await;
    assert_eq!(p["status"], "draft", "nothing changed");
}

/// The read model lags (its projector's leader is frozen) when a version with a failing
/// test is added: activating "the newest" still tests that version, from the ledger, and
/// refuses it; nothing is activated.
#[tokio::test]
async fn activation_tests_the_version_it_activates_even_when_the_read_model_lags() {
    let e = Embedded::start(&[]).await;
    let data_dir = e.dir.display().to_string();
    // A second process on the same databases; the first leads every projector.
    let follower = Service::spawn(
        &[("AUMOS_GOVERNANCE_DATA_DIR", data_dir.as_str()), ("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "300")],
        SHARED,
    )
    .await;
    let tenant = Uuid::new_v4();
    let tok = e.token(tenant, "governance:admin");
    let call = |method: Method, path: String, body: Option<Value>| {
        let (follower, tok) = (&follower, tok.clone());
        async move { follower.call(method, &path, Some(tenant), Some(&tok), body.as_ref()).await }
    };
    let (status, p) = call(Method::POST, "/api/v1/policies".into(), Some(json!({"name": "gate", "rego": GATE}))).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::ACCEPTED, "{p}");
    let id = p["policy_id"].as_str().unwrap().to_owned();
    // The create is projected before the leader is frozen (a busy machine may answer 202).
    let seq = p["last_seq"].as_i64().or(p["ledger_seq"].as_i64()).unwrap();
    let mut projected = false;
    for _ in 0..100 {
        if call(Method::GET, format!("/api/v1/policies/{id}?min_seq={seq}"), None).await.0 == StatusCode::OK {
            projected = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(projected, "the create was projected");

    e.svc.freeze(true);
    let failing = format!("{GATE}\ntest_low_score_passes_too if allow with input as {{\"score\": 0.1}}\n");
    let (status, v2) = call(Method::POST, format!("/api/v1/policies/{id}/versions"), Some(json!({"rego": failing}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the read model lags: {v2}");
    let (status, err) = call(Method::POST, format!("/api/v1/policies/{id}/activate"), None).await;
    e.svc.freeze(false);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(error_code(&err), "policy_tests_failed");
    assert_eq!(err["error"]["details"]["failed_tests"], json!(["test_low_score_passes_too"]));

    let mut reader = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(e.stack.urls().audit_reader.expose()).await.unwrap()
    };
    let activations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries WHERE aggregate_id = $1 AND event_type = 'PolicyActivated'")
            .bind(&id)
            .fetch_one(&mut reader)
            .await
            .unwrap();
    assert_eq!(activations, 0, "no version was activated");
    let (status, p) = call(Method::POST, format!("/api/v1/policies/{id}/activate"), Some(json!({"version": 1}))).await;
    assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "the tested version 1 activates: {p}");
    drop(reader);
    follower.stop().await;
    e.finish().await;
}

#[tokio::test]
async fn evaluate_answers_typed_results_and_refuses_inactive_and_foreign_policies() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let rego = "package gate\n\nallow if input.score >= 0.9\ndeny_reasons contains \"score too low\" if input.score < 0.9\nlimits := {\"tokens\": {\"max\": 4096}}\n";
    let (_, p) = t.create(rego).await;
    let id = p["policy_id"].as_str().unwrap().to_owned();
    let eval = format!("/api/v1/policies/{id}/evaluate");
    let (status, e) = t.call(Method::POST, &eval, Some(json!({"input": {"score": 1}}))).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::CONFLICT, "policy_inactive"));
    t.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;

    let (status, r) = t.call(Method::POST, &eval, Some(json!({"input": {"score": 0.95}, "rule": "allow"}))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!((r["result"].clone(), r["defined"].clone(), r["allowed"].clone()), (json!(true), json!(true), json!(true)));
    assert_eq!((r["engine"].as_str(), r["policy_version"].as_i64()), (Some("embedded"), Some(1)));
    assert!(r["latency_ms"].as_f64().unwrap() >= 0.0 && r["warnings"].as_array().unwrap().is_empty());
    let (_, r) = t.call(Method::POST, &eval, Some(json!({"input": {"score": 0.5}, "rule": "allow"}))).await;
    assert_eq!((r["result"].clone(), r["defined"].clone()), (Value::Null, json!(false)), "undefined is explicit: {r}");
    assert_eq!(r["allowed"], json!(false), "undefined is never allowed, and says so: {r}");
    let (_, r) = t.call(Method::POST, &eval, Some(json!({"input": {"score": 0.5}, "rule": "deny_reasons"}))).await;
    assert_eq!(r["result"], json!(["score too low"]));
    let (_, r) = t.call(Method::POST, &eval, Some(json!({"input": {}, "rule": "limits.tokens.max"}))).await;
    assert_eq!(r["result"], json!(4096));
    let (_, r) = t.call(Method::POST, &eval, Some(json!({"input": {"score": 0.95}}))).await;
    assert_eq!(r["result"]["allow"], json!(true), "whole package: {r}");
    assert_eq!(r["allowed"], json!(true));

    // No input is OPA's undefined `input` (not an error): the rule is undefined here.
    let (status, r) = t.call(Method::POST, &eval, Some(json!({"rule": "allow"}))).await;
    assert_eq!((status, r["defined"].clone(), r["allowed"].clone()), (StatusCode::OK, json!(false), json!(false)), "{r}");
    for bad in [json!({"input": {}, "rule": "a/b"}), json!({"input": {}, "extra": 1}), json!({"input": {}, "rule": 7})] {
        let (status, e) = t.call(Method::POST, &eval, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }
    let (status, _) = svc.post_announcing(&eval, t.id, &t.tok, 2 * 1024 * 1024).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let other = tenant(&svc);
    let (status, _) = other.call(Method::POST, &eval, Some(json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let evaluator = token(t.id, &["policy:evaluator"]);
    let (status, _) = svc.call(Method::POST, &eval, Some(t.id), Some(&evaluator), Some(&json!({"input": {"score": 1}}))).await;
    assert_eq!(status, StatusCode::OK, "a service account with policy:evaluator may evaluate");
    let (status, _) = svc.call(Method::POST, "/api/v1/policies", Some(t.id), Some(&evaluator), Some(&policy_body("x"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "and nothing else");

    t.call(Method::POST, &format!("/api/v1/policies/{id}/deactivate"), None).await;
    let (status, _) = t.call(Method::POST, &eval, Some(json!({"input": {"score": 1}}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "deactivation reaches the evaluation cache at once");
}

async fn decisions_of(t: &Tenant<'_>, id: &str, min_seq: i64) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let (status, list) =
            t.call(Method::GET, &format!("/api/v1/decisions?policy_id={id}&page={page}&page_size=100&min_seq={min_seq}"), None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let items = list["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        all.extend(items);
    }
    all
}

#[tokio::test]
async fn every_evaluation_leaves_exactly_one_decision_record_even_a_hundred_at_once() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let (status, p) =
        t.call(Method::POST, "/api/v1/policies", Some(json!({"name": "pii", "rego": GATE, "input_logging": "hash_only"}))).await;
    let id = p["policy_id"].as_str().unwrap_or_else(|| panic!("{status} {p}")).to_owned();
    t.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;
    let eval = format!("/api/v1/policies/{id}/evaluate");
    let calls = (0..100).map(|i| {
        let t = &t;
        let eval = eval.clone();
        async move {
            t.call(Method::POST, &eval, Some(json!({"input": {"score": f64::from(i) / 100.0, "ssn": "123-45-6789"}, "rule": "allow"})))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    let mut max_seq = 0;
    for (status, r) in &results {
        assert_eq!(*status, StatusCode::OK, "{r}");
        assert!(ids.insert(r["decision_id"].as_str().unwrap().to_owned()));
        max_seq = max_seq.max(r["ledger_seq"].as_i64().unwrap());
    }
    let decisions = decisions_of(&t, &id, max_seq).await;
    assert_eq!(decisions.len(), 100, "a hundred evaluations, a hundred records");
    let mut reader = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    let in_ledger: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gov_audit_trail_entries WHERE event_type = 'PolicyEvaluated' AND payload->>'policy_id' = $1",
    )
    .bind(&id)
    .fetch_one(&mut reader)
    .await
    .unwrap();
    assert_eq!(in_ledger, 100, "exactly one ledger entry per evaluation");
    let one = &decisions[0];
    assert!(one["input"].is_null(), "hash_only keeps no input: {one}");
    assert_eq!(one["input_sha256"].as_str().unwrap().len(), 64);
    let leaked: i64 = sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries WHERE payload::text LIKE '%123-45-6789%'")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(leaked, 0, "the raw input never reaches the ledger");

    let did = one["decision_id"].as_str().unwrap();
    let (status, d) = t.call(Method::GET, &format!("/api/v1/decisions/{did}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let seq = d["ledger_seq"].as_i64().unwrap();
    let (status, proof) = t.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), None).await;
    assert_eq!(status, StatusCode::OK, "the decision can be proven: {proof}");
    assert_eq!(proof["entry"]["event_type"], "PolicyEvaluated");
    let other = tenant(&svc);
    let (status, _) = other.call(Method::GET, &format!("/api/v1/decisions/{did}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_library_policy_imports_tests_and_activates_with_the_cli() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    for file in ["model_promotion", "data_governance", "agent_tool_use", "eu_ai_act_high_risk"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["policy", "import", &format!("opa/{file}.rego"), "--tenant", &tenant.to_string(), "--activate", "--url", &svc.base])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let p: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((p["name"].as_str(), p["status"].as_str()), (Some(file), Some("active")), "{p}");
    }
    let tok = token(tenant, ADMIN);
    let (_, list) = svc.call(Method::GET, "/api/v1/policies?sort_by=name&sort_order=asc", Some(tenant), Some(&tok), None).await;
    let gate = list["items"].as_array().unwrap().iter().find(|p| p["name"] == "eu_ai_act_high_risk").unwrap()["policy_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, r) = svc
        .call(
            Method::POST,
            &format!("/api/v1/policies/{gate}/evaluate"),
            Some(tenant),
            Some(&tok),
            Some(&json!({"input": {"system": {"name": "scorer", "use_case": "credit_scoring"}, "controls": {}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["allowed"], json!(false), "{r}");
    assert_eq!(r["result"]["deny"].as_array().unwrap().len(), 8, "{r}");
}
