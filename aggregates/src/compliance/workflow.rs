//! The ComplianceWorkflow aggregate: one certification effort for one regulation, with an
//! explicit state machine. Every transition records its actor and reason.
//!
//! ```text
//! draft → scoping → evidence_collection → internal_review → auditor_review → certified
//!                        ↑                                        │
//!                        └────────────── remediation ←────────────┘
//! any state except certified → cancelled
//! ```

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::codes::{RegulationCode, RequirementId};
use crate::ids::{Actor, PolicyName, Reason, TenantId, WorkflowId};
use crate::ledger_event::LedgerEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    #[default]
    Uninitialized,
    Draft,
    Scoping,
    EvidenceCollection,
    InternalReview,
    AuditorReview,
    Remediation,
    Certified,
    Cancelled,
}

impl WorkflowState {
    pub const STATES: [WorkflowState; 8] = [
        Self::Draft,
        Self::Scoping,
        Self::EvidenceCollection,
        Self::InternalReview,
        Self::AuditorReview,
        Self::Remediation,
        Self::Certified,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uninitialized => "uninitialized",
            Self::Draft => "draft",
            Self::Scoping => "scoping",
            Self::EvidenceCollection => "evidence_collection",
            Self::InternalReview => "internal_review",
            Self::AuditorReview => "auditor_review",
            Self::Remediation => "remediation",
            Self::Certified => "certified",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::STATES.into_iter().find(|s| s.as_str() == raw)
    }

    /// The states this one may move to. `certified` and `cancelled` are final.
    pub fn allowed(self) -> &'static [WorkflowState] {
        use WorkflowState::*;
        match self {
            Uninitialized | Certified | Cancelled => &[],
            Draft => &[Scoping, Cancelled],
            Scoping => &[EvidenceCollection, Cancelled],
            EvidenceCollection => &[InternalReview, Cancelled],
            InternalReview => &[AuditorReview, Cancelled],
            AuditorReview => &[Certified, Remediation, Cancelled],
            Remediation => &[EvidenceCollection, Cancelled],
        }
    }
}

/// Which requirements the workflow covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    All,
    Requirements { ids: Vec<RequirementId> },
}

/// The observation window of a Type II-style audit (both days included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self, WorkflowError> {
        if end < start {
            return Err(WorkflowError::Invalid("the audit period ends before it starts".into()));
        }
        Ok(Self { start, end })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowCommand {
    Create {
        workflow_id: WorkflowId,
        tenant_id: TenantId,
        regulation: RegulationCode,
        name: PolicyName,
        scope: Scope,
        owner: Actor,
        audit_period: Period,
        due_date: NaiveDate,
        actor: Actor,
    },
    Transition {
        tenant_id: TenantId,
        to: WorkflowState,
        reason: Reason,
        actor: Actor,
    },
    /// Marks an in-scope requirement not applicable, with the justification auditors read.
    MarkNotApplicable {
        tenant_id: TenantId,
        requirement_id: RequirementId,
        justification: Reason,
        actor: Actor,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkflowEvent {
    WorkflowCreated {
        workflow_id: WorkflowId,
        tenant_id: TenantId,
        regulation: RegulationCode,
        name: PolicyName,
        scope: Scope,
        owner: Actor,
        audit_period: Period,
        due_date: NaiveDate,
        actor: Actor,
    },
    WorkflowStatusChanged {
        from: WorkflowState,
        to: WorkflowState,
        reason: Reason,
        actor: Actor,
    },
    RequirementMarkedNotApplicable {
        requirement_id: RequirementId,
        justification: Reason,
        actor: Actor,
    },
}

impl DomainEvent for WorkflowEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WorkflowCreated { .. } => "WorkflowCreated",
            Self::WorkflowStatusChanged { .. } => "WorkflowStatusChanged",
            Self::RequirementMarkedNotApplicable { .. } => "RequirementMarkedNotApplicable",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for WorkflowEvent {}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow not found")]
    NotFound,
    #[error("workflow already exists")]
    AlreadyExists,
    #[error("cannot move a workflow from {from} to {to}")]
    InvalidTransition { from: &'static str, to: &'static str, allowed: Vec<&'static str> },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComplianceWorkflow {
    pub tenant_id: Option<TenantId>,
    pub state: WorkflowState,
    pub scope: Option<Scope>,
}

impl ComplianceWorkflow {
    fn decide(&self, command: WorkflowCommand) -> Result<WorkflowEvent, WorkflowError> {
        if let WorkflowCommand::Create { workflow_id, tenant_id, regulation, name, scope, owner, audit_period, due_date, actor } = command {
            if self.state != WorkflowState::Uninitialized {
                return Err(WorkflowError::AlreadyExists);
            }
            if matches!(&scope, Scope::Requirements { ids } if ids.is_empty()) {
                return Err(WorkflowError::Invalid("a scope of listed requirements needs at least one".into()));
            }
            return Ok(WorkflowEvent::WorkflowCreated {
                workflow_id,
                tenant_id,
                regulation,
                name,
                scope,
                owner,
                audit_period,
                due_date,
                actor,
            });
        }
        let tenant = match &command {
            WorkflowCommand::Transition { tenant_id, .. } | WorkflowCommand::MarkNotApplicable { tenant_id, .. } => *tenant_id,
            WorkflowCommand::Create { .. } => return Err(WorkflowError::AlreadyExists),
        };
        // Another tenant's workflow is answered as if it did not exist.
        if self.tenant_id != Some(tenant) {
            return Err(WorkflowError::NotFound);
        }
        match command {
            WorkflowCommand::Transition { to, reason, actor, .. } => {
                if !self.state.allowed().contains(&to) {
                    return Err(WorkflowError::InvalidTransition {
                        from: self.state.as_str(),
                        to: to.as_str(),
                        allowed: self.state.allowed().iter().map(|s| s.as_str()).collect(),
                    });
                }
                Ok(WorkflowEvent::WorkflowStatusChanged { from: self.state, to, reason, actor })
            }
            WorkflowCommand::MarkNotApplicable { requirement_id, justification, actor, .. } => {
                if matches!(self.state, WorkflowState::Certified | WorkflowState::Cancelled) {
                    return Err(WorkflowError::Invalid(format!("the workflow is {}; its scope is closed", self.state.as_str())));
                }
                if let Some(Scope::Requirements { ids }) = &self.scope {
                    if !ids.contains(&requirement_id) {
                        return Err(WorkflowError::Invalid(format!("{requirement_id} is not in the workflow's scope")));
                    }
                }
                Ok(WorkflowEvent::RequirementMarkedNotApplicable { requirement_id, justification, actor })
            }
            WorkflowCommand::Create { .. } => Err(WorkflowError::AlreadyExists),
        }
    }
}

impl Aggregate for ComplianceWorkflow {
    const TYPE: &'static str = "ComplianceWorkflow";
    type Command = WorkflowCommand;
    type Event = WorkflowEvent;
    type Error = WorkflowError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WorkflowEvent::WorkflowCreated { tenant_id, scope, .. } => {
                self.tenant_id = Some(tenant_id);
                self.scope = Some(scope);
                self.state = WorkflowState::Draft;
            }
            WorkflowEvent::WorkflowStatusChanged { to, .. } => self.state = to,
            WorkflowEvent::RequirementMarkedNotApplicable { .. } => {}
        }
    }
}
