//! Compliance: regulation codes and CSF 2.0 control ids, the ComplianceWorkflow and
//! Evidence aggregates, and the derivation of a requirement's status from evidence.

pub mod codes;
pub mod evidence;
pub mod review;
pub mod status;
pub mod workflow;

pub use codes::{ControlId, RegulationCode, Relation, RequirementId, Sha256};
pub use evidence::{
    Artifact, Evidence, EvidenceCommand, EvidenceError, EvidenceEvent, EvidenceKind, EvidenceStatus, Outcome, Submission, Verdict,
};
pub use review::{Certification, CertifiedStatus, Finding, WorkflowChange};
pub use status::{contribution, derive, Contribution, Cover, Derived, RequirementStatus};
pub use workflow::{ComplianceWorkflow, Period, Scope, WorkflowCommand, WorkflowError, WorkflowEvent, WorkflowState};

#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;
