//! Replays: recorded decisions of a policy re-evaluated against one of its versions, as
//! background jobs with progress, each ending in one `PolicyReplayed` fact in the ledger.
//!
//! What a replay reads is fixed when it starts: the decisions of the policy decided within
//! the time range, recorded at or before the decisions read model's position then
//! (`through_seq`), in ledger order, at most `limit`. It evaluates them in batches on the
//! service's engine (the embedded sandbox or OPA, queued under the tenant, each item with
//! the evaluation deadline) and writes no decision records. The version's sources and
//! control checks come from the Policy aggregate's events in the ledger, never from a
//! read model.
//!
//! Concurrency: at most one running replay per tenant and [`MAX_RUNNING`] in the process;
//! the job table keeps running jobs and the last [`KEEP_FAILED`] failures (a finished
//! replay is read back from the ledger), so it does not grow.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use aggregates::compliance::{ControlId, Sha256 as Digest256};
use aggregates::facts::replay::SkipReason;
use aggregates::facts::{ChangeExample, ChangeKind, DecisionSet, PolicyReplayed, ReplayEvent, ReplayReport, RulePath, REPLAY_AGGREGATE};
use aggregates::policy::{ControlChecks, PolicyEvent};
use aggregates::{PolicyId, Recorded, ReplayId, TenantId};
use ledger::format::canonical_json;
use ledger::EntryMetadata;
use projections::decisions::{self as read, ReplayRow};

use crate::adapters::engine::{on_behalf_of, EngineError, PolicyEngine, PolicyModule, PolicySource, PreparedPolicy};
use crate::adapters::ledger::{LedgerError, LedgerReader, NewEntry};
use crate::application::commands::CommandBus;

/// Replays running at once in this process.
pub const MAX_RUNNING: usize = 4;
/// Failed replays remembered (for `GET …/replays/{id}`).
pub const KEEP_FAILED: usize = 256;
/// The most decisions one replay may read.
pub const MAX_LIMIT: u32 = 1_000_000;
/// Decisions read from the read model at a time, and the input bytes a page may hold.
const PAGE: i64 = 2_000;
const PAGE_BYTES: i64 = 16 * 1024 * 1024;
/// Items per engine batch, and the input bytes one batch may carry.
const BATCH_ITEMS: usize = 500;
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Batches evaluated at once (each on its own worker, within the tenant's share).
const BATCHES_IN_FLIGHT: usize = 2;
/// A batch the engine could not take (its queue full, a worker lost) is tried again this
/// many times before the replay fails.
const BATCH_ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("policy not found")]
    PolicyNotFound,
    #[error("policy has no version {requested}; the newest is {latest}")]
    UnknownVersion { requested: u32, latest: u32 },
    #[error("replay not found")]
    ReplayNotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("decision read model: {0}")]
    ReadModel(String),
    #[error("ledger entry {seq}: {reason}")]
    Decode { seq: i64, reason: String },
}

impl From<projections::ProjectionError> for ReplayError {
    fn from(e: projections::ProjectionError) -> Self {
        Self::ReadModel(e.to_string())
    }
}

impl From<sqlx::Error> for ReplayError {
    fn from(e: sqlx::Error) -> Self {
        Self::ReadModel(e.to_string())
    }
}

/// What a replay is asked to do.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    pub tenant: TenantId,
    pub policy_id: PolicyId,
    pub version: u32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: Option<u32>,
    pub actor: String,
    pub request_id: Option<String>,
}

/// Where a replay stands.
#[derive(Debug, Clone)]
pub enum JobState {
    Running,
    /// Recorded in the ledger at `seq`.
    Done {
        seq: i64,
        fact: Box<PolicyReplayed>,
    },
    Failed(Arc<ReplayError>),
}

/// A running (or failed) replay.
#[derive(Debug)]
pub struct Job {
    pub spec: ReplaySpec,
    pub through_seq: i64,
    /// Decisions to read in all, and read so far.
    pub total: u64,
    pub read: AtomicU64,
    pub state: tokio::sync::watch::Sender<JobState>,
}

#[derive(Debug, Default)]
struct Jobs {
    running: HashMap<ReplayId, Arc<Job>>,
    failed: VecDeque<(ReplayId, Arc<Job>)>,
}

/// The policy's versions, as its events in the ledger have them.
struct Versions {
    sources: Vec<PolicySource>,
    checks: Vec<ControlChecks>,
}

impl Versions {
    /// The control checks of `version`.
    fn checks(&self, version: u32) -> Option<&ControlChecks> {
        self.checks.get(usize::try_from(version).ok()?.checked_sub(1)?)
    }
}

/// Starts replays and answers where they stand.
#[derive(Clone)]
pub struct Replayer {
    primary: PgPool,
    ledger: LedgerReader,
    bus: CommandBus,
    engine: Arc<dyn PolicyEngine>,
    /// Running jobs and recent failures; never held across an `.await`.
    jobs: Arc<Mutex<Jobs>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer").finish_non_exhaustive()
    }
}

impl Replayer {
    pub fn new(primary: PgPool, ledger: LedgerReader, bus: CommandBus, engine: Arc<dyn PolicyEngine>) -> Self {
        Self { primary, ledger, bus, engine, jobs: Arc::default() }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks the request, fixes what the replay reads, and starts it in the background.
    pub async fn start(&self, spec: ReplaySpec) -> Result<(ReplayId, Arc<Job>), ReplayError> {
        if spec.from > spec.to {
            return Err(ReplayError::Invalid("from must not be after to".into()));
        }
        if spec.limit.is_some_and(|l| l == 0 || l > MAX_LIMIT) {
            return Err(ReplayError::Invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let versions = self.versions(spec.tenant, spec.policy_id).await?;
        let latest = u32::try_from(versions.sources.len()).unwrap_or(u32::MAX);
        if spec.version == 0 || spec.version > latest {
            return Err(ReplayError::UnknownVersion { requested: spec.version, latest });
        }
        let mut tx = projections::tenant::begin(&self.primary, spec.tenant.as_uuid()).await?;
        let through_seq = read::applied_through(&mut tx).await?;
        let count = read::replay_count(&mut tx, spec.policy_id.as_uuid(), (spec.from, spec.to), through_seq).await?;
        tx.commit().await?;
        let total = u64::try_from(count).unwrap_or(0).min(spec.limit.map_or(u64::MAX, u64::from));
        let id = ReplayId::generate();
        let job = Arc::new(Job {
            spec: spec.clone(),
            through_seq,
            total,
            read: AtomicU64::new(0),
            state: tokio::sync::watch::Sender::new(JobState::Running),
        });
        {
            let mut jobs = self.jobs();
            if jobs.running.values().any(|j| j.spec.tenant == spec.tenant) {
                return Err(ReplayError::Busy("this tenant already has a replay running; wait for it to finish".into()));
            }
            if jobs.running.len() >= MAX_RUNNING {
                return Err(ReplayError::Busy(format!("{MAX_RUNNING} replays are running; retry later")));
            }
            jobs.running.insert(id, job.clone());
        }
        let (this, job2) = (self.clone(), job.clone());
        tokio::spawn(async move {
            let outcome = this.run(id, &job2, &versions).await;
            let mut jobs = this.jobs();
            jobs.running.remove(&id);
            match outcome {
                Ok((seq, fact)) => job2.state.send_replace(JobState::Done { seq, fact: Box::new(fact) }),
                Err(e) => {
                    tracing::warn!(replay_id = %id, error = %e, "replay failed");
                    jobs.failed.push_back((id, job2.clone()));
                    if jobs.failed.len() > KEEP_FAILED {
                        jobs.failed.pop_front();
                    }
                    job2.state.send_replace(JobState::Failed(Arc::new(e)))
                }
            };
        });
        Ok((id, job))
    }

    /// A running or failed replay of the tenant held in this process.
    pub fn job(&self, tenant: TenantId, id: ReplayId) -> Option<Arc<Job>> {
        let jobs = self.jobs();
        let found = jobs.running.get(&id).cloned().or_else(|| jobs.failed.iter().find(|(f, _)| *f == id).map(|(_, j)| j.clone()));
        found.filter(|j| j.spec.tenant == tenant)
    }

    /// A finished replay of the tenant, from the ledger: its fact and seq.
    pub async fn recorded(&self, tenant: TenantId, id: ReplayId) -> Result<Option<(i64, PolicyReplayed)>, ReplayError> {
        let entries = self.ledger.aggregate_events(REPLAY_AGGREGATE, &id.to_string()).await?;
        let Some(entry) = entries.into_iter().find(|e| e.tenant_id == tenant.as_uuid()) else { return Ok(None) };
        match Recorded::decode_text(&entry.aggregate_type, &entry.event_type, &entry.payload) {
            Ok(Recorded::Replay(ReplayEvent::PolicyReplayed(fact))) => Ok(Some((entry.seq, fact))),
            Ok(other) => Err(ReplayError::Decode { seq: entry.seq, reason: format!("{:?} is not a replay", other.kind()) }),
            Err(e) => Err(ReplayError::Decode { seq: entry.seq, reason: e.to_string() }),
        }
    }

    /// The tenant's policy's versions, from its events in the ledger.
    async fn versions(&self, tenant: TenantId, policy: PolicyId) -> Result<Versions, ReplayError> {
        let entries = self.ledger.aggregate_events("Policy", &policy.to_string()).await?;
        if entries.first().is_none_or(|e| e.tenant_id != tenant.as_uuid()) {
            return Err(ReplayError::PolicyNotFound);
        }
        let mut v = Versions { sources: vec![], checks: vec![] };
        for e in &entries {
            match Recorded::decode_text(&e.aggregate_type, &e.event_type, &e.payload) {
                Ok(Recorded::Policy(PolicyEvent::PolicyCreated { rego, modules, data, control_checks, .. }))
                | Ok(Recorded::Policy(PolicyEvent::PolicyVersionAdded { rego, modules, data, control_checks, .. })) => {
                    v.sources.push(PolicySource::of(&aggregates::policy::VersionSource { rego, modules, data }));
                    v.checks.push(control_checks);
                }
                Ok(_) => {}
                Err(err) => return Err(ReplayError::Decode { seq: e.seq, reason: err.to_string() }),
            }
        }
        Ok(v)
    }

    /// The page of decisions after `after` (at most `left`, [`PAGE`] and [`PAGE_BYTES`]).
    async fn page(&self, job: &Job, after: i64, left: u64) -> Result<Vec<ReplayRow>, ReplayError> {
        let spec = &job.spec;
        let mut tx = projections::tenant::begin(&self.primary, spec.tenant.as_uuid()).await?;
        let page_size = i64::try_from(left).unwrap_or(PAGE).min(PAGE);
        let (window, seqs) = ((spec.from, spec.to), (after, job.through_seq));
        let rows = read::replay_page(&mut tx, spec.policy_id.as_uuid(), window, seqs, page_size, PAGE_BYTES).await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn run(&self, id: ReplayId, job: &Job, versions: &Versions) -> Result<(i64, PolicyReplayed), ReplayError> {
        let spec = &job.spec;
        let tenant = spec.tenant.as_uuid();
        let index = usize::try_from(spec.version).unwrap_or(usize::MAX).saturating_sub(1);
        let source = versions.sources.get(index).cloned().unwrap_or_default();
        let module = PolicyModule { policy_id: spec.policy_id.as_uuid(), version: spec.version, package: String::new(), source };
        let prepared = on_behalf_of(tenant, self.engine.prepare(&module)).await?;
        let mut tally = Tally::new(spec.version, versions);
        let mut set = DecisionSet::default();
        let limit = u64::from(spec.limit.unwrap_or(MAX_LIMIT));
        // The next page is read while this one is evaluated.
        let mut rows = self.page(job, 0, limit).await?;
        let mut fetched = 0u64;
        while let Some(last) = rows.last().map(|r| r.ledger_seq) {
            fetched = fetched.saturating_add(u64::try_from(rows.len()).unwrap_or(u64::MAX));
            let left = limit.saturating_sub(fetched);
            let next = async {
                if left == 0 {
                    Ok(Vec::new())
                } else {
                    self.page(job, last, left).await
                }
            };
            let (next, evaluated) = tokio::join!(next, evaluate_page(tenant, prepared.as_ref(), &rows, &mut tally, &mut set));
            evaluated?;
            job.read.store(tally.report.read, Ordering::Relaxed);
            rows = next?;
        }
        // OPA may have dropped the module meanwhile (a restart, or its sync unloading a
        // version that is not active), and then answers "undefined": such a replay is void.
        if !on_behalf_of(tenant, self.engine.is_loaded(&module)).await? {
            return Err(EngineError::Unavailable("the engine unloaded the version during the replay; replay again".into()).into());
        }
        let (first_seq, last_seq, decisions_sha256) = set.finish();
        let report = tally.finish();
        let body = serde_json::to_value(&report).map_err(|e| ReplayError::Invalid(e.to_string()))?;
        let report_sha256 = Digest256::from_digest(Sha256::digest(canonical_json(&body).as_bytes()).into());
        let fact = PolicyReplayed {
            replay_id: id,
            policy_id: spec.policy_id,
            version: spec.version,
            engine: self.engine.kind(),
            from: spec.from,
            to: spec.to,
            limit: spec.limit,
            through_seq: job.through_seq,
            first_seq,
            last_seq,
            decisions_sha256,
            report,
            report_sha256,
        };
        let metadata = EntryMetadata { actor: spec.actor.clone(), request_id: spec.request_id.clone(), ..Default::default() };
        let entry = NewEntry::fact(tenant, fact.aggregate_id(), &ReplayEvent::PolicyReplayed(fact.clone()), metadata)
            .map_err(|e| ReplayError::Invalid(e.to_string()))?;
        let appended = self.bus.record(vec![entry]).await?;
        Ok((appended.first().map_or(0, |a| a.seq), fact))
    }
}

/// Splits rows into engine batches of at most [`BATCH_ITEMS`] items and about
/// [`BATCH_BYTES`] of input.
fn batches<'a>(rows: &[&'a ReplayRow]) -> Vec<Vec<&'a ReplayRow>> {
    let mut out: Vec<Vec<&ReplayRow>> = vec![];
    let mut bytes = 0;
    for r in rows {
        let size = usize::try_from(r.input_bytes).unwrap_or(0);
        match out.last_mut() {
            Some(b) if b.len() < BATCH_ITEMS && bytes + size <= BATCH_BYTES => {
                bytes += size;
                b.push(r);
            }
            _ => {
                bytes = size;
                out.push(vec![r]);
            }
        }
    }
    out
}

/// Replays one page and tallies it, in ledger order.
async fn evaluate_page(
    tenant: uuid::Uuid,
    prepared: &dyn PreparedPolicy,
    rows: &[ReplayRow],
    tally: &mut Tally<'_>,
    set: &mut DecisionSet,
) -> Result<(), ReplayError> {
    for r in rows {
        set.push(r.ledger_seq);
    }
    // A decision made without an input is replayed without one; a `hash_only`
    // record keeps no input to replay.
    let replayable: Vec<&ReplayRow> = rows.iter().filter(|r| r.input.is_some() || !r.input_given).collect();
    tally.skip(rows.len() - replayable.len());
    // Up to BATCHES_IN_FLIGHT batches at once: the pool runs them on as many
    // workers as the tenant's share allows; they are tallied in ledger order.
    for group in batches(&replayable).chunks(BATCHES_IN_FLIGHT) {
        let calls = group.iter().map(|batch| evaluate(tenant, prepared, batch));
        for (batch, results) in group.iter().zip(futures::future::join_all(calls).await) {
            for (row, result) in batch.iter().zip(results?) {
                tally.add(row, result)?;
            }
        }
    }
    Ok(())
}

/// One batch on the engine, under the tenant, tried again when the engine could not take
/// it; an error of one item is that item's result.
async fn evaluate(
    tenant: uuid::Uuid,
    prepared: &dyn PreparedPolicy,
    batch: &[&ReplayRow],
) -> Result<Vec<Result<Option<Value>, EngineError>>, ReplayError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The items are built from the rows at each attempt: the engine consumes them.
        let items = batch.iter().map(|r| (r.rule.clone(), r.input.clone())).collect();
        match on_behalf_of(tenant, prepared.evaluate_many(items)).await {
            Ok(results) => return Ok(results),
            Err(e @ (EngineError::Overloaded(_) | EngineError::Unavailable(_) | EngineError::Timeout(_))) if attempt < BATCH_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "replay batch refused; trying again");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The report as decisions are replayed.
struct Tally<'a> {
    version: u32,
    versions: &'a Versions,
    report: ReplayReport,
    controls: BTreeSet<ControlId>,
}

impl<'a> Tally<'a> {
    fn new(version: u32, versions: &'a Versions) -> Self {
        Self { version, versions, report: ReplayReport::default(), controls: BTreeSet::new() }
    }

    fn skip(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.report.read = self.report.read.saturating_add(n);
        self.report.skipped = self.report.skipped.saturating_add(n);
        let by = self.report.skipped_by_reason.entry(SkipReason::HashOnly).or_default();
        *by = by.saturating_add(n);
    }

    fn add(&mut self, row: &ReplayRow, result: Result<Option<Value>, EngineError>) -> Result<(), ReplayError> {
        let bad = |reason: String| ReplayError::Decode { seq: row.ledger_seq, reason };
        let rule = row.rule.as_deref().map(RulePath::parse).transpose().map_err(|e| bad(e.to_string()))?;
        let old_version = u32::try_from(row.policy_version).map_err(|e| bad(e.to_string()))?;
        let old = row.defined.then(|| row.result.clone().unwrap_or(Value::Null));
        self.report.read = self.report.read.saturating_add(1);
        self.report.replayed = self.report.replayed.saturating_add(1);
        let (kind, new, error) = match result {
            Ok(new) => (ChangeKind::of(old.as_ref(), new.as_ref()), new, None),
            Err(e) => (Some(ChangeKind::Error), None, Some(e.to_string())),
        };
        let Some(kind) = kind else {
            self.report.unchanged = self.report.unchanged.saturating_add(1);
            return Ok(());
        };
        self.report.changed.add(kind);
        if self.report.examples.iter().filter(|x| x.kind == kind).count() < ReplayReport::EXAMPLES_PER_KIND {
            self.report.examples.push(ChangeExample {
                kind,
                decision_id: aggregates::DecisionId::from_uuid(row.decision_id),
                ledger_seq: row.ledger_seq,
                policy_version: old_version,
                old_result: old,
                new_result: new,
                error,
            });
        }
        for v in [old_version, self.version] {
            let versions: &'a Versions = self.versions;
            let counted = versions.checks(v).into_iter().flat_map(|c| c.iter()).filter(|c| c.counts(rule.as_ref()));
            self.controls.extend(counted.map(|c| c.control_id.clone()));
        }
        Ok(())
    }

    fn finish(mut self) -> ReplayReport {
        self.report.examples.sort_by_key(|x| (x.kind, x.ledger_seq));
        self.report.controls_affected = self.controls.into_iter().collect();
        self.report
    }
}
