//! Tenant-scoped transactions. RLS policies read `app.tenant_id`; setting it with
//! `set_config(.., true)` scopes it to the transaction, so a pooled connection never
//! carries one tenant's setting into another tenant's request.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Sets the tenant for the rest of the current transaction.
pub async fn set_tenant(conn: &mut PgConnection, tenant_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(tenant_id.hyphenated().to_string()).execute(conn).await?;
    Ok(())
}

/// Begins a transaction that sees only `tenant_id`'s rows.
pub async fn begin(pool: &PgPool, tenant_id: Uuid) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, tenant_id).await?;
    Ok(tx)
}
