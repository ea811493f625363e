//! Rebuilding read models from the ledger gives, row for row, what incremental projection
//! built; and readers never see an empty or half-built table while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

/// Row count and checksum of each read model this test compares, without `except`'s rows.
async fn checksums(except: Option<Uuid>) -> Vec<(String, i64, String)> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    let mut out = Vec::new();
    for t in ["gov_governance_policies", "gov_governance_policy_versions", "gov_policy_decisions", "gov_decision_days"] {
        let (n, sum): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {t} t WHERE $1::uuid IS NULL OR tenant_id <> $1"
        ))
        .bind(except)
        .fetch_one(&mut su)
        .await
        .unwrap();
        out.push((t.to_owned(), n, sum.unwrap_or_default()));
    }
    out
}

/// The read models' non-unique indexes, by name: a rebuild builds them after its replay,
/// under the live names.
async fn secondary_indexes() -> Vec<(String, String)> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
           JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
          WHERE n.nspname = 'public' AND t.relname LIKE 'gov\\_%' AND NOT i.indisunique ORDER BY 1",
    )
    .fetch_all(&mut su)
    .await
    .unwrap()
}

/// The `i`-th evaluate body of the hostile tenant (see its use).
fn hostile_body(i: usize) -> serde_json::Value {
    match i % 6 {
        0 => json!({"input": {"i": i, "s": "quote \" backslash \\ tab \t newline \n cr \r end-of-copy \\.\n \u{1F600} \u{202E}rtl"}}),
        1 => json!({"input": {"i": i, "n": [f64::MAX, -0.0, 1e-308, u64::MAX, i64::MIN]}}),
        2 => {
            let mut deep = json!(i);
            for _ in 0..30 {
                deep = json!({"d": [deep]});
            }
            json!({"input": deep})
        }
        3 if i % 50 == 3 => json!({"input": {"i": i, "big": "x".repeat(200_000)}}),
        4 => json!({"input": {"COPY\tFROM\nSTDIN": "\\N", "i": i}}),
        5 => json!({}),
        _ => json!({"input": {"i": i}}),
    }
}

/// The ledger's last seq.
async fn ledger_head() -> i64 {
    let mut c = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM gov_audit_trail_entries").fetch_one(&mut c).await.unwrap()
}

/// The (policy, day) of `tenant` whose counts in `gov_decision_days` differ from its
/// decisions (allowed, denied, undefined) in `gov_policy_decisions`.
async fn decision_days_off(tenant: Uuid) -> Vec<(Uuid, chrono::NaiveDate)> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    sqlx::query_as(
        "WITH d AS (SELECT policy_id, (decided_at AT TIME ZONE 'UTC')::date AS day, count(*) FILTER (WHERE allowed) AS allowed, \
                count(*) FILTER (WHERE NOT allowed) AS denied, count(*) FILTER (WHERE allowed IS NULL) AS undefined \
           FROM gov_policy_decisions WHERE tenant_id = $1 GROUP BY 1, 2), \
              c AS (SELECT policy_id, day, allowed, denied, undefined FROM gov_decision_days WHERE tenant_id = $1) \
         SELECT coalesce(d.policy_id, c.policy_id), coalesce(d.day, c.day) FROM d FULL JOIN c USING (policy_id, day) \
          WHERE (d.allowed, d.denied, d.undefined) IS DISTINCT FROM (c.allowed, c.denied, c.undefined)",
    )
    .bind(tenant)
    .fetch_all(&mut su)
    .await
    .unwrap()
}

/// Whether `public.table` forces row-level security (`None`: no such table).
async fn forced_row_security(table: &str) -> Option<bool> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    sqlx::query_scalar("SELECT relforcerowsecurity FROM pg_class WHERE oid = to_regclass('public.' || $1)")
        .bind(table)
        .fetch_optional(&mut su)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rebuild_reproduces_the_incremental_read_models_and_readers_never_see_a_gap() {
    // Every evaluation must be answered (200 KB inputs among them): the 200 ms evaluation
    // deadline is not what this test is about, and a loaded machine can pass it.
    let svc = Service::start(&[("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "5000")]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    // A mixed workload: policies through every transition, and thousands of decisions.
    let mut ids = Vec::new();
    for i in 0..30 {
        let (status, p) = svc
            .call(
                Method::POST,
                "/api/v1/policies",
                Some(tenant),
                Some(&tok),
                Some(&json!({"name": format!("r{i}"), "rego": "package r\nallow if input.n > 1\n"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = p["policy_id"].as_str().unwrap().to_owned();
        let at = |s: &str| format!("/api/v1/policies/{id}/{s}");
        svc.call(Method::POST, &at("versions"), Some(tenant), Some(&tok), Some(&json!({"rego": "package r\nallow if input.n > 2\n"})))
            .await;
        svc.call(Method::POST, &at("activate"), Some(tenant), Some(&tok), None).await;
        if i % 3 == 0 {
            svc.call(Method::POST, &at("deactivate"), Some(tenant), Some(&tok), None).await;
            svc.call(Method::POST, &at("archive"), Some(tenant), Some(&tok), None).await;
        } else {
            ids.push(id);
        }
    }
    let evaluations = (0..2000).map(|i| {
        let (svc, tok, id) = (&svc, tok.clone(), ids[i % ids.len()].clone());
        async move {
            svc.call(
                Method::POST,
                &format!("/api/v1/policies/{id}/evaluate"),
                Some(tenant),
                Some(&tok),
                Some(&json!({"input": {"n": i % 5}})),
            )
            .await
        }
    });
    // Another tenant's decisions, interleaved: the ledger holds runs of both.
    let other = Uuid::new_v4();
    let other_tok = token(other, ADMIN);
    let (_, p) = svc.call(Method::POST, "/api/v1/policies", Some(other), Some(&other_tok), Some(&policy_body("other"))).await;
    let other_id = p["policy_id"].as_str().unwrap().to_owned();
    svc.call(Method::POST, &format!("/api/v1/policies/{other_id}/activate"), Some(other), Some(&other_tok), None).await;
    // Its inputs are what a hostile tenant may send and the API accepts: text that would
    // break a text-format COPY, numbers at the edges of f64 and i64, deep nesting, a large
    // string, no input at all. The rebuilds below (binary COPY) must keep them exactly.
    let others =
        (0..300).map(|i| {
            let (svc, tok, id) = (&svc, other_tok.clone(), other_id.clone());
            async move {
                svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(other), Some(&tok), Some(&hostile_body(i))).await
            }
        });
    let (results, other_results): (Vec<_>, Vec<_>) = futures::join!(
        futures::stream::iter(evaluations).buffer_unordered(16).collect::<Vec<_>>(),
        futures::stream::iter(others).buffer_unordered(4).collect::<Vec<_>>()
    );
    assert!(other_results.iter().all(|(s, _)| *s == StatusCode::OK), "{other_results:?}");
    let max_seq = results
        .iter()
        .map(|(s, r)| {
            assert_eq!(*s, StatusCode::OK, "{r}");
            r["ledger_seq"].as_i64().unwrap()
        })
        .max()
        .unwrap();
    let (status, _) =
        svc.call(Method::GET, &format!("/api/v1/decisions?page_size=1&min_seq={max_seq}"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK);
    let before = checksums(None).await;

    // Readers poll while the rebuild runs: the totals never dip.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, base, tok) = (stop.clone(), svc.base.clone(), tok.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .get(format!("{base}/api/v1/policies?page_size=1"))
                    .bearer_auth(&tok)
                    .header("X-Tenant-ID", tenant.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["total"], 30, "a reader saw a partial table: {body}");
                seen += 1;
            }
            seen
        })
    };
    let indexes = secondary_indexes().await;
    let mut policies = Vec::new();
    for table in ["gov_policy_decisions", "gov_governance_policies", "gov_compliance_workflows", "gov_evidence", "gov_system_evidence"] {
        let policy = tenant_policy(table).await;
        assert!(policy.is_some(), "{table} has a policy");
        policies.push((table, policy));
    }
    assert!(indexes.len() >= 4, "{indexes:?}");
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine")).args(["projections", "rebuild"]).output().unwrap()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let polls = reader.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entries replayed"), "progress goes to stderr");
    assert!(polls > 0);

    let after = checksums(None).await;
    assert_eq!(before, after, "rebuilt tables equal the incremental ones, row for row");
    assert_eq!(secondary_indexes().await, indexes, "the same secondary indexes, under the same names");
    assert!(before[2].1 >= 2300, "thousands of events: {before:?}");
    assert_eq!(decision_days_off(tenant).await, vec![], "each policy's days count its decisions");
    assert_eq!(forced_row_security("gov_policy_decisions").await, Some(true), "the rebuilt table forces row-level security");
    for (table, policy) in &policies {
        assert_eq!(&tenant_policy(table).await, policy, "the rebuilt {table} has the migrations' row-level security policy");
    }
    let checksums_before_more = checksums(Some(other)).await;
    let head_before_more = ledger_head().await;

    // Again in windows of 64 seqs (this test's entries spread over dozens of windows,
    // shared out among the decisions projector's lanes and loaded with COPY, in runs of
    // both tenants) while the other tenant keeps deciding: what is appended after the
    // feed's head is caught up before or in the swap.
    let reader = governance_engine::adapters::ledger::LedgerReader::new(
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&var("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL")).await.unwrap(),
    );
    let all = projections::all();
    let owner = var("AUMOS_DATABASE_MIGRATION_URL");
    let rebuilding = governance_engine::application::rebuild::rebuild_all_in_windows(&owner, &reader, &all, 64, &|_, _| {});
    let more = (0..100).map(|i| {
        let (svc, tok, id) = (&svc, other_tok.clone(), other_id.clone());
        async move {
            svc.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(other), Some(&tok), Some(&json!({"input": {"j": i}})))
                .await
        }
    });
    let (done, more) = futures::join!(rebuilding, futures::stream::iter(more).buffer_unordered(4).collect::<Vec<_>>());
    let done = done.unwrap();
    assert!(more.iter().all(|(s, _)| *s == StatusCode::OK), "{more:?}");
    assert!(done.iter().all(|(pos, _)| *pos >= head_before_more), "{done:?} against head {head_before_more}");
    let other_total = || async {
        let (status, page) = svc.call(Method::GET, "/api/v1/decisions?page_size=1", Some(other), Some(&other_tok), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["total"].as_i64().unwrap()
    };
    for _ in 0..100 {
        if other_total().await == 400 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(other_total().await, 400, "the decisions appended during the rebuild are all there, once");
    let (mut su, mut ledger) = (connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await, connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await);
    for t in [tenant, other] {
        let modelled: Vec<i64> = sqlx::query_scalar("SELECT ledger_seq FROM gov_policy_decisions WHERE tenant_id = $1 ORDER BY 1")
            .bind(t)
            .fetch_all(&mut su)
            .await
            .unwrap();
        let recorded: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM gov_audit_trail_entries WHERE tenant_id = $1 AND aggregate_type = 'PolicyDecision' ORDER BY 1",
        )
        .bind(t)
        .fetch_all(&mut ledger)
        .await
        .unwrap();
        assert_eq!(modelled, recorded, "every decision of the ledger is in the read model once");
    }
    assert_eq!(checksums(Some(other)).await, checksums_before_more, "the rows no append touched are the same, row for row");
    assert_eq!(secondary_indexes().await, indexes);
    assert_eq!(forced_row_security("gov_policy_decisions").await, Some(true));
    let (status, page) = svc.call(Method::GET, "/api/v1/decisions?page_size=1", Some(other), Some(&other_tok), None).await;
    assert_eq!((status, page["total"].as_i64()), (StatusCode::OK, Some(400)), "each tenant reads its own decisions: {page}");

    // The service keeps projecting onto the swapped tables.
    let (status, p) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("after-rebuild"))).await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
}
