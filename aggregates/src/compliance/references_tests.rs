//! Given/when/then tests of the rules the Evidence aggregate decides from the ledger: the
//! workflow and the decision a submission names, and the record that supersedes.

use std::sync::Arc;

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use serde_json::json;
use uuid::Uuid;

use super::tests::{actor, created, history_to, other_tenant, reason, submission, tenant};
use super::*;
use crate::facts::{EngineKind, PolicyEvaluated};
use crate::ids::{DecisionId, EvidenceId, PolicyId, TenantId, WorkflowId};

/// The ledger as the aggregate sees it: whole event streams, as the service's adapter
/// folds them from the audit database.
#[derive(Debug, Default, Clone)]
pub(super) struct StubLedger {
    workflows: Vec<(WorkflowId, Vec<WorkflowEvent>)>,
    decisions: Vec<RecordedDecision>,
    evidence: Vec<(EvidenceId, Vec<EvidenceEvent>)>,
    down: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("audit database unreachable")]
struct Down;

impl StubLedger {
    fn check(&self) -> Result<(), ReferenceUnavailable> {
        if self.down {
            return Err(ReferenceUnavailable(Arc::new(Down)));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EvidenceReferences for StubLedger {
    async fn workflow(&self, id: WorkflowId) -> Result<ComplianceWorkflow, ReferenceUnavailable> {
        self.check()?;
        let mut workflow = ComplianceWorkflow::default();
        for event in self.workflows.iter().filter(|(w, _)| *w == id).flat_map(|(_, events)| events) {
            workflow.apply(event.clone());
        }
        Ok(workflow)
    }

    async fn decision(&self, id: DecisionId) -> Result<Option<RecordedDecision>, ReferenceUnavailable> {
        self.check()?;
        Ok(self.decisions.iter().find(|d| d.record.decision_id == id).cloned())
    }

    async fn evidence(&self, id: EvidenceId) -> Result<Evidence, ReferenceUnavailable> {
        self.check()?;
        let mut evidence = Evidence::default();
        for event in self.evidence.iter().filter(|(e, _)| *e == id).flat_map(|(_, events)| events) {
            evidence.apply(event.clone());
        }
        Ok(evidence)
    }
}

/// SOC 2 with two requirements.
impl RequirementCatalog for StubLedger {
    fn has_requirement(&self, regulation: RegulationCode, requirement: &RequirementId) -> bool {
        regulation == RegulationCode::Soc2 && ["CC6.1", "CC6.3"].contains(&requirement.as_str())
    }
}

fn workflow_id() -> WorkflowId {
    WorkflowId::parse("33333333-3333-4333-8333-333333333333").unwrap()
}
fn foreign_workflow() -> WorkflowId {
    WorkflowId::parse("66666666-6666-4666-8666-666666666666").unwrap()
}
fn decision_id(n: u8) -> DecisionId {
    DecisionId::from_uuid(Uuid::from_bytes([n; 16]))
}
pub(super) fn replacement() -> EvidenceId {
    EvidenceId::parse("55555555-5555-4555-8555-555555555555").unwrap()
}
pub(super) fn foreign_evidence() -> EvidenceId {
    EvidenceId::parse("77777777-7777-4777-8777-777777777777").unwrap()
}

fn decision(n: u8, tenant_id: TenantId, allowed: Option<bool>) -> RecordedDecision {
    let record = PolicyEvaluated {
        decision_id: decision_id(n),
        policy_id: PolicyId::from_uuid(Uuid::nil()),
        policy_version: 1,
        engine: EngineKind::Embedded,
        rule: None,
        input_sha256: Sha256::from_digest([n; 32]),
        input: None,
        result: allowed.map(|a| json!({ "allow": a })),
        defined: allowed.is_some(),
        allowed,
        latency_ms: 1.0,
    };
    RecordedDecision { tenant_id, record }
}

/// A ledger with the tenant's SOC 2 workflow (`created()`, in `history`), another
/// tenant's workflow, three decisions (allowed, denied, undefined), one of another
/// tenant, and evidence of both tenants.
fn ledger_with(history: Vec<WorkflowEvent>) -> StubLedger {
    let mut foreign_created = created();
    if let WorkflowEvent::WorkflowCreated { workflow_id, tenant_id, .. } = &mut foreign_created {
        *workflow_id = foreign_workflow();
        *tenant_id = other_tenant();
    }
    let mut foreign_submission = submission();
    foreign_submission.evidence_id = foreign_evidence();
    foreign_submission.tenant_id = other_tenant();
    let mut own_submission = submission();
    own_submission.evidence_id = replacement();
    StubLedger {
        workflows: vec![(workflow_id(), history), (foreign_workflow(), vec![foreign_created])],
        decisions: vec![
            decision(1, tenant(), Some(true)),
            decision(2, tenant(), Some(false)),
            decision(3, tenant(), None),
            decision(4, other_tenant(), Some(true)),
        ],
        evidence: vec![
            (replacement(), vec![EvidenceEvent::EvidenceSubmitted(own_submission)]),
            (foreign_evidence(), vec![EvidenceEvent::EvidenceSubmitted(foreign_submission)]),
        ],
        down: false,
    }
}

fn services_of(ledger: StubLedger) -> EvidenceServices {
    let ledger = Arc::new(ledger);
    EvidenceServices::new(ledger.clone(), ledger)
}

/// The services of a ledger holding the tenant's draft SOC 2 workflow (see [`ledger_with`]).
pub(super) fn services() -> EvidenceServices {
    services_of(ledger_with(vec![created()]))
}

/// The workflow's services on the same ledger.
pub(super) fn workflow_services() -> super::WorkflowServices {
    super::WorkflowServices::new(Arc::new(ledger_with(vec![created()])))
}

/// The workflow's services on a ledger that cannot be read.
pub(super) fn workflow_services_down() -> super::WorkflowServices {
    super::WorkflowServices::new(Arc::new(StubLedger { down: true, ..ledger_with(vec![created()]) }))
}

/// The command that submits `s`, declaring its outcome.
pub(super) fn submit(s: Submission) -> EvidenceCommand {
    EvidenceCommand::Submit(Box::new(SubmitEvidence {
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
        outcome: Some(s.outcome),
        actor: s.actor,
    }))
}

fn reference(n: u8, outcome: Option<Outcome>) -> (Submission, EvidenceCommand) {
    let mut s = submission();
    s.kind = EvidenceKind::PolicyDecisionReference;
    s.decision_id = Some(decision_id(n));
    let mut command = submit(s.clone());
    if let EvidenceCommand::Submit(c) = &mut command {
        c.outcome = outcome;
    }
    (s, command)
}

type EvidenceTest = TestFramework<Evidence>;

#[test]
fn evidence_is_recorded_for_a_workflow_the_ledger_holds_in_any_state() {
    for state in WorkflowState::STATES {
        EvidenceTest::with(services_of(ledger_with(history_to(state))))
            .given_no_previous_events()
            .when(submit(submission()))
            .then_expect_events(vec![EvidenceEvent::EvidenceSubmitted(submission())]);
    }
}

#[test]
fn a_workflow_the_ledger_does_not_hold_or_of_another_tenant_is_refused_alike() {
    let mut missing = submission();
    missing.workflow_id = WorkflowId::parse("88888888-8888-4888-8888-888888888888").unwrap();
    let mut foreign = submission();
    foreign.workflow_id = foreign_workflow();
    for s in [missing, foreign] {
        EvidenceTest::with(services())
            .given_no_previous_events()
            .when(submit(s))
            .then_expect_error(EvidenceError::Invalid("workflow_id names no workflow".into()));
    }
}

#[test]
fn a_decision_reference_takes_the_recorded_decisions_outcome() {
    for (n, outcome) in [(1, Outcome::Pass), (2, Outcome::Fail), (3, Outcome::Fail)] {
        let (mut expected, command) = reference(n, None);
        expected.outcome = outcome;
        EvidenceTest::with(services())
            .given_no_previous_events()
            .when(command)
            .then_expect_events(vec![EvidenceEvent::EvidenceSubmitted(expected)]);
    }
    let (_, declared_pass) = reference(2, Some(Outcome::Pass));
    EvidenceTest::with(services())
        .given_no_previous_events()
        .when(declared_pass)
        .then_expect_error(EvidenceError::Invalid("the decision's outcome is fail, not pass".into()));
}

#[test]
fn a_decision_the_ledger_does_not_hold_or_of_another_tenant_is_refused_alike() {
    for n in [4, 9] {
        let (_, command) = reference(n, None);
        EvidenceTest::with(services())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(EvidenceError::Invalid("decision_id names no decision record".into()));
    }
}

#[test]
fn a_decision_id_on_evidence_of_another_kind_is_refused_once_the_decision_is_found() {
    let (mut s, _) = reference(1, None);
    s.kind = EvidenceKind::Document;
    EvidenceTest::with(services())
        .given_no_previous_events()
        .when(submit(s))
        .then_expect_error(EvidenceError::Invalid("decision_id is required for, and only for, kind policy_decision_reference".into()));
}

#[test]
fn requirements_must_be_the_workflows_regulations() {
    let mut s = submission();
    s.requirement_ids = vec![RequirementId::parse("CC6.1").unwrap(), RequirementId::parse("A.5.1").unwrap()];
    EvidenceTest::with(services())
        .given_no_previous_events()
        .when(submit(s))
        .then_expect_error(EvidenceError::Invalid("A.5.1 is not a requirement of soc2".into()));
}

#[test]
fn an_automated_test_result_must_declare_whether_it_passed() {
    let mut s = submission();
    s.kind = EvidenceKind::AutomatedTestResult;
    let mut command = submit(s);
    if let EvidenceCommand::Submit(c) = &mut command {
        c.outcome = None;
    }
    EvidenceTest::with(services())
        .given_no_previous_events()
        .when(command)
        .then_expect_error(EvidenceError::Invalid("an automated_test_result needs its outcome: pass or fail".into()));
}

#[test]
fn evidence_is_superseded_only_by_evidence_of_the_same_tenant_in_the_ledger() {
    let given = || vec![EvidenceEvent::EvidenceSubmitted(submission())];
    let supersede = |by| EvidenceCommand::Supersede { tenant_id: tenant(), by, actor: actor(), reason: Some(reason()) };
    EvidenceTest::with(services())
        .given(given())
        .when(supersede(replacement()))
        .then_expect_events(vec![EvidenceEvent::EvidenceSuperseded { by: replacement(), actor: actor(), reason: Some(reason()) }]);
    for by in [foreign_evidence(), EvidenceId::parse("99999999-9999-4999-8999-999999999999").unwrap()] {
        EvidenceTest::with(services())
            .given(given())
            .when(supersede(by))
            .then_expect_error(EvidenceError::Invalid("by names no evidence record".into()));
    }
}

#[test]
fn nothing_is_recorded_when_the_ledger_cannot_answer() {
    let down = services_of(StubLedger { down: true, ..ledger_with(vec![created()]) });
    EvidenceTest::with(down)
        .given_no_previous_events()
        .when(submit(submission()))
        .then_expect_error(EvidenceError::ReferenceUnavailable(ReferenceUnavailable(Arc::new(Down))));
}
