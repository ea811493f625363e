//! `projections rebuild`: replays the whole ledger into fresh tables, then swaps them in
//! atomically. Readers keep seeing the old tables until the swap, which happens in one
//! transaction under an exclusive lock, so they never see an empty or half-built model.
//!
//! 1. As the schema owner, create `gov_rebuild.<table>` like each live table (indexes,
//!    constraints, RLS policy, grants).
//! 2. Replay the ledger into them (`search_path = gov_rebuild, public`), in batches.
//! 3. In one transaction: lock the live tables, catch up to the live runner's position,
//!    drop the live tables, move the rebuilt ones into `public`, set the position.
//!    The live runner, blocked meanwhile, then continues on the new tables.
//!
//! Entries the operator decided to skip ([`crate::application::projection::ProjectionEntrySkipped`])
//! are skipped here too, so a rebuild reproduces what the runner built.

use std::collections::HashSet;

use projections::Projector;
use sqlx::{Connection, PgConnection};

use crate::adapters::ledger::LedgerReader;
use crate::application::projection::apply_events;

/// Seqs read per query (at most as many entries).
const BATCH: i64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] crate::adapters::ledger::LedgerError),
    #[error(transparent)]
    Projection(#[from] projections::ProjectionError),
}

/// Replays the ledger from `pos` to `upto` (at most the head) into `conn`, a window of
/// [`BATCH`] seqs at a time; only the entries of the types the projector handles are read
/// (the chain is gapless, so every seq up to the head is there). Returns the position
/// reached.
async fn replay(
    conn: &mut PgConnection,
    reader: &LedgerReader,
    projector: &dyn Projector,
    mut pos: i64,
    upto: i64,
    skip: &HashSet<i64>,
    progress: &dyn Fn(i64),
) -> Result<i64, RebuildError> {
    let upto = upto.min(reader.head_seq().await?);
    while pos < upto {
        let end = upto.min(pos.saturating_add(BATCH));
        let batch = reader.events_of_types_between(projector.aggregate_types(), pos, end).await?;
        apply_events(projector, conn, &batch, skip).await?;
        pos = end;
        progress(pos);
    }
    Ok(pos)
}

/// Rebuilds one projector's tables; returns the position the swapped tables reflect.
pub async fn rebuild(
    owner_url: &str,
    reader: &LedgerReader,
    projector: &dyn Projector,
    progress: &dyn Fn(i64),
) -> Result<i64, RebuildError> {
    let skip = crate::application::projection::skipped(reader, projector.name()).await?;
    let mut conn = PgConnection::connect(owner_url).await?;
    sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS gov_rebuild; REVOKE ALL ON SCHEMA gov_rebuild FROM PUBLIC").execute(&mut conn).await?;
    for t in projector.tables() {
        // Table names are compile-time constants of the projectors, never input.
        let ddl = format!(
            "DROP TABLE IF EXISTS gov_rebuild.{t}; CREATE TABLE gov_rebuild.{t} (LIKE public.{t} INCLUDING ALL); \
             ALTER TABLE gov_rebuild.{t} ENABLE ROW LEVEL SECURITY; ALTER TABLE gov_rebuild.{t} FORCE ROW LEVEL SECURITY; \
             CREATE POLICY gov_tenant_isolation ON gov_rebuild.{t} USING (tenant_id = public.gov_current_tenant()) \
             WITH CHECK (tenant_id = public.gov_current_tenant()); \
             REVOKE ALL ON gov_rebuild.{t} FROM PUBLIC; GRANT SELECT, INSERT, UPDATE, DELETE ON gov_rebuild.{t} TO gov_app;"
        );
        sqlx::raw_sql(&ddl).execute(&mut conn).await?;
    }
    sqlx::raw_sql("SET search_path = gov_rebuild, public; SET synchronous_commit = off").execute(&mut conn).await?;
    let mut pos = 0;
    loop {
        let mut tx = conn.begin().await?;
        let next = replay(&mut tx, reader, projector, pos, pos + BATCH * 4, &skip, progress).await?;
        tx.commit().await?;
        if next == pos {
            break;
        }
        pos = next;
    }

    // The swap.
    sqlx::raw_sql("SET synchronous_commit = on").execute(&mut conn).await?;
    let mut tx = conn.begin().await?;
    let live: Vec<String> = projector.tables().iter().map(|t| format!("public.{t}")).collect();
    sqlx::raw_sql(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", "))).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO public.gov_projection_positions (projection, position) VALUES ($1, 0) ON CONFLICT (projection) DO NOTHING")
        .bind(projector.name())
        .execute(&mut *tx)
        .await?;
    let live_pos: i64 = sqlx::query_scalar("SELECT position FROM public.gov_projection_positions WHERE projection = $1 FOR UPDATE")
        .bind(projector.name())
        .fetch_one(&mut *tx)
        .await?;
    let target = replay(&mut tx, reader, projector, pos, live_pos.max(pos), &skip, progress).await?.max(pos);
    for t in projector.tables() {
        sqlx::raw_sql(&format!("DROP TABLE public.{t}; ALTER TABLE gov_rebuild.{t} SET SCHEMA public")).execute(&mut *tx).await?;
    }
    sqlx::query("UPDATE public.gov_projection_positions SET position = $1, updated_at = now() WHERE projection = $2")
        .bind(target)
        .bind(projector.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(target)
}
