//! Applies the SQL migrations of both databases.
//!
//! sqlx's migrator would record its progress in `_sqlx_migrations`; the platform wants
//! every table prefixed `gov_`, so the files are parsed by `sqlx::migrate!` but applied
//! here and recorded in `gov_schema_migrations`. Each migration runs in one transaction,
//! and an advisory lock keeps two migrators from racing.

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

pub static PRIMARY: Migrator = sqlx::migrate!("./migrations");
pub static AUDIT: Migrator = sqlx::migrate!("./audit-schema");

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{database}: {source}")]
    Database {
        database: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{database}: migration {version} was changed after it was applied")]
    Changed { database: &'static str, version: i64 },
}

/// Applies every pending migration; returns how many were applied.
pub async fn run(database: &'static str, url: &str, migrator: &Migrator) -> Result<usize, MigrateError> {
    let e = |source| MigrateError::Database { database, source };
    let mut conn = PgConnection::connect(url).await.map_err(e)?;
    sqlx::query("SELECT pg_advisory_lock(7357000000000002)").execute(&mut conn).await.map_err(e)?;
    let result = apply(database, &mut conn, migrator).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(7357000000000002)").execute(&mut conn).await;
    result
}

async fn apply(database: &'static str, conn: &mut PgConnection, migrator: &Migrator) -> Result<usize, MigrateError> {
    let e = |source| MigrateError::Database { database, source };
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS gov_schema_migrations (version bigint PRIMARY KEY, description text NOT NULL, \
         checksum bytea NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await
    .map_err(e)?;
    let mut applied = 0;
    for m in migrator.iter() {
        let existing: Option<Vec<u8>> = sqlx::query_scalar("SELECT checksum FROM gov_schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(e)?;
        match existing {
            Some(sum) if sum == m.checksum.as_ref() => continue,
            Some(_) => return Err(MigrateError::Changed { database, version: m.version }),
            None => {}
        }
        let mut tx = conn.begin().await.map_err(e)?;
        sqlx::raw_sql(m.sql.as_ref()).execute(&mut *tx).await.map_err(e)?;
        sqlx::query("INSERT INTO gov_schema_migrations (version, description, checksum) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.description.as_ref())
            .bind(m.checksum.as_ref())
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        applied += 1;
    }
    Ok(applied)
}
