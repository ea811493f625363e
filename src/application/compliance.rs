//! Requirement statuses of workflows: the catalog (merged with the tenant's mappings),
//! the evidence read model and the pure derivation in `aggregates::compliance::status`.
//! Shared by the workflow endpoints and the dashboard.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

use aggregates::compliance::{
    contribution, derive, Contribution, Cover, Outcome, Period, RegulationCode, Relation, RequirementStatus, Verdict,
};
use projections::compliance::WorkflowView;
use projections::evidence::EvidenceView;

use crate::application::catalog::{merged_controls, Catalog, TenantLink};

/// One in-scope requirement of a workflow, with its derived status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequirementStatusView {
    pub requirement_id: String,
    pub title: String,
    /// `satisfied`, `expiring`, `expired`, `partial`, `missing` or `not_applicable`.
    #[schema(value_type = String)]
    pub status: RequirementStatus,
    /// The active evidence that counts towards it (directly or through a control).
    pub evidence_ids: Vec<Uuid>,
    /// Days of the audit period no satisfying evidence covers, or a failed result marks.
    #[schema(value_type = Vec<Object>)]
    pub gaps: Vec<Period>,
    pub covered_until: Option<NaiveDate>,
    pub not_applicable_justification: Option<String>,
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
}

/// How one evidence record counts for a requirement it reaches through `relation`.
fn cover(e: &EvidenceView, relation: Option<Relation>) -> Cover {
    let outcome = Outcome::parse(&e.outcome).unwrap_or(Outcome::Informational);
    let verdict = e.review_verdict.as_deref().and_then(Verdict::parse);
    Cover { period: Period { start: e.valid_from, end: e.valid_until }, contribution: contribution(outcome, verdict, relation) }
}

/// Statuses of every in-scope requirement of `workflow`. `evidence` may hold other
/// workflows' records: only this workflow's active ones count. A certified workflow keeps
/// the statuses recorded at its certification, whatever the evidence says since.
pub fn statuses(
    workflow: &WorkflowView,
    index: &RegulationIndex,
    evidence: &[&EvidenceView],
    not_applicable: &HashMap<String, String>,
    as_of: NaiveDate,
    expiring_days: u32,
) -> Vec<RequirementStatusView> {
    let Some(reg) = Catalog::get().regulation(index.code) else { return vec![] };
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
    let audit = Period { start: workflow.audit_period_start, end: workflow.audit_period_end };
    let in_scope = |id: &str| workflow.scope_all || workflow.scope_requirements.iter().any(|r| r == id);
    let certified: HashMap<&str, RequirementStatus> =
        workflow.certification.iter().flat_map(|c| c.statuses.iter().map(|s| (s.requirement_id.as_str(), s.status))).collect();
    reg.requirements
        .iter()
        .filter(|q| in_scope(&q.id))
        .map(|q| {
            let found = covering.get(q.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            let covers: Vec<Cover> = found.iter().map(|(_, c)| *c).collect();
            let justification = not_applicable.get(&q.id).cloned();
            let d = derive(justification.is_some(), &covers, audit, as_of, expiring_days);
            RequirementStatusView {
                requirement_id: q.id.clone(),
                title: q.title.clone(),
                status: certified.get(q.id.as_str()).copied().unwrap_or(d.status),
                evidence_ids: found.iter().map(|(id, _)| *id).collect(),
                gaps: d.gaps,
                covered_until: d.covered_until,
                not_applicable_justification: justification,
            }
        })
        .collect()
}
