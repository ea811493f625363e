//! `GET /api/v1/compliance/dashboard`: requirement statuses and coverage, evidence by kind
//! and expiring soon, workflows by state, and recent policy decisions, for one tenant.
//!
//! Served from the read models through a moka cache keyed by tenant and filters. The
//! projection runner tells [`DashboardCache`] about every event it applies; a tenant's
//! compliance events make its cached answers unreachable at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use aggregates::compliance::{EvidenceKind, RegulationCode, RequirementStatus, SYSTEM_EVIDENCE_KIND};
use projections::evidence::EvidenceFacts;
use projections::evidence_packs::Workflows;

#[path = "dashboard_stream.rs"]
mod stream;
#[cfg(test)]
use stream::send_in_batches;
use stream::{pivot, second_tx, stream_evidence, Streamed};

use super::extract::{ApiQuery, Caller};
use super::regulations::{regulation, tenant_links, READERS};
use super::SharedState;
use crate::application::catalog::TenantLink;
use crate::application::compliance::{count_statuses, system_evidence_counts, Judging, RegulationIndex};
use crate::error::{ApiError, ErrorCode};

/// Tenant, generation, filters, as-of day.
type Key = (Uuid, u64, Option<RegulationCode>, Option<Uuid>, NaiveDate);

/// Cached dashboards. Each tenant has a generation that every applied compliance event
/// bumps; keys carry it, so a bump makes the tenant's cached answers unreachable at once
/// (they then age out), at the cost of one counter increment per event.
#[derive(Clone)]
pub struct DashboardCache {
    cache: moka::future::Cache<Key, Arc<Dashboard>>,
    generations: moka::sync::Cache<Uuid, Arc<std::sync::atomic::AtomicU64>>,
    /// Threads judging evidence at once (cold dashboards and workflows' status views): at
    /// most one per core, so judging (CPU-bound, tens of milliseconds for a large tenant)
    /// never takes more than the machine's cores, whatever the number of requests, and
    /// only that many judgements hold their records at once. Each takes one permit before
    /// it opens its transaction; a cold dashboard takes one more per further judging thread
    /// (one per 500 workflows, at most one per core) only if free then. Permits are held
    /// while the evidence is read and judged.
    computing: Arc<tokio::sync::Semaphore>,
    cores: usize,
    /// One judgement at a time per tenant: a tenant's next cold dashboard or status view
    /// waits for its previous one, so a tenant flooding them holds one connection (two
    /// while a cold dashboard reads two evidence streams) and one place in the queue for
    /// `computing`, and every other tenant's comes next. (Should
    /// the cache ever evict a tenant's lock while held, that tenant could have two at once.)
    turns: moka::sync::Cache<Uuid, Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for DashboardCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardCache").field("entries", &self.cache.entry_count()).finish()
    }
}

impl Default for DashboardCache {
    fn default() -> Self {
        let cache = moka::future::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(15)).build();
        let generations = moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(3600)).build();
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let turns = moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build();
        Self { cache, generations, computing: Arc::new(tokio::sync::Semaphore::new(cores)), cores, turns }
    }
}

impl DashboardCache {
    /// The tenant's turn, then a judging permit: what every judgement of a tenant's
    /// evidence takes, in that order, before it opens its transaction.
    pub async fn judging_turn(
        &self,
        tenant: Uuid,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, tokio::sync::OwnedSemaphorePermit), tokio::sync::AcquireError> {
        let turn = self.turns.get_with(tenant, Default::default).lock_owned().await;
        let permit = self.computing.clone().acquire_owned().await?;
        Ok((turn, permit))
    }

    fn generation(&self, tenant: Uuid) -> u64 {
        self.generations.get_with(tenant, Default::default).load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn invalidate_tenant(&self, tenant: Uuid) {
        self.generations.get_with(tenant, Default::default).fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Compliance events make a tenant's dashboards stale at once. Decision counts are only
/// "recent": they may lag by the cache's 15 s TTL, so that evaluation traffic does not
/// keep the dashboard cold.
#[async_trait::async_trait]
impl crate::application::runtime::AppliedListener for DashboardCache {
    fn aggregate_types(&self) -> &'static [&'static str] {
        use aggregates::Stream;
        const TYPES: &[&str] =
            &[Stream::ComplianceWorkflow.aggregate_type(), Stream::Evidence.aggregate_type(), Stream::ControlMapping.aggregate_type()];
        TYPES
    }

    async fn applied(&self, entry: &ledger::LedgerEntry) {
        self.invalidate_tenant(entry.tenant_id);
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExpiringEvidence {
    pub evidence_id: Uuid,
    pub workflow_id: Uuid,
    pub kind: String,
    pub valid_until: NaiveDate,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DecisionCounts {
    pub policy_id: Uuid,
    pub allow: i64,
    pub deny: i64,
    pub undefined: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub as_of: NaiveDate,
    pub regulation: Option<String>,
    pub workflow_id: Option<Uuid>,
    pub workflows: usize,
    /// In-scope requirements over all matching workflows, by status.
    pub requirements_by_status: BTreeMap<String, usize>,
    /// Satisfied or expiring (still valid) over the applicable ones, in percent. Certified
    /// workflows count with the statuses they were certified with.
    pub coverage_percent: f64,
    /// Active evidence by kind; `policy_evaluation` counts the system evidence roll-ups that
    /// count for at least one of the workflows (each once).
    pub evidence_by_kind: BTreeMap<String, usize>,
    /// Active evidence whose `valid_until` falls within the expiring window (soonest first, at most 100).
    pub expiring_soon: Vec<ExpiringEvidence>,
    pub workflows_by_state: BTreeMap<String, usize>,
    /// Decisions of the last 7 days (today and the 6 days before, UTC days of their
    /// ledger entries), by policy.
    pub recent_decisions: Vec<DecisionCounts>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DashboardParams {
    /// Only workflows of this regulation.
    pub regulation: Option<String>,
    /// Only this workflow.
    pub workflow_id: Option<Uuid>,
    /// Judge freshness (expiring, expired) as of this day (default: today).
    pub as_of: Option<NaiveDate>,
}

/// The compliance dashboard of the caller's tenant.
#[utoipa::path(get, path = "/compliance/dashboard", tag = "compliance", params(DashboardParams),
    responses((status = 200, description = "The dashboard", body = Dashboard)))]
pub async fn dashboard(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<DashboardParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let code = p.regulation.as_deref().map(regulation).transpose()?.map(|r| r.code);
    let tenant = caller.tenant_id.as_uuid();
    let as_of = p.as_of.unwrap_or_else(|| Utc::now().date_naive());
    let key = (tenant, state.dashboards.generation(tenant), code, p.workflow_id, as_of);
    let computed =
        state.dashboards.cache.try_get_with(key, async { compute(&state, &caller, code, p.workflow_id, as_of).await.map(Arc::new) }).await;
    match computed {
        Ok(d) => Ok(Json(d.as_ref().clone()).into_response()),
        Err(e) => Err(e.as_ref().clone()),
    }
}

async fn compute(
    state: &SharedState,
    caller: &Caller,
    code: Option<RegulationCode>,
    workflow: Option<Uuid>,
    as_of: NaiveDate,
) -> Result<Dashboard, ApiError> {
    let window = state.config.evidence_expiring_days;
    let failed = |e: String| ApiError::new(ErrorCode::Internal, format!("computing the dashboard: {e}"));
    // A tenant's cold dashboards one at a time, each in one transaction (one connection;
    // two for a large tenant, below):
    // first the workflows and what judging them needs besides evidence, then the evidence
    // (its packs, `projections::evidence_packs`), in workflow order, streamed in batches, in turn, to judging threads (one per 500
    // workflows, at most one per core) that decode and judge each workflow as its records
    // arrive (the stream only fetches: decoding is most of the reading's CPU).
    // Judging overlaps reading, the runtime's workers keep serving every other request, and
    // at most a few batches of records are held per thread (a batch holds whole workflows).
    // A judging thread's permit is taken before a connection is: a dashboard waiting for
    // one holds no connection of the pool.
    let (_turn, mut permit) = state.dashboards.judging_turn(caller.tenant_id.as_uuid()).await.map_err(|e| failed(e.to_string()))?;
    let computing = &state.dashboards.computing;
    let mut tx = state.tenant_tx(caller).await?;
    let read = read_all(&mut tx, code, workflow).await?;
    // More judging threads for a large tenant, if their permits are free now (never
    // waited for while the transaction is open).
    let wanted = state.dashboards.cores.min(read.workflows.len().div_ceil(WORKFLOWS_PER_JUDGE)).max(1);
    let mut judges = 1;
    if let Some(more) = u32::try_from(wanted - 1).ok().filter(|n| *n > 0).and_then(|n| computing.clone().try_acquire_many_owned(n).ok()) {
        permit.merge(more);
        judges = wanted;
    }
    // With several judging threads, the evidence is read by two streams at once, each over
    // part of the workflows (by id, in proportion to the judging threads it feeds), if a
    // second connection is idle now (never waited for while the first is held): PostgreSQL
    // sends one stream's packs on one core. Each workflow is read whole by one stream, in
    // its transaction. If one stream fails (or a judging thread does), the other stops
    // reading too.
    let second = match (judges >= 2, workflow) {
        (true, None) => second_tx(state, caller).await,
        _ => None,
    };
    let low = judges / 2;
    let second = second.map(|tx| (tx, pivot(&read.workflows, low, judges)));
    let (batches, received): (Vec<_>, Vec<_>) = (0..judges).map(|_| tokio::sync::mpsc::channel(2)).unzip();
    let judging = tokio::task::spawn_blocking(move || {
        let _computing = permit;
        summarize(read, received, code, workflow, as_of, window)
    });
    crate::adapters::metrics::get().dashboard_evidence_streams(if second.is_some() { 2 } else { 1 });
    let stop = std::sync::atomic::AtomicBool::new(false);
    let streamed = match second {
        Some((mut other, split)) => {
            let (below, above) = batches.split_at(low);
            let (a, b) = tokio::join!(
                stream_evidence(&mut tx, Workflows::Range { from: None, before: Some(split) }, below, &stop),
                stream_evidence(&mut other, Workflows::Range { from: Some(split), before: None }, above, &stop),
            );
            a.and(b)
        }
        None => stream_evidence(&mut tx, workflow.map_or(Workflows::ALL, Workflows::Only), &batches, &stop).await,
    };
    // The judging threads finish once every stream has sent its last batch (or stopped).
    drop(batches);
    let dashboard = judging.await.map_err(|e| failed(e.to_string()))?;
    streamed?;
    Ok(dashboard?)
}

/// Workflows worth a judging thread of their own (up to one per core).
const WORKFLOWS_PER_JUDGE: usize = 500;

/// What [`compute`] reads before the evidence, in its transaction.
async fn read_all(conn: &mut sqlx::PgConnection, code: Option<RegulationCode>, workflow: Option<Uuid>) -> Result<Read, ApiError> {
    let mut workflows = projections::compliance::all_workflows(&mut *conn, code.map(|c| c.as_str())).await?;
    if let Some(w) = workflow {
        workflows.retain(|x| x.workflow_id == w);
    }
    let first = workflows.iter().map(|w| w.audit_period_start).min();
    let last = workflows.iter().map(|w| w.audit_period_end).max();
    let system = match (first, last) {
        (Some(first), Some(last)) => projections::system_evidence::of_days(&mut *conn, first, last).await?,
        _ => vec![],
    };
    let na_rows = projections::compliance::not_applicable(&mut *conn, workflow).await?;
    let today = Utc::now().date_naive();
    let since = today.checked_sub_days(Days::new(RECENT_DAYS - 1)).unwrap_or(today);
    let decisions = projections::system_evidence::decisions_since(&mut *conn, since)
        .await?
        .into_iter()
        .map(|(policy_id, allow, deny, undefined)| DecisionCounts { policy_id, allow, deny, undefined })
        .collect();
    let links = tenant_links(&mut *conn, code).await?;
    Ok(Read { workflows, system, na_rows, decisions, links })
}

/// What [`compute`] reads from the read models before the evidence, for [`summarize`].
struct Read {
    workflows: Vec<projections::compliance::WorkflowView>,
    system: Vec<projections::system_evidence::SystemEvidenceView>,
    na_rows: Vec<(Uuid, projections::compliance::NotApplicableView)>,
    /// Recent decisions by policy, in policy order.
    decisions: Vec<DecisionCounts>,
    links: Vec<TenantLink>,
}

/// The dashboard of what was read and of the evidence `received` (in batches of whole
/// workflows, in workflow order), or the error decoding a record. CPU only: run on a
/// blocking thread.
fn summarize<R: Streamed>(
    read: Read,
    received: Vec<tokio::sync::mpsc::Receiver<Vec<R>>>,
    code: Option<RegulationCode>,
    workflow: Option<Uuid>,
    as_of: NaiveDate,
    window: u32,
) -> Result<Dashboard, projections::ProjectionError> {
    let Read { workflows, system, na_rows, decisions, links } = read;

    let mut na: HashMap<Uuid, HashMap<String, String>> = HashMap::new();
    for (w, v) in na_rows {
        na.entry(w).or_default().insert(v.requirement_id, v.justification);
    }
    let mut workflows_by_state: BTreeMap<String, usize> = BTreeMap::new();
    for wf in &workflows {
        *workflows_by_state.entry(wf.state.clone()).or_default() += 1;
    }
    let indexes: HashMap<RegulationCode, RegulationIndex> = workflows
        .iter()
        .filter_map(|wf| RegulationCode::parse(&wf.regulation).ok())
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .map(|code| (code, RegulationIndex::new(code, &links_for(&links, code))))
        .collect();
    let horizon = as_of.checked_add_days(Days::new(u64::from(window))).unwrap_or(NaiveDate::MAX);
    let reads = Reads { system: &system, na: &na, indexes: &indexes, as_of, window, horizon };
    let position: HashMap<Uuid, usize> = workflows.iter().enumerate().map(|(i, wf)| (wf.workflow_id, i)).collect();
    // Each receiver on a thread of its own (the first on this one), tallying the workflows
    // of the batches it is sent.
    let (workflows, reads, position) = (&workflows, &reads, &position);
    // A judging thread that fails to decode a record stops (dropping its receiver, which
    // ends the stream) and returns the error.
    let judge = move |mut received: tokio::sync::mpsc::Receiver<Vec<R>>| {
        let (mut tally, mut judged, mut decoded) = (Tally::default(), Vec::new(), Vec::new());
        while let Some(batch) = received.blocking_recv() {
            // A workflow's records come together (the stream is in workflow order, and
            // batches end where a workflow does); those of workflows not shown are skipped.
            for records in batch.chunk_by(|a, b| a.workflow() == b.workflow()) {
                let Some(&i) = records.first().and_then(|e| position.get(&e.workflow())) else { continue };
                if let Some(wf) = workflows.get(i) {
                    decoded.clear();
                    for record in records {
                        record.facts_into(&mut decoded)?;
                    }
                    judged.push(i);
                    tally.workflow(wf, &decoded, reads);
                }
            }
        }
        Ok::<_, projections::ProjectionError>((tally, judged))
    };
    let mut received = received.into_iter();
    let first = received.next();
    let parts: Vec<(Tally, Vec<usize>)> = std::thread::scope(|scope| {
        let others: Vec<_> = received.map(|r| scope.spawn(move || judge(r))).collect();
        let mut parts: Vec<_> = first.into_iter().map(judge).collect();
        parts.extend(others.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        parts.into_iter().collect::<Result<Vec<_>, _>>()
    })?;
    let mut tally = Tally::default();
    let mut judged = vec![false; workflows.len()];
    for (part, seen) in parts {
        tally.add(part);
        for i in seen {
            if let Some(done) = judged.get_mut(i) {
                *done = true;
            }
        }
    }
    for (wf, _) in workflows.iter().zip(&judged).filter(|(_, done)| !**done) {
        tally.workflow(wf, &[], reads);
    }
    let Tally { statuses, system: counted_system, by_kind, mut expiring } = tally;

    // Only the statuses that occur, by name.
    let requirements_by_status: BTreeMap<String, usize> =
        RequirementStatus::ALL.iter().zip(statuses).filter(|(_, n)| *n > 0).map(|(s, n)| (s.as_str().to_owned(), n)).collect();
    let ready = ["satisfied", "expiring"].iter().map(|s| requirements_by_status.get(*s).copied().unwrap_or(0)).sum::<usize>();
    let applicable = requirements_by_status.iter().filter(|(k, _)| k.as_str() != "not_applicable").map(|(_, v)| v).sum::<usize>();
    let coverage_percent = if applicable == 0 { 0.0 } else { (ready as f64 * 1000.0 / applicable as f64).round() / 10.0 };
    let mut evidence_by_kind: BTreeMap<String, usize> =
        EvidenceKind::ALL.iter().zip(by_kind).filter(|(_, n)| *n > 0).map(|(k, n)| (k.as_str().to_owned(), n)).collect();
    if !counted_system.is_empty() {
        evidence_by_kind.insert(SYSTEM_EVIDENCE_KIND.to_owned(), counted_system.len());
    }
    soonest(&mut expiring);

    Ok(Dashboard {
        as_of,
        regulation: code.map(|c| c.as_str().to_owned()),
        workflow_id: workflow,
        workflows: workflows.len(),
        requirements_by_status,
        coverage_percent,
        evidence_by_kind,
        expiring_soon: expiring,
        workflows_by_state,
        recent_decisions: decisions,
    })
}

/// Days of decisions the dashboard counts, today included.
const RECENT_DAYS: u64 = 7;

/// Evidence listed as expiring soon, at most.
const EXPIRING_SHOWN: usize = 100;

/// Keeps the [`EXPIRING_SHOWN`] soonest of `expiring`, soonest first.
fn soonest(expiring: &mut Vec<ExpiringEvidence>) {
    expiring.sort_unstable_by_key(|e| (e.valid_until, e.evidence_id));
    expiring.truncate(EXPIRING_SHOWN);
}

/// What [`Tally::workflow`] judges a workflow on, besides its evidence.
struct Reads<'a> {
    system: &'a [projections::system_evidence::SystemEvidenceView],
    na: &'a HashMap<Uuid, HashMap<String, String>>,
    indexes: &'a HashMap<RegulationCode, RegulationIndex>,
    as_of: NaiveDate,
    window: u32,
    /// The end (excluded) of the expiring window.
    horizon: NaiveDate,
}

/// The workflows counted so far: their requirement statuses, the system evidence that
/// counts for them, their evidence by kind and what of it expires soon.
#[derive(Default)]
struct Tally {
    /// Indexed as [`RequirementStatus::ALL`].
    statuses: [usize; RequirementStatus::ALL.len()],
    system: std::collections::HashSet<Uuid>,
    /// Indexed as [`EvidenceKind::ALL`].
    by_kind: [usize; EvidenceKind::ALL.len()],
    /// Evidence in the expiring window (at most a few times [`EXPIRING_SHOWN`] held).
    expiring: Vec<ExpiringEvidence>,
}

impl Tally {
    /// Adds another part's counts.
    fn add(&mut self, other: Tally) {
        for (total, n) in self.statuses.iter_mut().zip(other.statuses) {
            *total += n;
        }
        self.system.extend(other.system);
        for (total, n) in self.by_kind.iter_mut().zip(other.by_kind) {
            *total += n;
        }
        self.expiring.extend(other.expiring);
        soonest(&mut self.expiring);
    }

    /// Counts one workflow with its active evidence.
    fn workflow(&mut self, wf: &projections::compliance::WorkflowView, evidence: &[EvidenceFacts], r: &Reads<'_>) {
        for e in evidence {
            if let Some(i) = EvidenceKind::ALL.iter().position(|k| *k == e.kind) {
                self.by_kind[i] += 1;
            }
            if e.valid_until >= r.as_of && e.valid_until < r.horizon {
                let kind = e.kind.as_str().to_owned();
                self.expiring.push(ExpiringEvidence {
                    evidence_id: e.evidence_id,
                    workflow_id: e.workflow_id,
                    kind,
                    valid_until: e.valid_until,
                });
                if self.expiring.len() >= 4 * EXPIRING_SHOWN {
                    soonest(&mut self.expiring);
                }
            }
        }
        let Some(index) = RegulationCode::parse(&wf.regulation).ok().and_then(|code| r.indexes.get(&code)) else { return };
        let empty = HashMap::new();
        let not_applicable = r.na.get(&wf.workflow_id).unwrap_or(&empty);
        let j = Judging { workflow: wf, index, evidence, system: r.system, not_applicable, as_of: r.as_of, expiring_days: r.window };
        for (total, n) in self.statuses.iter_mut().zip(count_statuses(j)) {
            *total += n;
        }
        self.system.extend(r.system.iter().filter(|v| system_evidence_counts(wf, index, v)).map(|v| v.evidence_id));
    }
}

fn links_for(links: &[TenantLink], code: RegulationCode) -> Vec<TenantLink> {
    links.iter().filter(|l| l.regulation == code.as_str()).cloned().collect()
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod tests;
