//! Compliance over HTTP on the real services (PostgreSQL x2, the ledger, moto S3): the
//! catalog and tenant mappings, the workflow state machine, evidence upload/download,
//! derived statuses, and the evidence bundle checked offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod compliance_support;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use compliance_support::*;

#[tokio::test]
async fn the_catalog_serves_six_regulations_filters_by_csf_and_maps_controls_across_regulations() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let (_, regs) = t.call(Method::GET, "/api/v1/regulations", None).await;
    let codes: Vec<&str> = regs["items"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["soc2", "iso27001", "hipaa", "iso42001", "eu_ai_act", "fedramp"]);
    let fedramp = &regs["items"][5];
    assert_eq!((fedramp["requirements"].as_i64(), fedramp["mapped_requirements"].as_i64()), (Some(323), Some(321)));

    let (_, page) = t.call(Method::GET, "/api/v1/regulations/iso27001/requirements?category=PR.AA&page_size=100", None).await;
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty() && page["total"].as_i64().unwrap() < 93);
    for r in items {
        assert!(r["controls"].as_array().unwrap().iter().any(|c| c["control_id"].as_str().unwrap().starts_with("PR.AA")), "{r}");
        assert!(r["controls"][0]["mapping_source"].is_string(), "published and analyst mappings stay distinguishable");
    }
    let (_, control) = t.call(Method::GET, "/api/v1/controls/PR.AA-01", None).await;
    let regs_mapped: std::collections::BTreeSet<&str> =
        control["requirements"].as_array().unwrap().iter().map(|r| r["regulation"].as_str().unwrap()).collect();
    assert!(regs_mapped.len() >= 4, "test once, comply many: {regs_mapped:?}");

    for (path, code) in [
        ("/api/v1/regulations/gdpr/requirements", 422),
        ("/api/v1/controls/PR.AA-99", 422),
        ("/api/v1/controls/not-a-control", 422),
        ("/api/v1/regulations/soc2/requirements?category=XX.YY", 422),
        ("/api/v1/regulations/soc2/requirements?page_size=101", 400),
    ] {
        let (status, body) = t.call(Method::GET, path, None).await;
        assert_eq!(status.as_u16(), code, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_tenant_mapping_is_recorded_in_the_ledger_and_merged_as_tenant_defined() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let before = ledger_count_for(t.id).await;
    let body = json!({"mappings": [
        {"requirement_id": "CC1.1", "control_id": "DE.CM-01", "relation": "subset", "rationale": "our monitoring evidences integrity"},
    ]});
    let (status, r) = t.call(Method::POST, "/api/v1/regulations/soc2/mappings", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(ledger_count_for(t.id).await, before + 1);
    let (_, page) = t.call(Method::GET, "/api/v1/regulations/soc2/requirements?category=DE.CM", None).await;
    let cc11 = page["items"].as_array().unwrap().iter().find(|i| i["requirement_id"] == "CC1.1").expect("CC1.1 now maps into DE.CM");
    let link = cc11["controls"].as_array().unwrap().iter().find(|c| c["control_id"] == "DE.CM-01").unwrap();
    assert_eq!((link["source"].as_str(), link["relation"].as_str()), (Some("tenant"), Some("subset")));

    for bad in [
        json!({"mappings": [{"requirement_id": "CC99.9", "control_id": "DE.CM-01", "relation": "subset", "rationale": "x"}]}),
        json!({"mappings": [{"requirement_id": "CC1.1", "control_id": "DE.CM-99", "relation": "subset", "rationale": "x"}]}),
    ] {
        let (status, e) = t.call(Method::POST, "/api/v1/regulations/soc2/mappings", Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    }
    let (status, _) = t
        .call(
            Method::POST,
            "/api/v1/regulations/soc2/mappings",
            Some(json!({"mappings": [{"requirement_id": "CC1.1",
        "control_id": "DE.CM-01", "relation": "overlaps", "rationale": "x"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "relation is one of the four of NIST IR 8477");
    assert_eq!(ledger_count_for(t.id).await, before + 1, "refused mappings record nothing");
}

#[tokio::test]
async fn the_workflow_state_machine_over_http_records_every_transition_and_answers_409_with_the_allowed_ones() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    let path = format!("/api/v1/compliance/workflows/{w}/transitions");
    let go = |to: &'static str| json!({"to": to, "reason": format!("moving to {to}")});
    let (status, e) = t.call(Method::POST, &path, Some(go("certified"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        (error_code(&e).as_str(), e["error"]["details"]["allowed_transitions"].clone()),
        ("invalid_transition", json!(["scoping", "cancelled"]))
    );
    let before = ledger_count_for(t.id).await;
    let path_taken = ["scoping", "evidence_collection", "internal_review", "auditor_review"];
    for to in path_taken {
        let (status, body) = t.call(Method::POST, &path, Some(go(to))).await;
        assert_eq!(status, StatusCode::OK, "{to}: {body}");
        assert_eq!(body["state"], to);
    }
    assert_eq!(ledger_count_for(t.id).await, before + path_taken.len() as i64, "one ledger entry per transition");
    for auditors_move in ["certified", "remediation"] {
        let (status, e) = t.call(Method::POST, &path, Some(go(auditors_move))).await;
        assert_eq!((status, error_code(&e).as_str()), (StatusCode::CONFLICT, "invalid_transition"), "only the auditor moves on: {e}");
    }
    assert_eq!(ledger_count_for(t.id).await, before + path_taken.len() as i64, "a refused move records nothing");
    let (_, detail) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}"), None).await;
    let transitions = detail["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), path_taken.len());
    assert_eq!((transitions[0]["actor"].as_str(), transitions[0]["reason"].as_str()), (Some("test-user"), Some("moving to scoping")));
    let (status, _) = t.call(Method::POST, &path, Some(json!({"to": "flying", "reason": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let other = tenant(&svc);
    let (status, _) = other.call(Method::POST, &path, Some(go("cancelled"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn evidence_for_a_control_counts_for_every_mapped_requirement_and_downloads_verified() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    // CC6.1 and CC6.2 both map to PR.AA-01 in the baseline; CC1.1 does not.
    let w = t.workflow(&["CC6.1", "CC6.2", "CC1.1"]).await;
    assert_eq!(status_of(&t.statuses(&w).await, "CC6.1"), "missing");
    let artifact = b"access review export, Q1-Q2 2026".to_vec();
    let meta = json!({"workflow_id": w, "control_ids": ["PR.AA-01"], "kind": "configuration_export", "description": "IdP export",
        "valid_from": "2025-12-01", "valid_until": "2030-01-01", "sha256": sha(&artifact).to_uppercase()});
    let before = ledger_count_for(t.id).await;
    let (status, e) = t.upload(meta, &artifact).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(ledger_count_for(t.id).await, before + 1);
    assert_eq!(e["sha256"], sha(&artifact));
    let s = t.statuses(&w).await;
    assert_eq!((status_of(&s, "CC6.1"), status_of(&s, "CC6.2"), status_of(&s, "CC1.1")), ("satisfied", "satisfied", "missing"));

    let resp = svc
        .client
        .get(format!("{}/api/v1/evidence/{}/artifact", svc.base, e["evidence_id"].as_str().unwrap()))
        .bearer_auth(&t.tok)
        .header("X-Tenant-ID", t.id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-artifact-sha256"].to_str().unwrap(), sha(&artifact));
    assert_eq!(resp.headers()["content-type"], "text/csv", "the media type recorded at upload");
    assert_eq!(resp.headers()["content-disposition"], "attachment; filename=\"access-review.csv\"");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), artifact);

    // Withdrawn evidence no longer counts; the record stays, with a new event.
    let (status, after) = t
        .call(
            Method::POST,
            &format!("/api/v1/evidence/{}/withdraw", e["evidence_id"].as_str().unwrap()),
            Some(json!({"reason": "wrong system"})),
        )
        .await;
    assert_eq!((status, after["status"].as_str()), (StatusCode::OK, Some("withdrawn")));
    assert_eq!(status_of(&t.statuses(&w).await, "CC6.1"), "missing");
    let (status, _) = t
        .call(Method::POST, &format!("/api/v1/evidence/{}/withdraw", e["evidence_id"].as_str().unwrap()), Some(json!({"reason": "again"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing is edited twice");

    // Expiring within the window as of a day in the period, and a justified not-applicable.
    let (status, _) = t
        .upload(
            json!({"workflow_id": w, "requirement_ids": ["CC6.2"], "kind": "attestation", "valid_from": "2025-01-01", "valid_until": "2026-06-30"}),
            b"signed",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = t
        .call(
            Method::POST,
            &format!("/api/v1/compliance/workflows/{w}/not-applicable"),
            Some(json!({"requirement_id": "CC1.1", "justification": "no employees"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, s) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/requirements?page_size=100&as_of=2026-06-20"), None).await;
    assert_eq!((status_of(&s, "CC6.2"), status_of(&s, "CC1.1"), s["as_of"].as_str()), ("expiring", "not_applicable", Some("2026-06-20")));
    let s = t.statuses(&w).await;
    assert_eq!(status_of(&s, "CC6.2"), "satisfied", "the closed period stays covered after it ends");
}

#[tokio::test]
async fn bad_evidence_is_refused_with_422_or_413_and_nothing_is_stored_or_recorded() {
    let svc = Service::start(&[("AUMOS_GOVERNANCE_EVIDENCE_MAX_BYTES", "4096")]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    let store = governance_engine::adapters::artifacts::ArtifactStore::from_location(
        Some(&var("AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET")),
        std::path::Path::new("/tmp"),
        1 << 20,
    )
    .unwrap();
    let before = ledger_count_for(t.id).await;
    let base = |extra: Value| {
        let mut m = json!({"workflow_id": w, "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m
    };
    let unique = format!("mismatch {}", Uuid::new_v4());
    let (status, e) = t.upload(base(json!({"sha256": "0".repeat(64)})), unique.as_bytes()).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "artifact_hash_mismatch"), "{e}");
    let digest = aggregates::compliance::Sha256::parse(&sha(unique.as_bytes())).unwrap();
    assert!(!store.exists(&digest).await.unwrap(), "a refused artifact is not stored");
    for (extra, why) in [
        (json!({"control_ids": ["PR.AA-99"]}), "unknown control"),
        (json!({"requirement_ids": ["CC99.1"]}), "unknown requirement"),
        (json!({"kind": "rumour"}), "unknown kind"),
        (json!({"valid_until": "2025-01-01"}), "period ends before it starts"),
        (json!({"workflow_id": Uuid::new_v4()}), "unknown workflow"),
    ] {
        let (status, e) = t.upload(base(extra), b"x").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {e}");
    }
    let (status, e) = t.upload(base(json!({})), &vec![7u8; 8192]).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{e}");
    assert_eq!(ledger_count_for(t.id).await, before, "nothing was recorded");
}

#[tokio::test]
async fn a_tampered_artifact_is_refused_on_download() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    let artifact = format!("original {}", Uuid::new_v4()).into_bytes();
    let (_, e) = t.upload(json!({"workflow_id": w, "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}), &artifact).await;
    let store = governance_engine::adapters::artifacts::ArtifactStore::from_location(
        Some(&var("AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET")),
        std::path::Path::new("/tmp"),
        1 << 20,
    )
    .unwrap();
    let digest = aggregates::compliance::Sha256::parse(e["sha256"].as_str().unwrap()).unwrap();
    store.put_raw(&digest, bytes::Bytes::from_static(b"forged")).await.unwrap();
    let (status, body) = t.call(Method::GET, &format!("/api/v1/evidence/{}/artifact", e["evidence_id"].as_str().unwrap()), None).await;
    assert_eq!((status, error_code(&body).as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "artifact_corrupt"));
}

#[tokio::test]
async fn the_evidence_bundle_verifies_offline_artifact_by_artifact() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    let mut artifacts = Vec::new();
    for i in 0..3 {
        let a = format!("evidence {i} {}", Uuid::new_v4()).into_bytes();
        let (status, _) = t.upload(json!({"workflow_id": w, "control_ids": ["GV.OC-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}), &a).await;
        assert_eq!(status, StatusCode::CREATED);
        artifacts.push(a);
    }
    let (status, bundle) = t.call(Method::GET, &format!("/api/v1/compliance/workflows/{w}/evidence-bundle"), None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let items = bundle["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let dir = std::env::temp_dir().join(format!("gov-bundle-{}", t.id));
    std::fs::create_dir_all(&dir).unwrap();
    let key = verifier_key_file(&svc, t.id, &t.tok).await;
    for (i, item) in items.iter().enumerate() {
        let file = dir.join(format!("proof-{i}.json"));
        std::fs::write(&file, item["proof"].to_string()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["ledger", "verify-proof", file.to_str().unwrap(), "--public-key", key.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The proven ledger entry carries the artifact's hash.
        let payload: Value = serde_json::from_str(item["proof"]["entry"]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["artifact"]["sha256"], item["sha256"]);
        assert!(artifacts.iter().any(|a| sha(a) == item["sha256"].as_str().unwrap()));
    }
    // The whole bundle at once, with the artifacts as downloaded (named by evidence id).
    let bundle_file = dir.join("bundle.json");
    std::fs::write(&bundle_file, bundle.to_string()).unwrap();
    let artifacts_dir = dir.join("artifacts");
    std::fs::create_dir_all(&artifacts_dir).unwrap();
    for item in items {
        let id = item["evidence_id"].as_str().unwrap();
        let resp = svc
            .client
            .get(format!("{}/api/v1/evidence/{id}/artifact", svc.base))
            .bearer_auth(&t.tok)
            .header("X-Tenant-ID", t.id.to_string())
            .send()
            .await
            .unwrap();
        std::fs::write(artifacts_dir.join(id), resp.bytes().await.unwrap()).unwrap();
    }
    let verify_bundle = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args([
                "ledger",
                "verify-bundle",
                bundle_file.to_str().unwrap(),
                "--public-key",
                key.to_str().unwrap(),
                "--artifacts",
                artifacts_dir.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let out = verify_bundle();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 evidence records")
            && String::from_utf8_lossy(&out.stdout).contains("3 artifacts match")
    );
    let victim = items[1]["evidence_id"].as_str().unwrap();
    std::fs::write(artifacts_dir.join(victim), b"swapped after the audit").unwrap();
    let out = verify_bundle();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(victim), "names the evidence: {}", String::from_utf8_lossy(&out.stderr));

    // A forged hash in a proof no longer verifies.
    let mut forged = items[0]["proof"].clone();
    let payload = forged["entry"]["payload"].as_str().unwrap().replace(items[0]["sha256"].as_str().unwrap(), &"f".repeat(64));
    forged["entry"]["payload"] = Value::String(payload);
    let file = dir.join("forged.json");
    std::fs::write(&file, forged.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
        .args(["ledger", "verify-proof", file.to_str().unwrap(), "--public-key", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_repository_copy_of_the_regulation_data_passes_check_py_and_matches_the_shared_source() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("python3")
        .args([&format!("{root}/regulations/check.py"), &format!("{root}/regulations")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let shared = std::path::Path::new(root).join("../shared/data/regulations");
    if shared.is_dir() {
        for f in ["csf2.json", "soc2.json", "iso27001.json", "hipaa.json", "iso42001.json", "eu_ai_act.json", "fedramp.json", "SOURCES.md"]
        {
            assert_eq!(
                std::fs::read(shared.join(f)).unwrap(),
                std::fs::read(format!("{root}/regulations/{f}")).unwrap(),
                "{f} differs from ../shared"
            );
        }
    }
}

#[tokio::test]
async fn the_dashboard_reports_statuses_kinds_expiry_states_and_decisions_and_new_evidence_shows_at_once() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    // Decisions first: evaluations do not invalidate the cache (their counts may lag by its TTL).
    let rego = "package dash\n\ndefault allow := false\n\nallow if input.score > 0.5\n";
    let (_, p) = t.call(Method::POST, "/api/v1/policies", Some(json!({"name": "dash", "rego": rego}))).await;
    let pid = p["policy_id"].as_str().unwrap().to_owned();
    t.call(Method::POST, &format!("/api/v1/policies/{pid}/activate"), None).await;
    for score in [0.9, 0.8, 0.1] {
        let (status, _) = t.call(Method::POST, &format!("/api/v1/policies/{pid}/evaluate"), Some(json!({"input": {"score": score}}))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let soc2 = t.workflow(&["CC6.1", "CC6.2", "CC1.1"]).await;
    let body = json!({"regulation": "hipaa", "name": "HIPAA", "audit_period_start": "2026-01-01", "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
    let (_, hipaa) = t.call(Method::POST, "/api/v1/compliance/workflows", Some(body)).await;
    let hipaa = hipaa["workflow_id"].as_str().unwrap().to_owned();
    t.call(Method::POST, &format!("/api/v1/compliance/workflows/{hipaa}/transitions"), Some(json!({"to": "scoping", "reason": "go"})))
        .await;

    let t = &t;
    let dashboard = |q: &'static str| async move {
        let (status, d) = t.call(Method::GET, &format!("/api/v1/compliance/dashboard{q}"), None).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        d
    };
    let d = dashboard("").await;
    assert_eq!((d["workflows"].as_i64(), d["workflows_by_state"].clone()), (Some(2), json!({"draft": 1, "scoping": 1})));
    assert_eq!(d["requirements_by_status"], json!({"missing": 3 + 68}));
    assert_eq!(d["coverage_percent"], 0.0);
    assert_eq!(d["recent_decisions"], json!([{"policy_id": pid, "allow": 2, "deny": 1, "undefined": 0}]));

    // New evidence shows at once: the cached dashboard above is dropped by the projection.
    let (status, _) = t.upload(json!({"workflow_id": soc2, "control_ids": ["PR.AA-01"], "kind": "configuration_export", "valid_from": "2025-01-01", "valid_until": "2030-01-01"}), b"idp").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, e) = t.upload(json!({"workflow_id": soc2, "requirement_ids": ["CC1.1"], "kind": "attestation", "valid_from": "2025-01-01", "valid_until": "2026-06-30"}), b"ceo").await;
    assert_eq!(status, StatusCode::CREATED);
    let d = dashboard("").await;
    assert_eq!(d["requirements_by_status"], json!({"satisfied": 3, "missing": 68}), "the closed period stays covered");
    let d = dashboard("?as_of=2026-06-25").await;
    assert_eq!(d["requirements_by_status"], json!({"satisfied": 2, "expiring": 1, "missing": 68}));
    assert_eq!(d["coverage_percent"], 4.2, "3 of 71");
    assert_eq!(d["evidence_by_kind"], json!({"attestation": 1, "configuration_export": 1}));
    assert_eq!(
        d["expiring_soon"].as_array().unwrap().iter().map(|x| x["evidence_id"].clone()).collect::<Vec<_>>(),
        vec![e["evidence_id"].clone()]
    );

    let d = dashboard("?regulation=soc2&as_of=2026-06-25").await;
    assert_eq!((d["workflows"].as_i64(), d["requirements_by_status"].clone()), (Some(1), json!({"satisfied": 2, "expiring": 1})));
    let (_, d) = t.call(Method::GET, &format!("/api/v1/compliance/dashboard?workflow_id={hipaa}"), None).await;
    assert_eq!((d["workflows"].as_i64(), d["evidence_by_kind"].clone()), (Some(1), json!({})));
    let (status, _) = t.call(Method::GET, "/api/v1/compliance/dashboard?regulation=gdpr", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_stored_evidence_value_no_type_names_is_an_error_for_the_dashboard_and_the_statuses_not_a_default() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    let (status, e) = t.upload(json!({"workflow_id": w, "control_ids": ["PR.AA-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}), b"doc").await;
    assert_eq!(status, StatusCode::CREATED);
    let requirements = format!("/api/v1/compliance/workflows/{w}/requirements");
    let (status, _) = t.call(Method::GET, &requirements, None).await;
    assert_eq!(status, StatusCode::OK);
    // The read model is damaged behind the service's back (no check constraint names the
    // kinds), in the record's row and in its pack's line: their reads fail instead of
    // judging the record as some default.
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    sqlx::query("UPDATE gov_evidence SET kind = 'bogus' WHERE evidence_id = $1")
        .bind(Uuid::parse_str(e["evidence_id"].as_str().unwrap()).unwrap())
        .execute(&mut su)
        .await
        .unwrap();
    let damaged =
        sqlx::query("UPDATE gov_evidence_packs SET facts = replace(facts, E'\\tdocument\\t', E'\\tbogus\\t') WHERE workflow_id = $1")
            .bind(Uuid::parse_str(&w).unwrap())
            .execute(&mut su)
            .await
            .unwrap();
    assert_eq!(damaged.rows_affected(), 1);
    for path in [requirements.as_str(), "/api/v1/compliance/dashboard?as_of=2026-05-05"] {
        let (status, body) = t.call(Method::GET, path, None).await;
        assert_eq!((status, error_code(&body).as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"), "{path}: {body}");
    }
}

#[tokio::test]
async fn evidence_naming_thousands_of_ids_is_projected_and_counted_like_any_other() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    // 3,000 ids (a line of ~27 KB, a pack of its own), and a small record.
    let many = json!({"workflow_id": w, "control_ids": vec!["PR.AA-01"; 2990], "requirement_ids": vec!["CC1.1"; 10], "kind": "document",
        "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    let (status, big) = t.upload(many, b"many ids").await;
    assert_eq!(status, StatusCode::CREATED, "{big}");
    let few = json!({"workflow_id": w, "control_ids": ["GV.OC-01"], "kind": "attestation", "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    let (status, _) = t.upload(few, b"few ids").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, read) = t.call(Method::GET, &format!("/api/v1/evidence/{}", big["evidence_id"].as_str().unwrap()), None).await;
    assert_eq!((status, read["control_ids"].as_array().map(Vec::len)), (StatusCode::OK, Some(2990)), "projected");
    // The dashboard counts what the workflow's own statuses say, the big record included.
    let statuses = t.statuses(&w).await;
    let mut expected = std::collections::BTreeMap::<String, i64>::new();
    for item in statuses["items"].as_array().unwrap() {
        *expected.entry(item["status"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert!(expected.get("satisfied").copied().unwrap_or(0) >= 2, "{expected:?}");
    for q in ["", "?workflow_id="] {
        let path = if q.is_empty() {
            "/api/v1/compliance/dashboard?as_of=2026-07-01".to_owned()
        } else {
            format!("/api/v1/compliance/dashboard?as_of=2026-07-01&workflow_id={w}")
        };
        let (status, d) = t.call(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(d["requirements_by_status"], json!(expected), "{path}");
        assert_eq!(d["evidence_by_kind"], json!({"attestation": 1, "document": 1}), "{path}");
    }
}

#[tokio::test]
async fn a_record_naming_many_long_ids_fits_in_the_evidence_read_model_and_its_pack() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&[]).await;
    // 200 ids of 64 random characters (no catalog names them, so written behind the API's
    // back): a line of ~13 KB in the record's pack, made by the projector's SQL function
    // and read back by the dashboard.
    let ids: Vec<String> = (0..200).map(|_| format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())).collect();
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let evidence = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO gov_evidence (tenant_id, evidence_id, workflow_id, kind, description, requirement_ids, control_ids, valid_from, valid_until, \
         sha256, size_bytes, content_type, status, submitted_by, submitted_at, ledger_seq, last_seq, pack_chunk) \
         VALUES ($1, $2, $3, 'document', '', $4, '{}', '2026-01-01', '2026-12-31', repeat('a', 64), 1, 'text/plain', 'active', 'x', now(), 0, 0, 0)",
    )
    .bind(t.id)
    .bind(evidence)
    .bind(Uuid::parse_str(&w).unwrap())
    .bind(&ids)
    .execute(&mut su)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO gov_evidence_packs (tenant_id, workflow_id, chunk, assigned, assigned_bytes, facts) SELECT tenant_id, workflow_id, 0, 1, \
         gov_evidence_id_bytes(requirement_ids, control_ids), \
         gov_evidence_fact_line(evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict) \
         FROM gov_evidence WHERE evidence_id = $1",
    )
    .bind(evidence)
    .execute(&mut su)
    .await
    .unwrap();
    let size: i32 = sqlx::query_scalar("SELECT octet_length(facts) FROM gov_evidence_packs WHERE workflow_id = $1")
        .bind(Uuid::parse_str(&w).unwrap())
        .fetch_one(&mut su)
        .await
        .unwrap();
    assert!(size > 13_000, "{size}");
    let (status, d) = t.call(Method::GET, "/api/v1/compliance/dashboard", None).await;
    assert_eq!((status, &d["evidence_by_kind"]), (StatusCode::OK, &json!({"document": 1})), "{d}");
}

#[tokio::test]
async fn superseded_evidence_stops_counting_and_a_decision_reference_must_name_a_recorded_decision() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let w = t.workflow(&["CC6.1"]).await;
    let meta = |until: &str| json!({"workflow_id": w, "requirement_ids": ["CC6.1"], "kind": "document", "valid_from": "2025-01-01", "valid_until": until});
    let (_, old) = t.upload(meta("2099-12-31"), b"old policy").await;
    let (_, new) = t.upload(meta("2026-05-31"), b"new policy").await;
    assert_eq!(status_of(&t.statuses(&w).await, "CC6.1"), "satisfied", "the long-lived record still counts");
    let (status, superseded) = t
        .call(
            Method::POST,
            &format!("/api/v1/evidence/{}/supersede", old["evidence_id"].as_str().unwrap()),
            Some(json!({"by": new["evidence_id"], "reason": "v2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{superseded}");
    assert_eq!((superseded["status"].as_str(), &superseded["superseded_by"]), (Some("superseded"), &new["evidence_id"]));
    assert_eq!(
        status_of(&t.statuses(&w).await, "CC6.1"),
        "expired",
        "only the active record counts now, and it ended before the period did"
    );
    let (status, _) = t
        .call(
            Method::POST,
            &format!("/api/v1/evidence/{}/supersede", new["evidence_id"].as_str().unwrap()),
            Some(json!({"by": Uuid::new_v4()})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "supersede by evidence that does not exist");

    let (_, p) = t.call(Method::POST, "/api/v1/policies", Some(json!({"name": "ref", "rego": "package r\n\nallow := true\n"}))).await;
    let pid = p["policy_id"].as_str().unwrap();
    t.call(Method::POST, &format!("/api/v1/policies/{pid}/activate"), None).await;
    let (_, d) = t.call(Method::POST, &format!("/api/v1/policies/{pid}/evaluate"), Some(json!({"input": {}}))).await;
    let reference = |decision: Value| json!({"workflow_id": w, "control_ids": ["PR.AA-01"], "kind": "policy_decision_reference", "valid_from": "2026-01-01", "valid_until": "2026-12-31", "decision_id": decision});
    let (status, e) = t.upload(reference(d["decision_id"].clone()), b"decision").await;
    assert_eq!((status, &e["decision_id"]), (StatusCode::CREATED, &d["decision_id"]));
    let (status, _) = t.upload(reference(json!(Uuid::new_v4())), b"decision").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn workflow_and_evidence_lists_page_filter_and_count() {
    let svc = Service::start(&[]).await;
    let t = tenant(&svc);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.workflow(&[]).await);
    }
    t.call(
        Method::POST,
        &format!("/api/v1/compliance/workflows/{}/transitions", ids[0]),
        Some(json!({"to": "cancelled", "reason": "duplicate"})),
    )
    .await;
    let (_, p1) = t.call(Method::GET, "/api/v1/compliance/workflows?page=1&page_size=2", None).await;
    let (_, p2) = t.call(Method::GET, "/api/v1/compliance/workflows?page=2&page_size=2", None).await;
    assert_eq!((p1["total"].as_i64(), p1["items"].as_array().unwrap().len(), p2["items"].as_array().unwrap().len()), (Some(3), 2, 1));
    let mut seen: Vec<String> = p1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["items"].as_array().unwrap())
        .map(|w| w["workflow_id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "pages neither repeat nor skip");
    let (_, cancelled) = t.call(Method::GET, "/api/v1/compliance/workflows?state=cancelled", None).await;
    assert_eq!((cancelled["total"].as_i64(), &cancelled["items"][0]["workflow_id"]), (Some(1), &json!(ids[0])));
    let (_, none) = t.call(Method::GET, "/api/v1/compliance/workflows?regulation=hipaa", None).await;
    assert_eq!(none["total"], 0);
    let (status, _) = t.call(Method::GET, "/api/v1/compliance/workflows?state=flying", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    for (i, w) in ids.iter().enumerate().skip(1) {
        let (status, _) = t.upload(json!({"workflow_id": w, "control_ids": ["GV.OC-01"], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"}), format!("doc {i}").as_bytes()).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, all) = t.call(Method::GET, "/api/v1/evidence", None).await;
    let (_, one) = t.call(Method::GET, &format!("/api/v1/evidence?workflow_id={}", ids[1]), None).await;
    assert_eq!((all["total"].as_i64(), one["total"].as_i64(), &one["items"][0]["workflow_id"]), (Some(2), Some(1), &json!(ids[1])));
}
