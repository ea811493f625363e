//! The Evidence aggregate: one artifact submitted for a workflow and one or more
//! requirements or controls, with an effective period distinct from its submission time.
//! Nothing is ever edited: superseding and withdrawing are new events. A submission's
//! references (its workflow, a decision record) and a superseding record are checked
//! against the ledger through [`EvidenceServices`] ([`super::submit`]).

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::codes::{ControlId, RequirementId, Sha256};
use super::references::{EvidenceServices, ReferenceUnavailable};
use super::submit::{SubmitEvidence, NO_SUPERSEDING_EVIDENCE};
use crate::ids::{Actor, DecisionId, Description, EvidenceId, Reason, TenantId, WorkflowId};
use crate::ledger_event::LedgerEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    Document,
    Screenshot,
    ConfigurationExport,
    AutomatedTestResult,
    /// Points at a decision record in the ledger (`decision_id`).
    PolicyDecisionReference,
    Attestation,
}

impl EvidenceKind {
    pub const ALL: [EvidenceKind; 6] = [
        Self::Document,
        Self::Screenshot,
        Self::ConfigurationExport,
        Self::AutomatedTestResult,
        Self::PolicyDecisionReference,
        Self::Attestation,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Screenshot => "screenshot",
            Self::ConfigurationExport => "configuration_export",
            Self::AutomatedTestResult => "automated_test_result",
            Self::PolicyDecisionReference => "policy_decision_reference",
            Self::Attestation => "attestation",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// What the evidence shows. A failed `automated_test_result` or a deny
/// `policy_decision_reference` is a `fail`: it uncovers its days instead of covering them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Records submitted before outcomes existed all counted as passing.
    #[default]
    Pass,
    Fail,
    /// Context for a reviewer; never satisfies on its own.
    Informational,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Self::Pass, Self::Fail, Self::Informational];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Informational => "informational",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }
}

/// An auditor's verdict on a piece of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Accepted, Self::Rejected].into_iter().find(|v| v.as_str() == raw)
    }
}

/// The stored artifact: addressed by its SHA-256, which the ledger event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub sha256: Sha256,
    pub size_bytes: u64,
    pub content_type: String,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceCommand {
    Submit(Box<SubmitEvidence>),
    /// `by`: evidence of the same tenant that replaces this one.
    Supersede {
        tenant_id: TenantId,
        by: EvidenceId,
        actor: Actor,
        reason: Option<Reason>,
    },
    Withdraw {
        tenant_id: TenantId,
        actor: Actor,
        reason: Reason,
    },
    /// An auditor accepts or rejects active evidence; a later verdict replaces an earlier one.
    Review {
        tenant_id: TenantId,
        verdict: Verdict,
        actor: Actor,
        reason: Reason,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub evidence_id: EvidenceId,
    pub tenant_id: TenantId,
    pub workflow_id: WorkflowId,
    pub requirement_ids: Vec<RequirementId>,
    pub control_ids: Vec<ControlId>,
    pub kind: EvidenceKind,
    pub description: Description,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub artifact: Artifact,
    /// For `policy_decision_reference`: the decision this evidence points at.
    pub decision_id: Option<DecisionId>,
    /// Absent in records submitted before outcomes existed: those counted as passing.
    #[serde(default)]
    pub outcome: Outcome,
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvidenceEvent {
    EvidenceSubmitted(Submission),
    EvidenceSuperseded { by: EvidenceId, actor: Actor, reason: Option<Reason> },
    EvidenceWithdrawn { actor: Actor, reason: Reason },
    EvidenceReviewed { verdict: Verdict, actor: Actor, reason: Reason },
}

impl DomainEvent for EvidenceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::EvidenceSubmitted(_) => "EvidenceSubmitted",
            Self::EvidenceSuperseded { .. } => "EvidenceSuperseded",
            Self::EvidenceWithdrawn { .. } => "EvidenceWithdrawn",
            Self::EvidenceReviewed { .. } => "EvidenceReviewed",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for EvidenceEvent {}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence not found")]
    NotFound,
    #[error("evidence already exists")]
    AlreadyExists,
    #[error("the evidence is {0}; it cannot change any more")]
    Closed(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// The ledger could not answer for a reference; nothing was recorded.
    #[error("cannot check the evidence's references: {0}")]
    ReferenceUnavailable(ReferenceUnavailable),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceStatus {
    #[default]
    Uninitialized,
    Active,
    Superseded,
    Withdrawn,
}

impl EvidenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uninitialized => "uninitialized",
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub tenant_id: Option<TenantId>,
    pub evidence_id: Option<EvidenceId>,
    /// The workflow the evidence was submitted to.
    pub workflow_id: Option<WorkflowId>,
    pub status: EvidenceStatus,
}

impl Evidence {
    async fn decide(&self, command: EvidenceCommand, services: &EvidenceServices) -> Result<EvidenceEvent, EvidenceError> {
        if let EvidenceCommand::Submit(s) = command {
            if self.status != EvidenceStatus::Uninitialized {
                return Err(EvidenceError::AlreadyExists);
            }
            return super::submit::decide(*s, services).await.map(EvidenceEvent::EvidenceSubmitted);
        }
        let tenant = match &command {
            EvidenceCommand::Supersede { tenant_id, .. }
            | EvidenceCommand::Withdraw { tenant_id, .. }
            | EvidenceCommand::Review { tenant_id, .. } => *tenant_id,
            EvidenceCommand::Submit(_) => return Err(EvidenceError::AlreadyExists),
        };
        // The superseding record must be the tenant's evidence, as the ledger holds it.
        if let EvidenceCommand::Supersede { by, .. } = &command {
            let replacement = services.references().evidence(*by).await.map_err(EvidenceError::ReferenceUnavailable)?;
            if replacement.tenant_id != Some(tenant) {
                return Err(EvidenceError::Invalid(NO_SUPERSEDING_EVIDENCE.into()));
            }
        }
        if self.tenant_id != Some(tenant) {
            return Err(EvidenceError::NotFound);
        }
        if self.status != EvidenceStatus::Active {
            return Err(EvidenceError::Closed(self.status.as_str()));
        }
        match command {
            EvidenceCommand::Supersede { by, actor, reason, .. } => {
                if Some(by) == self.evidence_id {
                    return Err(EvidenceError::Invalid("evidence cannot supersede itself".into()));
                }
                Ok(EvidenceEvent::EvidenceSuperseded { by, actor, reason })
            }
            EvidenceCommand::Withdraw { actor, reason, .. } => Ok(EvidenceEvent::EvidenceWithdrawn { actor, reason }),
            EvidenceCommand::Review { verdict, actor, reason, .. } => Ok(EvidenceEvent::EvidenceReviewed { verdict, actor, reason }),
            EvidenceCommand::Submit(_) => Err(EvidenceError::AlreadyExists),
        }
    }
}

impl Aggregate for Evidence {
    const TYPE: &'static str = "Evidence";
    type Command = EvidenceCommand;
    type Event = EvidenceEvent;
    type Error = EvidenceError;
    type Services = EvidenceServices;

    async fn handle(&mut self, command: Self::Command, services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let event = self.decide(command, services).await?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            EvidenceEvent::EvidenceSubmitted(s) => {
                self.tenant_id = Some(s.tenant_id);
                self.evidence_id = Some(s.evidence_id);
                self.workflow_id = Some(s.workflow_id);
                self.status = EvidenceStatus::Active;
            }
            EvidenceEvent::EvidenceSuperseded { .. } => self.status = EvidenceStatus::Superseded,
            EvidenceEvent::EvidenceWithdrawn { .. } => self.status = EvidenceStatus::Withdrawn,
            EvidenceEvent::EvidenceReviewed { .. } => {}
        }
    }
}
