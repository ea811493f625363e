//! Policies as continuous control checks (#17), over HTTP on the real services: decisions
//! of a policy version that checks a CSF control become system evidence (kind
//! `policy_evaluation`, one roll-up per policy, control and UTC day) that counts toward
//! requirement status like uploaded evidence, is proven in the workflow's evidence bundle,
//! survives a rebuild of the projections unchanged, and stays within its tenant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod compliance_support;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use compliance_support::*;

/// A gate that allows with `ok`, and answers `false` (a deny) otherwise.
const GATE: &str = "package gate\n\ndefault allow := false\n\nallow if input.ok\n\ndefault audit := false\n\naudit if input.audited\n";

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().unwrap()
}

#[tokio::test]
async fn decisions_alone_satisfy_soc2_cc6_1_through_pr_aa_01_and_one_deny_makes_the_day_a_gap() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let policy = t.checking_policy("access-gate", GATE, json!([{"control_id": "PR.AA-01"}])).await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(t.decide(&policy, json!({"ok": true}), "allow").await);
    }
    let page = t.system_evidence(seqs[2], "").await;
    assert_eq!(page["total"], 1, "{page}");
    let e = &items(&page)[0];
    assert_eq!(e["kind"], "policy_evaluation");
    assert_eq!((e["policy_id"].as_str(), e["control_id"].as_str()), (Some(policy.as_str()), Some("PR.AA-01")));
    assert_eq!((e["allowed"].as_i64(), e["denied"].as_i64(), e["undefined"].as_i64()), (Some(3), Some(0), Some(0)));
    assert_eq!((e["min_seq"].as_i64(), e["max_seq"].as_i64()), (Some(seqs[0]), Some(seqs[2])));
    assert_eq!((e["versions"].clone(), e["outcome"].as_str()), (json!([1]), Some("pass")));
    let day = e["day"].as_str().unwrap().to_owned();

    // CC6.1 maps to PR.AA-01 in the baseline: a workflow of that one day, no uploads.
    let w = t.one_day_workflow(&day, &["CC6.1"]).await;
    let after = t.statuses_as_of(&w, &next_day(&day)).await;
    let cc61 = requirement(&after, "CC6.1");
    assert_eq!(cc61["status"], "satisfied", "{cc61}");
    assert_eq!(cc61["evidence_ids"], json!([]), "no uploaded evidence");
    assert_eq!(cc61["system_evidence"][0]["evidence_id"], e["evidence_id"]);
    assert_eq!(cc61["system_evidence"][0]["kind"], "policy_evaluation");
    // While the one-day period is still open, a day's evidence runs out with the day.
    assert_eq!(requirement(&t.statuses_as_of(&w, &day).await, "CC6.1")["status"], "expiring");

    // The dashboard counts the roll-up under its kind, and the requirement as satisfied.
    let (status, dash) = t.call(Method::GET, &format!("/api/v1/compliance/dashboard?workflow_id={w}&as_of={}", next_day(&day)), None).await;
    assert_eq!(status, StatusCode::OK, "{dash}");
    assert_eq!(
        (dash["evidence_by_kind"].clone(), dash["requirements_by_status"].clone()),
        (json!({"policy_evaluation": 1}), json!({"satisfied": 1}))
    );

    // The bundle proves each decision the roll-up counts (few: all of them).
    let (status, bundle) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/evidence-bundle"), None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let system = bundle["system_evidence"].as_array().unwrap();
    assert_eq!(system.len(), 1, "{bundle}");
    assert_eq!((system[0]["kind"].as_str(), system[0]["sampled"].as_bool()), (Some("policy_evaluation"), Some(false)));
    let proven: Vec<i64> = system[0]["proofs"].as_array().unwrap().iter().map(|p| p["ledger_seq"].as_i64().unwrap()).collect();
    assert_eq!(proven, seqs);
    let key = verifier_key_file(&svc, t.id, &t.tok).await;
    for p in system[0]["proofs"].as_array().unwrap() {
        assert_eq!(p["proof"]["entry"]["event_type"], "PolicyEvaluated");
        assert_eq!(p["proof"]["entry"]["seq"], p["ledger_seq"]);
        assert_eq!(p["proof"]["tree_size"], bundle["tree_size"], "one checkpoint for the whole bundle");
        let file = std::env::temp_dir().join(format!("gov-system-proof-{}-{}.json", t.id, p["ledger_seq"]));
        std::fs::write(&file, p["proof"].to_string()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["ledger", "verify-proof", file.to_str().unwrap(), "--public-key", key.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The whole bundle verifies offline, system evidence included; a roll-up that claims
    // another policy's decisions, or drops one of its decisions, does not.
    let verify = |b: &Value| {
        let file = std::env::temp_dir().join(format!("gov-system-bundle-{}-{}.json", t.id, Uuid::new_v4()));
        std::fs::write(&file, b.to_string()).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["ledger", "verify-bundle", file.to_str().unwrap(), "--public-key", key.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = verify(&bundle);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 system-evidence roll-ups"), "{}", String::from_utf8_lossy(&out.stdout));
    let mut foreign = bundle.clone();
    foreign["system_evidence"][0]["policy_id"] = json!(Uuid::new_v4());
    assert!(!verify(&foreign).status.success(), "a roll-up of another policy");
    let mut partial = bundle.clone();
    partial["system_evidence"][0]["proofs"].as_array_mut().unwrap().pop();
    assert!(!verify(&partial).status.success(), "an unsampled roll-up missing a decision");

    // One deny under the default `no_deny` fails the day: CC6.1 is partial, with that day as its gap.
    let deny = t.decide(&policy, json!({"ok": false}), "allow").await;
    let e = &items(&t.system_evidence(deny, "").await)[0].clone();
    assert_eq!((e["denied"].as_i64(), e["outcome"].as_str(), e["max_seq"].as_i64()), (Some(1), Some("fail"), Some(deny)));
    let cc61 = requirement(&t.statuses_as_of(&w, &next_day(&day)).await, "CC6.1").clone();
    assert_eq!(cc61["status"], "partial", "{cc61}");
    assert_eq!(cc61["gaps"], json!([{"start": day, "end": day}]));
    assert_eq!(cc61["system_evidence"][0]["outcome"], "fail");
    svc.stop().await;
}

#[tokio::test]
async fn decided_passes_with_only_denies_and_a_check_with_a_rule_counts_only_that_rules_decisions() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let checks = json!([
        {"control_id": "PR.AA-01", "pass_when": "decided"},
        {"control_id": "DE.CM-01", "rule": "audit", "pass_when": "all_allowed"}
    ]);
    let policy = t.checking_policy("decided-gate", GATE, checks).await;
    t.decide(&policy, json!({"ok": false}), "allow").await;
    t.decide(&policy, json!({"ok": false}), "allow").await;
    let last = t.decide(&policy, json!({"audited": true}), "audit").await;
    let page = t.system_evidence(last, "sort_by=day&sort_order=asc").await;
    assert_eq!(page["total"], 2, "{page}");
    let of = |control: &str| items(&page).iter().find(|e| e["control_id"] == control).unwrap().clone();
    let decided = of("PR.AA-01");
    assert_eq!((decided["allowed"].as_i64(), decided["denied"].as_i64()), (Some(1), Some(2)), "every rule's decisions: {decided}");
    assert_eq!(decided["outcome"], "pass", "decided passes whatever the decisions answered");
    let audit = of("DE.CM-01");
    assert_eq!((audit["allowed"].as_i64(), audit["denied"].as_i64()), (Some(1), Some(0)), "only the audit rule counts: {audit}");
    assert_eq!((audit["min_seq"].as_i64(), audit["outcome"].as_str()), (Some(last), Some("pass")));

    // Only denies of the decided check still satisfy CC6.1 (which maps to PR.AA-01).
    let day = decided["day"].as_str().unwrap().to_owned();
    let w = t.one_day_workflow(&day, &["CC6.1"]).await;
    assert_eq!(requirement(&t.statuses_as_of(&w, &next_day(&day)).await, "CC6.1")["status"], "satisfied");

    // Filters narrow the list; bad filters are JSON errors, never a 500.
    assert_eq!(t.system_evidence(last, "control=DE.CM-01").await["total"], 1);
    assert_eq!(t.system_evidence(last, "outcome=fail").await["total"], 0);
    assert_eq!(t.system_evidence(last, &format!("policy_id={policy}&from={day}&to={day}")).await["total"], 2);
    for (query, expected) in [
        ("control=XX.YY-99", StatusCode::UNPROCESSABLE_ENTITY),
        ("outcome=informational", StatusCode::UNPROCESSABLE_ENTITY),
        ("from=2026-02-01&to=2026-01-01", StatusCode::UNPROCESSABLE_ENTITY),
        ("from=yesterday", StatusCode::BAD_REQUEST),
        ("policy_id=nope", StatusCode::BAD_REQUEST),
        ("sort_by=outcome", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = t.call(Method::GET, &format!("/api/v1/system-evidence?{query}"), None).await;
        assert_eq!(status, expected, "{query}: {body}");
        error_code(&body);
    }
    svc.stop().await;
}

#[tokio::test]
async fn another_tenant_sees_none_of_a_tenants_system_evidence() {
    let svc = Service::start(&[]).await;
    let (a, b) = (tenant(&svc), tenant(&svc));
    let policy = a.checking_policy("tenant-a-gate", GATE, json!([{"control_id": "PR.AA-01"}])).await;
    let seq = a.decide(&policy, json!({"ok": true}), "allow").await;
    let mine = a.system_evidence(seq, "").await;
    assert_eq!(mine["total"], 1);
    let day = items(&mine)[0]["day"].as_str().unwrap().to_owned();
    assert_eq!(b.system_evidence(seq, "").await["total"], 0);
    assert_eq!(b.system_evidence(seq, &format!("policy_id={policy}")).await["total"], 0);
    let w = b.one_day_workflow(&day, &["CC6.1"]).await;
    let cc61 = requirement(&b.statuses_as_of(&w, &next_day(&day)).await, "CC6.1").clone();
    assert_eq!((cc61["status"].as_str(), cc61["system_evidence"].clone()), (Some("missing"), json!([])));
    let (status, bundle) = b.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/evidence-bundle"), None).await;
    assert_eq!((status, bundle["system_evidence"].clone()), (StatusCode::OK, json!([])));
    // A token of tenant B cannot read tenant A's list by naming A in the header.
    let (status, body) = svc.call(Method::GET, "/api/v1/system-evidence", Some(a.id), Some(&b.tok), None).await;
    assert!(status.is_client_error(), "{status}: {body}");
    svc.stop().await;
}

/// Every row of the system evidence tables of one tenant, as text, in a stable order.
async fn rows_of(tenant: Uuid) -> Vec<(String, Vec<String>)> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let mut out = Vec::new();
    for t in ["gov_system_evidence_checks", "gov_system_evidence_tallies", "gov_system_evidence", "gov_system_evidence_decisions"] {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {t} t WHERE tenant_id = $1 ORDER BY t::text"))
            .bind(tenant)
            .fetch_all(&mut su)
            .await
            .unwrap();
        out.push((t.to_owned(), rows));
    }
    out
}

#[tokio::test]
async fn rebuilding_the_projections_reproduces_the_same_system_evidence_and_many_decisions_are_proven_by_a_sample() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let checks = json!([{"control_id": "PR.AA-01", "pass_when": "all_allowed"}, {"control_id": "PR.AA-05"}]);
    let policy = t.checking_policy("rebuilt-gate", GATE, checks).await;
    let mut seqs = Vec::new();
    for i in 0..25 {
        seqs.push(t.decide(&policy, json!({"ok": i % 7 != 3}), "allow").await);
    }
    // A second version with other checks: its decisions join the same day's roll-ups.
    let (status, v) = t
        .call(
            Method::POST,
            &format!("/api/v1/policies/{policy}/versions"),
            Some(json!({"rego": GATE, "control_checks": [{"control_id": "PR.AA-01", "pass_when": "decided"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, _) = t.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), Some(json!({"version": 2}))).await;
    assert_eq!(status, StatusCode::OK);
    let last = t.decide(&policy, json!({"ok": true}), "allow").await;
    let page = t.system_evidence(last, "control=PR.AA-01").await;
    let e = items(&page)[0].clone();
    assert_eq!((e["versions"].clone(), e["allowed"].as_i64(), e["denied"].as_i64()), (json!([1, 2]), Some(22), Some(4)), "{e}");
    assert_eq!(e["outcome"], "fail", "version 1's all_allowed check fails on its denies, whatever version 2 did");
    let before = rows_of(t.id).await;
    assert_eq!(before[3].1.len(), 26 + 25, "one counted decision row per decision and checked control");

    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["projections", "rebuild", "--projection", "system_evidence"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rows_of(t.id).await, before, "the rebuilt tables hold exactly the rows the runner built");
    assert_eq!(t.system_evidence(last, "control=PR.AA-01").await, page, "and the API serves the same");

    // 26 decisions on PR.AA-01: the bundle proves 20 of them, the first and the last among them.
    let day = e["day"].as_str().unwrap().to_owned();
    let w = t.one_day_workflow(&day, &["CC6.1"]).await;
    let (status, bundle) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/evidence-bundle"), None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let item = bundle["system_evidence"].as_array().unwrap().iter().find(|s| s["control_id"] == "PR.AA-01").unwrap();
    let proven: Vec<i64> = item["proofs"].as_array().unwrap().iter().map(|p| p["ledger_seq"].as_i64().unwrap()).collect();
    assert_eq!((proven.len(), item["sampled"].as_bool()), (20, Some(true)));
    assert_eq!((proven.first(), proven.last()), (Some(&seqs[0]), Some(&last)));
    assert!(proven.windows(2).all(|w| w[0] < w[1]), "{proven:?}");
    svc.stop().await;
}
