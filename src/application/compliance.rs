//! Requirement statuses of workflows: the catalog (merged with the tenant's mappings),
//! the evidence read models (uploaded records and system evidence) and the pure
//! derivation in `aggregates::compliance::status`. Shared by the workflow endpoints, the
//! evidence bundle and the dashboard.
//!
//! System evidence belongs to the tenant, not to a workflow: a roll-up counts for every
//! workflow of the tenant whose audit period includes its day, through the same control →
//! requirement links as an uploaded record naming that control, with the day as its
//! period and its outcome (`pass`/`fail`) as the record's outcome.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

use aggregates::compliance::{
    contribution, derive, status_of, Contribution, Cover, Outcome, Period, RegulationCode, Relation, RequirementStatus,
};
use projections::compliance::WorkflowView;
use projections::evidence::EvidenceFacts;
use projections::system_evidence::SystemEvidenceView;

use crate::application::catalog::{merged_controls, Catalog, Regulation, TenantLink};

/// One in-scope requirement of a workflow, with its derived status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequirementStatusView {
    pub requirement_id: String,
    pub title: String,
    /// `satisfied`, `expiring`, `expired`, `partial`, `missing` or `not_applicable`.
    #[schema(value_type = String)]
    pub status: RequirementStatus,
    /// The active uploaded evidence that counts towards it (directly or through a control).
    pub evidence_ids: Vec<Uuid>,
    /// The system evidence (kind `policy_evaluation`) that counts towards it: decisions of
    /// policies that check a control it maps to, one roll-up per policy, control and day.
    pub system_evidence: Vec<SystemEvidenceRef>,
    /// Days of the audit period no satisfying evidence covers, or a failed result marks.
    #[schema(value_type = Vec<Object>)]
    pub gaps: Vec<Period>,
    pub covered_until: Option<NaiveDate>,
    pub not_applicable_justification: Option<String>,
}

/// One roll-up of system evidence, as a requirement lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SystemEvidenceRef {
    pub evidence_id: Uuid,
    /// Always `policy_evaluation`.
    pub kind: String,
    pub policy_id: Uuid,
    pub control_id: String,
    pub day: NaiveDate,
    /// `pass` or `fail`.
    pub outcome: String,
}

impl From<&SystemEvidenceView> for SystemEvidenceRef {
    fn from(v: &SystemEvidenceView) -> Self {
        Self {
            evidence_id: v.evidence_id,
            kind: v.kind.clone(),
            policy_id: v.policy_id,
            control_id: v.control_id.clone(),
            day: v.day,
            outcome: v.outcome.clone(),
        }
    }
}

/// For each control, the requirements of one regulation it is linked to and through
/// which relation (`None`: a baseline link). Links the tenant marked not applicable carry
/// no evidence and are left out.
#[derive(Debug)]
pub struct RegulationIndex {
    pub code: RegulationCode,
    /// The regulation in the catalog (`None`: not there, so nothing to judge).
    regulation: Option<&'static Regulation>,
    /// Control → (position in the regulation's requirements, relation) of each link.
    by_control: HashMap<String, Vec<(usize, Option<Relation>)>>,
}

impl RegulationIndex {
    pub fn new(code: RegulationCode, tenant: &[TenantLink]) -> Self {
        let regulation = Catalog::get().regulation(code);
        let mut by_control: HashMap<String, Vec<(usize, Option<Relation>)>> = HashMap::new();
        for (i, q) in regulation.iter().flat_map(|reg| reg.requirements.iter().enumerate()) {
            for link in merged_controls(q, tenant).into_iter().filter(|l| l.not_applicable.is_none()) {
                let relation = link.relation.as_deref().and_then(Relation::parse);
                by_control.entry(link.control_id).or_default().push((i, relation));
            }
        }
        Self { code, regulation, by_control }
    }

    /// The requirements `control` is linked to (not marked not applicable), by position
    /// in the regulation's requirements, with the relation of each link.
    fn links_of(&self, control: &str) -> &[(usize, Option<Relation>)] {
        self.by_control.get(control).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Which requirements of its regulation a workflow has in scope, by position.
enum Scope {
    All(usize),
    Some { of: Vec<bool>, len: usize },
}

impl Scope {
    fn of(workflow: &WorkflowView, reg: &Regulation) -> Self {
        if workflow.scope_all {
            return Scope::All(reg.requirements.len());
        }
        let mut of = vec![false; reg.requirements.len()];
        for i in workflow.scope_requirements.iter().filter_map(|r| reg.position(r)) {
            of[i] = true;
        }
        let len = of.iter().filter(|x| **x).count();
        Scope::Some { of, len }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            Scope::All(n) => i < *n,
            Scope::Some { of, .. } => of.get(i).copied().unwrap_or(false),
        }
    }

    fn len(&self) -> usize {
        match self {
            Scope::All(n) => *n,
            Scope::Some { len, .. } => *len,
        }
    }
}

/// Whether a roll-up of system evidence counts for `workflow`: its day is in the audit
/// period and its control reaches an in-scope requirement.
pub fn system_evidence_counts(workflow: &WorkflowView, index: &RegulationIndex, v: &SystemEvidenceView) -> bool {
    let Some(reg) = index.regulation else { return false };
    let in_scope = |i: usize| workflow.scope_all || workflow.scope_requirements.iter().any(|r| *r == reg.requirements[i].id);
    (workflow.audit_period_start..=workflow.audit_period_end).contains(&v.day)
        && index.links_of(&v.control_id).iter().any(|(i, _)| in_scope(*i))
}

/// How a roll-up counts for a requirement it reaches through `relation`: exactly as an
/// uploaded record with its outcome and a one-day period (no verdict: an auditor reviews
/// the decisions, not a record).
fn system_cover(v: &SystemEvidenceView, relation: Option<Relation>) -> Cover {
    let outcome = Outcome::parse(&v.outcome).unwrap_or(Outcome::Fail);
    Cover { period: Period { start: v.day, end: v.day }, contribution: contribution(outcome, None, relation) }
}

/// How one evidence record counts for the requirements it reaches: through a relation
/// (`cover(relation)`).
fn covers_of(e: &EvidenceFacts) -> impl Fn(Option<Relation>) -> Cover {
    let (outcome, verdict) = (e.outcome, e.review_verdict);
    let period = Period { start: e.valid_from, end: e.valid_until };
    move |relation| Cover { period, contribution: contribution(outcome, verdict, relation) }
}

/// One in-scope requirement of a workflow as judged: what reaches it and its status.
struct Judged<'a> {
    requirement: &'a crate::application::catalog::Requirement,
    /// (position, order, evidence id, cover) of the uploaded records that reach it.
    found: &'a [(usize, u32, Uuid, Cover)],
    system_found: &'a [(usize, u32, &'a SystemEvidenceView, Cover)],
    justification: Option<&'a String>,
    /// The certified status, or else the one the covers give.
    status: RequirementStatus,
    /// What reaches it, for [`Judged::derived`]: only the views need the gaps.
    covers: &'a [Cover],
    audit: Period,
    as_of: NaiveDate,
    expiring_days: u32,
}

impl Judged<'_> {
    /// The status the covers give, with the gaps and the last covered day.
    fn derived(&self) -> aggregates::compliance::Derived {
        derive(self.justification.is_some(), self.covers, self.audit, self.as_of, self.expiring_days)
    }
}

/// What a workflow's requirements are judged on. `evidence` is active evidence and may
/// hold other workflows' records: only this workflow's count. `system` is the tenant's system
/// evidence: the roll-ups of days in the audit period count.
#[derive(Debug, Clone, Copy)]
pub struct Judging<'a> {
    pub workflow: &'a WorkflowView,
    pub index: &'a RegulationIndex,
    pub evidence: &'a [EvidenceFacts],
    pub system: &'a [SystemEvidenceView],
    pub not_applicable: &'a HashMap<String, String>,
    pub as_of: NaiveDate,
    pub expiring_days: u32,
}

/// Which in-scope requirements [`judge`] hands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// Every one, in the regulation's order.
    All,
    /// Only those something reaches (evidence, system evidence, a not-applicable mark or a
    /// certification): each of the others is `missing`, and [`judge`] returns how many.
    Reached,
}

/// (position, order, what, cover) entries grouped by position, each position's entries in
/// the order they were given: a counting sort, as positions are below the regulation's
/// number of requirements.
struct ByPosition<T> {
    entries: Vec<(usize, u32, T, Cover)>,
    /// Where position `i`'s entries start (`starts[i]..starts[i + 1]`).
    starts: Vec<usize>,
}

impl<T: Copy> ByPosition<T> {
    /// Groups `given` (entries of a position at or beyond `positions` are left out).
    fn new(given: &[(usize, u32, T, Cover)], positions: usize) -> Self {
        let mut starts = vec![0; positions + 1];
        for (i, ..) in given.iter().filter(|(i, ..)| *i < positions) {
            starts[i + 1] += 1;
        }
        for i in 0..positions {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut entries = given.to_vec();
        for e in given.iter().filter(|(i, ..)| *i < positions) {
            entries[next[e.0]] = *e;
            next[e.0] += 1;
        }
        entries.truncate(starts[positions]);
        Self { entries, starts }
    }

    /// The entries at position `i`.
    fn at(&self, i: usize) -> &[(usize, u32, T, Cover)] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&lo), Some(&hi)) => self.entries.get(lo..hi).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The positions something reaches.
    fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.starts.windows(2).enumerate().filter(|(_, w)| w[0] < w[1]).map(|(i, _)| i)
    }
}

/// Judges the in-scope requirements `visit` asks for and hands each to `each`: the one
/// derivation behind [`statuses`] (the views) and [`count_statuses`] (the dashboard's
/// counts). Returns how many in-scope requirements it left out as `missing`. A certified
/// workflow keeps the statuses recorded at its certification, whatever the evidence says
/// since.
fn judge(j: Judging<'_>, visit: Visit, mut each: impl FnMut(Judged<'_>)) -> usize {
    let Judging { workflow, index, evidence, system, not_applicable, as_of, expiring_days } = j;
    let Some(reg) = index.regulation else { return 0 };
    let scope = Scope::of(workflow, reg);
    let requirements = reg.requirements.len();
    // Every (requirement, record) that reaches it, in the records' order, then grouped by
    // requirement.
    let mut covering: Vec<(usize, u32, Uuid, Cover)> = Vec::new();
    // The cover of each requirement the current record reaches (by position), and which.
    let mut best: Vec<Option<Cover>> = vec![None; requirements];
    let mut reached: Vec<usize> = Vec::new();
    for (order, e) in (0u32..).zip(evidence.iter()).filter(|(_, e)| e.workflow_id == workflow.workflow_id) {
        // A requirement the record names directly is reached without a relation; one it
        // reaches through several controls, through the most complete of them.
        let cover = covers_of(e);
        // Requirement `i` reached with `c`; it replaces an earlier cover when `wins`.
        let mut reach = |i: usize, c: Cover, wins: bool| match best.get_mut(i) {
            Some(Some(earlier)) if wins => *earlier = c,
            Some(Some(_)) | None => {}
            Some(slot @ None) => {
                *slot = Some(c);
                reached.push(i);
            }
        };
        for c in &e.control_ids {
            for &(i, relation) in index.links_of(c) {
                let candidate = cover(relation);
                reach(i, candidate, candidate.contribution == Contribution::Satisfies);
            }
        }
        for i in e.requirement_ids.iter().filter_map(|r| reg.position(r)) {
            reach(i, cover(None), true);
        }
        for i in reached.drain(..) {
            if let Some(c) = best.get_mut(i).and_then(Option::take) {
                covering.push((i, order, e.evidence_id, c));
            }
        }
    }
    let covering = ByPosition::new(&covering, requirements);
    let mut system_covering: Vec<(usize, u32, &SystemEvidenceView, Cover)> = Vec::new();
    for (order, v) in
        (0u32..).zip(system.iter()).filter(|(_, v)| (workflow.audit_period_start..=workflow.audit_period_end).contains(&v.day))
    {
        for &(i, relation) in index.links_of(&v.control_id) {
            system_covering.push((i, order, v, system_cover(v, relation)));
        }
    }
    let system_covering = ByPosition::new(&system_covering, requirements);
    let audit = Period { start: workflow.audit_period_start, end: workflow.audit_period_end };
    let certified: HashMap<usize, RequirementStatus> = workflow
        .certification
        .iter()
        .flat_map(|c| c.statuses.iter().filter_map(|s| reg.position(s.requirement_id.as_str()).map(|i| (i, s.status))))
        .collect();
    let mut positions: Vec<usize> = match visit {
        Visit::All => (0..reg.requirements.len()).collect(),
        Visit::Reached => covering
            .positions()
            .chain(system_covering.positions())
            .chain(not_applicable.keys().filter_map(|r| reg.position(r)))
            .chain(certified.keys().copied())
            .collect(),
    };
    positions.retain(|i| scope.contains(*i));
    positions.sort_unstable();
    positions.dedup();
    let mut covers: Vec<Cover> = Vec::new();
    for &i in &positions {
        let q = &reg.requirements[i];
        let found = covering.at(i);
        let system_found = system_covering.at(i);
        covers.clear();
        covers.extend(found.iter().map(|(.., c)| *c).chain(system_found.iter().map(|(.., c)| *c)));
        let justification = not_applicable.get(&q.id);
        let status = match certified.get(&i) {
            Some(s) => *s,
            None => status_of(justification.is_some(), &covers, audit, as_of, expiring_days),
        };
        each(Judged { requirement: q, found, system_found, justification, status, covers: &covers, audit, as_of, expiring_days });
    }
    scope.len() - positions.len()
}

/// Statuses of every in-scope requirement of a workflow (see [`judge`]).
pub fn statuses(j: Judging<'_>) -> Vec<RequirementStatusView> {
    let mut views = Vec::new();
    judge(j, Visit::All, |j| {
        let derived = j.derived();
        views.push(RequirementStatusView {
            requirement_id: j.requirement.id.clone(),
            title: j.requirement.title.clone(),
            status: j.status,
            evidence_ids: j.found.iter().map(|(.., id, _)| *id).collect(),
            system_evidence: j.system_found.iter().map(|(.., v, _)| SystemEvidenceRef::from(*v)).collect(),
            gaps: derived.gaps,
            covered_until: derived.covered_until,
            not_applicable_justification: j.justification.cloned(),
        });
    });
    views
}

/// How many in-scope requirements of a workflow have each status (indexed as
/// [`RequirementStatus::ALL`]): the same judgement as [`statuses`], without building the
/// views and judging only the requirements something reaches (a dashboard counts hundreds
/// of thousands of statuses, most of them `missing`).
pub fn count_statuses(j: Judging<'_>) -> [usize; RequirementStatus::ALL.len()] {
    let mut counts = [0; RequirementStatus::ALL.len()];
    let index = |status: RequirementStatus| RequirementStatus::ALL.iter().position(|s| *s == status);
    let missing = judge(j, Visit::Reached, |j| {
        if let Some(i) = index(j.status) {
            counts[i] += 1;
        }
    });
    if let Some(i) = index(RequirementStatus::Missing) {
        counts[i] += missing;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::compliance::RequirementStatus;
    use chrono::Datelike;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
    }

    fn workflow(start: NaiveDate, end: NaiveDate, scope: &[&str]) -> WorkflowView {
        WorkflowView {
            workflow_id: Uuid::from_u128(1),
            regulation: "soc2".into(),
            name: "w".into(),
            scope_all: scope.is_empty(),
            scope_requirements: scope.iter().map(|s| (*s).to_owned()).collect(),
            owner: "o".into(),
            audit_period_start: start,
            audit_period_end: end,
            due_date: end,
            state: "draft".into(),
            created_by: "o".into(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            last_seq: 1,
            certification: None,
            certified_until: None,
        }
    }

    fn rollup(control: &str, on: NaiveDate, outcome: &str) -> SystemEvidenceView {
        SystemEvidenceView {
            evidence_id: Uuid::from_u128(u128::from(on.day())),
            kind: "policy_evaluation".into(),
            policy_id: Uuid::from_u128(9),
            control_id: control.into(),
            day: on,
            allowed: 3,
            denied: 0,
            undefined: 0,
            versions: vec![1],
            min_seq: 10,
            max_seq: 12,
            outcome: outcome.into(),
        }
    }

    fn cc61(wf: &WorkflowView, links: &[TenantLink], system: &[SystemEvidenceView], as_of: NaiveDate) -> RequirementStatusView {
        let index = RegulationIndex::new(RegulationCode::Soc2, links);
        let na = HashMap::new();
        let mut all =
            statuses(Judging { workflow: wf, index: &index, evidence: &[], system, not_applicable: &na, as_of, expiring_days: 30 });
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn link(relation: &str, not_applicable: bool) -> TenantLink {
        TenantLink {
            regulation: "soc2".into(),
            requirement_id: "CC6.1".into(),
            control_id: "PR.AA-01".into(),
            relation: relation.into(),
            rationale: "r".into(),
            not_applicable,
        }
    }

    #[test]
    fn passing_days_of_system_evidence_satisfy_a_requirement_mapped_to_their_control_and_a_failing_day_is_a_gap() {
        let wf = workflow(day(27), day(28), &["CC6.1"]);
        let s = cc61(&wf, &[], &[rollup("PR.AA-01", day(27), "pass"), rollup("PR.AA-01", day(28), "pass")], day(29));
        assert_eq!(s.status, RequirementStatus::Satisfied);
        assert_eq!((s.evidence_ids.len(), s.system_evidence.len()), (0, 2));
        assert!(s.system_evidence.iter().all(|e| e.kind == "policy_evaluation"));
        let s = cc61(&wf, &[], &[rollup("PR.AA-01", day(27), "fail"), rollup("PR.AA-01", day(28), "pass")], day(29));
        assert_eq!((s.status, s.gaps), (RequirementStatus::Partial, vec![Period { start: day(27), end: day(27) }]));
        // As with uploads, satisfying evidence that stops before the period's last day reads expired.
        let s = cc61(&wf, &[], &[rollup("PR.AA-01", day(27), "pass"), rollup("PR.AA-01", day(28), "fail")], day(29));
        assert_eq!((s.status, s.gaps), (RequirementStatus::Expired, vec![Period { start: day(28), end: day(28) }]));
        let s = cc61(&wf, &[], &[rollup("PR.AA-01", day(27), "pass")], day(29));
        assert_eq!(s.gaps, vec![Period { start: day(28), end: day(28) }], "a day without decisions is not covered");
    }

    #[test]
    fn system_evidence_of_days_outside_the_audit_period_or_of_unmapped_controls_does_not_count() {
        let wf = workflow(day(27), day(27), &["CC6.1"]);
        let s = cc61(&wf, &[], &[rollup("PR.AA-01", day(26), "pass"), rollup("GV.OC-01", day(27), "pass")], day(28));
        assert_eq!((s.status, s.system_evidence.len()), (RequirementStatus::Missing, 0));
        let index = RegulationIndex::new(RegulationCode::Soc2, &[]);
        assert!(!system_evidence_counts(&wf, &index, &rollup("PR.AA-01", day(26), "pass")));
        assert!(system_evidence_counts(&wf, &index, &rollup("PR.AA-01", day(27), "pass")));
        assert!(!system_evidence_counts(&workflow(day(27), day(27), &["CC1.1"]), &index, &rollup("PR.AA-01", day(27), "pass")));
    }

    #[test]
    fn the_dashboards_counts_are_the_statuses_of_the_views_counted() {
        // The whole of SOC 2, with system evidence passing, failing and out of the period,
        // a requirement marked not applicable, at three as-of days.
        let wf = workflow(day(20), day(28), &[]);
        let index = RegulationIndex::new(RegulationCode::Soc2, &[]);
        let system = [
            rollup("PR.AA-01", day(21), "pass"),
            rollup("PR.AA-05", day(22), "fail"),
            rollup("GV.OC-01", day(19), "pass"),
            rollup("DE.CM-01", day(28), "pass"),
        ];
        let na = HashMap::from([("CC1.1".to_owned(), "not here".to_owned())]);
        for as_of in [day(21), day(28), day(30)] {
            let j = Judging { workflow: &wf, index: &index, evidence: &[], system: &system, not_applicable: &na, as_of, expiring_days: 30 };
            let views = statuses(j);
            assert!(views.len() > 30, "every SOC 2 requirement is in scope");
            let mut expected = [0usize; RequirementStatus::ALL.len()];
            for v in &views {
                let i = RequirementStatus::ALL.iter().position(|s| *s == v.status).unwrap_or(0);
                expected[i] += 1;
            }
            assert_eq!(count_statuses(j), expected, "as of {as_of}");
            assert!(expected.iter().filter(|n| **n > 0).count() >= 3, "several statuses occur: {expected:?}");
        }
    }

    fn upload(n: u128, workflow: Uuid, controls: &[&str], requirements: &[&str], until: NaiveDate, outcome: &str) -> EvidenceFacts {
        EvidenceFacts {
            evidence_id: Uuid::from_u128(100 + n),
            workflow_id: workflow,
            kind: aggregates::compliance::EvidenceKind::Document,
            requirement_ids: requirements.iter().map(|s| (*s).to_owned()).collect(),
            control_ids: controls.iter().map(|s| (*s).to_owned()).collect(),
            valid_from: day(1),
            valid_until: until,
            outcome: Outcome::parse(outcome).unwrap(),
            review_verdict: None,
        }
    }

    #[test]
    fn counts_judging_only_what_reaches_a_requirement_equal_the_views_with_uploads_scopes_and_certifications() {
        let mut wf = workflow(day(20), day(28), &[]);
        let other = Uuid::from_u128(2);
        let mut rejected = upload(4, wf.workflow_id, &["PR.AA-01"], &[], day(29), "pass");
        rejected.review_verdict = Some(aggregates::compliance::Verdict::Rejected);
        let records = [
            upload(1, wf.workflow_id, &["PR.AA-01", "DE.CM-01"], &[], day(29), "pass"),
            upload(2, wf.workflow_id, &["PR.AA-05"], &["CC1.1", "CC2.1"], day(24), "pass"),
            upload(3, wf.workflow_id, &["GV.OC-01"], &["CC3.1"], day(29), "fail"),
            rejected,
            upload(6, other, &["ID.AM-01", "PR.DS-01"], &["CC5.1"], day(29), "pass"),
            upload(7, wf.workflow_id, &["NO.SUCH-99"], &["NO-SUCH"], day(29), "pass"),
        ];
        let system = [rollup("PR.PS-01", day(21), "pass"), rollup("RS.MA-01", day(22), "fail")];
        let links =
            [link("intersects", false), TenantLink { requirement_id: "CC7.1".into(), control_id: "ID.RA-01".into(), ..link("", true) }];
        let index = RegulationIndex::new(RegulationCode::Soc2, &links);
        let na = HashMap::from([("CC9.1".to_owned(), "not here".to_owned()), ("NO-SUCH".to_owned(), "x".to_owned())]);
        let counted = |wf: &WorkflowView, as_of: NaiveDate| {
            let j =
                Judging { workflow: wf, index: &index, evidence: &records, system: &system, not_applicable: &na, as_of, expiring_days: 30 };
            let mut expected = [0usize; RequirementStatus::ALL.len()];
            for v in statuses(j) {
                expected[RequirementStatus::ALL.iter().position(|s| *s == v.status).unwrap_or(0)] += 1;
            }
            assert_eq!(count_statuses(j), expected, "as of {as_of}, scope {:?}", wf.scope_requirements);
            expected
        };
        for as_of in [day(21), day(25), day(28), day(30)] {
            let all = counted(&wf, as_of);
            assert!(all.iter().filter(|n| **n > 0).count() >= 4, "several statuses occur: {all:?}");
        }
        // In scope: some reached, some not, one not in the regulation.
        wf.scope_all = false;
        wf.scope_requirements = ["CC1.1", "CC3.1", "CC4.1", "CC9.1", "CC6.1", "NO-SUCH", "CC4.1"].map(String::from).to_vec();
        let scoped = counted(&wf, day(25));
        assert_eq!(scoped.iter().sum::<usize>(), 5, "five distinct in-scope requirements: {scoped:?}");
        // A certification keeps its statuses, for requirements nothing reaches too.
        let status = |r: &str, status| aggregates::compliance::CertifiedStatus {
            requirement_id: aggregates::compliance::RequirementId::parse(r).unwrap(),
            status,
        };
        wf.certification = Some(sqlx::types::Json(aggregates::compliance::Certification {
            as_of: day(25),
            valid_until: day(30),
            statuses: vec![status("CC4.1", RequirementStatus::Satisfied), status("CC3.1", RequirementStatus::Satisfied)],
        }));
        let certified = counted(&wf, day(30));
        assert_eq!(certified[RequirementStatus::ALL.iter().position(|s| *s == RequirementStatus::Satisfied).unwrap()], 2);
    }

    #[test]
    fn system_evidence_follows_the_tenants_links_like_uploaded_evidence() {
        let wf = workflow(day(27), day(27), &["CC6.1"]);
        let pass = [rollup("PR.AA-01", day(27), "pass")];
        let s = cc61(&wf, &[link("superset", false)], &pass, day(28));
        assert_eq!((s.status, s.system_evidence.len()), (RequirementStatus::Partial, 1), "a superset link only counts");
        let s = cc61(&wf, &[link("", true)], &pass, day(28));
        assert_eq!((s.status, s.system_evidence.len()), (RequirementStatus::Missing, 0), "a link marked not applicable carries nothing");
        let s = cc61(&wf, &[], &pass, day(27));
        assert_eq!(s.status, RequirementStatus::Expiring, "the period is still open and the day's evidence ends with it");
    }
}
