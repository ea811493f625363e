//! Tenant isolation, over HTTP and in the database itself (as the app role, which RLS
//! applies to; a superuser would bypass it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
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
