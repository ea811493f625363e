//! Group commit: one appender task per process gathers concurrent appends into a single
//! transaction (one lock, one flush) and answers each caller with its seq and hash only
//! after the commit is durable.
//!
//! One batch is in flight at a time. Pipelining was measured and left out (session 21):
//! a second batch inserted on another connection while the first commits, its chain check
//! waiting on an advisory lock the first held until it ended. On this project's 2-core
//! machine, in interleaved A/B runs, it gave no gain at 128 appends in flight (36,961 and
//! 34,887 entries/s against 37,082 and 37,322 with 4 batches in flight; 32,513 and 36,954
//! with 2) and fewer evaluations at 16 clients (2,352 and 2,293/s against 2,682 and
//! 2,570). Each batch then takes three round trips instead of one, and samples of
//! pg_stat_activity found the second batch mostly waiting on the first's lock.
//!
//! Two more were measured and left out (session 30). At 128 appends in flight, batches
//! hold ~82 entries, and one caller appending full batches of 128 gets ~1.3x the
//! entries/s (`make bench-ledger`: 24,071 against 18,736 in one run). Yielding again while
//! each yield brought more requests filled those batches to ~126 entries, but not faster:
//! each took longer in proportion (20,124 and 20,788 entries/s against 21,632 and 17,172,
//! ABBA). Running the appender on a runtime of its own, away from its callers, gave no
//! gain beyond the noise (25,560 and 22,370 against 24,031 and 18,212).
//!
//! Nor a thread of its own (session 31): the appender on a current-thread runtime, its
//! connections opened there so that PostgreSQL's replies wake it at once rather than
//! when a busy worker of the shared runtime next polls for I/O. ABBA against this
//! design: 128 in flight 21,683 and 18,647 entries/s against 19,933 and 17,987 (noise);
//! 8 writers 7,031 and 5,716 against 7,543 and 7,700; evaluations at 16 clients 2,405
//! and 2,680/s against 2,944 and 2,453, with batches of 4.8 entries against 5.8. Every
//! append then crosses threads twice, which small batches pay for.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use ledger::LedgerEntry;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::recent::RecentEntries;
use super::{Appended, LedgerError, NewEntry};

/// Upper bound of entries in one transaction: keeps a commit well under a millisecond
/// of CPU and bounds the memory held for callers.
const MAX_BATCH_ENTRIES: usize = 2000;

/// The default upper bound of a transaction's entries, in bytes as the entry limit
/// measures them (`AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES`; a request larger than the bound is a batch
/// of its own: requests are never split). Entries near the entry limit (4 MiB by default)
/// would otherwise fill a batch of 2,000 with gigabytes: more than PostgreSQL takes in one
/// parameter (1 GB), failing every caller of the batch, and an append lock held for as
/// long as hashing and sending them takes.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 8 * 1024 * 1024;

struct Request {
    entries: Vec<NewEntry>,
    /// The entries' sizes as [`crate::application::limits::check_entry`] measured them.
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<Appended>, LedgerError>>,
}

/// A cheap, cloneable handle for appending to the ledger.
#[derive(Debug, Clone)]
pub struct AppenderHandle {
    tx: mpsc::Sender<Request>,
    head: watch::Receiver<i64>,
    recent: RecentEntries,
    entry_max_bytes: usize,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("entries", &self.entries.len()).finish()
    }
}

impl AppenderHandle {
    /// Appends entries atomically (all or none) and returns where they landed, once durable.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<Appended>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // What every read model and the relay can hold, checked before anything is written.
        let mut bytes = 0usize;
        for e in &entries {
            bytes = bytes.saturating_add(crate::application::limits::check_entry(e, self.entry_max_bytes)?);
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request { entries, bytes, reply }).await.map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Refuses entries larger than `max` bytes (see [`crate::application::limits::entry_message_bytes`]).
    pub fn with_entry_max_bytes(mut self, max: usize) -> Self {
        self.entry_max_bytes = max;
        self
    }

    /// The highest seq this process has committed; changes wake tailing readers early.
    pub fn head(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// The entries this process committed last (see [`RecentEntries`]); they are held
    /// there before [`AppenderHandle::head`] moves past them.
    pub fn recent(&self) -> RecentEntries {
        self.recent.clone()
    }
}

/// The appender task. Dropping every [`AppenderHandle`] lets it drain its queue and stop;
/// [`Appender::join`] waits for that, which is how shutdown flushes the ledger.
#[derive(Debug)]
pub struct Appender {
    task: JoinHandle<()>,
}

impl Appender {
    /// Starts the task; its transactions hold at most `batch_max_bytes` of entries
    /// (see [`DEFAULT_BATCH_MAX_BYTES`]).
    pub fn start(pool: PgPool, batch_max_bytes: usize) -> (Appender, AppenderHandle) {
        let (tx, rx) = mpsc::channel::<Request>(4096);
        let (head_tx, head_rx) = watch::channel(0i64);
        let recent = RecentEntries::default();
        let task = tokio::spawn(run(pool, rx, head_tx, recent.clone(), batch_max_bytes));
        (
            Appender { task },
            AppenderHandle { tx, head: head_rx, recent, entry_max_bytes: crate::application::limits::DEFAULT_LEDGER_ENTRY_MAX_BYTES },
        )
    }

    /// Waits until every queued append has been committed or answered.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "ledger appender task failed");
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Request>, head: watch::Sender<i64>, recent: RecentEntries, max_bytes: usize) {
    let mut cached: Option<Head> = None;
    // A request taken from the queue that did not fit the last batch: the next one's first.
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => break,
            },
        };
        let mut batch = Batch::of(first, max_bytes);
        carried = batch.gather(&mut rx);
        // Callers answered by the last commit are often about to append again (their tasks
        // are woken, not yet run). One yield lets them queue before this batch is sealed:
        // with 8 writers, one append in flight each, batches hold ~7.7 entries instead of
        // ~4.2 and appends go ~1.4x faster (`make bench-ledger`). It costs a queue poll,
        // not a timer: an append alone is not held back.
        if carried.is_none() && batch.entries < MAX_BATCH_ENTRIES {
            tokio::task::yield_now().await;
            carried = batch.gather(&mut rx);
        }
        let (batch, size, bytes) = (batch.requests, batch.entries, batch.bytes);
        let started = std::time::Instant::now();
        match commit_batch(&pool, &batch, &mut cached).await {
            Ok((outcomes, stored)) => {
                crate::adapters::metrics::get().ledger_append(size, bytes, started.elapsed());
                recent.committed(stored);
                let mut top = None;
                for (req, outcome) in batch.into_iter().zip(outcomes) {
                    if let Ok(appended) = &outcome {
                        top = appended.last().map(|a| a.seq).or(top);
                    }
                    let _ = req.reply.send(outcome);
                }
                if let Some(seq) = top {
                    head.send_if_modified(|h| {
                        let changed = seq > *h;
                        *h = (*h).max(seq);
                        changed
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entries = size, "ledger append failed; nothing was stored");
                for req in batch {
                    let _ = req.reply.send(Err(LedgerError::Unavailable(e.to_string())));
                }
                // A short pause keeps a dead database from being hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The requests of one transaction, within [`MAX_BATCH_ENTRIES`] and `max_bytes` of
/// entries (measured as the entry limit measures them; its first request whatever its size).
struct Batch {
    requests: Vec<Request>,
    entries: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Batch {
    fn of(first: Request, max_bytes: usize) -> Self {
        Batch { entries: first.entries.len(), bytes: first.bytes, requests: vec![first], max_bytes }
    }

    /// Adds the requests already queued while they fit; returns the first that did not
    /// (taken from the queue: it opens the next batch).
    fn gather(&mut self, rx: &mut mpsc::Receiver<Request>) -> Option<Request> {
        while self.entries < MAX_BATCH_ENTRIES {
            let Ok(r) = rx.try_recv() else { return None };
            if self.bytes.saturating_add(r.bytes) > self.max_bytes {
                return Some(r);
            }
            self.entries += r.entries.len();
            self.bytes += r.bytes;
            self.requests.push(r);
        }
        None
    }
}

type Outcomes = Vec<Result<Vec<Appended>, LedgerError>>;

/// The chain head this appender last committed or read: (seq, hash).
type Head = (i64, [u8; 32]);

/// Commits one batch. The outer error means nothing was stored; the inner results say,
/// per request, whether it was appended or lost an optimistic-concurrency race.
///
/// Fast path: with a known head, the whole batch is one autocommit INSERT (one round trip;
/// no wait for the append lock: the chain check at the end of the statement, `gov_ledger_check_chain` in
/// audit-schema/, refuses the batch unless its rows follow each other and the head).
/// If another process appended meanwhile, or an entry conflicts, that statement fails as
/// a whole and the careful path runs: lock, read the head and the conflicts, insert.
///
/// The fast path yields to a careful one: its INSERT takes the append lock shared, without
/// waiting, before its first row ([`Gate::YieldToCareful`]); while another process's
/// careful path holds the lock it inserts nothing and goes careful too, queueing behind
/// it. Without that, a process whose batches take milliseconds to hash and send (entries
/// near the size limit) lost the next seq on every careful attempt to another process's
/// fast appends and failed closed (`ledger_concurrency` proves the fix).
async fn commit_batch(pool: &PgPool, batch: &[Request], cached: &mut Option<Head>) -> Result<(Outcomes, Vec<LedgerEntry>), sqlx::Error> {
    if let Some(head) = *cached {
        let rejected = claimed_twice(batch, &[]);
        if !rejected.iter().any(|r| *r) {
            let (entries, outcomes, new_head) = plan(batch, head, &rejected);
            match insert(pool, &entries, Gate::YieldToCareful).await {
                Ok(true) => {
                    *cached = Some(new_head);
                    return Ok((outcomes, entries));
                }
                // A careful path holds the lock: nothing was inserted.
                Ok(false) => {}
                Err(e) if is_stale_or_conflict(&e) => {}
                Err(e) => {
                    *cached = None;
                    return Err(e);
                }
            }
        }
    }
    *cached = None;
    // The careful path takes the append lock and reads the head. Taking it waits for every
    // fast path holding it shared to end, and stops new ones, so the head read stays the
    // head. An INSERT that skips the lock (a process of an older release, during a rolling
    // upgrade) may still take the next seq first; then the head is read again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match commit_carefully(pool, batch).await {
            Ok((outcomes, entries, head)) => {
                *cached = Some(head);
                return Ok((outcomes, entries));
            }
            Err(e) if attempt < CAREFUL_ATTEMPTS && is_stale_or_conflict(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How often the careful path reads the head again after losing a race for a seq.
const CAREFUL_ATTEMPTS: u32 = 8;

async fn commit_carefully(pool: &PgPool, batch: &[Request]) -> Result<(Outcomes, Vec<LedgerEntry>, Head), sqlx::Error> {
    let all: Vec<&NewEntry> = batch.iter().flat_map(|r| r.entries.iter()).collect();
    let types: Vec<&str> = all.iter().map(|e| e.aggregate_type.as_str()).collect();
    let ids: Vec<&str> = all.iter().map(|e| e.aggregate_id.as_str()).collect();
    let seqs: Vec<i64> = all.iter().map(|e| e.aggregate_seq).collect();
    let mut tx = pool.begin().await?;
    let (head_seq, head_hash, conflicts): (i64, Vec<u8>, Vec<i32>) =
        sqlx::query_as("SELECT head_seq, head_hash, conflicts FROM gov_ledger_begin_append($1, $2, $3)")
            .bind(&types)
            .bind(&ids)
            .bind(&seqs)
            .fetch_one(&mut *tx)
            .await?;
    let head_hash: [u8; 32] =
        head_hash.as_slice().try_into().map_err(|_| sqlx::Error::Protocol("ledger head hash is not 32 bytes".into()))?;
    let rejected = claimed_twice(batch, &conflicts);
    let (entries, outcomes, new_head) = plan(batch, (head_seq, head_hash), &rejected);
    if !entries.is_empty() {
        insert(&mut *tx, &entries, Gate::Held).await?;
    }
    tx.commit().await?;
    Ok((outcomes, entries, new_head))
}

/// The insert failed because the head moved (chain check) or an aggregate position is
/// taken (unique key): both are answered by the careful path, not by failing callers.
fn is_stale_or_conflict(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else { return false };
    matches!(
        db.constraint(),
        Some("gov_audit_trail_entries_chain" | "gov_audit_trail_entries_aggregate_key" | "gov_audit_trail_entries_pkey")
    )
}

/// Which requests lose: any entry already stored (`conflicts`: 1-based indexes over the
/// batch's entries), or an aggregate position an earlier request of the batch claims.
fn claimed_twice(batch: &[Request], conflicts: &[i32]) -> Vec<bool> {
    let mut claimed = std::collections::HashSet::new();
    let mut index = 0usize;
    let mut rejected = vec![false; batch.len()];
    for (ri, req) in batch.iter().enumerate() {
        for e in &req.entries {
            index += 1;
            let exists = conflicts.iter().any(|c| usize::try_from(*c).ok() == Some(index));
            if exists || claimed.contains(&(e.aggregate_type.as_str(), e.aggregate_id.as_str(), e.aggregate_seq)) {
                rejected[ri] = true;
            }
        }
        if !rejected[ri] {
            for e in &req.entries {
                claimed.insert((e.aggregate_type.as_str(), e.aggregate_id.as_str(), e.aggregate_seq));
            }
        }
    }
    rejected
}

/// Assigns seqs and hashes from `head` to the requests that are not rejected.
fn plan(batch: &[Request], head: Head, rejected: &[bool]) -> (Vec<LedgerEntry>, Outcomes, Head) {
    let (mut seq, mut prev) = head;
    // One timestamp per batch, at PostgreSQL's microsecond precision so it reads back equal.
    let recorded_at = Utc::now().trunc_subsecs(6);
    let mut entries = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for (ri, req) in batch.iter().enumerate() {
        if rejected[ri] {
            let first = &req.entries[0];
            outcomes.push(Err(LedgerError::Conflict {
                aggregate_type: first.aggregate_type.clone(),
                aggregate_id: first.aggregate_id.clone(),
            }));
            continue;
        }
        let mut appended = Vec::with_capacity(req.entries.len());
        for e in &req.entries {
            seq += 1;
            let mut entry = LedgerEntry {
                seq,
                tenant_id: e.tenant_id,
                aggregate_type: e.aggregate_type.clone(),
                aggregate_id: e.aggregate_id.clone(),
                aggregate_seq: e.aggregate_seq,
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at,
                prev_hash: prev,
                hash: [0u8; 32],
            };
            entry.hash = entry.computed_hash();
            appended.push(Appended { seq, hash: entry.hash, recorded_at });
            prev = entry.hash;
            entries.push(entry);
        }
        outcomes.push(Ok(appended));
    }
    (entries, outcomes, (seq, prev))
}

/// How an INSERT stands to the append lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The careful path's transaction holds the lock exclusively already.
    Held,
    /// The fast path: the statement takes the lock shared if it is free and inserts
    /// nothing otherwise. An uncorrelated scalar subquery is one InitPlan, so the planner
    /// checks it once, as a one-time filter before the first row (`EXPLAIN` shows
    /// "One-Time Filter"): all rows or none. Shared holders do not exclude each other, so
    /// fast paths still race only on the primary key and the chain check.
    YieldToCareful,
}

/// The INSERT of a batch, without its gate.
macro_rules! insert_entries {
    () => {
        "INSERT INTO gov_audit_trail_entries (seq, tenant_id, aggregate_type, aggregate_id, aggregate_seq, \
         event_type, event_version, payload, actor, request_id, trace_id, causation_id, correlation_id, recorded_at, prev_hash, hash) \
         SELECT s, t, at, ai, aseq, et, ev, p::json, a, r, tr, ca, co, ra, ph, h FROM UNNEST($1::bigint[], $2::uuid[], \
         $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::text[], $13::text[], $14::timestamptz[], $15::bytea[], $16::bytea[]) \
         AS u(s, t, at, ai, aseq, et, ev, p, a, r, tr, ca, co, ra, ph, h)"
    };
}

/// One multi-row INSERT … SELECT FROM UNNEST of the entries' columns (borrowed, not copied).
/// True when the entries were inserted; false when [`Gate::YieldToCareful`] found the lock
/// taken and nothing was.
async fn insert<'e, E: sqlx::PgExecutor<'e>>(executor: E, entries: &[LedgerEntry], gate: Gate) -> Result<bool, sqlx::Error> {
    let col = |f: fn(&LedgerEntry) -> &str| entries.iter().map(f).collect::<Vec<&str>>();
    let opt = |f: fn(&LedgerEntry) -> Option<&str>| entries.iter().map(f).collect::<Vec<Option<&str>>>();
    let seq: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let tenant: Vec<uuid::Uuid> = entries.iter().map(|e| e.tenant_id).collect();
    let agg_seq: Vec<i64> = entries.iter().map(|e| e.aggregate_seq).collect();
    let recorded_at: Vec<DateTime<Utc>> = entries.iter().map(|e| e.recorded_at).collect();
    let prev_hash: Vec<&[u8]> = entries.iter().map(|e| e.prev_hash.as_slice()).collect();
    let hash: Vec<&[u8]> = entries.iter().map(|e| e.hash.as_slice()).collect();
    let sql = match gate {
        Gate::Held => insert_entries!(),
        Gate::YieldToCareful => concat!(insert_entries!(), " WHERE (SELECT pg_try_advisory_xact_lock_shared(gov_ledger_lock_key()))"),
    };
    let done = sqlx::query(sql)
        .bind(&seq)
        .bind(&tenant)
        .bind(col(|e| &e.aggregate_type))
        .bind(col(|e| &e.aggregate_id))
        .bind(&agg_seq)
        .bind(col(|e| &e.event_type))
        .bind(col(|e| &e.event_version))
        .bind(col(|e| &e.payload))
        .bind(col(|e| &e.metadata.actor))
        .bind(opt(|e| e.metadata.request_id.as_deref()))
        .bind(opt(|e| e.metadata.trace_id.as_deref()))
        .bind(opt(|e| e.metadata.causation_id.as_deref()))
        .bind(opt(|e| e.metadata.correlation_id.as_deref()))
        .bind(&recorded_at)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(executor)
        .await?;
    match done.rows_affected() {
        0 if gate == Gate::YieldToCareful => Ok(false),
        n if n == entries.len() as u64 => Ok(true),
        // Not reachable with a one-time filter; were it, entries would be stored that the
        // careful path might append again, so it is an error, not a retry.
        n => Err(sqlx::Error::Protocol(format!("the ledger INSERT stored {n} of {} entries", entries.len()))),
    }
}

#[cfg(test)]
#[path = "appender_tests.rs"]
mod tests;
