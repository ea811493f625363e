//! The projection runner: tails the ledger by global seq (as the reader role) and applies
//! each event to a read model in the primary database, in the same transaction that
//! advances the projector's stored position, so every event takes effect exactly once.
//! Each step covers the next seqs up to the head but reads only the entries of the
//! aggregate types its projector handles (a decision's payload is not read by the
//! policies projector). With several processes, one leads each projector (advisory lock, see [`crate::application::leader`]);
//! the others follow the stored position, so read-your-writes holds in every process.
//!
//! An entry a projector cannot apply (a poison pill written by an older version) stops
//! that projector at its seq: the runner steps one entry at a time to find it, reports it
//! (once per distinct failure in the log, in [`StuckBoard`] for `/health/ready`, and in the
//! positions table for `projections status`), and retries. The way out is an operator's
//! recorded decision, a `ProjectionEntrySkipped` fact ([`skip_entry`]), appended to the ledger by
//! `projections skip`: the runner, `projections rebuild` and the relay (as projection
//! `kafka`) honour it, so a rebuild reproduces the same state and the ledger is never
//! edited.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::facts::{ProjectionEntrySkipped, ProjectionSkipEvent, SKIP_AGGREGATE};
use aggregates::{DecodeError, Recorded};
use ledger::LedgerEntry;
use projections::{EventRecord, Projector};

use crate::application::apply::{apply_events, record};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapters::ledger::{LedgerError, LedgerReader};
use crate::application::leader::Pace;
use crate::application::runtime::AppliedListener;

const BATCH: i64 = 1000;

/// The ledger entry that records an operator's skip decision, under the skipped entry's
/// tenant; one per projection and seq (a second one conflicts).
pub fn skip_entry(
    fact: ProjectionEntrySkipped,
    tenant_id: uuid::Uuid,
    actor: &str,
) -> Result<crate::adapters::ledger::NewEntry, LedgerError> {
    let metadata = ledger::EntryMetadata { actor: actor.to_owned(), ..Default::default() };
    crate::adapters::ledger::NewEntry::fact(tenant_id, fact.aggregate_id(), &ProjectionSkipEvent::ProjectionEntrySkipped(fact), metadata)
        .map_err(|e| LedgerError::Corrupt { seq: 0, reason: e.to_string() })
}

/// The seqs the operator decided `projection` skips. A skip decision that does not decode
/// is an error (the callers retry and report it), never silently ignored.
pub async fn skipped(reader: &LedgerReader, projection: &str) -> Result<HashSet<i64>, LedgerError> {
    let facts = reader.events_of_type(SKIP_AGGREGATE).await?;
    let mut seqs = HashSet::new();
    for e in &facts {
        match Recorded::decode_text(&e.aggregate_type, &e.event_type, &e.payload) {
            Ok(Recorded::ProjectionSkip(ProjectionSkipEvent::ProjectionEntrySkipped(s))) if s.projection.as_str() == projection => {
                seqs.insert(s.seq);
            }
            Ok(_) | Err(DecodeError::Unknown { .. }) => {}
            Err(err @ DecodeError::Malformed { .. }) => return Err(LedgerError::Corrupt { seq: e.seq, reason: err.to_string() }),
        }
    }
    Ok(seqs)
}

/// Where a projector or the relay is stuck: the entry it cannot apply or publish, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stuck {
    pub seq: i64,
    pub reason: String,
}

/// The projectors and relays of this process that are stuck, by name.
#[derive(Debug, Clone, Default)]
pub struct StuckBoard(Arc<Mutex<BTreeMap<String, Stuck>>>);

impl StuckBoard {
    /// Records that `name` is stuck; returns whether this is a new, distinct failure (to
    /// be logged and stored), not a retry of the same one.
    pub fn set(&self, name: &str, stuck: Stuck) -> bool {
        let Ok(mut board) = self.0.lock() else { return true };
        board.insert(name.to_owned(), stuck.clone()) != Some(stuck)
    }

    /// Records that `name` moves again; returns whether it was stuck.
    pub fn clear(&self, name: &str) -> bool {
        self.0.lock().map(|mut b| b.remove(name).is_some()).unwrap_or(false)
    }

    pub fn snapshot(&self) -> BTreeMap<String, Stuck> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// Stores (or clears, with `None`) where a projector or relay is stuck, for
/// `projections status` in any process.
pub async fn store_stuck(primary: &PgPool, table: StuckTable, name: &str, stuck: Option<&Stuck>) -> Result<(), sqlx::Error> {
    let sql = match table {
        StuckTable::Projection => {
            "UPDATE gov_projection_positions SET stuck_seq = $1, stuck_reason = $2, stuck_since = CASE WHEN $1::bigint IS NULL THEN NULL ELSE now() END WHERE projection = $3"
        }
        StuckTable::Relay => {
            "UPDATE gov_relay_positions SET stuck_seq = $1, stuck_reason = $2, stuck_since = CASE WHEN $1::bigint IS NULL THEN NULL ELSE now() END WHERE relay = $3"
        }
    };
    sqlx::query(sql).bind(stuck.map(|s| s.seq)).bind(stuck.map(|s| s.reason.as_str())).bind(name).execute(primary).await?;
    Ok(())
}

/// Which positions table [`store_stuck`] writes.
#[derive(Debug, Clone, Copy)]
pub enum StuckTable {
    Projection,
    Relay,
}
/// Polling interval when no local append wakes the runner (appends by other processes).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// The polling interval while the last read of the database's head found entries other
/// processes appended: a leader that does not append itself applies their entries in
/// small batches as they come instead of ten bursts a second (all projectors at once).
const BUSY_POLL: Duration = Duration::from_millis(10);

/// Positions reached by the running projectors, for read-your-writes.
#[derive(Debug, Clone)]
pub struct ProjectionWatch {
    positions: Vec<(&'static str, watch::Receiver<i64>)>,
    /// Projectors (and the relay) stuck on an entry.
    pub stuck: StuckBoard,
}

impl ProjectionWatch {
    /// Waits until every projector has reached `seq`, up to `timeout`. Returns whether it
    /// did.
    pub async fn wait_for(&self, seq: i64, timeout: Duration) -> bool {
        let all = async {
            for (_, rx) in &self.positions {
                let mut rx = rx.clone();
                if rx.wait_for(|p| *p >= seq).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }

    /// Each projector's position.
    pub fn positions(&self) -> Vec<(&'static str, i64)> {
        self.positions.iter().map(|(n, rx)| (*n, *rx.borrow())).collect()
    }
}

/// Starts one runner task per projector. They stop when `shutdown` turns true.
pub fn start(
    projectors: Vec<Arc<dyn Projector>>,
    listeners: Vec<Arc<dyn AppliedListener>>,
    reader: LedgerReader,
    primary: PgPool,
    wake: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
) -> (ProjectionWatch, Vec<JoinHandle<()>>) {
    let mut positions = Vec::new();
    let mut tasks = Vec::new();
    let stuck = StuckBoard::default();
    for p in projectors {
        let (tx, rx) = watch::channel(0i64);
        positions.push((p.name(), rx));
        let told = Told::of(p.as_ref(), &listeners);
        let runner = Runner {
            projector: p,
            told,
            reader: reader.clone(),
            primary: primary.clone(),
            stuck: stuck.clone(),
            reached: tx,
            position: None,
            stored: None,
            wake: wake.clone(),
            head_read: None,
            poll: IDLE_POLL,
            skip: None,
            step: BATCH,
            coalescer: Default::default(),
        };
        tasks.push(tokio::spawn(crate::application::leader::run(runner, primary.clone(), wake.clone(), shutdown.clone())));
    }
    (ProjectionWatch { positions, stuck }, tasks)
}

async fn load_position(primary: &PgPool, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("INSERT INTO gov_projection_positions (projection, position) VALUES ($1, 0) ON CONFLICT (projection) DO NOTHING")
        .bind(name)
        .execute(primary)
        .await?;
    sqlx::query_scalar("SELECT position FROM gov_projection_positions WHERE projection = $1").bind(name).fetch_one(primary).await
}

/// One projector's runner: applies entries while this process leads the projector, and
/// follows the leader's stored position while it stands by.
struct Runner {
    projector: Arc<dyn Projector>,
    told: Told,
    reader: LedgerReader,
    primary: PgPool,
    stuck: StuckBoard,
    /// Where this process has seen the projector reach (read-your-writes waits on it).
    reached: watch::Sender<i64>,
    /// The leader's position, once loaded; `None` makes the next step reload it.
    position: Option<i64>,
    /// The position as stored, and when it was stored. `position` runs ahead of it only
    /// over seqs holding no entry this projector handles, for at most
    /// [`STORE_POSITION_EVERY`]: it is stored when due, as the next step finds it.
    stored: Option<(i64, Instant)>,
    /// The highest seq this process's appender committed (see [`Runner::head`]).
    wake: watch::Receiver<i64>,
    /// When the ledger's head was last read from the database, and the interval before the
    /// next read ([`BUSY_POLL`] while that read found new entries, else [`IDLE_POLL`]).
    head_read: Option<Instant>,
    poll: Duration,
    /// The operator's skip decisions (reloaded after every failure).
    skip: Option<HashSet<i64>>,
    /// The batch size: one entry at a time after a failure, to find the entry that fails.
    step: i64,
    /// Spaces the transactions of a leader that keeps up (see [`crate::application::leader::COALESCE`]).
    coalescer: crate::application::leader::Coalescer,
}

/// The listeners a runner tells of the entries it applies (or sees its leader apply): those
/// acting on an aggregate type the projector handles, and those types.
struct Told {
    listeners: Vec<Arc<dyn AppliedListener>>,
    /// The projector's aggregate types some listener acts on; none: a standby reads no
    /// entries for its listeners (the decision projector's, at every evaluation).
    types: Vec<&'static str>,
}

impl Told {
    fn of(projector: &dyn Projector, listeners: &[Arc<dyn AppliedListener>]) -> Self {
        let wants = |l: &Arc<dyn AppliedListener>, t: &str| l.aggregate_types().contains(&t);
        let types: Vec<&'static str> =
            projector.aggregate_types().iter().copied().filter(|t| listeners.iter().any(|l| wants(l, t))).collect();
        let listeners = listeners.iter().filter(|l| types.iter().any(|t| wants(l, t))).cloned().collect();
        Self { listeners, types }
    }

    /// Tells each listener acting on the entry's aggregate type, if the projector handles it.
    async fn applied(&self, entry: &ledger::LedgerEntry) {
        let t = entry.aggregate_type.as_str();
        if !self.types.contains(&t) {
            return;
        }
        for l in self.listeners.iter().filter(|l| l.aggregate_types().contains(&t)) {
            l.applied(entry).await;
        }
    }
}

const RETRY: Duration = Duration::from_millis(500);

/// How long a leader may keep a position it moved over entries of other projectors only
/// without storing it. Storing it costs a transaction on the primary; at a thousand
/// decisions a second, every projector that handles none of them stored one per append.
/// Standbys (other processes) see the stored position, so this bounds how far behind it is.
const STORE_POSITION_EVERY: Duration = Duration::from_millis(100);

#[async_trait::async_trait]
impl crate::application::leader::LeaderTask for Runner {
    fn lock_name(&self) -> String {
        format!("gov-projection-{}", self.projector.name())
    }

    async fn elected(&mut self) {
        tracing::info!(projection = self.projector.name(), "this process now runs the projector");
        self.position = None;
        self.stored = None;
    }

    /// Another process leads: follow its progress for read-your-writes, and tell this
    /// process's listeners (caches) what the leader applied.
    async fn follow(&mut self) -> Pace {
        self.position = None;
        self.stored = None;
        if let Ok(p) = load_position(&self.primary, self.projector.name()).await {
            let seen = *self.reached.borrow();
            if p > seen && !self.told.types.is_empty() && seen > 0 {
                if let Ok(entries) = self.reader.events_of_types_between(&self.told.types, seen, p).await {
                    for entry in &entries {
                        self.told.applied(entry).await;
                    }
                }
            }
            self.reached.send_replace(p);
        }
        Pace::Idle(IDLE_POLL)
    }

    async fn lead(&mut self) -> Pace {
        let name = self.projector.name();
        if let Some(pause) = self.coalescer.pause() {
            return pause;
        }
        let pos = match self.position {
            Some(p) => p,
            None => match load_position(&self.primary, name).await {
                Ok(p) => {
                    // Never backwards: this process may have seen the projector pass seqs
                    // it had not stored yet (they held nothing for it).
                    self.reached.send_if_modified(|r| std::mem::replace(r, p.max(*r)) < p);
                    self.position = Some(p);
                    self.stored = Some((p, Instant::now()));
                    p
                }
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "cannot read projection position; retrying");
                    return Pace::Retry(RETRY);
                }
            },
        };
        let skip_set = match self.skip.take() {
            Some(s) => s,
            None => match skipped(&self.reader, name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "cannot read the skip decisions; retrying");
                    return Pace::Retry(RETRY);
                }
            },
        };
        // The next `step` seqs (the chain is gapless and commits in seq order, so every seq
        // up to the head is there), but only the entries of the types this projector
        // handles: the others' payloads are neither read nor decoded.
        let head = match self.head(pos).await {
            Ok(head) => head,
            Err(e) => {
                self.skip = Some(skip_set);
                tracing::warn!(projection = name, error = %e, "cannot read the ledger's head; retrying");
                return Pace::Retry(RETRY);
            }
        };
        let read = async {
            let upto = head.min(pos.saturating_add(self.step));
            if upto <= pos {
                return Ok((upto, Vec::new()));
            }
            Ok::<_, crate::adapters::ledger::LedgerError>((
                upto,
                self.reader.events_of_types_between(self.projector.aggregate_types(), pos, upto).await?,
            ))
        };
        let (upto, batch) = match read.await {
            Ok(read) => read,
            Err(e) => {
                self.skip = Some(skip_set);
                tracing::warn!(projection = name, error = %e, "cannot read the ledger; retrying");
                return Pace::Retry(RETRY);
            }
        };
        let (stored, stored_at) = self.stored.unwrap_or((pos, Instant::now()));
        if upto <= pos && stored == pos {
            self.skip = Some(skip_set);
            return Pace::Idle(self.poll.saturating_sub(self.head_read.map_or(Duration::ZERO, |at| at.elapsed())));
        }
        // Caught up with a position moved in memory only: stored once it is due, not at
        // every wake (each append wakes every projector; this stored one per append).
        if upto <= pos && stored_at.elapsed() < STORE_POSITION_EVERY {
            self.skip = Some(skip_set);
            return Pace::Idle(STORE_POSITION_EVERY.saturating_sub(stored_at.elapsed()));
        }
        // Nothing to apply: the position moves in memory (read-your-writes in this process
        // waits on `reached`), and is stored when due or when the projector idles.
        if upto > pos && batch.is_empty() && stored_at.elapsed() < STORE_POSITION_EVERY {
            self.position = Some(upto);
            self.reached.send_replace(upto);
            self.skip = Some(skip_set);
            return Pace::Again;
        }
        let upto = upto.max(pos);
        match apply_batch(self.projector.as_ref(), &self.primary, stored, upto, &batch, &skip_set).await {
            Ok(Some(last)) => {
                for entry in batch.iter().filter(|e| !skip_set.contains(&e.seq)) {
                    self.told.applied(entry).await;
                }
                self.position = Some(last);
                self.stored = Some((last, Instant::now()));
                self.reached.send_replace(last);
                self.coalescer.done(!batch.is_empty() && last >= head);
                self.skip = Some(skip_set);
                if self.step == 1 {
                    self.step = BATCH;
                    if self.stuck.clear(name) {
                        tracing::info!(projection = name, seq = last, "the projector moves again");
                        if let Err(e) = store_stuck(&self.primary, StuckTable::Projection, name, None).await {
                            tracing::warn!(projection = name, error = %e, "cannot clear the stuck mark");
                        }
                    }
                }
                Pace::Again
            }
            // Another runner advanced the position first: reload it.
            Ok(None) => {
                self.position = None;
                self.stored = None;
                self.skip = Some(skip_set);
                Pace::Again
            }
            Err(e) if self.step > 1 => {
                tracing::debug!(projection = name, error = %e, "projection batch failed; applying one entry at a time");
                self.step = 1;
                self.position = None;
                Pace::Again
            }
            Err(e) => {
                // One seq at a time: the entry that fails (or, with none to apply, the seq
                // whose position update failed).
                let at = Stuck { seq: batch.first().map_or(upto, |e| e.seq), reason: e.to_string() };
                if self.stuck.set(name, at.clone()) {
                    tracing::error!(projection = name, seq = at.seq, reason = %at.reason,
                        "the projector cannot apply this ledger entry and retries it; if it can never apply, \
                         record a decision with `governance-engine projections skip`");
                    if let Err(e) = store_stuck(&self.primary, StuckTable::Projection, name, Some(&at)).await {
                        tracing::warn!(projection = name, error = %e, "cannot store the stuck mark");
                    }
                }
                self.position = None;
                Pace::Retry(RETRY)
            }
        }
    }
}

impl Runner {
    /// The seq to read up to: the highest seq this process committed, when it is past
    /// `pos` (every seq below a committed one is committed: the chain commits in seq
    /// order); else the database's head, read at most once per [`IDLE_POLL`] ([`BUSY_POLL`]
    /// while other processes append), which is how other processes' appends are seen.
    /// Before, every projector read the head at every step, three statements on the audit
    /// database per append and projector.
    async fn head(&mut self, pos: i64) -> Result<i64, crate::adapters::ledger::LedgerError> {
        let local = *self.wake.borrow();
        if local > pos {
            return Ok(local);
        }
        if self.head_read.is_some_and(|at| at.elapsed() < self.poll) {
            return Ok(pos);
        }
        self.head_read = Some(Instant::now());
        let head = self.reader.head_seq().await?;
        self.poll = if head > pos { BUSY_POLL } else { IDLE_POLL };
        Ok(head)
    }
}

/// Applies a batch and advances the position from `from` in one transaction. Returns the
/// new position, or `None` if the stored position was no longer `from`.
/// Applies `batch` (the entries of seqs `from + 1 ..= upto` that the projector handles) and
/// moves the position from `from` to `upto`, in one transaction: `None` when another runner
/// moved the position first.
async fn apply_batch(
    projector: &dyn Projector,
    primary: &PgPool,
    from: i64,
    upto: i64,
    batch: &[LedgerEntry],
    skip: &HashSet<i64>,
) -> Result<Option<i64>, projections::ProjectionError> {
    // Read models are derived data: the batch and the position commit together, so after a
    // crash both are at the last flushed batch and the runner replays from there. Waiting
    // for the WAL flush buys nothing here (the ledger is the durable copy). One round trip
    // begins the transaction and says so.
    let mut tx = primary.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?;
    let records: Vec<EventRecord> = batch.iter().filter(|e| projector.handles(&e.aggregate_type)).map(record).collect();
    apply_events(projector, &mut tx, &records, skip, false).await?;
    let last = upto;
    let moved =
        sqlx::query("UPDATE gov_projection_positions SET position = $1, updated_at = now() WHERE projection = $2 AND position = $3")
            .bind(last)
            .bind(projector.name())
            .bind(from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if moved != 1 {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(last))
}

#[cfg(test)]
#[path = "projection_tests.rs"]
mod tests;
