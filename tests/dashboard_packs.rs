//! The cold dashboard reads the packs of a workflow's active evidence
//! (`gov_evidence_packs`), which the evidence projector keeps, a few dozen records to a
//! chunk: as records are added, superseded, withdrawn and rejected, the dashboard agrees
//! with the workflow's own status view (read from the evidence's rows), and a rebuild
//! reproduces the packs row for row, on a table with the live one's storage options.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{connect, token, Service, ADMIN};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const AS_OF: &str = "2026-06-01";

async fn workflow(svc: &Service, tenant: Uuid, tok: &str, name: &str) -> String {
    let body = json!({"regulation": "soc2", "name": name, "audit_period_start": "2026-01-01",
        "audit_period_end": "2026-12-31", "due_date": "2027-03-31"});
    let (status, wf) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(tenant), Some(tok), Some(&body)).await;
    assert!(status == StatusCode::CREATED || status == StatusCode::ACCEPTED, "{wf}");
    wf["workflow_id"].as_str().unwrap().to_owned()
}

/// A record of `wf` naming `requirement` for the whole year.
fn naming(wf: &str, requirement: &str) -> Value {
    json!({"workflow_id": wf, "requirement_ids": [requirement], "kind": "document", "valid_from": "2026-01-01", "valid_until": "2026-12-31"})
}

/// Uploads each of `metadata`, 8 at a time; returns the records' ids, in the given order.
async fn upload_all(svc: &Service, tenant: Uuid, tok: &str, metadata: Vec<Value>) -> Vec<String> {
    futures::stream::iter(metadata.into_iter().enumerate())
        .map(|(n, metadata)| async move {
            let part = reqwest::multipart::Part::bytes(format!("artifact {n} {tenant}").into_bytes()).file_name("a.txt");
            let resp = svc.upload_evidence(tenant, tok, &metadata, part).await;
            assert_eq!(resp.status(), StatusCode::CREATED);
            let e: Value = resp.json().await.unwrap();
            e["evidence_id"].as_str().unwrap().to_owned()
        })
        .buffered(8)
        .collect()
        .await
}

/// The workflow's own status view: requirement statuses counted, and the status of each.
async fn view(svc: &Service, tenant: Uuid, tok: &str, wf: &str) -> (Value, Value) {
    let path = format!("/api/v1/compliance/workflows/{wf}/requirements?as_of={AS_OF}&page_size=100");
    let (status, r) = svc.call(Method::GET, &path, Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let by_id: serde_json::Map<String, Value> =
        r["items"].as_array().unwrap().iter().map(|i| (i["requirement_id"].as_str().unwrap().to_owned(), i["status"].clone())).collect();
    (r["summary"].clone(), Value::Object(by_id))
}

async fn dashboard(svc: &Service, tenant: Uuid, tok: &str, query: &str) -> Value {
    let (status, d) =
        svc.call(Method::GET, &format!("/api/v1/compliance/dashboard?as_of={AS_OF}{query}"), Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d
}

/// Row count and checksum of the tenant's packs and of its evidence rows.
async fn packs_and_rows(tenant: Uuid) -> Vec<(i64, String)> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let mut out = Vec::new();
    for t in ["gov_evidence_packs", "gov_evidence"] {
        let sql = format!("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {t} t WHERE tenant_id = $1");
        let (n, sum): (i64, Option<String>) = sqlx::query_as(&sql).bind(tenant).fetch_one(&mut su).await.unwrap();
        out.push((n, sum.unwrap_or_default()));
    }
    out
}

#[tokio::test]
async fn a_dashboard_over_packs_agrees_with_the_workflows_views_as_records_change_and_a_rebuild_reproduces_the_packs() {
    let svc = Service::start(&[]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (big, small) = (workflow(&svc, tenant, &tok, "big").await, workflow(&svc, tenant, &tok, "small").await);
    let heavy = workflow(&svc, tenant, &tok, "heavy").await;
    // 70 records on one workflow: three chunks. Three of them are each the only record
    // naming their requirement, so that a pack still holding one after it stopped counting
    // would show that requirement as covered.
    let mut records = vec![naming(&big, "CC1.1"), naming(&big, "CC2.1"), naming(&big, "CC3.1")];
    records.extend((3..69).map(|_| naming(&big, "CC6.1")));
    records.push(naming(&big, "CC5.1"));
    records.push(naming(&small, "CC6.1"));
    let ids = upload_all(&svc, tenant, &tok, records).await;
    // Records whose ids weigh more than a chunk's 8 KiB close their chunks: one each, then
    // a small one in the next.
    let weighty = json!({"workflow_id": heavy, "control_ids": vec!["PR.AA-01"; 1000], "kind": "attestation",
        "valid_from": "2026-01-01", "valid_until": "2026-12-31"});
    for metadata in [weighty.clone(), weighty.clone(), weighty, naming(&heavy, "CC6.1")] {
        upload_all(&svc, tenant, &tok, vec![metadata]).await;
    }
    let (before, statuses) = view(&svc, tenant, &tok, &big).await;
    assert_eq!([&statuses["CC1.1"], &statuses["CC2.1"], &statuses["CC3.1"]], [&json!("satisfied"); 3]);
    assert_eq!(dashboard(&svc, tenant, &tok, &format!("&workflow_id={big}")).await["requirements_by_status"], before);

    // CC1.1's record is withdrawn, CC3.1's superseded by CC5.1's, and CC2.1's rejected.
    let withdraw = format!("/api/v1/evidence/{}/withdraw", ids[0]);
    let (status, w) = svc.call(Method::POST, &withdraw, Some(tenant), Some(&tok), Some(&json!({"reason": "wrong system"}))).await;
    assert_eq!(status, StatusCode::OK, "{w}");
    let supersede = format!("/api/v1/evidence/{}/supersede", ids[2]);
    let (status, s) = svc.call(Method::POST, &supersede, Some(tenant), Some(&tok), Some(&json!({"by": ids[69], "reason": "v2"}))).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    for to in ["scoping", "evidence_collection", "internal_review", "auditor_review"] {
        let path = format!("/api/v1/compliance/workflows/{big}/transitions");
        let (status, body) = svc.call(Method::POST, &path, Some(tenant), Some(&tok), Some(&json!({"to": to, "reason": "next"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let review = format!("/api/v1/evidence/{}/review", ids[1]);
    let auditor = token(tenant, &["auditor"]);
    let body = json!({"verdict": "rejected", "reason": "another system"});
    let (status, r) = svc.call(Method::POST, &review, Some(tenant), Some(&auditor), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{r}");

    let (after, statuses) = view(&svc, tenant, &tok, &big).await;
    assert_eq!([&statuses["CC1.1"], &statuses["CC2.1"], &statuses["CC3.1"]], [&json!("missing"); 3], "{statuses}");
    assert_eq!(statuses["CC5.1"], "satisfied");
    assert_ne!(after, before);
    let one = dashboard(&svc, tenant, &tok, &format!("&workflow_id={big}")).await;
    assert_eq!(one["requirements_by_status"], after, "the dashboard counts what the workflow's view shows");
    assert_eq!(one["evidence_by_kind"], json!({"document": 68}), "the withdrawn and the superseded record are gone");
    let all = dashboard(&svc, tenant, &tok, "").await;
    let mut expected = after.as_object().unwrap().clone();
    for other in [&small, &heavy] {
        let (summary, _) = view(&svc, tenant, &tok, other).await;
        for (s, n) in summary.as_object().unwrap() {
            let total = expected.get(s).and_then(Value::as_i64).unwrap_or(0) + n.as_i64().unwrap();
            expected.insert(s.clone(), json!(total));
        }
    }
    assert_eq!(all["requirements_by_status"], Value::Object(expected));
    assert_eq!(all["evidence_by_kind"], json!({"attestation": 3, "document": 70}));

    // Chunks of at most 32 records: the big workflow has three, the small one one, the
    // heavy one four.
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let chunks: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT workflow_id::text, count(*), sum(assigned)::bigint FROM gov_evidence_packs WHERE tenant_id = $1 GROUP BY 1 ORDER BY 2, 3",
    )
    .bind(tenant)
    .fetch_all(&mut su)
    .await
    .unwrap();
    assert_eq!(chunks, vec![(small.clone(), 1, 1), (big.clone(), 3, 70), (heavy.clone(), 4, 4)]);

    // The evidence projector's tables rebuilt from the ledger: the same packs, the same rows.
    let projected = packs_and_rows(tenant).await;
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
            .args(["projections", "rebuild", "--projection", "evidence"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(packs_and_rows(tenant).await, projected);
    let named: bool = sqlx::query_scalar("SELECT to_regclass('public.gov_evidence_chunk') IS NOT NULL").fetch_one(&mut su).await.unwrap();
    assert!(named, "the rebuilt table's unique index keeps its live name");
    let options: Option<Vec<String>> =
        sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = 'public.gov_evidence_packs'::regclass")
            .fetch_one(&mut su)
            .await
            .unwrap();
    assert_eq!(options, Some(vec!["fillfactor=50".to_owned()]), "the rebuilt packs keep the live table's room for HOT updates");
    assert_eq!(dashboard(&svc, tenant, &tok, "&regulation=soc2").await["requirements_by_status"], all["requirements_by_status"]);
}
