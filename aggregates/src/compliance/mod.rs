//! Compliance: regulation codes and CSF 2.0 control ids, the ComplianceWorkflow and
//! Evidence aggregates, and the derivation of a requirement's status from evidence.

pub mod codes;
pub mod evidence;
pub mod status;
pub mod workflow;

pub use codes::{ControlId, RegulationCode, RequirementId, Sha256};
pub use evidence::{Artifact, Evidence, EvidenceCommand, EvidenceError, EvidenceEvent, EvidenceKind, EvidenceStatus, Submission};
pub use status::{derive, Derived, RequirementStatus};
pub use workflow::{ComplianceWorkflow, Period, Scope, WorkflowCommand, WorkflowError, WorkflowEvent, WorkflowState};

#[cfg(test)]
mod tests;
