//! Tenant isolation, over HTTP and in the database itself (as the app role, which RLS
//! applies to; a superuser would bypass it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

#[tokio::test]
async fn tenant_b_cannot_see_tenant_a_policies_over_http() {
    let svc = Service::start(&[]).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ta, tb) = (token(a, ADMIN), token(b, ADMIN));
    let (status, created) = svc.call(Method::POST, "/api/v1/policies", Some(a), Some(&ta), Some(&policy_body("secret-of-a"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["policy_id"].as_str().unwrap();

    let (status, body) = svc.call(Method::GET, &format!("/api/v1/policies/{id}"), Some(b), Some(&tb), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/policies/{id}/versions"), Some(b), Some(&tb), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, list) = svc.call(Method::GET, "/api/v1/policies?page_size=100", Some(b), Some(&tb), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "pagination totals do not leak: {list}");
    assert!(list["items"].as_array().unwrap().is_empty());

    // The owner still sees it.
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/policies/{id}"), Some(a), Some(&ta), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_app_role_sees_only_the_tenant_it_sets_and_nothing_without_one() {
    let svc = Service::start(&[]).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (status, _) = svc.call(Method::POST, "/api/v1/policies", Some(a), Some(&token(a, ADMIN)), Some(&policy_body("rls"))).await;
    assert_eq!(status, StatusCode::CREATED);

    let mut app = connect("AUMOS_DATABASE_URL").await;
    let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut app).await.unwrap();
    assert_eq!(role, "gov_app");
    let bypass: bool =
        sqlx::query_scalar("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&mut app).await.unwrap();
    assert!(!bypass, "the app role must be subject to RLS");

    for table in ["gov_governance_policies", "gov_governance_policy_versions"] {
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        sqlx::query("BEGIN").execute(&mut app).await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(b.to_string()).execute(&mut app).await.unwrap();
        let seen: i64 = sqlx::query_scalar(&sql).bind(a).fetch_one(&mut app).await.unwrap();
        sqlx::query("COMMIT").execute(&mut app).await.unwrap();
        assert_eq!(seen, 0, "tenant B sees none of tenant A's rows in {table}");

        let unscoped: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut app).await.unwrap();
        assert_eq!(unscoped, 0, "without a tenant the app role sees nothing in {table}");

        sqlx::query("BEGIN").execute(&mut app).await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(a.to_string()).execute(&mut app).await.unwrap();
        let own: i64 = sqlx::query_scalar(&sql).bind(a).fetch_one(&mut app).await.unwrap();
        sqlx::query("COMMIT").execute(&mut app).await.unwrap();
        assert_eq!(own, 1, "tenant A sees its own row in {table}");
    }

    // Writing a row for another tenant is refused by the WITH CHECK clause.
    sqlx::query("BEGIN").execute(&mut app).await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(b.to_string()).execute(&mut app).await.unwrap();
    let forged = sqlx::query(
        "INSERT INTO gov_governance_policies (tenant_id, policy_id, name, description, status, latest_version, created_by, created_at, updated_at, last_seq) \
         VALUES ($1, $2, 'forged', '', 'draft', 1, 'x', now(), now(), 0)",
    )
    .bind(a)
    .bind(Uuid::new_v4())
    .execute(&mut app)
    .await;
    sqlx::query("ROLLBACK").execute(&mut app).await.unwrap();
    assert!(forged.unwrap_err().to_string().contains("row-level security"));
}

#[tokio::test]
async fn the_app_role_owns_no_table_and_every_tenant_table_forces_rls() {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let rows: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    .fetch_all(&mut su)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for (table, owner, rls, force) in rows {
        assert!(table.starts_with("gov_"), "{table} is prefixed gov_");
        assert_ne!(owner, "gov_app", "{table} is not owned by the app role");
        let has_tenant: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = 'tenant_id')",
        )
        .bind(&table)
        .fetch_one(&mut su)
        .await
        .unwrap();
        if has_tenant {
            assert!(rls && force, "{table} has tenant data, so RLS is enabled and forced");
        }
    }
}

/// The tables of the primary's public schema that hold tenant data (a `tenant_id`), by name.
async fn tenant_tables() -> Vec<String> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    sqlx::query_scalar(
        "SELECT DISTINCT table_name::text FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1",
    )
    .fetch_all(&mut su)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_tenant_tables_policy_reads_the_tenant_once_per_statement_not_once_per_row() {
    let _svc = Service::start(&[]).await;
    let tables = tenant_tables().await;
    assert!(tables.len() >= 10, "{tables:?}");
    let mut app = connect("AUMOS_DATABASE_URL").await;
    for table in tables {
        let (using, check) = tenant_policy(&table).await.unwrap_or_else(|| panic!("{table} has a tenant policy"));
        assert_eq!(using, check, "{table}: one rule for reading and writing");
        assert!(using.contains("SELECT gov_current_tenant()"), "{table}: the tenant is a scalar subquery: {using}");
        // As the app role, a scan compares a constant: the tenant setting is read by an
        // InitPlan, not in the scan's per-row filter.
        sqlx::query("BEGIN").execute(&mut app).await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(Uuid::new_v4().to_string()).execute(&mut app).await.unwrap();
        sqlx::raw_sql("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off").execute(&mut app).await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN SELECT * FROM {table}")).fetch_all(&mut app).await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut app).await.unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Seq Scan") && plan.contains("InitPlan"), "{table}: {plan}");
        assert!(!plan.contains("current_setting"), "{table}: no per-row read of the setting: {plan}");
    }
}

/// Tenant A's policy (active), decision and ledger entry, for the attacks below.
struct Victim {
    tenant: Uuid,
    tok: String,
    policy: String,
    decision: String,
    seq: i64,
    workflow: String,
    evidence: String,
    /// A finished replay of the policy's decisions.
    replay: String,
}

async fn victim(svc: &Service) -> Victim {
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    // Its version checks a control, so its decision is also system evidence.
    let mut body = policy_body("victim");
    body["control_checks"] = serde_json::json!([{"control_id": "PR.AA-01"}]);
    let (_, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&body)).await;
    let policy = created["policy_id"].as_str().unwrap().to_owned();
    let (status, _) = svc.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    let body = serde_json::json!({"input": {"user": "a"}});
    let (status, decided) =
        svc.call(Method::POST, &format!("/api/v1/policies/{policy}/evaluate"), Some(tenant), Some(&tok), Some(&body)).await;
    assert_eq!(status, StatusCode::OK);
    let seq = decided["ledger_seq"].as_i64().unwrap();
    let decision = decided["decision_id"].as_str().unwrap().to_owned();
    let (status, _) = svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::CREATED);
    // Wait until the decision is readable, so B's empty answers below are not a lag.
    let (status, _) = svc.call(Method::GET, &format!("/api/v1/decisions/{decision}?min_seq={seq}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    let window = serde_json::json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"});
    let (status, replayed) =
        svc.call(Method::POST, &format!("/api/v1/policies/{policy}/versions/1/replay"), Some(tenant), Some(&tok), Some(&window)).await;
    assert!(status.is_success(), "{replayed}");
    let replay = replayed["replay_id"].as_str().unwrap().to_owned();
    let wf = serde_json::json!({"regulation": "soc2", "name": "victim-wf", "scope": ["CC6.1"], "audit_period_start": "2026-01-01",
        "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
    let (status, created) = svc.call(Method::POST, "/api/v1/compliance/workflows", Some(tenant), Some(&tok), Some(&wf)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let workflow = created["workflow_id"].as_str().unwrap().to_owned();
    let mapping = serde_json::json!({"mappings": [{"requirement_id": "CC6.1", "control_id": "DE.CM-09", "relation": "subset", "rationale": "victim-secret"}]});
    let (status, _) = svc.call(Method::POST, "/api/v1/regulations/soc2/mappings", Some(tenant), Some(&tok), Some(&mapping)).await;
    assert_eq!(status, StatusCode::CREATED);
    let metadata = serde_json::json!({"workflow_id": workflow, "control_ids": ["DE.CM-09"], "kind": "document",
        "valid_from": "2025-01-01", "valid_until": "2030-01-01"});
    let resp = svc.upload_evidence(tenant, &tok, &metadata, reqwest::multipart::Part::bytes(b"victim".to_vec())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let evidence = resp.json::<serde_json::Value>().await.unwrap()["evidence_id"].as_str().unwrap().to_owned();
    Victim { tenant, tok, policy, decision, seq, workflow, evidence, replay }
}

/// Operations whose answers are not tenant data: the ledger's key and checkpoints cover
/// the whole log (hashes only), as does a consistency proof between two checkpoints.
/// The catalog's regulation list is the same for everyone.
const GLOBAL: &[&str] =
    &["/api/v1/ledger/public-key", "/api/v1/ledger/checkpoints/latest", "/api/v1/ledger/consistency", "/api/v1/regulations"];

/// Every GET in the OpenAPI document, filled in with A's ids, and with every filter and
/// sort key aimed at A's rows: A sees its data, B gets 404 on ids and empty pages with a
/// zero total. A GET added to the API without a case here fails the test.
#[tokio::test]
async fn tenant_b_sees_nothing_of_tenant_a_through_any_get_endpoint_in_the_document() {
    let svc = Service::start(&[]).await;
    let a = victim(&svc).await;
    let b = Uuid::new_v4();
    let tb = token(b, &["governance:admin", "auditor"]);
    let doc = svc.client.get(format!("{}/api/v1/openapi.json", svc.base)).send().await.unwrap().json::<serde_json::Value>().await.unwrap();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_none() || item["get"]["security"].is_null() || GLOBAL.contains(&template.as_str()) {
            continue;
        }
        // Answers that merge the catalog with tenant data: A's mapping and rationale show
        // for A only; B's dashboard counts nothing of A's.
        let merged = match template.as_str() {
            "/api/v1/regulations/{code}/requirements" => {
                Some("/api/v1/regulations/soc2/requirements?category=DE.CM&page_size=100".to_owned())
            }
            "/api/v1/controls/{csf_id}" => Some("/api/v1/controls/DE.CM-09".to_owned()),
            "/api/v1/compliance/dashboard" => Some("/api/v1/compliance/dashboard?regulation=soc2".to_owned()),
            "/api/v1/ledger/entries" => Some(format!("/api/v1/ledger/entries?after_seq={}&limit=1000", a.seq - 1)),
            _ => None,
        };
        if let Some(path) = merged {
            let (status, own) = svc.call(Method::GET, &path, Some(a.tenant), Some(&a.tok), None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            let (status, theirs) = svc.call(Method::GET, &path, Some(b), Some(&tb), None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            if path.contains("/ledger/entries") {
                let items = own["items"].as_array().unwrap();
                assert!(items.iter().any(|e| e["seq"] == a.seq), "A's export holds its decision entry");
                assert!(items.iter().all(|e| e["tenant_id"] == a.tenant.to_string()), "A's export holds A's entries only");
                for item in items {
                    let export: ledger::export::ExportEntry = serde_json::from_value(item.clone()).unwrap();
                    let entry = ledger::LedgerEntry::try_from(&export).unwrap();
                    assert_eq!(hex::encode(entry.computed_hash()), export.hash, "an exported entry's hash recomputes");
                }
                let theirs_seqs: Vec<&Value> = theirs["items"].as_array().unwrap().iter().map(|e| &e["seq"]).collect();
                assert!(theirs["items"].as_array().unwrap().iter().all(|e| e["tenant_id"] == b.to_string()), "B's export: {theirs_seqs:?}");
            } else if path.contains("dashboard") {
                assert!(own["workflows"].as_i64().unwrap() >= 1 && own["evidence_by_kind"]["document"].as_i64().unwrap() >= 1, "{own}");
                assert_eq!(
                    (theirs["workflows"].as_i64(), theirs["evidence_by_kind"].as_object().map(|o| o.len())),
                    (Some(0), Some(0)),
                    "{theirs}"
                );
            } else {
                assert!(own.to_string().contains("victim-secret"), "A sees its mapping in {path}");
                assert!(!theirs.to_string().contains("victim-secret"), "B sees A's mapping in {path}: {theirs}");
            }
            checked += 1;
            continue;
        }
        let (w, e) = (&a.workflow, &a.evidence);
        let (by_id, lists): (Vec<String>, Vec<String>) = match template.as_str() {
            "/api/v1/compliance/workflows" => {
                (vec![], vec![template.clone(), format!("{template}?regulation=soc2&state=draft&page_size=100")])
            }
            "/api/v1/compliance/workflows/{id}"
            | "/api/v1/compliance/workflows/{id}/requirements"
            | "/api/v1/compliance/workflows/{id}/evidence-bundle" => (vec![template.replace("{id}", w)], vec![]),
            "/api/v1/evidence" => (vec![], vec![template.clone(), format!("{template}?workflow_id={w}&page_size=100")]),
            "/api/v1/evidence/{id}" | "/api/v1/evidence/{id}/artifact" => (vec![template.replace("{id}", e)], vec![]),
            "/api/v1/policies" => (
                vec![],
                ["", "?sort_by=name&sort_order=asc", "?sort_by=updated_at&page_size=100", "?page=1&page_size=1"]
                    .map(|q| format!("{template}{q}"))
                    .to_vec(),
            ),
            "/api/v1/policies/{id}" | "/api/v1/policies/{id}/versions" => (vec![template.replace("{id}", &a.policy)], vec![]),
            "/api/v1/decisions" => {
                let p = &a.policy;
                (
                    vec![],
                    vec![
                        template.clone(),
                        format!("{template}?policy_id={p}"),
                        format!("{template}?policy_id={p}&from=2000-01-01T00:00:00Z&page_size=100"),
                    ],
                )
            }
            "/api/v1/decisions/{id}" => (vec![template.replace("{id}", &a.decision)], vec![]),
            "/api/v1/policies/{id}/replays/{replay_id}" => {
                (vec![template.replace("{id}", &a.policy).replace("{replay_id}", &a.replay)], vec![])
            }
            "/api/v1/system-evidence" => {
                (vec![], vec![template.clone(), format!("{template}?policy_id={}&control=PR.AA-01&page_size=100", a.policy)])
            }
            "/api/v1/ledger/entries/{seq}/proof" => (vec![template.replace("{seq}", &a.seq.to_string())], vec![]),
            other => panic!("no isolation case for GET {other}: add one"),
        };
        for path in by_id {
            let (status, _) = svc.call(Method::GET, &path, Some(a.tenant), Some(&a.tok), None).await;
            assert_eq!(status, StatusCode::OK, "A reads its own {path}");
            let (status, body) = svc.call(Method::GET, &path, Some(b), Some(&tb), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "B reads A's {path}: {body}");
            checked += 1;
        }
        for path in lists {
            let (status, own) = svc.call(Method::GET, &path, Some(a.tenant), Some(&a.tok), None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(own["total"].as_i64().unwrap() >= 1, "A sees its rows in {path}");
            let (status, theirs) = svc.call(Method::GET, &path, Some(b), Some(&tb), None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(theirs["total"], 0, "B's total for {path}: {theirs}");
            assert!(theirs["items"].as_array().unwrap().is_empty(), "B's items for {path}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} cases");
    // B also cannot prove A's entry against a given checkpoint size.
    let (status, _) =
        svc.call(Method::GET, &format!("/api/v1/ledger/entries/{}/proof?tree_size={}", a.seq, a.seq), Some(b), Some(&tb), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_tenant_table_is_empty_to_the_app_role_without_a_tenant_and_scoped_with_one() {
    let svc = Service::start(&[]).await;
    let a = victim(&svc).await;
    let tables = tenant_tables().await;
    assert!(tables.len() >= 3, "{tables:?}");
    let mut app = connect("AUMOS_DATABASE_URL").await;
    let mut seen_own = 0;
    for table in &tables {
        let unscoped: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut app).await.unwrap();
        assert_eq!(unscoped, 0, "without a tenant the app role sees nothing in {table}");
        sqlx::query("BEGIN").execute(&mut app).await.unwrap();
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(a.tenant.to_string()).execute(&mut app).await.unwrap();
        let foreign: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE tenant_id <> $1"))
            .bind(a.tenant)
            .fetch_one(&mut app)
            .await
            .unwrap();
        let own: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut app).await.unwrap();
        sqlx::query("COMMIT").execute(&mut app).await.unwrap();
        assert_eq!(foreign, 0, "A's scope shows no other tenant's rows in {table}");
        seen_own += usize::from(own > 0);
    }
    assert!(seen_own >= 3, "A's policy, version and decision rows are visible to A");
}
