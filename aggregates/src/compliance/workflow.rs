//! The ComplianceWorkflow aggregate: one certification effort for one regulation, with an
//! explicit state machine. Every transition records its actor and reason.
//!
//! ```text
//! draft → scoping → evidence_collection → internal_review → auditor_review → certified
//!                        ↑                                        │
//!                        └────────────── remediation ←────────────┘
//! any state except certified → cancelled
//! ```

use std::collections::BTreeSet;

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codes::{RegulationCode, RequirementId};
use super::review::{Certification, Finding, WorkflowChange};
use crate::ids::{Actor, EvidenceId, PolicyName, Reason, TenantId, WorkflowId};
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

    /// Whether evidence may be submitted for a workflow in this state: every workflow that
    /// exists, closed ones included (a certified workflow keeps the statuses it was
    /// certified with; later evidence counts for the next certification).
    pub fn accepts_evidence(self) -> bool {
        self != Self::Uninitialized
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

/// Moves out of `auditor_review` that only the auditor's accept / send-back make.
const AUDITOR_MOVES: [WorkflowState; 2] = [WorkflowState::Certified, WorkflowState::Remediation];

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
    /// Withdraws a not-applicable mark: the requirement is judged on evidence again.
    WithdrawNotApplicable {
        tenant_id: TenantId,
        requirement_id: RequirementId,
        reason: Reason,
        actor: Actor,
    },
    /// Changes scope, owner and/or due date of an open workflow.
    Change {
        tenant_id: TenantId,
        change: WorkflowChange,
        reason: Reason,
        actor: Actor,
    },
    /// The auditor accepts a workflow in `auditor_review`: it is certified with these statuses.
    Accept {
        tenant_id: TenantId,
        certification: Certification,
        reason: Reason,
        actor: Actor,
    },
    /// The auditor sends a workflow in `auditor_review` back to remediation with findings.
    SendBack {
        tenant_id: TenantId,
        findings: Vec<Finding>,
        reason: Reason,
        actor: Actor,
    },
    /// Closes an open finding with the evidence that resolves it.
    CloseFinding {
        tenant_id: TenantId,
        finding_id: Uuid,
        evidence_id: EvidenceId,
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
    NotApplicableWithdrawn {
        requirement_id: RequirementId,
        reason: Reason,
        actor: Actor,
    },
    WorkflowChanged {
        change: WorkflowChange,
        reason: Reason,
        actor: Actor,
    },
    WorkflowCertified {
        certification: Certification,
        actor: Actor,
    },
    FindingRaised {
        finding: Finding,
        actor: Actor,
    },
    FindingClosed {
        finding_id: Uuid,
        evidence_id: EvidenceId,
        actor: Actor,
    },
}

impl DomainEvent for WorkflowEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WorkflowCreated { .. } => "WorkflowCreated",
            Self::WorkflowStatusChanged { .. } => "WorkflowStatusChanged",
            Self::RequirementMarkedNotApplicable { .. } => "RequirementMarkedNotApplicable",
            Self::NotApplicableWithdrawn { .. } => "NotApplicableWithdrawn",
            Self::WorkflowChanged { .. } => "WorkflowChanged",
            Self::WorkflowCertified { .. } => "WorkflowCertified",
            Self::FindingRaised { .. } => "FindingRaised",
            Self::FindingClosed { .. } => "FindingClosed",
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
    /// Certified and sent back to remediation are the auditor's accept / send-back.
    #[error("only the auditor's accept or send-back moves a workflow from auditor_review to {0}")]
    AuditorDecides(&'static str),
    #[error("{} finding(s) are still open", .0.len())]
    OpenFindings(Vec<Uuid>),
    #[error("{0}")]
    Invalid(String),
    /// The ledger could not be read to check a reference; nothing was decided.
    #[error(transparent)]
    ReferenceUnavailable(super::references::ReferenceUnavailable),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComplianceWorkflow {
    pub workflow_id: Option<WorkflowId>,
    pub tenant_id: Option<TenantId>,
    pub regulation: Option<RegulationCode>,
    pub state: WorkflowState,
    pub scope: Option<Scope>,
    pub not_applicable: BTreeSet<RequirementId>,
    pub findings: BTreeSet<Uuid>,
    pub open_findings: BTreeSet<Uuid>,
}

impl ComplianceWorkflow {
    fn decide(&self, command: WorkflowCommand) -> Result<Vec<WorkflowEvent>, WorkflowError> {
        use WorkflowCommand as C;
        use WorkflowEvent as E;
        if let C::Create { workflow_id, tenant_id, regulation, name, scope, owner, audit_period, due_date, actor } = command {
            if self.state != WorkflowState::Uninitialized {
                return Err(WorkflowError::AlreadyExists);
            }
            check_scope(&scope)?;
            return Ok(vec![E::WorkflowCreated { workflow_id, tenant_id, regulation, name, scope, owner, audit_period, due_date, actor }]);
        }
        let tenant = match &command {
            C::Transition { tenant_id, .. }
            | C::MarkNotApplicable { tenant_id, .. }
            | C::WithdrawNotApplicable { tenant_id, .. }
            | C::Change { tenant_id, .. }
            | C::Accept { tenant_id, .. }
            | C::SendBack { tenant_id, .. }
            | C::CloseFinding { tenant_id, .. } => *tenant_id,
            C::Create { .. } => return Err(WorkflowError::AlreadyExists),
        };
        // Another tenant's workflow is answered as if it did not exist.
        if self.tenant_id != Some(tenant) {
            return Err(WorkflowError::NotFound);
        }
        match command {
            C::Transition { to, reason, actor, .. } => {
                self.check_move(to)?;
                if self.state == WorkflowState::AuditorReview && AUDITOR_MOVES.contains(&to) {
                    return Err(WorkflowError::AuditorDecides(to.as_str()));
                }
                if self.state == WorkflowState::Remediation && !self.open_findings.is_empty() && to != WorkflowState::Cancelled {
                    return Err(WorkflowError::OpenFindings(self.open_findings.iter().copied().collect()));
                }
                Ok(vec![E::WorkflowStatusChanged { from: self.state, to, reason, actor }])
            }
            C::MarkNotApplicable { requirement_id, justification, actor, .. } => {
                self.check_open()?;
                if let Some(Scope::Requirements { ids }) = &self.scope {
                    if !ids.contains(&requirement_id) {
                        return Err(WorkflowError::Invalid(format!("{requirement_id} is not in the workflow's scope")));
                    }
                }
                Ok(vec![E::RequirementMarkedNotApplicable { requirement_id, justification, actor }])
            }
            C::WithdrawNotApplicable { requirement_id, reason, actor, .. } => {
                self.check_open()?;
                if !self.not_applicable.contains(&requirement_id) {
                    return Err(WorkflowError::Invalid(format!("{requirement_id} is not marked not applicable")));
                }
                Ok(vec![E::NotApplicableWithdrawn { requirement_id, reason, actor }])
            }
            C::Change { change, reason, actor, .. } => {
                self.check_open()?;
                if change.is_empty() {
                    return Err(WorkflowError::Invalid("a change needs a scope, an owner or a due date".into()));
                }
                if let Some(scope) = &change.scope {
                    check_scope(scope)?;
                }
                Ok(vec![E::WorkflowChanged { change, reason, actor }])
            }
            C::Accept { certification, reason, actor, .. } => {
                self.check_move(WorkflowState::Certified)?;
                if certification.valid_until <= certification.as_of {
                    return Err(WorkflowError::Invalid("a certification must be valid after the day it is granted".into()));
                }
                let moved = E::WorkflowStatusChanged { from: self.state, to: WorkflowState::Certified, reason, actor: actor.clone() };
                Ok(vec![moved, E::WorkflowCertified { certification, actor }])
            }
            C::SendBack { findings, reason, actor, .. } => {
                self.check_move(WorkflowState::Remediation)?;
                if findings.is_empty() {
                    return Err(WorkflowError::Invalid("sending back to remediation needs at least one finding".into()));
                }
                let mut events =
                    vec![E::WorkflowStatusChanged { from: self.state, to: WorkflowState::Remediation, reason, actor: actor.clone() }];
                events.extend(findings.into_iter().map(|finding| E::FindingRaised { finding, actor: actor.clone() }));
                Ok(events)
            }
            C::CloseFinding { finding_id, evidence_id, actor, .. } => {
                if !self.findings.contains(&finding_id) {
                    return Err(WorkflowError::Invalid(format!("finding {finding_id} is not a finding of this workflow")));
                }
                if !self.open_findings.contains(&finding_id) {
                    return Err(WorkflowError::Invalid(format!("finding {finding_id} is already closed")));
                }
                Ok(vec![E::FindingClosed { finding_id, evidence_id, actor }])
            }
            C::Create { .. } => Err(WorkflowError::AlreadyExists),
        }
    }

    fn check_move(&self, to: WorkflowState) -> Result<(), WorkflowError> {
        if self.state.allowed().contains(&to) {
            return Ok(());
        }
        Err(WorkflowError::InvalidTransition {
            from: self.state.as_str(),
            to: to.as_str(),
            allowed: self.state.allowed().iter().map(|s| s.as_str()).collect(),
        })
    }

    fn check_open(&self) -> Result<(), WorkflowError> {
        if matches!(self.state, WorkflowState::Certified | WorkflowState::Cancelled) {
            return Err(WorkflowError::Invalid(format!("the workflow is {}; its scope is closed", self.state.as_str())));
        }
        Ok(())
    }
}

fn check_scope(scope: &Scope) -> Result<(), WorkflowError> {
    if matches!(scope, Scope::Requirements { ids } if ids.is_empty()) {
        return Err(WorkflowError::Invalid("a scope of listed requirements needs at least one".into()));
    }
    Ok(())
}

/// The ComplianceWorkflow aggregate's services: the ledger, to check the evidence a
/// command names.
#[derive(Clone)]
pub struct WorkflowServices {
    references: std::sync::Arc<dyn super::references::EvidenceReferences>,
}

impl WorkflowServices {
    pub fn new(references: std::sync::Arc<dyn super::references::EvidenceReferences>) -> Self {
        Self { references }
    }

    async fn evidence(&self, id: EvidenceId) -> Result<super::evidence::Evidence, super::references::ReferenceUnavailable> {
        self.references.evidence(id).await
    }
}

impl std::fmt::Debug for WorkflowServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowServices").finish_non_exhaustive()
    }
}

impl Aggregate for ComplianceWorkflow {
    const TYPE: &'static str = "ComplianceWorkflow";
    type Command = WorkflowCommand;
    type Event = WorkflowEvent;
    type Error = WorkflowError;
    type Services = WorkflowServices;

    async fn handle(&mut self, command: Self::Command, services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        // Closing a finding names evidence: it must be active evidence of this workflow, as
        // the ledger has it (never a read model).
        if let WorkflowCommand::CloseFinding { tenant_id, evidence_id, .. } = &command {
            if self.tenant_id == Some(*tenant_id) {
                let evidence = services.evidence(*evidence_id).await.map_err(WorkflowError::ReferenceUnavailable)?;
                let ours =
                    evidence.tenant_id == Some(*tenant_id) && evidence.workflow_id.is_some() && evidence.workflow_id == self.workflow_id;
                if !ours || evidence.status != super::evidence::EvidenceStatus::Active {
                    return Err(WorkflowError::Invalid("evidence_id names no active evidence of this workflow".into()));
                }
            }
        }
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use WorkflowEvent as E;
        match event {
            E::WorkflowCreated { workflow_id, tenant_id, regulation, scope, .. } => {
                self.workflow_id = Some(workflow_id);
                self.tenant_id = Some(tenant_id);
                self.regulation = Some(regulation);
                self.scope = Some(scope);
                self.state = WorkflowState::Draft;
            }
            E::WorkflowStatusChanged { to, .. } => self.state = to,
            E::RequirementMarkedNotApplicable { requirement_id, .. } => {
                self.not_applicable.insert(requirement_id);
            }
            E::NotApplicableWithdrawn { requirement_id, .. } => {
                self.not_applicable.remove(&requirement_id);
            }
            E::WorkflowChanged { change, .. } => {
                if let Some(scope) = change.scope {
                    self.scope = Some(scope);
                }
            }
            E::WorkflowCertified { .. } => {}
            E::FindingRaised { finding, .. } => {
                self.findings.insert(finding.finding_id);
                self.open_findings.insert(finding.finding_id);
            }
            E::FindingClosed { finding_id, .. } => {
                self.open_findings.remove(&finding_id);
            }
        }
    }
}
