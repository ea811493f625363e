//! Given/when/then tests of the ComplianceWorkflow and Evidence aggregates.

use chrono::NaiveDate;
use cqrs_es::test::TestFramework;

use super::references_tests::{replacement, services, submit};
use super::*;
use crate::ids::{Actor, Description, EvidenceId, PolicyName, Reason, TenantId, WorkflowId};

pub(super) fn tenant() -> TenantId {
    TenantId::parse("11111111-1111-4111-8111-111111111111").unwrap()
}
pub(super) fn other_tenant() -> TenantId {
    TenantId::parse("22222222-2222-4222-8222-222222222222").unwrap()
}
pub(super) fn actor() -> Actor {
    Actor::parse("officer").unwrap()
}
pub(super) fn reason() -> Reason {
    Reason::parse("because").unwrap()
}
pub(super) fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}
pub(super) fn created() -> WorkflowEvent {
    WorkflowEvent::WorkflowCreated {
        workflow_id: WorkflowId::parse("33333333-3333-4333-8333-333333333333").unwrap(),
        tenant_id: tenant(),
        regulation: RegulationCode::Soc2,
        name: PolicyName::parse("SOC 2 Type II 2026").unwrap(),
        scope: Scope::All,
        owner: actor(),
        audit_period: Period::new(day("2026-01-01"), day("2026-06-30")).unwrap(),
        due_date: day("2026-09-30"),
        actor: actor(),
    }
}
pub(super) fn moved(from: WorkflowState, to: WorkflowState) -> WorkflowEvent {
    WorkflowEvent::WorkflowStatusChanged { from, to, reason: reason(), actor: actor() }
}
fn to(state: WorkflowState) -> WorkflowCommand {
    WorkflowCommand::Transition { tenant_id: tenant(), to: state, reason: reason(), actor: actor() }
}

/// The events that bring a new workflow to `state` along the happy path.
pub(super) fn history_to(state: WorkflowState) -> Vec<WorkflowEvent> {
    use WorkflowState::*;
    let path: &[WorkflowState] = match state {
        Draft => &[Draft],
        Scoping => &[Draft, Scoping],
        EvidenceCollection => &[Draft, Scoping, EvidenceCollection],
        InternalReview => &[Draft, Scoping, EvidenceCollection, InternalReview],
        AuditorReview => &[Draft, Scoping, EvidenceCollection, InternalReview, AuditorReview],
        Remediation => &[Draft, Scoping, EvidenceCollection, InternalReview, AuditorReview, Remediation],
        Certified => &[Draft, Scoping, EvidenceCollection, InternalReview, AuditorReview, Certified],
        Cancelled => &[Draft, Cancelled],
        Uninitialized => &[],
    };
    let mut events = vec![created()];
    for pair in path.windows(2) {
        events.push(moved(pair[0], pair[1]));
    }
    events
}

#[test]
fn every_transition_of_the_state_machine_is_allowed_exactly_as_drawn() {
    use WorkflowState::*;
    let expected: &[(WorkflowState, &[WorkflowState])] = &[
        (Draft, &[Scoping, Cancelled]),
        (Scoping, &[EvidenceCollection, Cancelled]),
        (EvidenceCollection, &[InternalReview, Cancelled]),
        (InternalReview, &[AuditorReview, Cancelled]),
        (AuditorReview, &[Certified, Remediation, Cancelled]),
        (Remediation, &[EvidenceCollection, Cancelled]),
        (Certified, &[]),
        (Cancelled, &[]),
    ];
    for (from, allowed) in expected {
        for target in WorkflowState::STATES {
            let given = history_to(*from);
            let when =
                TestFramework::<ComplianceWorkflow>::with(super::references_tests::workflow_services()).given(given).when(to(target));
            if *from == AuditorReview && matches!(target, Certified | Remediation) {
                when.then_expect_error(WorkflowError::AuditorDecides(target.as_str()));
            } else if allowed.contains(&target) {
                when.then_expect_events(vec![moved(*from, target)]);
            } else {
                when.then_expect_error(WorkflowError::InvalidTransition {
                    from: from.as_str(),
                    to: target.as_str(),
                    allowed: allowed.iter().map(|s| s.as_str()).collect(),
                });
            }
        }
    }
}

#[test]
fn a_workflow_of_another_tenant_is_not_found() {
    TestFramework::<ComplianceWorkflow>::with(super::references_tests::workflow_services())
        .given(vec![created()])
        .when(WorkflowCommand::Transition { tenant_id: other_tenant(), to: WorkflowState::Scoping, reason: reason(), actor: actor() })
        .then_expect_error(WorkflowError::NotFound);
}

#[test]
fn not_applicable_needs_an_open_workflow_and_an_in_scope_requirement() {
    let req = RequirementId::parse("CC6.1").unwrap();
    let mark = |r: &RequirementId| WorkflowCommand::MarkNotApplicable {
        tenant_id: tenant(),
        requirement_id: r.clone(),
        justification: reason(),
        actor: actor(),
    };
    TestFramework::<ComplianceWorkflow>::with(super::references_tests::workflow_services())
        .given(vec![created()])
        .when(mark(&req))
        .then_expect_events(vec![WorkflowEvent::RequirementMarkedNotApplicable {
            requirement_id: req.clone(),
            justification: reason(),
            actor: actor(),
        }]);
    TestFramework::<ComplianceWorkflow>::with(super::references_tests::workflow_services())
        .given(history_to(WorkflowState::Certified))
        .when(mark(&req))
        .then_expect_error(WorkflowError::Invalid("the workflow is certified; its scope is closed".into()));
    let mut scoped = created();
    if let WorkflowEvent::WorkflowCreated { scope, .. } = &mut scoped {
        *scope = Scope::Requirements { ids: vec![RequirementId::parse("CC1.1").unwrap()] };
    }
    TestFramework::<ComplianceWorkflow>::with(super::references_tests::workflow_services())
        .given(vec![scoped])
        .when(mark(&req))
        .then_expect_error(WorkflowError::Invalid("CC6.1 is not in the workflow's scope".into()));
}

pub(super) fn submission() -> Submission {
    Submission {
        evidence_id: EvidenceId::parse("44444444-4444-4444-8444-444444444444").unwrap(),
        tenant_id: tenant(),
        workflow_id: WorkflowId::parse("33333333-3333-4333-8333-333333333333").unwrap(),
        requirement_ids: vec![],
        control_ids: vec![ControlId::parse("PR.AA-01").unwrap()],
        kind: EvidenceKind::Document,
        description: Description::default(),
        valid_from: day("2026-01-01"),
        valid_until: day("2026-12-31"),
        artifact: Artifact { sha256: Sha256::from_digest([7; 32]), size_bytes: 3, content_type: "text/plain".into(), filename: None },
        decision_id: None,
        outcome: Outcome::Pass,
        actor: actor(),
    }
}

#[test]
fn evidence_is_submitted_once_then_superseded_or_withdrawn_and_never_changed_again() {
    let s = submission();
    TestFramework::<Evidence>::with(services())
        .given_no_previous_events()
        .when(submit(s.clone()))
        .then_expect_events(vec![EvidenceEvent::EvidenceSubmitted(s.clone())]);
    // Evidence of the same tenant that the ledger holds.
    let by = replacement();
    TestFramework::<Evidence>::with(services())
        .given(vec![EvidenceEvent::EvidenceSubmitted(s.clone())])
        .when(EvidenceCommand::Supersede { tenant_id: tenant(), by, actor: actor(), reason: None })
        .then_expect_events(vec![EvidenceEvent::EvidenceSuperseded { by, actor: actor(), reason: None }]);
    TestFramework::<Evidence>::with(services())
        .given(vec![EvidenceEvent::EvidenceSubmitted(s.clone()), EvidenceEvent::EvidenceWithdrawn { actor: actor(), reason: reason() }])
        .when(EvidenceCommand::Supersede { tenant_id: tenant(), by, actor: actor(), reason: None })
        .then_expect_error(EvidenceError::Closed("withdrawn"));
    TestFramework::<Evidence>::with(services())
        .given(vec![EvidenceEvent::EvidenceSubmitted(s)])
        .when(EvidenceCommand::Withdraw { tenant_id: other_tenant(), actor: actor(), reason: reason() })
        .then_expect_error(EvidenceError::NotFound);
}

#[test]
fn a_submission_needs_a_target_an_ordered_period_and_a_decision_only_for_decision_references() {
    let mut none = submission();
    none.control_ids.clear();
    let mut reversed = submission();
    reversed.valid_until = day("2025-12-31");
    let mut reference = submission();
    reference.kind = EvidenceKind::PolicyDecisionReference;
    for (s, message) in [
        (none, "evidence must name at least one requirement or control"),
        (reversed, "valid_until is before valid_from"),
        (reference, "decision_id is required for, and only for, kind policy_decision_reference"),
    ] {
        TestFramework::<Evidence>::with(services())
            .given_no_previous_events()
            .when(submit(s))
            .then_expect_error(EvidenceError::Invalid(message.into()));
    }
}
