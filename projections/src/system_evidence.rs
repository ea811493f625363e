//! System evidence (`gov_system_evidence*`): the decisions of policy versions that check
//! CSF controls, rolled up per (tenant, policy, control, UTC day of the decision's ledger
//! `recorded_at`). The rules (what a decision counts as, how a day's outcome follows from
//! each version's own check) are the domain's, `aggregates::compliance::system_evidence`.
//!
//! Tables, all owned and rebuilt by this projector:
//! - `gov_system_evidence_checks`: each version's checks, from `PolicyCreated` and
//!   `PolicyVersionAdded` (kept here so the projector never reads another projector's
//!   tables, which a rebuild would not have rebuilt yet);
//! - `gov_system_evidence_tallies`: one version's counted decisions per control and day;
//! - `gov_system_evidence`: the roll-up (totals, versions, seq range, outcome), recomputed
//!   from the day's tallies whenever one changes;
//! - `gov_system_evidence_decisions`: the seq of every counted decision (for proofs).
//!
//! Counts only add up and every derived column is recomputed from them, so the rows do not
//! depend on how the runner batches the ledger: a rebuild reproduces them exactly. Each
//! event is applied once, in the runner's transaction that advances the position.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::compliance::{day_outcome, system_evidence_id, ControlId, DecisionClass, VersionTally, SYSTEM_EVIDENCE_KIND};
use aggregates::facts::{DecisionEvent, RulePath, DECISION_AGGREGATE};
use aggregates::policy::{ControlCheck, ControlChecks, PassWhen, PolicyEvent};
use aggregates::{Recorded, Stream};

use crate::{EventRecord, Page, ProjectionError, Projector};

/// One roll-up of system evidence: a policy's counted decisions on one control and day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SystemEvidenceView {
    /// Stable across rebuilds: derived from tenant, policy, control and day.
    pub evidence_id: Uuid,
    /// Always `policy_evaluation`: system evidence, not an uploaded record.
    pub kind: String,
    pub policy_id: Uuid,
    /// The CSF 2.0 control the policy's versions check.
    pub control_id: String,
    /// The UTC day of the decisions' ledger `recorded_at`; the evidence's whole period.
    pub day: NaiveDate,
    pub allowed: i64,
    pub denied: i64,
    pub undefined: i64,
    /// The policy versions whose decisions count, ascending.
    pub versions: Vec<i32>,
    /// The ledger seqs of the first and last counted decision.
    pub min_seq: i64,
    pub max_seq: i64,
    /// `pass` or `fail`, by each version's own check (docs/compliance.md).
    pub outcome: String,
}

impl SystemEvidenceView {
    /// How many decisions the roll-up counts.
    pub fn decisions(&self) -> i64 {
        self.allowed.saturating_add(self.denied).saturating_add(self.undefined)
    }
}

const COLUMNS: &str =
    "evidence_id, policy_id, control_id, day, allowed, denied, undefined, versions, min_seq, max_seq, outcome, $1::text AS kind";

/// Which roll-ups a list shows; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct SystemEvidenceFilter {
    pub policy_id: Option<Uuid>,
    pub control_id: Option<String>,
    /// Days from this one.
    pub from: Option<NaiveDate>,
    /// Days up to this one (included).
    pub to: Option<NaiveDate>,
    pub outcome: Option<String>,
}

const FILTER: &str = "($2::uuid IS NULL OR policy_id = $2) AND ($3::text IS NULL OR control_id = $3) \
    AND ($4::date IS NULL OR day >= $4) AND ($5::date IS NULL OR day <= $5) AND ($6::text IS NULL OR outcome = $6)";

/// One page of the tenant's system evidence, by day (then policy and control).
pub async fn page(
    conn: &mut PgConnection,
    f: &SystemEvidenceFilter,
    (page, page_size): (u32, u32),
    order: crate::SortOrder,
) -> Result<Page<SystemEvidenceView>, ProjectionError> {
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(SYSTEM_EVIDENCE_KIND).bind(f.policy_id).bind(f.control_id.as_deref()).bind(f.from).bind(f.to).bind(f.outcome.as_deref())
        };
    }
    let count = format!("SELECT count(*) FROM gov_system_evidence WHERE $1::text IS NOT NULL AND {FILTER}");
    let total: i64 = bind_filter!(sqlx::query_scalar(&count)).fetch_one(&mut *conn).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM gov_system_evidence WHERE {FILTER} ORDER BY day {o}, policy_id {o}, control_id {o} LIMIT $7 OFFSET $8",
        o = order.sql()
    );
    let items =
        bind_filter!(sqlx::query_as(&sql)).bind(i64::from(page_size)).bind(crate::offset(page, page_size)).fetch_all(&mut *conn).await?;
    Ok(Page { items, page, page_size, total })
}

/// The tenant's decisions of the days from `from` on, by policy (in policy order):
/// (policy, allowed, denied, undefined).
pub async fn decisions_since(conn: &mut PgConnection, from: NaiveDate) -> Result<Vec<(Uuid, i64, i64, i64)>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT policy_id, sum(allowed)::bigint, sum(denied)::bigint, sum(undefined)::bigint FROM gov_decision_days \
         WHERE day >= $1 GROUP BY policy_id ORDER BY policy_id",
    )
    .bind(from)
    .fetch_all(conn)
    .await?)
}

/// The tenant's system evidence of the days from `from` to `to` (both included), in a
/// stable order (day, policy, control).
pub async fn of_days(conn: &mut PgConnection, from: NaiveDate, to: NaiveDate) -> Result<Vec<SystemEvidenceView>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM gov_system_evidence WHERE day BETWEEN $2 AND $3 ORDER BY day, policy_id, control_id");
    Ok(sqlx::query_as(&sql).bind(SYSTEM_EVIDENCE_KIND).bind(from).bind(to).fetch_all(conn).await?)
}

/// The ledger seqs at the given 0-based positions (in seq order) among the decisions a
/// roll-up counts.
pub async fn decision_seqs_at(conn: &mut PgConnection, v: &SystemEvidenceView, positions: &[u64]) -> Result<Vec<i64>, ProjectionError> {
    let positions: Vec<i64> = positions.iter().map(|p| i64::try_from(*p).unwrap_or(i64::MAX)).collect();
    Ok(sqlx::query_scalar(
        "SELECT seq FROM (SELECT seq, row_number() OVER (ORDER BY seq) - 1 AS i FROM gov_system_evidence_decisions \
         WHERE policy_id = $1 AND control_id = $2 AND day = $3) s WHERE i = ANY($4) ORDER BY seq",
    )
    .bind(v.policy_id)
    .bind(&v.control_id)
    .bind(v.day)
    .bind(positions)
    .fetch_all(conn)
    .await?)
}

/// A version's tally and seq range on one control and day, as accumulated from a run.
#[derive(Debug, Clone, Copy)]
struct Accumulated {
    tally: VersionTally,
    min_seq: i64,
    max_seq: i64,
}

/// (policy, control, day, version)
type TallyKey = (Uuid, String, NaiveDate, u32);

/// What a run of events adds, written in a few statements at its end.
#[derive(Default)]
struct Run {
    tallies: BTreeMap<TallyKey, Accumulated>,
    seqs: Vec<(Uuid, String, NaiveDate, i64)>,
    /// Every decision (checked or not) by policy and day: allowed, denied, undefined.
    decided: BTreeMap<(Uuid, NaiveDate), [u64; 3]>,
}

impl Run {
    /// Counts a decision in its policy's day.
    fn decided(&mut self, policy: Uuid, day: NaiveDate, allowed: Option<bool>) {
        let class = match allowed {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        };
        if let Some(n) = self.decided.entry((policy, day)).or_default().get_mut(class) {
            *n += 1;
        }
    }

    fn count(&mut self, policy: Uuid, check: &ControlCheck, version: u32, day: NaiveDate, allowed: Option<bool>, seq: i64) {
        let control = check.control_id.as_str().to_owned();
        let a = self.tallies.entry((policy, control.clone(), day, version)).or_insert(Accumulated {
            tally: VersionTally::new(version, check.pass_when),
            min_seq: seq,
            max_seq: seq,
        });
        a.tally.count(DecisionClass::of(allowed));
        a.min_seq = a.min_seq.min(seq);
        a.max_seq = a.max_seq.max(seq);
        self.seqs.push((policy, control, day, seq));
    }

    async fn write(self, tx: &mut PgConnection, tenant: Uuid) -> Result<(), ProjectionError> {
        if !self.decided.is_empty() {
            let mut cols: (Vec<Uuid>, Vec<NaiveDate>, [Vec<i64>; 3]) = Default::default();
            for ((policy, day), n) in &self.decided {
                cols.0.push(*policy);
                cols.1.push(*day);
                for (col, n) in cols.2.iter_mut().zip(n) {
                    col.push(count(*n));
                }
            }
            let [allowed, denied, undefined] = cols.2;
            sqlx::query(
                "INSERT INTO gov_decision_days (tenant_id, policy_id, day, allowed, denied, undefined) \
                 SELECT $1, * FROM unnest($2::uuid[], $3::date[], $4::bigint[], $5::bigint[], $6::bigint[]) \
                 ON CONFLICT (tenant_id, policy_id, day) DO UPDATE SET allowed = gov_decision_days.allowed + EXCLUDED.allowed, \
                 denied = gov_decision_days.denied + EXCLUDED.denied, undefined = gov_decision_days.undefined + EXCLUDED.undefined",
            )
            .bind(tenant)
            .bind(cols.0)
            .bind(cols.1)
            .bind(allowed)
            .bind(denied)
            .bind(undefined)
            .execute(&mut *tx)
            .await?;
        }
        let mut days: BTreeSet<(Uuid, String, NaiveDate)> = BTreeSet::new();
        for ((policy, control, day, version), a) in self.tallies {
            sqlx::query(
                "INSERT INTO gov_system_evidence_tallies (tenant_id, policy_id, control_id, day, version, pass_when, allowed, denied, undefined, \
                 min_seq, max_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (tenant_id, policy_id, control_id, day, version) DO UPDATE SET \
                 allowed = gov_system_evidence_tallies.allowed + EXCLUDED.allowed, denied = gov_system_evidence_tallies.denied + EXCLUDED.denied, \
                 undefined = gov_system_evidence_tallies.undefined + EXCLUDED.undefined, \
                 min_seq = LEAST(gov_system_evidence_tallies.min_seq, EXCLUDED.min_seq), \
                 max_seq = GREATEST(gov_system_evidence_tallies.max_seq, EXCLUDED.max_seq)",
            )
            .bind(tenant)
            .bind(policy)
            .bind(&control)
            .bind(day)
            .bind(column(version)?)
            .bind(a.tally.pass_when.as_str())
            .bind(count(a.tally.allowed))
            .bind(count(a.tally.denied))
            .bind(count(a.tally.undefined))
            .bind(a.min_seq)
            .bind(a.max_seq)
            .execute(&mut *tx)
            .await?;
            days.insert((policy, control, day));
        }
        if !self.seqs.is_empty() {
            let mut cols: (Vec<Uuid>, Vec<String>, Vec<NaiveDate>, Vec<i64>) = Default::default();
            for (p, c, d, s) in self.seqs {
                cols.0.push(p);
                cols.1.push(c);
                cols.2.push(d);
                cols.3.push(s);
            }
            sqlx::query(
                "INSERT INTO gov_system_evidence_decisions (tenant_id, policy_id, control_id, day, seq) \
                 SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::date[], $5::bigint[])",
            )
            .bind(tenant)
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .execute(&mut *tx)
            .await?;
        }
        for (policy, control, day) in days {
            roll_up(tx, tenant, policy, &control, day).await?;
        }
        Ok(())
    }
}

/// Recomputes one day's roll-up from its tallies.
async fn roll_up(tx: &mut PgConnection, tenant: Uuid, policy: Uuid, control: &str, day: NaiveDate) -> Result<(), ProjectionError> {
    let rows: Vec<(i32, String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT version, pass_when, allowed, denied, undefined, min_seq, max_seq FROM gov_system_evidence_tallies \
         WHERE policy_id = $1 AND control_id = $2 AND day = $3 ORDER BY version",
    )
    .bind(policy)
    .bind(control)
    .bind(day)
    .fetch_all(&mut *tx)
    .await?;
    let mut tallies = Vec::with_capacity(rows.len());
    for (version, pass_when, allowed, denied, undefined, _, _) in &rows {
        let pass_when = PassWhen::parse(pass_when).ok_or_else(|| ProjectionError::Decode(format!("stored pass_when {pass_when:?}")))?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let version = u32::try_from(*version).unwrap_or(0);
        tallies.push(VersionTally { version, pass_when, allowed: n(*allowed), denied: n(*denied), undefined: n(*undefined) });
    }
    let sum = |f: fn(&VersionTally) -> u64| count(tallies.iter().map(f).fold(0u64, u64::saturating_add));
    sqlx::query(
        "INSERT INTO gov_system_evidence (tenant_id, evidence_id, policy_id, control_id, day, allowed, denied, undefined, versions, min_seq, \
         max_seq, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (tenant_id, policy_id, control_id, day) DO UPDATE SET allowed = EXCLUDED.allowed, denied = EXCLUDED.denied, \
         undefined = EXCLUDED.undefined, versions = EXCLUDED.versions, min_seq = EXCLUDED.min_seq, max_seq = EXCLUDED.max_seq, \
         outcome = EXCLUDED.outcome",
    )
    .bind(tenant)
    .bind(system_evidence_id(tenant, policy, control, day))
    .bind(policy)
    .bind(control)
    .bind(day)
    .bind(sum(|t| t.allowed))
    .bind(sum(|t| t.denied))
    .bind(sum(|t| t.undefined))
    .bind(rows.iter().map(|r| r.0).collect::<Vec<i32>>())
    .bind(rows.iter().map(|r| r.5).min().unwrap_or(0))
    .bind(rows.iter().map(|r| r.6).max().unwrap_or(0))
    .bind(day_outcome(&tallies).as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn column(version: u32) -> Result<i32, ProjectionError> {
    i32::try_from(version).map_err(|_| ProjectionError::Decode(format!("policy version {version} is out of range")))
}

async fn record_checks(tx: &mut PgConnection, e: &EventRecord, version: u32, checks: &ControlChecks) -> Result<(), ProjectionError> {
    for c in checks.iter() {
        sqlx::query(
            "INSERT INTO gov_system_evidence_checks (tenant_id, policy_id, version, control_id, rule, pass_when, ledger_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.tenant_id)
        .bind(e.aggregate_uuid()?)
        .bind(column(version)?)
        .bind(c.control_id.as_str())
        .bind(c.rule.as_ref().map(RulePath::as_str))
        .bind(c.pass_when.as_str())
        .bind(e.seq)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn load_checks(tx: &mut PgConnection, policy: Uuid, version: u32) -> Result<Vec<ControlCheck>, ProjectionError> {
    let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT control_id, rule, pass_when FROM gov_system_evidence_checks WHERE policy_id = $1 AND version = $2 ORDER BY control_id",
    )
    .bind(policy)
    .bind(column(version)?)
    .fetch_all(&mut *tx)
    .await?;
    let bad = |what: &str, e: String| ProjectionError::Decode(format!("stored check of policy {policy} v{version}: {what}: {e}"));
    rows.into_iter()
        .map(|(control, rule, pass_when)| {
            Ok(ControlCheck {
                control_id: ControlId::parse(&control).map_err(|e| bad("control_id", e.to_string()))?,
                rule: rule.as_deref().map(RulePath::parse).transpose().map_err(|e| bad("rule", e.to_string()))?,
                pass_when: PassWhen::parse(&pass_when).ok_or_else(|| bad("pass_when", pass_when.clone()))?,
            })
        })
        .collect()
}

/// Builds the system evidence read model.
#[derive(Debug, Default)]
pub struct SystemEvidenceProjector {
    /// The control checks of policy versions as read back, by (tenant, policy, version),
    /// so a run of decisions does not read them again in every transaction. A version's
    /// checks are fixed by its ledger entry, and its decisions come after that entry, so an
    /// answer read stays true, "none" included (a read within a transaction that rolls back
    /// saw rows the retry writes again, the same). Bounded: emptied when it holds
    /// [`CHECKS_HELD`] versions.
    known: std::sync::Mutex<HashMap<(Uuid, Uuid, u32), Vec<ControlCheck>>>,
}

/// How many policy versions' checks [`SystemEvidenceProjector`] holds at most.
const CHECKS_HELD: usize = 10_000;

impl SystemEvidenceProjector {
    /// A version's checks: held, or read (then held).
    async fn checks_of(
        &self,
        tx: &mut PgConnection,
        tenant: Uuid,
        policy: Uuid,
        version: u32,
    ) -> Result<Vec<ControlCheck>, ProjectionError> {
        let key = (tenant, policy, version);
        if let Some(held) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(held);
        }
        let read = load_checks(tx, policy, version).await?;
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= CHECKS_HELD {
                known.clear();
            }
            known.insert(key, read.clone());
        }
        Ok(read)
    }
}

#[async_trait::async_trait]
impl Projector for SystemEvidenceProjector {
    fn name(&self) -> &'static str {
        "system_evidence"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        const TYPES: &[&str] = &[Stream::Policy.aggregate_type(), DECISION_AGGREGATE];
        TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "gov_system_evidence_checks",
            "gov_system_evidence_tallies",
            "gov_system_evidence",
            "gov_system_evidence_decisions",
            "gov_decision_days",
        ]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &EventRecord) -> Result<(), ProjectionError> {
        self.apply_many(tx, std::slice::from_ref(e)).await
    }

    /// A run is one tenant's: checks are recorded as they come, decisions are counted in
    /// memory and written at the end, each touched day's roll-up recomputed once.
    async fn apply_many(&self, tx: &mut PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        let Some(tenant) = events.first().map(|e| e.tenant_id) else { return Ok(()) };
        let mut checks: HashMap<(Uuid, u32), Vec<ControlCheck>> = HashMap::new();
        let mut run = Run::default();
        for e in events {
            match e.decode()? {
                Some(Recorded::Policy(PolicyEvent::PolicyCreated { version, control_checks, .. }))
                | Some(Recorded::Policy(PolicyEvent::PolicyVersionAdded { version, control_checks, .. })) => {
                    record_checks(tx, e, *version, control_checks).await?;
                    checks.insert((e.aggregate_uuid()?, *version), control_checks.iter().cloned().collect());
                }
                Some(Recorded::Decision(DecisionEvent::PolicyEvaluated(d))) => {
                    let key = (d.policy_id.as_uuid(), d.policy_version);
                    // Checks recorded in this run come first: they are not committed yet.
                    if let std::collections::hash_map::Entry::Vacant(slot) = checks.entry(key) {
                        slot.insert(self.checks_of(tx, tenant, key.0, key.1).await?);
                    }
                    let day = e.recorded_at.date_naive();
                    run.decided(key.0, day, d.allowed);
                    for c in checks.get(&key).into_iter().flatten().filter(|c| c.counts(d.rule.as_ref())) {
                        run.count(key.0, c, key.1, day, d.allowed, e.seq);
                    }
                }
                _ => {}
            }
        }
        run.write(tx, tenant).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(control: &str, pass_when: PassWhen) -> ControlCheck {
        ControlCheck { control_id: ControlId::parse(control).unwrap_or_else(|e| panic!("{e}")), rule: None, pass_when }
    }

    #[test]
    fn a_run_tallies_each_version_on_each_control_and_day_with_its_seq_range() {
        let (policy, day) = (Uuid::from_u128(7), NaiveDate::from_ymd_opt(2026, 11, 29).unwrap_or_default());
        let next = day.succ_opt().unwrap_or_default();
        let (v1, v2) = (check("PR.AA-01", PassWhen::NoDeny), check("PR.AA-01", PassWhen::Decided));
        let mut run = Run::default();
        run.count(policy, &v1, 1, day, Some(true), 10);
        run.count(policy, &v1, 1, day, Some(false), 12);
        run.count(policy, &v2, 2, day, None, 15);
        run.count(policy, &v1, 1, next, Some(true), 20);
        assert_eq!(run.tallies.len(), 3, "one tally per version and day");
        let first = run.tallies[&(policy, "PR.AA-01".to_owned(), day, 1)];
        assert_eq!((first.tally.allowed, first.tally.denied, first.min_seq, first.max_seq), (1, 1, 10, 12));
        assert_eq!(first.tally.pass_when, PassWhen::NoDeny, "judged by its own version's check");
        let second = run.tallies[&(policy, "PR.AA-01".to_owned(), day, 2)];
        assert_eq!((second.tally.undefined, second.tally.pass_when), (1, PassWhen::Decided));
        assert_eq!(run.seqs.iter().map(|s| s.3).collect::<Vec<_>>(), vec![10, 12, 15, 20], "every counted decision is kept for proofs");
        let tallies: Vec<VersionTally> = run.tallies.iter().filter(|(k, _)| k.2 == day).map(|(_, a)| a.tally).collect();
        assert_eq!(day_outcome(&tallies), aggregates::compliance::Outcome::Fail, "version 1 denied under no_deny");
    }

    #[test]
    fn a_run_counts_every_decision_by_policy_and_day_and_outcome() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap_or_default();
        let next = day.succ_opt().unwrap_or_default();
        let mut run = Run::default();
        for allowed in [Some(true), Some(true), Some(false), None] {
            run.decided(a, day, allowed);
        }
        run.decided(a, next, Some(false));
        run.decided(b, day, None);
        assert_eq!(run.decided.into_iter().collect::<Vec<_>>(), vec![((a, day), [2, 1, 1]), ((a, next), [0, 1, 0]), ((b, day), [0, 0, 1])]);
    }

    #[test]
    fn the_projector_owns_the_system_evidence_tables_and_the_decision_days_and_reads_policies_and_decisions() {
        let p = SystemEvidenceProjector::default();
        assert!(p.tables().iter().all(|t| t.starts_with("gov_system_evidence") || *t == "gov_decision_days"));
        assert_eq!(p.tables().len(), 5);
        assert!(p.handles("Policy") && p.handles("PolicyDecision") && !p.handles("Evidence"));
    }
}
