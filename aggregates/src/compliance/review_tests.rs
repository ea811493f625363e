//! Given/when/then tests of what happens to a workflow after creation: changes,
//! withdrawn not-applicable marks, the auditor's accept / send-back with findings, and
//! the auditor's verdict on evidence.

use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::references_tests::{foreign_evidence, replacement, services, submit, workflow_services, workflow_services_down};
use super::tests::{actor, created, day, history_to, other_tenant, reason, submission, tenant};
use super::*;
use crate::ids::{Actor, EvidenceId, Reason};

type Wf = TestFramework<ComplianceWorkflow>;

fn finding(id: u128) -> Finding {
    Finding {
        finding_id: Uuid::from_u128(id),
        title: Reason::parse("MFA not enforced on admin VPN").unwrap(),
        owner: Actor::parse("it-lead").unwrap(),
        due_date: day("2026-10-31"),
    }
}
fn certification() -> Certification {
    let statuses = vec![CertifiedStatus { requirement_id: RequirementId::parse("CC6.1").unwrap(), status: RequirementStatus::Satisfied }];
    Certification { as_of: day("2026-07-15"), valid_until: day("2027-07-14"), statuses }
}
fn send_back(findings: Vec<Finding>) -> WorkflowCommand {
    WorkflowCommand::SendBack { tenant_id: tenant(), findings, reason: reason(), actor: actor() }
}
fn sent_back(findings: &[Finding]) -> Vec<WorkflowEvent> {
    let mut events = history_to(WorkflowState::AuditorReview);
    events.push(WorkflowEvent::WorkflowStatusChanged {
        from: WorkflowState::AuditorReview,
        to: WorkflowState::Remediation,
        reason: reason(),
        actor: actor(),
    });
    events.extend(findings.iter().map(|f| WorkflowEvent::FindingRaised { finding: f.clone(), actor: actor() }));
    events
}
fn close(id: u128) -> WorkflowCommand {
    WorkflowCommand::CloseFinding { tenant_id: tenant(), finding_id: Uuid::from_u128(id), evidence_id: replacement(), actor: actor() }
}

#[test]
fn given_auditor_review_when_the_auditor_accepts_then_certified_with_the_recorded_statuses() {
    Wf::with(workflow_services())
        .given(history_to(WorkflowState::AuditorReview))
        .when(WorkflowCommand::Accept { tenant_id: tenant(), certification: certification(), reason: reason(), actor: actor() })
        .then_expect_events(vec![
            WorkflowEvent::WorkflowStatusChanged {
                from: WorkflowState::AuditorReview,
                to: WorkflowState::Certified,
                reason: reason(),
                actor: actor(),
            },
            WorkflowEvent::WorkflowCertified { certification: certification(), actor: actor() },
        ]);
}

#[test]
fn accepting_needs_auditor_review_and_a_validity_after_the_day_of_certification() {
    Wf::with(workflow_services())
        .given(history_to(WorkflowState::InternalReview))
        .when(WorkflowCommand::Accept { tenant_id: tenant(), certification: certification(), reason: reason(), actor: actor() })
        .then_expect_error(WorkflowError::InvalidTransition {
            from: "internal_review",
            to: "certified",
            allowed: vec!["auditor_review", "cancelled"],
        });
    let mut same_day = certification();
    same_day.valid_until = same_day.as_of;
    Wf::with(workflow_services())
        .given(history_to(WorkflowState::AuditorReview))
        .when(WorkflowCommand::Accept { tenant_id: tenant(), certification: same_day, reason: reason(), actor: actor() })
        .then_expect_error(WorkflowError::Invalid("a certification must be valid after the day it is granted".into()));
}

#[test]
fn given_auditor_review_when_sent_back_then_remediation_with_one_event_per_finding_and_none_without_findings() {
    let findings = vec![finding(1), finding(2)];
    let expected = sent_back(&findings)[history_to(WorkflowState::AuditorReview).len()..].to_vec();
    Wf::with(workflow_services()).given(history_to(WorkflowState::AuditorReview)).when(send_back(findings)).then_expect_events(expected);
    Wf::with(workflow_services())
        .given(history_to(WorkflowState::AuditorReview))
        .when(send_back(vec![]))
        .then_expect_error(WorkflowError::Invalid("sending back to remediation needs at least one finding".into()));
}

#[test]
fn given_open_findings_then_remediation_cannot_move_on_until_each_is_closed_by_evidence() {
    let given = sent_back(&[finding(1), finding(2)]);
    let to_collection =
        WorkflowCommand::Transition { tenant_id: tenant(), to: WorkflowState::EvidenceCollection, reason: reason(), actor: actor() };
    Wf::with(workflow_services())
        .given(given.clone())
        .when(to_collection.clone())
        .then_expect_error(WorkflowError::OpenFindings(vec![Uuid::from_u128(1), Uuid::from_u128(2)]));
    let closed = |id| WorkflowEvent::FindingClosed { finding_id: Uuid::from_u128(id), evidence_id: replacement(), actor: actor() };
    Wf::with(workflow_services()).given(given.clone()).when(close(1)).then_expect_events(vec![closed(1)]);
    let mut both = given.clone();
    both.extend([closed(1), closed(2)]);
    Wf::with(workflow_services()).given(both.clone()).when(to_collection).then_expect_events(vec![WorkflowEvent::WorkflowStatusChanged {
        from: WorkflowState::Remediation,
        to: WorkflowState::EvidenceCollection,
        reason: reason(),
        actor: actor(),
    }]);
    Wf::with(workflow_services())
        .given(both)
        .when(close(1))
        .then_expect_error(WorkflowError::Invalid(format!("finding {} is already closed", Uuid::from_u128(1))));
    Wf::with(workflow_services())
        .given(given)
        .when(close(7))
        .then_expect_error(WorkflowError::Invalid(format!("finding {} is not a finding of this workflow", Uuid::from_u128(7))));
}

#[test]
fn a_finding_is_closed_only_by_active_evidence_of_this_workflow_as_the_ledger_has_it() {
    let given = sent_back(&[finding(1)]);
    let with = |evidence_id: EvidenceId| WorkflowCommand::CloseFinding {
        tenant_id: tenant(),
        finding_id: Uuid::from_u128(1),
        evidence_id,
        actor: actor(),
    };
    let refused = WorkflowError::Invalid("evidence_id names no active evidence of this workflow".into());
    // Another tenant's evidence, and evidence the ledger does not hold, are refused alike.
    Wf::with(workflow_services()).given(given.clone()).when(with(foreign_evidence())).then_expect_error(refused.clone());
    Wf::with(workflow_services()).given(given.clone()).when(with(EvidenceId::from_uuid(Uuid::from_u128(42)))).then_expect_error(refused);
    // When the ledger cannot be read, nothing is decided.
    let down = Wf::with(workflow_services_down()).given(given).when(with(replacement())).inspect_result();
    assert!(matches!(down, Err(WorkflowError::ReferenceUnavailable(_))), "{down:?}");
}

#[test]
fn scope_owner_and_due_date_change_while_open_with_a_reason_and_never_after_certification() {
    let change = WorkflowChange { scope: None, owner: Some(Actor::parse("new-owner").unwrap()), due_date: Some(day("2027-01-31")) };
    let cmd = |change: WorkflowChange| WorkflowCommand::Change { tenant_id: tenant(), change, reason: reason(), actor: actor() };
    Wf::with(workflow_services())
        .given(vec![created()])
        .when(cmd(change.clone()))
        .then_expect_events(vec![WorkflowEvent::WorkflowChanged { change: change.clone(), reason: reason(), actor: actor() }]);
    Wf::with(workflow_services())
        .given(history_to(WorkflowState::Certified))
        .when(cmd(change))
        .then_expect_error(WorkflowError::Invalid("the workflow is certified; its scope is closed".into()));
    Wf::with(workflow_services())
        .given(vec![created()])
        .when(cmd(WorkflowChange { scope: None, owner: None, due_date: None }))
        .then_expect_error(WorkflowError::Invalid("a change needs a scope, an owner or a due date".into()));
    Wf::with(workflow_services())
        .given(vec![created()])
        .when(cmd(WorkflowChange { scope: Some(Scope::Requirements { ids: vec![] }), owner: None, due_date: None }))
        .then_expect_error(WorkflowError::Invalid("a scope of listed requirements needs at least one".into()));
    Wf::with(workflow_services())
        .given(vec![created()])
        .when(WorkflowCommand::Change {
            tenant_id: other_tenant(),
            change: WorkflowChange { scope: Some(Scope::All), owner: None, due_date: None },
            reason: reason(),
            actor: actor(),
        })
        .then_expect_error(WorkflowError::NotFound);
}

#[test]
fn a_not_applicable_mark_can_be_withdrawn_once_and_only_if_it_was_made() {
    let req = RequirementId::parse("CC6.1").unwrap();
    let withdraw =
        WorkflowCommand::WithdrawNotApplicable { tenant_id: tenant(), requirement_id: req.clone(), reason: reason(), actor: actor() };
    let marked = WorkflowEvent::RequirementMarkedNotApplicable { requirement_id: req.clone(), justification: reason(), actor: actor() };
    let withdrawn = WorkflowEvent::NotApplicableWithdrawn { requirement_id: req.clone(), reason: reason(), actor: actor() };
    Wf::with(workflow_services()).given(vec![created(), marked.clone()]).when(withdraw.clone()).then_expect_events(vec![withdrawn.clone()]);
    let not_marked = WorkflowError::Invalid("CC6.1 is not marked not applicable".into());
    Wf::with(workflow_services()).given(vec![created(), marked, withdrawn]).when(withdraw.clone()).then_expect_error(not_marked.clone());
    Wf::with(workflow_services()).given(vec![created()]).when(withdraw).then_expect_error(not_marked);
}

#[test]
fn an_auditor_verdict_is_recorded_on_active_evidence_only() {
    let s = submission();
    let review = |verdict| EvidenceCommand::Review { tenant_id: tenant(), verdict, actor: actor(), reason: reason() };
    TestFramework::<Evidence>::with(services())
        .given(vec![EvidenceEvent::EvidenceSubmitted(s.clone())])
        .when(review(Verdict::Rejected))
        .then_expect_events(vec![EvidenceEvent::EvidenceReviewed { verdict: Verdict::Rejected, actor: actor(), reason: reason() }]);
    TestFramework::<Evidence>::with(services())
        .given(vec![EvidenceEvent::EvidenceSubmitted(s.clone()), EvidenceEvent::EvidenceWithdrawn { actor: actor(), reason: reason() }])
        .when(review(Verdict::Accepted))
        .then_expect_error(EvidenceError::Closed("withdrawn"));
    let mut informational_test = s;
    informational_test.kind = EvidenceKind::AutomatedTestResult;
    informational_test.outcome = Outcome::Informational;
    TestFramework::<Evidence>::with(services())
        .given_no_previous_events()
        .when(submit(informational_test))
        .then_expect_error(EvidenceError::Invalid("an automated_test_result passes or fails; it is not informational".into()));
}

#[test]
fn an_evidence_event_recorded_before_outcomes_existed_reads_as_passing() {
    let mut old = serde_json::to_value(EvidenceEvent::EvidenceSubmitted(submission())).unwrap();
    old["EvidenceSubmitted"].as_object_mut().unwrap().remove("outcome");
    let read: EvidenceEvent = serde_json::from_value(old).unwrap();
    assert!(matches!(read, EvidenceEvent::EvidenceSubmitted(s) if s.outcome == Outcome::Pass));
}
