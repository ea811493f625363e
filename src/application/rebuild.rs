//! `projections rebuild`: replays the whole ledger into fresh tables, then swaps them in
//! atomically. Readers keep seeing the old tables until the swap, which happens in one
//! transaction under an exclusive lock, so they never see an empty or half-built model.
//!
//! 1. As the schema owner, create `gov_rebuild.<table>` like each live table (indexes,
//!    constraints, RLS policy, grants).
//! 2. Replay the ledger into them (`search_path = gov_rebuild, public`), in windows of
//!    seqs, without their secondary indexes (those no constraint or upsert needs), which
//!    are then built once, under the live indexes' names. One feed reads each window once
//!    for every projector being rebuilt, each on its own task and connection. An
//!    [order-free](Projector::order_free) projector's windows are shared out among
//!    [`LANES`] connections and loaded with [`Projector::apply_bulk`] (binary `COPY` for
//!    decisions) into tables whose row-level security is forced once they are filled.
//!    Then, outside any lock, the entries appended since the feed's head, until fewer
//!    than a window's worth were left.
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
use crate::application::apply::{apply_events, records};

#[path = "rebuild_indexes.rs"]
mod indexes;
use indexes::{placed, quoted, secondary_indexes, storage_options, unique_index_names};

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
    #[error("the ledger feed stopped at seq {0}")]
    FeedStopped(i64),
    #[error("a rebuild task failed: {0}")]
    Task(String),
    #[error("{0} has no row-level security policy to copy")]
    Policy(String),
}

/// Replays the ledger from `pos` to `upto` (at most the head) into `conn`, a window of
/// [`BATCH`] seqs at a time; only the entries of the types the projector handles are read
/// (the chain is gapless, so every seq up to the head is there). Returns the position
/// reached. The catch-up on entries appended after the shared feed's head ([`feed`]),
/// outside the swap's lock and then in it.
async fn replay(
    conn: &mut PgConnection,
    reader: &LedgerReader,
    projector: &dyn Projector,
    mut pos: i64,
    upto: i64,
    skip: &HashSet<i64>,
    progress: &(dyn Fn(i64) + Sync),
) -> Result<i64, RebuildError> {
    let upto = upto.min(reader.head_seq().await?);
    while pos < upto {
        let end = upto.min(pos.saturating_add(BATCH));
        let batch = records(&reader.events_of_types_between(projector.aggregate_types(), pos, end).await?);
        apply_events(projector, conn, &batch, skip, false).await?;
        pos = end;
        progress(pos);
    }
    Ok(pos)
}

/// Runs `sql` (one or more statements, no parameters) on `conn`: the simple-query
/// protocol, as `raw_sql` would, in a future the rebuild's tasks can move between threads.
async fn statements(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, sql).await.map(drop)
}

/// Runs each statement of `sqls` on `conn`, in turn.
async fn build<'a>(conn: &mut PgConnection, sqls: impl Iterator<Item = &'a String>) -> Result<(), sqlx::Error> {
    for sql in sqls {
        statements(conn, sql).await?;
    }
    Ok(())
}

/// A row of `pg_policies`: name, permissive, command, roles, USING and WITH CHECK.
type PolicyRow = (String, String, String, Vec<String>, Option<String>, Option<String>);

/// The live table's row-level security policies, restated for its copy in `gov_rebuild`:
/// the copy is isolated by exactly what the migrations define, read back from
/// `pg_policies`, not by a second statement of it here. A table without one is refused
/// (forced row-level security without a policy would hide every row once swapped in).
async fn row_security_policies(conn: &mut PgConnection, table: &str) -> Result<String, RebuildError> {
    let rows: Vec<PolicyRow> = sqlx::query_as(
        "SELECT policyname::text, permissive, cmd, roles::text[], qual, with_check FROM pg_policies \
          WHERE schemaname = 'public' AND tablename = $1 ORDER BY policyname",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(RebuildError::Policy(table.to_owned()));
    }
    let role = |r: &String| if r == "public" { r.clone() } else { quoted(r) };
    Ok(rows
        .iter()
        .map(|(name, permissive, cmd, roles, using, check)| {
            let roles = roles.iter().map(role).collect::<Vec<_>>().join(", ");
            let using = using.as_ref().map(|q| format!(" USING ({q})")).unwrap_or_default();
            let check = check.as_ref().map(|q| format!(" WITH CHECK ({q})")).unwrap_or_default();
            format!("CREATE POLICY {} ON gov_rebuild.{table} AS {permissive} FOR {cmd} TO {roles}{using}{check};", quoted(name))
        })
        .collect())
}

/// Connections an order-free projector ([`Projector::order_free`]) is rebuilt on.
const LANES: usize = 2;

/// Windows the feed reads at once.
const READS: usize = 2;

/// Windows queued for each connection (lane) of a rebuild: the feed waits when the
/// slowest one's queue is full.
const AHEAD: usize = 2;

/// A window of the ledger as the feed shares it: the seq it reaches and its entries.
type Window = (i64, std::sync::Arc<Vec<projections::EventRecord>>);

/// Rebuilds several projectors at once, each on its own connection and task (their
/// tables and positions are their own), fed by one read of the ledger: each window of
/// [`BATCH`] seqs up to the head is read once, for all of them, and shared. Returns each
/// one's position and time, in the given order. The first error is returned once every
/// rebuild has stopped; the tables of a rebuild that failed were not swapped in.
pub async fn rebuild_all(
    owner_url: &str,
    reader: &LedgerReader,
    projectors: &[std::sync::Arc<dyn Projector>],
    progress: &(dyn Fn(&'static str, i64) + Sync),
) -> Result<Vec<(i64, std::time::Duration)>, RebuildError> {
    rebuild_all_in_windows(owner_url, reader, projectors, BATCH, progress).await
}

/// [`rebuild_all`], reading `window` seqs at a time (tests use small windows to spread a
/// small ledger over many windows and lanes).
pub async fn rebuild_all_in_windows(
    owner_url: &str,
    reader: &LedgerReader,
    projectors: &[std::sync::Arc<dyn Projector>],
    window: i64,
    progress: &(dyn Fn(&'static str, i64) + Sync),
) -> Result<Vec<(i64, std::time::Duration)>, RebuildError> {
    // The schema once, first: creating it or changing its grants from several
    // connections at once fails ("tuple concurrently updated").
    let mut conn = PgConnection::connect(owner_url).await?;
    create_schema(&mut conn).await?;
    conn.close().await?;
    let head = reader.head_seq().await?;
    let mut types: Vec<&'static str> = projectors.iter().flat_map(|p| p.aggregate_types().iter().copied()).collect();
    types.sort_unstable();
    types.dedup();
    // Both sets abort their tasks when dropped: nothing outlives this future.
    let mut tasks = tokio::task::JoinSet::new();
    let mut feeding = tokio::task::JoinSet::new();
    // Progress is a report, not a record: when the queue is full an update is dropped.
    let (moved, mut moves) = tokio::sync::mpsc::channel(64);
    let mut feeds = Vec::new();
    for (i, p) in projectors.iter().enumerate() {
        let lanes = if p.order_free() { LANES } else { 1 };
        let (lane_feeds, windows): (Vec<_>, Vec<_>) = (0..lanes).map(|_| tokio::sync::mpsc::channel::<Window>(AHEAD)).unzip();
        feeds.push(lane_feeds);
        let (owner_url, reader, p, moved) = (owner_url.to_owned(), reader.clone(), p.clone(), moved.clone());
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let name = p.name();
            let report = move |pos| {
                let _ = moved.try_send((name, pos));
            };
            let done = rebuild_one(&owner_url, &reader, p.as_ref(), (windows, head), &report).await;
            (i, done.map(|pos| (pos, started.elapsed())))
        });
    }
    drop(moved);
    feeding.spawn(feed(reader.clone(), (types, window, head), feeds));
    let mut done: Vec<Option<Result<(i64, std::time::Duration), RebuildError>>> = projectors.iter().map(|_| None).collect();
    loop {
        tokio::select! {
            Some((name, pos)) = moves.recv() => progress(name, pos),
            joined = tasks.join_next() => match joined {
                Some(Ok((i, result))) => done[i] = Some(result),
                // Its slot stays empty (an error below); the others run to their end.
                Some(Err(e)) => tracing::error!(error = %e, "a rebuild task panicked"),
                None => break,
            },
        }
    }
    while let Ok((name, pos)) = moves.try_recv() {
        progress(name, pos);
    }
    // Every rebuild has stopped, so the feed has (its windows are refused); a read error
    // of its own stopped them first.
    match feeding.join_next().await {
        Some(Ok(Err(e))) => return Err(e),
        Some(Err(e)) => return Err(RebuildError::Task(e.to_string())),
        Some(Ok(Ok(()))) | None => {}
    }
    done.into_iter()
        .map(|d| d.unwrap_or_else(|| Err(RebuildError::Task("a rebuild ended without a result (it panicked)".into()))))
        .collect()
}

/// Reads the ledger up to `head`, `window` seqs at a time (only entries of `types`),
/// decodes each window once on a blocking thread (every projector's
/// [`projections::EventRecord::decode`] then finds it done), and shares each window with
/// every rebuild still taking them (the k-th window goes to the
/// k-th of a rebuild's lanes, in turn), at most [`AHEAD`] windows ahead of the slowest.
/// Stops early once none takes them.
async fn feed(
    reader: LedgerReader,
    (types, window, head): (Vec<&'static str>, i64, i64),
    mut feeds: Vec<Vec<tokio::sync::mpsc::Sender<Window>>>,
) -> Result<(), RebuildError> {
    use futures::StreamExt;
    let window = window.max(1);
    let starts = (0..head).step_by(usize::try_from(window).unwrap_or(1));
    let (reader, types) = (&reader, &types);
    // [`READS`] windows are read at once (each on a pooled connection), taken in order.
    let mut windows = futures::stream::iter(starts)
        .map(|from| async move {
            let end = head.min(from.saturating_add(window));
            let entries = reader.events_of_types_between(types, from, end).await?;
            // Decoded once here, for every projector, off the runtime's workers.
            let decoded = tokio::task::spawn_blocking(move || {
                let decoded = records(&entries);
                decoded.iter().for_each(projections::EventRecord::decode_ahead);
                decoded
            })
            .await
            .map_err(|e| RebuildError::Task(format!("decoding a window of the ledger: {e}")))?;
            Ok::<_, RebuildError>((end, std::sync::Arc::new(decoded)))
        })
        .buffered(READS);
    let mut k = 0usize;
    while let Some(window) = windows.next().await {
        let (end, window) = window?;
        let mut open = Vec::with_capacity(feeds.len());
        for f in feeds {
            if f[k % f.len()].send((end, window.clone())).await.is_ok() {
                open.push(f);
            }
        }
        feeds = open;
        if feeds.is_empty() {
            break;
        }
        k += 1;
    }
    Ok(())
}

async fn create_schema(conn: &mut PgConnection) -> Result<(), RebuildError> {
    statements(conn, "CREATE SCHEMA IF NOT EXISTS gov_rebuild; REVOKE ALL ON SCHEMA gov_rebuild FROM PUBLIC").await?;
    Ok(())
}

/// Windows applied per transaction.
const WINDOWS_PER_TRANSACTION: usize = 4;

/// Seqs applied per transaction when a rebuild catches up on entries appended after the
/// feed's head.
const CATCH_UP: i64 = BATCH * 4;

/// How a connection fills the `gov_rebuild` tables.
const FILLING: &str = "SET search_path = gov_rebuild, public; SET synchronous_commit = off";

/// Applies the windows of one lane: a transaction begins once a window has arrived and
/// takes the windows already waiting, up to [`WINDOWS_PER_TRANSACTION`], then commits, so
/// no transaction stays open while the lane waits for the feed (which moves at the pace of
/// the slowest rebuild). Returns the seq the last window reached.
async fn fill(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    mut windows: tokio::sync::mpsc::Receiver<Window>,
    skip: &HashSet<i64>,
    progress: &(dyn Fn(i64) + Sync),
) -> Result<i64, RebuildError> {
    let mut pos = 0;
    while let Some(first) = windows.recv().await {
        let mut tx = conn.begin().await?;
        let (mut next, mut taken) = (Some(first), 0);
        while let Some((end, batch)) = next.take() {
            apply_events(projector, &mut tx, &batch, skip, projector.order_free()).await?;
            pos = end;
            progress(pos);
            taken += 1;
            if taken < WINDOWS_PER_TRANSACTION {
                next = windows.try_recv().ok();
            }
        }
        tx.commit().await?;
    }
    Ok(pos)
}

/// Rebuilds one projector's tables (see [`fill_and_swap`]); when that fails, drops its
/// copies in `gov_rebuild` (best effort: a cancelled rebuild leaves them to the next one,
/// which drops them first), so none stays behind unforced or stale.
async fn rebuild_one(
    owner_url: &str,
    reader: &LedgerReader,
    projector: &dyn Projector,
    feed: (Vec<tokio::sync::mpsc::Receiver<Window>>, i64),
    progress: &(dyn Fn(i64) + Sync),
) -> Result<i64, RebuildError> {
    let result = fill_and_swap(owner_url, reader, projector, feed, progress).await;
    if result.is_err() {
        let dropped = async {
            let mut conn = PgConnection::connect(owner_url).await?;
            let drops: String = projector.tables().iter().map(|t| format!("DROP TABLE IF EXISTS gov_rebuild.{t};")).collect();
            statements(&mut conn, &drops).await?;
            conn.close().await
        };
        if let Err(e) = dropped.await {
            tracing::warn!(projection = projector.name(), error = %e, "could not drop a failed rebuild's tables in gov_rebuild");
        }
    }
    result
}

/// Rebuilds one projector's tables, once the schema `gov_rebuild` exists, from the
/// windows of the shared feed, then the entries appended since, then (in the swap) those
/// appended meanwhile; returns the position the swapped tables reflect.
async fn fill_and_swap(
    owner_url: &str,
    reader: &LedgerReader,
    projector: &dyn Projector,
    (windows, head): (Vec<tokio::sync::mpsc::Receiver<Window>>, i64),
    progress: &(dyn Fn(i64) + Sync),
) -> Result<i64, RebuildError> {
    let skip = crate::application::projection::skipped(reader, projector.name()).await?;
    let mut conn = PgConnection::connect(owner_url).await?;
    // An order-free projector's tables are filled with row-level security not yet forced
    // ([`Projector::apply_bulk`]: it reads nothing, and COPY refuses a table with forced
    // row-level security); forced before anything else is applied to them.
    let force = |t: &str| format!("ALTER TABLE gov_rebuild.{t} FORCE ROW LEVEL SECURITY;");
    for t in projector.tables() {
        // Table names are compile-time constants of the projectors, never input.
        let forced = if projector.order_free() { String::new() } else { force(t) };
        let policies = row_security_policies(&mut conn, t).await?;
        let options = storage_options(&mut conn, t).await?;
        let ddl = format!(
            "DROP TABLE IF EXISTS gov_rebuild.{t}; CREATE TABLE gov_rebuild.{t} (LIKE public.{t} INCLUDING ALL); {options} \
             ALTER TABLE gov_rebuild.{t} ENABLE ROW LEVEL SECURITY; {forced} {policies} \
             REVOKE ALL ON gov_rebuild.{t} FROM PUBLIC; GRANT SELECT, INSERT, UPDATE, DELETE ON gov_rebuild.{t} TO gov_app;"
        );
        statements(&mut conn, &ddl).await?;
        let renames = unique_index_names(&mut conn, t).await?;
        if !renames.is_empty() {
            statements(&mut conn, &renames).await?;
        }
        // Indexes that no constraint or upsert needs are built once, after the bulk of
        // the replay, rather than kept up to date row by row.
        for index in secondary_indexes(&mut conn, "gov_rebuild", t).await? {
            statements(&mut conn, &format!("DROP INDEX gov_rebuild.{}", quoted(&index.0))).await?;
        }
    }
    // The windows: on one connection, or on one per lane, each taking every n-th window.
    statements(&mut conn, FILLING).await?;
    let mut lanes = vec![conn];
    for _ in 1..windows.len() {
        let mut lane = PgConnection::connect(owner_url).await?;
        statements(&mut lane, FILLING).await?;
        lanes.push(lane);
    }
    // Lanes reach their windows out of step: only a new furthest seq is reported.
    let furthest = std::sync::atomic::AtomicI64::new(0);
    let reached = |pos: i64| {
        if furthest.fetch_max(pos, std::sync::atomic::Ordering::Relaxed) < pos {
            progress(pos);
        }
    };
    let filled = lanes.iter_mut().zip(windows).map(|(c, w)| fill(c, projector, w, &skip, &reached));
    let pos = futures::future::try_join_all(filled).await?.into_iter().max().unwrap_or(0);
    if pos < head {
        // The feed stopped early (its error is rebuild_all's): nothing is swapped in.
        return Err(RebuildError::FeedStopped(pos));
    }
    if projector.order_free() {
        statements(&mut lanes[0], &projector.tables().iter().map(|t| force(t)).collect::<String>()).await?;
    }
    // Entries appended since the feed's head, outside the swap's lock, until fewer than
    // a window's worth were left (under steady appends it is never fully caught up): the
    // swap then applies only those and what arrives while the indexes are built.
    let mut pos = pos;
    loop {
        let mut tx = lanes[0].begin().await?;
        let next = replay(&mut tx, reader, projector, pos, pos.saturating_add(CATCH_UP), &skip, progress).await?;
        tx.commit().await?;
        let applied = next - pos;
        pos = next;
        if applied < BATCH {
            break;
        }
    }

    // The live table's secondary indexes, under their own names, on the rebuilt table,
    // shared out among the lanes.
    let mut indexes = Vec::new();
    for t in projector.tables() {
        for (name, definition) in secondary_indexes(&mut lanes[0], "public", t).await? {
            indexes.push(placed(&name, &definition, t)?);
        }
    }
    let n = lanes.len();
    let builds = lanes.iter_mut().enumerate().map(|(i, c)| build(c, indexes.iter().skip(i).step_by(n)));
    futures::future::try_join_all(builds).await?;
    let mut conn = lanes.swap_remove(0);
    for lane in lanes {
        lane.close().await?;
    }

    // The swap.
    statements(&mut conn, "SET synchronous_commit = on").await?;
    let mut tx = conn.begin().await?;
    let live: Vec<String> = projector.tables().iter().map(|t| format!("public.{t}")).collect();
    statements(&mut tx, &format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", "))).await?;
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
        statements(&mut tx, &format!("DROP TABLE public.{t}; ALTER TABLE gov_rebuild.{t} SET SCHEMA public")).await?;
    }
    sqlx::query("UPDATE public.gov_projection_positions SET position = $1, updated_at = now() WHERE projection = $2")
        .bind(target)
        .bind(projector.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(target)
}
