//! What evidence references (its workflow, a decision record) is checked against the
//! ledger by the Evidence aggregate, not against read models that may lag: a reference to
//! something just recorded is accepted before any projector has applied it, and another
//! tenant's workflow or decision is refused exactly as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

fn workflow_body(name: &str) -> Value {
    json!({"regulation": "soc2", "name": name, "scope": ["CC6.1"], "audit_period_start": "2026-01-01",
        "audit_period_end": "2026-06-30", "due_date": "2026-12-31"})
}

/// Metadata of a decision reference for `workflow`.
fn reference(workflow: &Value, decision: &Value) -> Value {
    json!({"workflow_id": workflow, "requirement_ids": ["CC6.1"], "kind": "policy_decision_reference", "valid_from": "2026-01-01",
        "valid_until": "2026-12-31", "decision_id": decision})
}

async fn upload(svc: &Service, tenant: Uuid, tok: &str, metadata: &Value) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(format!("artifact {}", Uuid::new_v4()).into_bytes());
    let resp = svc.upload_evidence(tenant, tok, metadata, part).await;
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The refusal of a reference the tenant does not hold: 422 `validation_failed` with the
/// message the handler answered when it read the read models.
fn assert_refused(status: StatusCode, body: &Value, message: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(body), "validation_failed");
    assert_eq!(body["error"]["message"], message, "{body}");
}

#[tokio::test]
async fn evidence_referencing_a_just_recorded_workflow_and_decision_is_accepted_while_the_read_model_lags() {
    let e = Embedded::start(&[]).await;
    let data_dir = e.dir.display().to_string();
    // A second process on the same databases; the first leads every projector.
    let follower = Service::spawn(
        &[("AUMOS_GOVERNANCE_DATA_DIR", data_dir.as_str()), ("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "300")],
        SHARED,
    )
    .await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ta, tb) = (e.token(a, "governance:admin"), e.token(b, "governance:admin"));
    let call = |tenant: Uuid, tok: &str, method: Method, path: String, body: Option<Value>| {
        let (follower, tok) = (&follower, tok.to_owned());
        async move { follower.call(method, &path, Some(tenant), Some(&tok), body.as_ref()).await }
    };
    // A's active policy, projected before the leader freezes: evaluation reads it from the
    // runtime's read model. (On a busy machine the 300 ms bound may pass first: 202.)
    let (status, p) =
        call(a, &ta, Method::POST, "/api/v1/policies".into(), Some(json!({"name": "ref", "rego": "package r\n\nallow := true\n"}))).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::ACCEPTED, "{p}");
    let policy = p["policy_id"].as_str().unwrap().to_owned();
    let (status, p) = call(a, &ta, Method::POST, format!("/api/v1/policies/{policy}/activate"), None).await;
    assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{p}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while call(a, &ta, Method::GET, format!("/api/v1/policies/{policy}"), None).await.1["status"] != "active" {
        assert!(std::time::Instant::now() < deadline, "the activation is projected");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    e.svc.freeze(true);
    let (status, wa) = call(a, &ta, Method::POST, "/api/v1/compliance/workflows".into(), Some(workflow_body("lagging"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the read model lags: {wa}");
    let (status, d) = call(a, &ta, Method::POST, format!("/api/v1/policies/{policy}/evaluate"), Some(json!({"input": {}}))).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let (status, wb) = call(b, &tb, Method::POST, "/api/v1/compliance/workflows".into(), Some(workflow_body("b's"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{wb}");
    let (status, _) =
        call(a, &ta, Method::GET, format!("/api/v1/compliance/workflows/{}", wa["workflow_id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "neither the workflow nor the decision is in a read model yet");

    let (status, accepted) = upload(&follower, a, &ta, &reference(&wa["workflow_id"], &d["decision_id"])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "recorded, and answered before the read model has it: {accepted}");
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    let evidence = accepted["evidence_id"].as_str().unwrap().to_owned();
    let seq = accepted["ledger_seq"].as_i64().unwrap();

    // Another tenant's workflow and decision are refused as before, lag or not.
    let (status, refused) = upload(&follower, b, &tb, &reference(&wa["workflow_id"], &d["decision_id"])).await;
    assert_refused(status, &refused, "workflow_id names no workflow");
    let (status, refused) = upload(&follower, b, &tb, &reference(&wb["workflow_id"], &d["decision_id"])).await;
    assert_refused(status, &refused, "decision_id names no decision record");
    e.svc.freeze(false);

    let (status, read) = call(a, &ta, Method::GET, format!("/api/v1/evidence/{evidence}?min_seq={seq}"), None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!((&read["workflow_id"], &read["decision_id"]), (&wa["workflow_id"], &d["decision_id"]));
    assert_eq!(read["outcome"], "pass", "the allowing decision's own outcome");
    let (status, refused) = upload(&follower, b, &tb, &reference(&wa["workflow_id"], &d["decision_id"])).await;
    assert_refused(status, &refused, "workflow_id names no workflow");
    let (status, refused) = upload(&follower, b, &tb, &reference(&wb["workflow_id"], &d["decision_id"])).await;
    assert_refused(status, &refused, "decision_id names no decision record");
    follower.stop().await;
    e.finish().await;
}

#[tokio::test]
async fn superseding_evidence_is_checked_in_the_ledger_and_another_tenants_is_refused() {
    let svc = Service::start(&[]).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ta, tb) = (token(a, ADMIN), token(b, ADMIN));
    let (_, wa) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(a), Some(&ta), Some(&workflow_body("a"))).await;
    let (_, wb) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(b), Some(&tb), Some(&workflow_body("b"))).await;
    let document = |w: &Value| json!({"workflow_id": w["workflow_id"], "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    let (status, old) = upload(&svc, a, &ta, &document(&wa)).await;
    assert_eq!(status, StatusCode::CREATED, "{old}");
    let (_, new) = upload(&svc, a, &ta, &document(&wa)).await;
    let (_, foreign) = upload(&svc, b, &tb, &document(&wb)).await;
    let supersede = format!("/api/v1/evidence/{}/supersede", old["evidence_id"].as_str().unwrap());
    for by in [foreign["evidence_id"].clone(), json!(Uuid::new_v4())] {
        let (status, refused) = svc.call(Method::POST, &supersede, Some(a), Some(&ta), Some(&json!({"by": by}))).await;
        assert_refused(status, &refused, "by names no evidence record");
    }
    let (status, superseded) =
        svc.call(Method::POST, &supersede, Some(a), Some(&ta), Some(&json!({"by": new["evidence_id"], "reason": "v2"}))).await;
    assert_eq!((status, &superseded["superseded_by"]), (StatusCode::OK, &new["evidence_id"]), "{superseded}");
}
