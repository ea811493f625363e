//! PostgreSQL over TLS: both databases of a deployment whose clusters only accept TLS, with
//! a server certificate from a CA the test creates, reached with `sslmode=verify-full`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tls::TestCa;
use common::*;
use governance_engine::adapters::devstack::{Cluster, LocalStack};
use reqwest::{Method, StatusCode};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// `url` on `localhost` (the certificate's name) with verify-full against `ca`.
fn verify_full(url: &str, ca: &std::path::Path) -> String {
    format!("{}?sslmode=verify-full&sslrootcert={}", url.replace("@127.0.0.1:", "@localhost:"), ca.display())
}

#[tokio::test]
async fn both_databases_are_reached_over_tls_verified_against_the_deployments_ca() {
    let dir = std::env::temp_dir().join(format!("gov-tls-{}", Uuid::new_v4()));
    let pg_bin = std::env::var("AUMOS_GOVERNANCE_PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let stack = LocalStack::up(&dir, std::path::Path::new(&pg_bin), None).await.unwrap();
    let urls = stack.urls();
    governance_engine::app::migrate_all(&urls).await.unwrap();
    let ca = TestCa::new("aumos test CA");
    for c in [Cluster::Primary, Cluster::Audit] {
        stack.enable_tls(c, &ca.server_cert_pem, &ca.server_key_pem, true).unwrap();
        stack.stop(c).unwrap();
        stack.start(c).unwrap();
    }
    let ca_file = ca.ca_file(&dir.join("trust"));
    let other_ca = TestCa::new("someone else's CA").ca_file(&dir.join("other"));

    let plain = format!("{}?sslmode=disable", urls.primary.expose());
    assert!(PgConnection::connect(&plain).await.is_err(), "the cluster refuses connections without TLS");
    let wrong = PgConnection::connect(&verify_full(urls.primary.expose(), &other_ca)).await;
    assert!(wrong.is_err(), "a certificate from a CA we do not trust is refused");
    let mut c = PgConnection::connect(&verify_full(urls.audit_reader.expose(), &ca_file)).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&mut c).await.unwrap();
    assert!(ssl);

    let (primary, writer, reader) = (
        verify_full(urls.primary.expose(), &ca_file),
        verify_full(urls.audit_writer.expose(), &ca_file),
        verify_full(urls.audit_reader.expose(), &ca_file),
    );
    let svc = Service::spawn(
        &[
            ("AUMOS_DATABASE_URL", primary.as_str()),
            ("AUMOS_GOVERNANCE_AUDIT_DB_URL", writer.as_str()),
            ("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", reader.as_str()),
        ],
        &["AUMOS_KAFKA_BOOTSTRAP_SERVERS", "AUMOS_DATABASE_MIGRATION_URL", "AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL"],
    )
    .await;
    let t = Uuid::new_v4();
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(t), Some(&token(t, ADMIN)), Some(&policy_body("tls"))).await;
    assert_eq!(status, StatusCode::CREATED, "a command appends to the audit database and is projected, all over TLS: {body}");
    svc.stop().await;
    stack.stop_all().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
