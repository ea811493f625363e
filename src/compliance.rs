//! Requirement statuses of workflows: the catalog (merged with the tenant's mappings),
//! the evidence read model and the pure derivation in `aggregates::compliance::status`.
//! Shared by the workflow endpoints and the dashboard.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

use aggregates::compliance::{derive, Period, RegulationCode, RequirementStatus};
use projections::compliance::WorkflowView;
use projections::evidence::EvidenceView;

use crate::catalog::{merged_controls, Catalog, TenantLink};

/// One in-scope requirement of a workflow, with its derived status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequirementStatusView {
    pub requirement_id: String,
    pub title: String,
    /// `satisfied`, `expiring`, `expired`, `missing` or `not_applicable`.
    #[schema(value_type = String)]
    pub status: RequirementStatus,
    /// The active evidence that counts towards it (directly or through a control).
    pub evidence_ids: Vec<Uuid>,
    /// Days of the audit period no evidence covers.
    #[schema(value_type = Vec<Object>)]
    pub gaps: Vec<Period>,
    pub covered_until: Option<NaiveDate>,
    pub not_applicable_justification: Option<String>,
}

/// The controls of each requirement of one regulation, and the reverse.
#[derive(Debug)]
pub struct RegulationIndex {
    pub code: RegulationCode,
    by_control: HashMap<String, Vec<String>>,
}

impl RegulationIndex {
    pub fn new(code: RegulationCode, tenant: &[TenantLink]) -> Self {
        let mut by_control: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(reg) = Catalog::get().regulation(code) {
            for q in &reg.requirements {
                for link in merged_controls(q, tenant) {
                    by_control.entry(link.control_id).or_default().push(q.id.clone());
                }
            }
        }
        Self { code, by_control }
    }
}

/// Statuses of every in-scope requirement of `workflow`. `evidence` may hold other
/// workflows' records: only this workflow's active ones count.
pub fn statuses(
    workflow: &WorkflowView,
    index: &RegulationIndex,
    evidence: &[&EvidenceView],
    not_applicable: &HashMap<String, String>,
    as_of: NaiveDate,
    expiring_days: u32,
) -> Vec<RequirementStatusView> {
    let Some(reg) = Catalog::get().regulation(index.code) else { return vec![] };
    let mut covering: HashMap<&str, Vec<(Uuid, Period)>> = HashMap::new();
    for e in evidence.iter().filter(|e| e.workflow_id == workflow.workflow_id && e.status == "active") {
        let period = Period { start: e.valid_from, end: e.valid_until };
        let mut targets: HashSet<&str> = e.requirement_ids.iter().map(String::as_str).collect();
        for c in &e.control_ids {
            targets.extend(index.by_control.get(c).into_iter().flatten().map(String::as_str));
        }
        for t in targets {
            covering.entry(t).or_default().push((e.evidence_id, period));
        }
    }
    let audit = Period { start: workflow.audit_period_start, end: workflow.audit_period_end };
    let in_scope = |id: &str| workflow.scope_all || workflow.scope_requirements.iter().any(|r| r == id);
    reg.requirements
        .iter()
        .filter(|q| in_scope(&q.id))
        .map(|q| {
            let found = covering.get(q.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            let periods: Vec<Period> = found.iter().map(|(_, p)| *p).collect();
            let justification = not_applicable.get(&q.id).cloned();
            let d = derive(justification.is_some(), &periods, audit, as_of, expiring_days);
            RequirementStatusView {
                requirement_id: q.id.clone(),
                title: q.title.clone(),
                status: d.status,
                evidence_ids: found.iter().map(|(id, _)| *id).collect(),
                gaps: d.gaps,
                covered_until: d.covered_until,
                not_applicable_justification: justification,
            }
        })
        .collect()
}
