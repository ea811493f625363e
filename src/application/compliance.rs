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
    contribution, derive, Contribution, Cover, Outcome, Period, RegulationCode, Relation, RequirementStatus, Verdict,
};
use projections::compliance::WorkflowView;
use projections::evidence::EvidenceView;
use projections::system_evidence::SystemEvidenceView;

use crate::application::catalog::{merged_controls, Catalog, TenantLink};

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
    by_control: HashMap<String, Vec<(String, Option<Relation>)>>,
}

impl RegulationIndex {
    pub fn new(code: RegulationCode, tenant: &[TenantLink]) -> Self {
        let mut by_control: HashMap<String, Vec<(String, Option<Relation>)>> = HashMap::new();
        if let Some(reg) = Catalog::get().regulation(code) {
            for q in &reg.requirements {
                for link in merged_controls(q, tenant).into_iter().filter(|l| l.not_applicable.is_none()) {
                    let relation = link.relation.as_deref().and_then(Relation::parse);
                    by_control.entry(link.control_id).or_default().push((q.id.clone(), relation));
                }
            }
        }
        Self { code, by_control }
    }

    /// The requirements `control` is linked to (not marked not applicable), with the
    /// relation of each link.
    pub fn requirements_of(&self, control: &str) -> &[(String, Option<Relation>)] {
        self.by_control.get(control).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Whether a roll-up of system evidence counts for `workflow`: its day is in the audit
/// period and its control reaches an in-scope requirement.
pub fn system_evidence_counts(workflow: &WorkflowView, index: &RegulationIndex, v: &SystemEvidenceView) -> bool {
    let in_scope = |id: &str| workflow.scope_all || workflow.scope_requirements.iter().any(|r| r == id);
    (workflow.audit_period_start..=workflow.audit_period_end).contains(&v.day)
        && index.requirements_of(&v.control_id).iter().any(|(r, _)| in_scope(r))
}

/// How a roll-up counts for a requirement it reaches through `relation`: exactly as an
/// uploaded record with its outcome and a one-day period (no verdict: an auditor reviews
/// the decisions, not a record).
fn system_cover(v: &SystemEvidenceView, relation: Option<Relation>) -> Cover {
    let outcome = Outcome::parse(&v.outcome).unwrap_or(Outcome::Fail);
    Cover { period: Period { start: v.day, end: v.day }, contribution: contribution(outcome, None, relation) }
}

/// How one evidence record counts for a requirement it reaches through `relation`.
fn cover(e: &EvidenceView, relation: Option<Relation>) -> Cover {
    let outcome = Outcome::parse(&e.outcome).unwrap_or(Outcome::Informational);
    let verdict = e.review_verdict.as_deref().and_then(Verdict::parse);
    Cover { period: Period { start: e.valid_from, end: e.valid_until }, contribution: contribution(outcome, verdict, relation) }
}

/// One in-scope requirement of a workflow as judged: what reaches it and its status.
struct Judged<'a> {
    requirement: &'a crate::application::catalog::Requirement,
    found: &'a [(Uuid, Cover)],
    system_found: &'a [(&'a SystemEvidenceView, Cover)],
    justification: Option<&'a String>,
    status: RequirementStatus,
    derived: aggregates::compliance::Derived,
}

/// What a workflow's requirements are judged on. `evidence` may hold other workflows'
/// records: only this workflow's active ones count. `system` is the tenant's system
/// evidence: the roll-ups of days in the audit period count.
#[derive(Debug, Clone, Copy)]
pub struct Judging<'a> {
    pub workflow: &'a WorkflowView,
    pub index: &'a RegulationIndex,
    pub evidence: &'a [&'a EvidenceView],
    pub system: &'a [SystemEvidenceView],
    pub not_applicable: &'a HashMap<String, String>,
    pub as_of: NaiveDate,
    pub expiring_days: u32,
}

/// Judges every in-scope requirement and hands each to `each`: the one derivation behind
/// [`statuses`] (the views) and [`count_statuses`] (the dashboard's counts). A certified
/// workflow keeps the statuses recorded at its certification, whatever the evidence says
/// since.
fn judge(j: Judging<'_>, mut each: impl FnMut(Judged<'_>)) {
    let Judging { workflow, index, evidence, system, not_applicable, as_of, expiring_days } = j;
    let Some(reg) = Catalog::get().regulation(index.code) else { return };
    let mut covering: HashMap<&str, Vec<(Uuid, Cover)>> = HashMap::new();
    for e in evidence.iter().filter(|e| e.workflow_id == workflow.workflow_id && e.status == "active") {
        // A requirement the record names directly is reached without a relation; one it
        // reaches through several controls, through the most complete of them.
        let mut targets: HashMap<&str, Cover> = HashMap::new();
        for c in &e.control_ids {
            for (requirement, relation) in index.by_control.get(c).into_iter().flatten() {
                let candidate = cover(e, *relation);
                let best = targets.entry(requirement.as_str()).or_insert(candidate);
                if candidate.contribution == Contribution::Satisfies {
                    *best = candidate;
                }
            }
        }
        for r in &e.requirement_ids {
            targets.insert(r.as_str(), cover(e, None));
        }
        for (t, c) in targets {
            covering.entry(t).or_default().push((e.evidence_id, c));
        }
    }
    let mut system_covering: HashMap<&str, Vec<(&SystemEvidenceView, Cover)>> = HashMap::new();
    for v in system.iter().filter(|v| (workflow.audit_period_start..=workflow.audit_period_end).contains(&v.day)) {
        for (requirement, relation) in index.requirements_of(&v.control_id) {
            system_covering.entry(requirement.as_str()).or_default().push((v, system_cover(v, *relation)));
        }
    }
    let audit = Period { start: workflow.audit_period_start, end: workflow.audit_period_end };
    let in_scope = |id: &str| workflow.scope_all || workflow.scope_requirements.iter().any(|r| r == id);
    let certified: HashMap<&str, RequirementStatus> =
        workflow.certification.iter().flat_map(|c| c.statuses.iter().map(|s| (s.requirement_id.as_str(), s.status))).collect();
    let mut covers: Vec<Cover> = Vec::new();
    for q in reg.requirements.iter().filter(|q| in_scope(&q.id)) {
        let found = covering.get(q.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let system_found = system_covering.get(q.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        covers.clear();
        covers.extend(found.iter().map(|(_, c)| *c).chain(system_found.iter().map(|(_, c)| *c)));
        let justification = not_applicable.get(&q.id);
        let derived = derive(justification.is_some(), &covers, audit, as_of, expiring_days);
        let status = certified.get(q.id.as_str()).copied().unwrap_or(derived.status);
        each(Judged { requirement: q, found, system_found, justification, status, derived });
    }
}

/// Statuses of every in-scope requirement of a workflow (see [`judge`]).
pub fn statuses(j: Judging<'_>) -> Vec<RequirementStatusView> {
    let mut views = Vec::new();
    judge(j, |j| {
        views.push(RequirementStatusView {
            requirement_id: j.requirement.id.clone(),
            title: j.requirement.title.clone(),
            status: j.status,
            evidence_ids: j.found.iter().map(|(id, _)| *id).collect(),
            system_evidence: j.system_found.iter().map(|(v, _)| SystemEvidenceRef::from(*v)).collect(),
            gaps: j.derived.gaps,
            covered_until: j.derived.covered_until,
            not_applicable_justification: j.justification.cloned(),
        });
    });
    views
}

/// How many in-scope requirements of a workflow have each status (indexed as
/// [`RequirementStatus::ALL`]): the same judgement as [`statuses`], without building the
/// views (a dashboard counts hundreds of thousands of them).
pub fn count_statuses(j: Judging<'_>) -> [usize; RequirementStatus::ALL.len()] {
    let mut counts = [0; RequirementStatus::ALL.len()];
    judge(j, |j| {
        if let Some(i) = RequirementStatus::ALL.iter().position(|s| *s == j.status) {
            counts[i] += 1;
        }
    });
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
