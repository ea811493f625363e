//! Compliance semantics over HTTP on the real services: outcomes, verdicts, relations and
//! not-applicable links in coverage; `as_of`; workflow changes; the auditor's accept and
//! send-back with findings; certified statuses that no longer drift.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod compliance_support;

use common::*;
use compliance_support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The same tenant, as its auditor.
fn auditor<'a>(t: &T<'a>) -> T<'a> {
    T { svc: t.svc, id: t.id, tok: token(t.id, &["auditor"]) }
}

async fn to_auditor_review(t: &T<'_>, w: &str) {
    for to in ["scoping", "evidence_collection", "internal_review", "auditor_review"] {
        let (status, body) =
            t.call(Method::POST, &format!("/api/v1/compliance/workflows/{w}/transitions"), Some(json!({"to": to, "reason": "next"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// The statuses as of 2026-04-01, inside the audit period.
async fn in_april(t: &T<'_>, w: &str) -> Value {
    t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/requirements?page_size=100&as_of=2026-04-01"), None).await.1
}

/// How many evidence records `GET /evidence?{query}` counts.
async fn count(t: &T<'_>, query: &str) -> i64 {
    let (status, page) = t.call(Method::GET, &format!("/api/v1/evidence?{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    page["total"].as_i64().unwrap()
}

fn gaps(statuses: &Value, requirement: &str) -> Value {
    statuses["items"].as_array().unwrap().iter().find(|i| i["requirement_id"] == requirement).unwrap()["gaps"].clone()
}

#[tokio::test]
async fn the_auditor_certifies_a_workflow_which_keeps_its_recorded_statuses_until_recertification_is_due() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let a = auditor(&t);
    let w = t.workflow(&["CC6.1", "CC1.1"]).await;
    let (_, e) = t.upload(json!({"workflow_id": w, "requirement_ids": ["CC6.1"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-06-30"}), b"policy").await;
    to_auditor_review(&t, &w).await;
    let accept = format!("/api/v1/compliance/workflows/{w}/accept");
    let before = ledger_count_for(t.id).await;
    let (status, _) = t.call(Method::POST, &accept, Some(json!({"reason": "self-certified"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an officer or admin does not certify");
    for bad in
        [json!({"reason": ""}), json!({"reason": "ok", "valid_days": 0}), json!({"reason": "ok", "valid_days": 5000}), json!({"why": "x"})]
    {
        let (status, body) = a.call(Method::POST, &accept, Some(bad.clone())).await;
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST, "{bad}: {status} {body}");
    }
    assert_eq!(ledger_count_for(t.id).await, before, "nothing is recorded on refusal");
    let (status, detail) = a.call(Method::POST, &accept, Some(json!({"reason": "controls operated throughout the period"}))).await;
    assert_eq!((status, detail["state"].as_str()), (StatusCode::OK, Some("certified")), "{detail}");
    assert_eq!(ledger_count_for(t.id).await, before + 2, "the transition and the certification with its statuses");
    let today = chrono::Utc::now().date_naive();
    let s = t.statuses(&w).await;
    assert_eq!((status_of(&s, "CC6.1"), status_of(&s, "CC1.1")), ("satisfied", "missing"));
    assert_eq!(
        s["certified"],
        json!({"as_of": today.to_string(), "valid_until": (today + chrono::Days::new(365)).to_string(), "recertification_due": false})
    );

    // Withdrawing the evidence afterwards does not change what was certified.
    let (status, _) = t
        .call(
            Method::POST,
            &format!("/api/v1/evidence/{}/withdraw", e["evidence_id"].as_str().unwrap()),
            Some(json!({"reason": "archived"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&t.statuses(&w).await, "CC6.1"), "satisfied");
    let later = today + chrono::Days::new(366);
    let (_, s) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/requirements?page_size=100&as_of={later}"), None).await;
    assert_eq!(s["certified"]["recertification_due"], true);

    let (status, e) = a.call(Method::POST, &accept, Some(json!({"reason": "again"}))).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::CONFLICT, "invalid_transition"));
    let (status, e) = t
        .call(Method::POST, &format!("/api/v1/compliance/workflows/{w}/transitions"), Some(json!({"to": "cancelled", "reason": "x"})))
        .await;
    assert_eq!((status, e["error"]["details"]["allowed_transitions"].clone()), (StatusCode::CONFLICT, json!([])), "certified is final");
    let (status, _) = t
        .call(Method::PATCH, &format!("/api/v1/compliance/workflows/{w}"), Some(json!({"due_date": "2027-01-01", "reason": "late"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a certified workflow no longer changes");
}

#[tokio::test]
async fn sending_back_raises_findings_that_only_evidence_closes_before_remediation_can_end() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let a = auditor(&t);
    let w = t.workflow(&["CC6.1"]).await;
    let other = t.workflow(&["CC6.1"]).await;
    to_auditor_review(&t, &w).await;
    let send_back = format!("/api/v1/compliance/workflows/{w}/send-back");
    let finding = json!({"title": "MFA not enforced on the admin VPN", "owner": "it-lead", "due_date": "2026-10-31"});
    let before = ledger_count_for(t.id).await;
    let (status, _) = t.call(Method::POST, &send_back, Some(json!({"reason": "gaps", "findings": [finding]}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"reason": "gaps", "findings": []}),
        json!({"reason": "", "findings": [finding]}),
        json!({"reason": "x", "findings": [{"title": "", "owner": "o", "due_date": "2026-10-31"}]}),
    ] {
        let (status, body) = a.call(Method::POST, &send_back, Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    assert_eq!(ledger_count_for(t.id).await, before, "nothing is recorded on refusal");
    let (status, d) = a.call(Method::POST, &send_back, Some(json!({"reason": "access reviews incomplete", "findings": [finding]}))).await;
    assert_eq!((status, d["state"].as_str()), (StatusCode::OK, Some("remediation")), "{d}");
    assert_eq!(ledger_count_for(t.id).await, before + 2);
    let f = &d["findings"][0];
    assert_eq!(
        (f["title"].as_str(), f["owner"].as_str(), &f["closed_by_evidence"]),
        (Some("MFA not enforced on the admin VPN"), Some("it-lead"), &Value::Null)
    );
    let finding_id = f["finding_id"].as_str().unwrap();

    let transitions = format!("/api/v1/compliance/workflows/{w}/transitions");
    let (status, e) = t.call(Method::POST, &transitions, Some(json!({"to": "evidence_collection", "reason": "fixed"}))).await;
    assert_eq!((status, e["error"]["details"]["open_findings"].clone()), (StatusCode::CONFLICT, json!([finding_id])));

    let close = format!("/api/v1/compliance/workflows/{w}/findings/{finding_id}/close");
    let (_, elsewhere) = t.upload(json!({"workflow_id": other, "requirement_ids": ["CC6.1"], "kind": "screenshot", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}), b"vpn").await;
    for evidence in [elsewhere["evidence_id"].clone(), json!(uuid::Uuid::new_v4())] {
        let (status, _) = t.call(Method::POST, &close, Some(json!({"evidence_id": evidence}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "evidence of another workflow, or none");
    }
    let (_, fix) = t.upload(json!({"workflow_id": w, "requirement_ids": ["CC6.1"], "kind": "configuration_export", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}), b"mfa on").await;
    let (status, d) = t.call(Method::POST, &close, Some(json!({"evidence_id": fix["evidence_id"]}))).await;
    assert_eq!((status, &d["findings"][0]["closed_by_evidence"]), (StatusCode::OK, &fix["evidence_id"]), "{d}");
    let (status, _) = t.call(Method::POST, &close, Some(json!({"evidence_id": fix["evidence_id"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "closed once");
    let (status, _) = t.call(Method::POST, &transitions, Some(json!({"to": "evidence_collection", "reason": "fixed"}))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn outcomes_verdicts_relations_and_not_applicable_links_decide_coverage() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let a = auditor(&t);
    // CC6.1, CC6.2 and CC6.3 all map to PR.AA-01 in the baseline.
    let w = t.workflow(&["CC6.1", "CC6.2", "CC6.3"]).await;
    let test_result = |outcome: Option<&str>| {
        let mut m = json!({"workflow_id": w, "requirement_ids": ["CC6.1"], "kind": "automated_test_result", "valid_from": "2026-03-01", "valid_until": "2026-03-07"});
        if let Some(o) = outcome {
            m["outcome"] = json!(o);
        }
        m
    };
    let before = ledger_count_for(t.id).await;
    for bad in [test_result(None), test_result(Some("informational")), test_result(Some("maybe"))] {
        let (status, _) = t.upload(bad, b"junit").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(ledger_count_for(t.id).await, before, "nothing is recorded on refusal");
    let (status, failed) = t.upload(test_result(Some("fail")), b"junit: 2 failures").await;
    assert_eq!((status, failed["outcome"].as_str()), (StatusCode::CREATED, Some("fail")));
    let (_, _info) = t.upload(json!({"workflow_id": w, "requirement_ids": ["CC6.2"], "kind": "document", "outcome": "informational", "valid_from": "2025-01-01", "valid_until": "2027-01-01"}), b"org chart").await;
    let (status, _) = t.call(Method::POST, "/api/v1/regulations/soc2/mappings", Some(json!({"mappings": [{"requirement_id": "CC6.3", "control_id": "PR.AA-01", "relation": "intersects", "rationale": "PR.AA-01 covers identities, not physical access"}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, export) = t.upload(json!({"workflow_id": w, "control_ids": ["PR.AA-01"], "kind": "configuration_export", "valid_from": "2025-01-01", "valid_until": "2027-01-01"}), b"idp export").await;
    let s = in_april(&t, &w).await;
    assert_eq!((status_of(&s, "CC6.1"), status_of(&s, "CC6.2"), status_of(&s, "CC6.3")), ("partial", "satisfied", "partial"), "{s}");
    assert_eq!(gaps(&s, "CC6.1"), json!([{"start": "2026-03-01", "end": "2026-03-07"}]), "the failed week is uncovered");
    assert_eq!(gaps(&s, "CC6.3"), json!([{"start": "2026-01-01", "end": "2026-06-30"}]), "an intersecting control alone covers no day");
    let (_, only) = t
        .call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/requirements?page_size=100&as_of=2026-04-01&status=partial"), None)
        .await;
    assert_eq!((only["items"].as_array().unwrap().len(), &only["summary"]), (2, &json!({"partial": 2, "satisfied": 1})));
    let (status, _) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/requirements?status=fine"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A baseline link marked not applicable carries no evidence; the mark can be withdrawn.
    let exclusions = "/api/v1/regulations/soc2/link-exclusions";
    let mark = json!({"requirement_id": "CC6.2", "control_id": "PR.AA-01", "rationale": "no shared identities in our estate"});
    let (status, _) = t.call(Method::POST, exclusions, Some(mark.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(status_of(&in_april(&t, &w).await, "CC6.2"), "partial");
    let (_, reqs) = t.call(Method::GET, "/api/v1/regulations/soc2/requirements?page_size=100", None).await;
    let cc62 = reqs["items"].as_array().unwrap().iter().find(|r| r["requirement_id"] == "CC6.2").unwrap();
    let link = cc62["controls"].as_array().unwrap().iter().find(|l| l["control_id"] == "PR.AA-01").unwrap();
    assert_eq!(link["not_applicable"], "no shared identities in our estate");
    let before = ledger_count_for(t.id).await;
    let (status, _) = t.call(Method::POST, exclusions, Some(mark.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "marked once");
    let (status, _) =
        t.call(Method::POST, exclusions, Some(json!({"requirement_id": "CC6.2", "control_id": "RC.RP-06", "rationale": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no such link");
    assert_eq!(ledger_count_for(t.id).await, before);
    let (status, _) = t
        .call(
            Method::POST,
            &format!("{exclusions}/withdrawals"),
            Some(json!({"requirement_id": "CC6.2", "control_id": "PR.AA-01", "rationale": "we do share them after all"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(status_of(&in_april(&t, &w).await, "CC6.2"), "satisfied");

    // The auditor rejects the export: it no longer counts anywhere.
    let review = format!("/api/v1/evidence/{}/review", export["evidence_id"].as_str().unwrap());
    let (status, _) = t.call(Method::POST, &review, Some(json!({"verdict": "rejected", "reason": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = a.call(Method::POST, &review, Some(json!({"verdict": "maybe", "reason": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, reviewed) =
        a.call(Method::POST, &review, Some(json!({"verdict": "rejected", "reason": "export is from the staging IdP"}))).await;
    assert_eq!(
        (status, reviewed["review_verdict"].as_str(), reviewed["review_reason"].as_str()),
        (StatusCode::OK, Some("rejected"), Some("export is from the staging IdP"))
    );
    assert_eq!(status_of(&in_april(&t, &w).await, "CC6.2"), "partial", "only the informational document is left");

    // A deny decision is a failed reference.
    let (_, p) = t.call(Method::POST, "/api/v1/policies", Some(json!({"name": "deny", "rego": "package d\n\nallow := false\n"}))).await;
    let pid = p["policy_id"].as_str().unwrap();
    t.call(Method::POST, &format!("/api/v1/policies/{pid}/activate"), None).await;
    let (_, decision) = t.call(Method::POST, &format!("/api/v1/policies/{pid}/evaluate"), Some(json!({"input": {}}))).await;
    let reference = |outcome: Option<&str>| {
        let mut m = json!({"workflow_id": w, "requirement_ids": ["CC6.3"], "kind": "policy_decision_reference", "valid_from": "2026-01-01", "valid_until": "2026-12-31", "decision_id": decision["decision_id"]});
        if let Some(o) = outcome {
            m["outcome"] = json!(o);
        }
        m
    };
    let (status, _) = t.upload(reference(Some("pass")), b"decision").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a deny cannot be declared a pass");
    let (status, r) = t.upload(reference(None), b"decision").await;
    assert_eq!((status, r["outcome"].as_str()), (StatusCode::CREATED, Some("fail")));
    assert_eq!(gaps(&in_april(&t, &w).await, "CC6.3"), json!([{"start": "2026-01-01", "end": "2026-06-30"}]));

    // The evidence list filters.
    assert_eq!(count(&t, &format!("workflow_id={w}")).await, 4);
    assert_eq!(count(&t, "kind=automated_test_result").await, 1);
    assert_eq!(count(&t, "control=PR.AA-01").await, 1);
    assert_eq!(count(&t, "requirement=CC6.3").await, 1);
    assert_eq!(count(&t, "expiring_before=2026-04-01").await, 1);
    assert_eq!(count(&t, "status=withdrawn").await, 0);
    for bad in ["kind=poster", "status=lost", "control=XX.YY-01", "expiring_before=soon"] {
        let (status, _) = t.call(Method::GET, &format!("/api/v1/evidence?{bad}"), None).await;
        assert!(status.is_client_error(), "{bad}: {status}");
    }
}

#[tokio::test]
async fn scope_owner_due_date_and_not_applicable_marks_change_with_recorded_reasons() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&["CC6.1"]).await;
    let path = format!("/api/v1/compliance/workflows/{w}");
    let before = ledger_count_for(t.id).await;
    for bad in [
        json!({"reason": "nothing"}),
        json!({"owner": "x", "reason": ""}),
        json!({"scope": ["CC99.9"], "reason": "r"}),
        json!({"owner": "x"}),
    ] {
        let (status, body) = t.call(Method::PATCH, &path, Some(bad.clone())).await;
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST, "{bad}: {status} {body}");
    }
    let author = T { svc: &svc, id: t.id, tok: token(t.id, &["policy:author"]) };
    let (status, _) = author.call(Method::PATCH, &path, Some(json!({"owner": "x", "reason": "r"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(ledger_count_for(t.id).await, before, "nothing is recorded on refusal");
    let (status, d) = t
        .call(
            Method::PATCH,
            &path,
            Some(json!({"scope": ["CC6.1", "CC1.1"], "owner": "grc-lead", "due_date": "2027-03-31", "reason": "auditor asked for CC1.1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(
        (d["owner"].as_str(), d["due_date"].as_str(), d["scope_requirements"].clone()),
        (Some("grc-lead"), Some("2027-03-31"), json!(["CC6.1", "CC1.1"]))
    );
    assert_eq!(
        (d["changes"][0]["reason"].as_str(), d["changes"][0]["change"]["owner"].as_str()),
        (Some("auditor asked for CC1.1"), Some("grc-lead"))
    );
    assert_eq!(ledger_count_for(t.id).await, before + 1);
    assert_eq!(t.statuses(&w).await["items"].as_array().unwrap().len(), 2);

    let na = format!("{path}/not-applicable");
    let (status, _) = t.call(Method::POST, &na, Some(json!({"requirement_id": "CC1.1", "justification": "no employees"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&t.statuses(&w).await, "CC1.1"), "not_applicable");
    let withdraw = json!({"requirement_id": "CC1.1", "reason": "we hired"});
    let (status, d) = t.call(Method::POST, &format!("{na}/withdrawals"), Some(withdraw.clone())).await;
    assert_eq!((status, d["not_applicable"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    assert_eq!(status_of(&t.statuses(&w).await, "CC1.1"), "missing");
    let (status, _) = t.call(Method::POST, &format!("{na}/withdrawals"), Some(withdraw)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "withdrawn once");
}
