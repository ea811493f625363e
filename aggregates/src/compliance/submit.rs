//! Submitting evidence: the command, and the rules that decide it from the ledger through
//! [`EvidenceServices`]: the workflow exists and belongs to the submitter's tenant and
//! accepts evidence, the requirements are the workflow's regulation's, and a decision
//! reference names a decision record of the same tenant, whose outcome it takes.

use chrono::NaiveDate;

use super::codes::{ControlId, RequirementId};
use super::evidence::{Artifact, EvidenceError, EvidenceKind, Outcome, Submission};
use super::references::EvidenceServices;
use crate::ids::{Actor, DecisionId, Description, EvidenceId, TenantId, WorkflowId};

/// The answer to a workflow id that names no workflow of the submitter's tenant (another
/// tenant's is answered the same, so ids cannot be probed across tenants).
pub const NO_WORKFLOW: &str = "workflow_id names no workflow";
/// The answer to a decision id that names no decision record of the submitter's tenant.
pub const NO_DECISION: &str = "decision_id names no decision record";
/// The answer to a superseding evidence id that names no evidence of the tenant.
pub const NO_SUPERSEDING_EVIDENCE: &str = "by names no evidence record";

/// Evidence as submitted: what the submitter says, before the ledger's references are
/// checked and the outcome decided.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitEvidence {
    pub evidence_id: EvidenceId,
    pub tenant_id: TenantId,
    pub workflow_id: WorkflowId,
    /// Requirements of the workflow's regulation.
    pub requirement_ids: Vec<RequirementId>,
    pub control_ids: Vec<ControlId>,
    pub kind: EvidenceKind,
    pub description: Description,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub artifact: Artifact,
    /// For `policy_decision_reference`: the decision this evidence points at.
    pub decision_id: Option<DecisionId>,
    /// The outcome the submitter declares, if any. A decision reference takes the
    /// decision's own, and refuses another.
    pub outcome: Option<Outcome>,
    pub actor: Actor,
}

/// Decides a submission against the ledger's references; the resulting event's body.
pub(super) async fn decide(s: SubmitEvidence, services: &EvidenceServices) -> Result<Submission, EvidenceError> {
    let unavailable = EvidenceError::ReferenceUnavailable;
    let workflow = services.references().workflow(s.workflow_id).await.map_err(unavailable)?;
    let regulation = match (workflow.tenant_id, workflow.regulation) {
        (Some(owner), Some(regulation)) if owner == s.tenant_id => regulation,
        _ => return Err(EvidenceError::Invalid(NO_WORKFLOW.into())),
    };
    if !workflow.state.accepts_evidence() {
        return Err(EvidenceError::Invalid(format!("the workflow is {}; it accepts no evidence", workflow.state.as_str())));
    }
    // A decision reference shows what the decision was: allowed passes, anything else fails.
    let decided = match s.decision_id {
        Some(id) => match services.references().decision(id).await.map_err(unavailable)? {
            Some(d) if d.tenant_id == s.tenant_id => Some(if d.record.is_allowed() { Outcome::Pass } else { Outcome::Fail }),
            _ => return Err(EvidenceError::Invalid(NO_DECISION.into())),
        },
        None => None,
    };
    if let Some(id) = s.requirement_ids.iter().find(|id| !services.catalog().has_requirement(regulation, id)) {
        return Err(EvidenceError::Invalid(format!("{id} is not a requirement of {regulation}")));
    }
    let outcome = match (decided, s.outcome) {
        (Some(d), Some(o)) if d != o => {
            return Err(EvidenceError::Invalid(format!("the decision's outcome is {}, not {}", d.as_str(), o.as_str())))
        }
        (Some(d), _) => d,
        (None, None) if s.kind == EvidenceKind::AutomatedTestResult => {
            return Err(EvidenceError::Invalid("an automated_test_result needs its outcome: pass or fail".into()))
        }
        (None, o) => o.unwrap_or_default(),
    };
    if s.requirement_ids.is_empty() && s.control_ids.is_empty() {
        return Err(EvidenceError::Invalid("evidence must name at least one requirement or control".into()));
    }
    if s.valid_until < s.valid_from {
        return Err(EvidenceError::Invalid("valid_until is before valid_from".into()));
    }
    if s.kind == EvidenceKind::AutomatedTestResult && outcome == Outcome::Informational {
        return Err(EvidenceError::Invalid("an automated_test_result passes or fails; it is not informational".into()));
    }
    if (s.kind == EvidenceKind::PolicyDecisionReference) != s.decision_id.is_some() {
        return Err(EvidenceError::Invalid("decision_id is required for, and only for, kind policy_decision_reference".into()));
    }
    Ok(Submission {
        evidence_id: s.evidence_id,
        tenant_id: s.tenant_id,
        workflow_id: s.workflow_id,
        requirement_ids: s.requirement_ids,
        control_ids: s.control_ids,
        kind: s.kind,
        description: s.description,
        valid_from: s.valid_from,
        valid_until: s.valid_until,
        artifact: s.artifact,
        decision_id: s.decision_id,
        outcome,
        actor: s.actor,
    })
}
