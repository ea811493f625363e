//! `projections rebuild`: replays the whole ledger into fresh tables, then swaps them in
//! atomically. Readers keep seeing the old tables until the swap, which happens in one
//! transaction under an exclusive lock, so they never see an empty or half-built model.
//!
//! 1. As the schema owner, create `gov_rebuild.<table>` like each live table (indexes,
//!    constraints, RLS policy, grants).
//! 2. Replay the ledger into them (`search_path = gov_rebuild, public`), in batches, without
//!    their secondary indexes (those no constraint or upsert needs), which are then built
//!    once, under the live indexes' names.
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
    #[error("an index definition the rebuild cannot place: {0}")]
    Index(String),
}

/// Replays the ledger from `pos` to `upto` (at most the head) into `conn`, a window of
/// [`BATCH`] seqs at a time, the next window read while one is applied; only the entries
/// of the types the projector handles are read (the chain is gapless, so every seq up to
/// the head is there). Returns the position reached.
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
    let types = projector.aggregate_types();
    // The window after `from`, read while the previous one is applied (the audit cluster
    // reads as the primary writes).
    let read = |from: i64| async move {
        if from >= upto {
            return Ok::<_, crate::adapters::ledger::LedgerError>(None);
        }
        let end = upto.min(from.saturating_add(BATCH));
        Ok(Some((end, reader.events_of_types_between(types, from, end).await?)))
    };
    let mut current = read(pos).await?;
    while let Some((end, batch)) = current.take() {
        let (applied, next) = futures::join!(apply_events(projector, conn, &batch, skip), read(end));
        applied?;
        pos = end;
        progress(pos);
        current = next?;
    }
    Ok(pos)
}

/// The indexes of `schema.table` that back no constraint and are not unique (so no insert
/// or upsert relies on them): `(name, CREATE INDEX statement)`.
async fn secondary_indexes(conn: &mut PgConnection, schema: &str, table: &str) -> Result<Vec<(String, String)>, RebuildError> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
           JOIN pg_namespace n ON n.oid = t.relnamespace \
          WHERE n.nspname = $1 AND t.relname = $2 AND NOT i.indisunique \
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
          ORDER BY c.relname",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?)
}

/// An identifier quoted for SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Rebuilds several projectors at once, each on its own connection (their tables and
/// positions are their own); returns each one's position and time, in the given order.
/// The first error is returned once every rebuild has stopped; the tables of a rebuild
/// that failed were not swapped in.
pub async fn rebuild_all(
    owner_url: &str,
    reader: &LedgerReader,
    projectors: &[std::sync::Arc<dyn Projector>],
    progress: &(dyn Fn(&'static str, i64) + Sync),
) -> Result<Vec<(i64, std::time::Duration)>, RebuildError> {
    // The schema once, first: creating it or changing its grants from several
    // connections at once fails ("tuple concurrently updated").
    let mut conn = PgConnection::connect(owner_url).await?;
    create_schema(&mut conn).await?;
    conn.close().await?;
    let runs = projectors.iter().map(|p| async move {
        let started = std::time::Instant::now();
        let name = p.name();
        rebuild_one(owner_url, reader, p.as_ref(), &|pos| progress(name, pos)).await.map(|pos| (pos, started.elapsed()))
    });
    futures::future::join_all(runs).await.into_iter().collect()
}

async fn create_schema(conn: &mut PgConnection) -> Result<(), RebuildError> {
    sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS gov_rebuild; REVOKE ALL ON SCHEMA gov_rebuild FROM PUBLIC").execute(&mut *conn).await?;
    Ok(())
}

/// Rebuilds one projector's tables, once the schema `gov_rebuild` exists; returns the
/// position the swapped tables reflect.
async fn rebuild_one(
    owner_url: &str,
    reader: &LedgerReader,
    projector: &dyn Projector,
    progress: &dyn Fn(i64),
) -> Result<i64, RebuildError> {
    let skip = crate::application::projection::skipped(reader, projector.name()).await?;
    let mut conn = PgConnection::connect(owner_url).await?;
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
        // Indexes that no constraint or upsert needs are built once, after the bulk of
        // the replay, rather than kept up to date row by row.
        for index in secondary_indexes(&mut conn, "gov_rebuild", t).await? {
            sqlx::raw_sql(&format!("DROP INDEX gov_rebuild.{}", quoted(&index.0))).execute(&mut conn).await?;
        }
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

    // The live table's secondary indexes, under their own names, on the rebuilt table.
    for t in projector.tables() {
        for (name, definition) in secondary_indexes(&mut conn, "public", t).await? {
            // Qualified (`ON public.t`) unless the live table is visible unqualified.
            let Some((head, tail)) =
                definition.split_once(&format!(" ON public.{t} ")).or_else(|| definition.split_once(&format!(" ON {t} ")))
            else {
                return Err(RebuildError::Index(format!("{name}: {definition}")));
            };
            sqlx::raw_sql(&format!("{head} ON gov_rebuild.{t} {tail}")).execute(&mut conn).await?;
        }
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
