//! Compliance: regulation codes and CSF 2.0 control ids, the ComplianceWorkflow and
//! Evidence aggregates, and the derivation of a requirement's status from evidence.
//!
//! - [`codes`]: regulation codes, requirement and CSF control ids, SHA-256 digests.
//! - [`workflow`], [`review`]: the ComplianceWorkflow aggregate and what it records after
//!   creation.
//! - [`evidence`]: the Evidence aggregate; [`submit`]: the submission rules, decided from
//!   the ledger through [`references`] (the aggregate's cqrs-es services).
//! - [`status`]: requirement status derivation.
//! - [`system_evidence`]: decisions of policies that check controls, rolled up per day
//!   (how a day's outcome is decided, roll-up ids, which decisions a bundle proves).

pub mod codes;
pub mod evidence;
pub mod references;
pub mod review;
pub mod status;
pub mod submit;
pub mod system_evidence;
pub mod workflow;

pub use codes::{ControlId, RegulationCode, Relation, RequirementId, Sha256};
pub use evidence::{
    Artifact, Evidence, EvidenceCommand, EvidenceError, EvidenceEvent, EvidenceKind, EvidenceStatus, Outcome, Submission, Verdict,
};
pub use references::{EvidenceReferences, EvidenceServices, RecordedDecision, ReferenceUnavailable, RequirementCatalog};
pub use review::{Certification, CertifiedStatus, Finding, WorkflowChange};
pub use status::{contribution, derive, status_of, Contribution, Cover, Derived, RequirementStatus};
pub use submit::SubmitEvidence;
pub use system_evidence::{day_outcome, proof_sample, system_evidence_id, DecisionClass, VersionTally, SYSTEM_EVIDENCE_KIND};
pub use workflow::{ComplianceWorkflow, Period, Scope, WorkflowCommand, WorkflowError, WorkflowEvent, WorkflowServices, WorkflowState};

#[cfg(test)]
mod references_tests;
#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;
