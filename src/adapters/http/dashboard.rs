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

use aggregates::compliance::{RegulationCode, RequirementStatus, SYSTEM_EVIDENCE_KIND};
use projections::evidence::EvidenceFacts;

use super::extract::{ApiQuery, Caller};
use super::regulations::{regulation, tenant_links, READERS};
use super::SharedState;
use crate::application::catalog::TenantLink;
use crate::application::compliance::{count_statuses, system_evidence_counts, Judging, RegulationIndex};
use crate::error::{database, ApiError, ErrorCode};

/// Tenant, generation, filters, as-of day.
type Key = (Uuid, u64, Option<RegulationCode>, Option<Uuid>, NaiveDate);

/// Cached dashboards. Each tenant has a generation that every applied compliance event
/// bumps; keys carry it, so a bump makes the tenant's cached answers unreachable at once
/// (they then age out), at the cost of one counter increment per event.
#[derive(Clone)]
pub struct DashboardCache {
    cache: moka::future::Cache<Key, Arc<Dashboard>>,
    generations: moka::sync::Cache<Uuid, Arc<std::sync::atomic::AtomicU64>>,
    /// Threads computing dashboards at once: at most one per core, so cold dashboards
    /// (CPU-bound, a tenth of a second for a large tenant) never take more than the
    /// machine's cores, whatever the number of requests for different filters. A large
    /// tenant's dashboard takes one permit per thread it judges its workflows on.
    computing: Arc<tokio::sync::Semaphore>,
    cores: usize,
    /// One cold dashboard at a time per tenant: a tenant's next one waits for its previous
    /// one, so a tenant flooding cold dashboards holds one connection and one place in the
    /// queue for `computing`, and every other tenant's dashboard comes next. (Should the
    /// cache ever evict a tenant's lock while held, that tenant could have two at once.)
    turns: moka::sync::Cache<Uuid, Arc<tokio::sync::Mutex<()>>>,
}

/// Workflows worth a thread of their own when a dashboard is computed.
const WORKFLOWS_PER_THREAD: usize = 500;

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
    async fn applied(&self, entry: &ledger::LedgerEntry) {
        use aggregates::Stream;
        if matches!(Stream::of(&entry.aggregate_type), Some(Stream::ComplianceWorkflow | Stream::Evidence | Stream::ControlMapping)) {
            self.invalidate_tenant(entry.tenant_id);
        }
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
    /// Decisions of the last 7 days, by policy.
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
    // A tenant's cold dashboards one at a time; each reads in one transaction (one
    // connection), then judges its workflows on up to one thread per core
    // (one per WORKFLOWS_PER_THREAD workflows), each thread holding a permit of
    // `computing`. Reads hold no permit, so a tenant whose reads are slow keeps no other
    // tenant's dashboard from being judged.
    let cores = state.dashboards.cores;
    let _turn = state.dashboards.turns.get_with(caller.tenant_id.as_uuid(), Default::default).lock_owned().await;
    let read = read_all(state, caller, code, workflow).await?;
    // Hundreds of thousands of requirement statuses for a large tenant: computed on
    // blocking threads, so the runtime's workers keep serving every other request.
    let threads = cores.min(read.workflows.len().div_ceil(WORKFLOWS_PER_THREAD)).max(1);
    let permit = state
        .dashboards
        .computing
        .clone()
        .acquire_many_owned(u32::try_from(threads).unwrap_or(1))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _computing = permit;
        summarize(read, code, workflow, as_of, window, threads)
    })
    .await
    .map_err(|e| failed(e.to_string()))
}

/// Everything [`compute`] reads, in one transaction.
async fn read_all(state: &SharedState, caller: &Caller, code: Option<RegulationCode>, workflow: Option<Uuid>) -> Result<Read, ApiError> {
    let mut tx = state.tenant_tx(caller).await?;
    let mut workflows = projections::compliance::all_workflows(&mut tx, code.map(|c| c.as_str())).await?;
    if let Some(w) = workflow {
        workflows.retain(|x| x.workflow_id == w);
    }
    let evidence = match workflow {
        Some(w) => projections::evidence::workflow_facts(&mut tx, w).await?,
        None => projections::evidence::tenant_facts(&mut tx).await?,
    };
    let first = workflows.iter().map(|w| w.audit_period_start).min();
    let last = workflows.iter().map(|w| w.audit_period_end).max();
    let system = match (first, last) {
        (Some(first), Some(last)) => projections::system_evidence::of_days(&mut tx, first, last).await?,
        _ => vec![],
    };
    let na_rows = projections::compliance::not_applicable(&mut tx, workflow).await?;
    let since = Utc::now() - chrono::Duration::days(7);
    let decisions: Vec<(Uuid, Option<bool>, i64)> = sqlx::query_as(
        "SELECT policy_id, allowed, count(*) FROM gov_policy_decisions WHERE decided_at >= $1 GROUP BY policy_id, allowed ORDER BY policy_id",
    )
    .bind(since)
    .fetch_all(&mut *tx)
    .await
    .map_err(database)?;
    let links = tenant_links(&mut tx, code).await?;
    Ok(Read { workflows, evidence, system, na_rows, decisions, links })
}

/// What [`compute`] reads from the read models, for [`summarize`].
struct Read {
    workflows: Vec<projections::compliance::WorkflowView>,
    /// Active evidence, in no order.
    evidence: Vec<EvidenceFacts>,
    system: Vec<projections::system_evidence::SystemEvidenceView>,
    na_rows: Vec<(Uuid, projections::compliance::NotApplicableView)>,
    decisions: Vec<(Uuid, Option<bool>, i64)>,
    links: Vec<TenantLink>,
}

/// The dashboard of what was read (CPU only, no I/O).
fn summarize(read: Read, code: Option<RegulationCode>, workflow: Option<Uuid>, as_of: NaiveDate, window: u32, threads: usize) -> Dashboard {
    let Read { workflows, mut evidence, system, na_rows, decisions, links } = read;

    let mut na: HashMap<Uuid, HashMap<String, String>> = HashMap::new();
    for (w, v) in na_rows {
        na.entry(w).or_default().insert(v.requirement_id, v.justification);
    }
    // Each workflow's records together, and where they are.
    evidence.sort_unstable_by_key(|e| e.workflow_id);
    let mut by_workflow: HashMap<Uuid, std::ops::Range<usize>> = HashMap::new();
    for (i, e) in evidence.iter().enumerate() {
        by_workflow.entry(e.workflow_id).and_modify(|r| r.end = i + 1).or_insert(i..i + 1);
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
    let reads = Reads { evidence: &evidence, by_workflow: &by_workflow, system: &system, na: &na, indexes: &indexes, as_of, window };
    // The workflows in one part per thread, tallied at once.
    let part = workflows.len().div_ceil(threads.max(1)).max(1);
    let tallies: Vec<Tally> = if part >= workflows.len() {
        vec![tally(&workflows, &reads)]
    } else {
        std::thread::scope(|scope| {
            let running: Vec<_> = workflows.chunks(part).map(|chunk| scope.spawn(|| tally(chunk, &reads))).collect();
            running.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    };
    let mut status_counts = [0usize; RequirementStatus::ALL.len()];
    // System evidence counts for every workflow whose period and scope it reaches; listed once.
    let mut counted_system: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    for t in tallies {
        for (total, n) in status_counts.iter_mut().zip(t.statuses) {
            *total += n;
        }
        counted_system.extend(t.system);
    }
    // Only the statuses that occur, by name.
    let requirements_by_status: BTreeMap<String, usize> =
        RequirementStatus::ALL.iter().zip(status_counts).filter(|(_, n)| *n > 0).map(|(s, n)| (s.as_str().to_owned(), n)).collect();
    let ready = ["satisfied", "expiring"].iter().map(|s| requirements_by_status.get(*s).copied().unwrap_or(0)).sum::<usize>();
    let applicable = requirements_by_status.iter().filter(|(k, _)| k.as_str() != "not_applicable").map(|(_, v)| v).sum::<usize>();
    let coverage_percent = if applicable == 0 { 0.0 } else { (ready as f64 * 1000.0 / applicable as f64).round() / 10.0 };

    // The evidence of the workflows shown.
    let relevant: Vec<&EvidenceFacts> =
        workflows.iter().filter_map(|wf| by_workflow.get(&wf.workflow_id).and_then(|r| evidence.get(r.clone()))).flatten().collect();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &relevant {
        *by_kind.entry(e.kind.as_str()).or_default() += 1;
    }
    let mut evidence_by_kind: BTreeMap<String, usize> = by_kind.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
    if !counted_system.is_empty() {
        evidence_by_kind.insert(SYSTEM_EVIDENCE_KIND.to_owned(), counted_system.len());
    }
    let horizon = as_of.checked_add_days(Days::new(u64::from(window))).unwrap_or(NaiveDate::MAX);
    let mut expiring: Vec<&EvidenceFacts> = relevant.into_iter().filter(|e| e.valid_until >= as_of && e.valid_until < horizon).collect();
    expiring.sort_unstable_by_key(|e| (e.valid_until, e.evidence_id));
    let expiring_soon: Vec<ExpiringEvidence> = expiring
        .into_iter()
        .take(100)
        .map(|e| ExpiringEvidence {
            evidence_id: e.evidence_id,
            workflow_id: e.workflow_id,
            kind: e.kind.clone(),
            valid_until: e.valid_until,
        })
        .collect();

    let mut counts: BTreeMap<Uuid, DecisionCounts> = BTreeMap::new();
    for (policy_id, allowed, n) in decisions {
        let c = counts.entry(policy_id).or_insert_with(|| DecisionCounts { policy_id, ..Default::default() });
        match allowed {
            Some(true) => c.allow += n,
            Some(false) => c.deny += n,
            None => c.undefined += n,
        }
    }
    Dashboard {
        as_of,
        regulation: code.map(|c| c.as_str().to_owned()),
        workflow_id: workflow,
        workflows: workflows.len(),
        requirements_by_status,
        coverage_percent,
        evidence_by_kind,
        expiring_soon,
        workflows_by_state,
        recent_decisions: counts.into_values().collect(),
    }
}

/// What [`tally`] judges the workflows on.
struct Reads<'a> {
    /// Active evidence, each workflow's records together (sorted by workflow).
    evidence: &'a [EvidenceFacts],
    by_workflow: &'a HashMap<Uuid, std::ops::Range<usize>>,
    system: &'a [projections::system_evidence::SystemEvidenceView],
    na: &'a HashMap<Uuid, HashMap<String, String>>,
    indexes: &'a HashMap<RegulationCode, RegulationIndex>,
    as_of: NaiveDate,
    window: u32,
}

/// Some workflows' requirement statuses counted, and the system evidence that counts for them.
struct Tally {
    statuses: [usize; RequirementStatus::ALL.len()],
    system: std::collections::HashSet<Uuid>,
}

fn tally(workflows: &[projections::compliance::WorkflowView], r: &Reads<'_>) -> Tally {
    let mut out = Tally { statuses: [0; RequirementStatus::ALL.len()], system: Default::default() };
    let empty = HashMap::new();
    for wf in workflows {
        let Some(index) = RegulationCode::parse(&wf.regulation).ok().and_then(|code| r.indexes.get(&code)) else { continue };
        let evidence = r.by_workflow.get(&wf.workflow_id).and_then(|range| r.evidence.get(range.clone())).unwrap_or(&[]);
        let not_applicable = r.na.get(&wf.workflow_id).unwrap_or(&empty);
        let j = Judging { workflow: wf, index, evidence, system: r.system, not_applicable, as_of: r.as_of, expiring_days: r.window };
        for (total, n) in out.statuses.iter_mut().zip(count_statuses(j)) {
            *total += n;
        }
        out.system.extend(r.system.iter().filter(|v| system_evidence_counts(wf, index, v)).map(|v| v.evidence_id));
    }
    out
}

fn links_for(links: &[TenantLink], code: RegulationCode) -> Vec<TenantLink> {
    links.iter().filter(|l| l.regulation == code.as_str()).cloned().collect()
}
