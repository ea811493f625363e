//! What the Evidence aggregate asks of the world outside the domain before it records
//! evidence (cqrs-es `Aggregate::Services`): the workflow the evidence is for, the decision
//! record a `policy_decision_reference` points at and the evidence that supersedes, each
//! as the ledger holds it (never a read model, which may lag), and which requirements a
//! regulation has (the compiled-in catalog). The aggregate decides with them: same tenant,
//! a workflow that accepts evidence, the decision's own outcome.

use std::sync::Arc;

use super::codes::{RegulationCode, RequirementId};
use super::evidence::Evidence;
use super::workflow::ComplianceWorkflow;
use crate::facts::PolicyEvaluated;
use crate::ids::{DecisionId, EvidenceId, TenantId, WorkflowId};

/// The ledger could not answer (503 when the audit database is down).
pub use crate::services::ServiceError as ReferenceUnavailable;

/// A decision record as the ledger holds it, with the tenant its entry belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedDecision {
    pub tenant_id: TenantId,
    pub record: PolicyEvaluated,
}

/// The ledger, as the Evidence aggregate reads it.
#[async_trait::async_trait]
pub trait EvidenceReferences: Send + Sync {
    /// The workflow folded from its events (the empty default when it has none).
    async fn workflow(&self, id: WorkflowId) -> Result<ComplianceWorkflow, ReferenceUnavailable>;
    /// The decision record with this id, if the ledger has one.
    async fn decision(&self, id: DecisionId) -> Result<Option<RecordedDecision>, ReferenceUnavailable>;
    /// The evidence record folded from its events (the empty default when it has none).
    async fn evidence(&self, id: EvidenceId) -> Result<Evidence, ReferenceUnavailable>;
}

/// The requirements of each regulation (the compiled-in catalog).
pub trait RequirementCatalog: Send + Sync {
    fn has_requirement(&self, regulation: RegulationCode, requirement: &RequirementId) -> bool;
}

/// The Evidence aggregate's services.
#[derive(Clone)]
pub struct EvidenceServices {
    references: Arc<dyn EvidenceReferences>,
    catalog: Arc<dyn RequirementCatalog>,
}

impl EvidenceServices {
    pub fn new(references: Arc<dyn EvidenceReferences>, catalog: Arc<dyn RequirementCatalog>) -> Self {
        Self { references, catalog }
    }

    pub(super) fn references(&self) -> &dyn EvidenceReferences {
        self.references.as_ref()
    }

    pub(super) fn catalog(&self) -> &dyn RequirementCatalog {
        self.catalog.as_ref()
    }
}

impl std::fmt::Debug for EvidenceServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceServices").finish_non_exhaustive()
    }
}
