//! Every kind of entry decodes through [`Recorded`] into the event it was encoded from, an
//! unknown kind is told apart from a bad field, and a bad field is an error.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::compliance::*;
use crate::facts::*;
use crate::ids::*;
use crate::ledger_event::LedgerEvent;
use crate::policy::name::NameClaimEvent;
use crate::policy::{InputLogging, PolicyEvent};
use crate::recorded::{DecodeError, EventKind, Recorded, Stream};

fn actor() -> Actor {
    Actor::parse("alice").unwrap()
}
fn reason() -> Reason {
    Reason::parse("because").unwrap()
}
fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}
fn tenant() -> TenantId {
    TenantId::parse("11111111-1111-4111-8111-111111111111").unwrap()
}
fn policy() -> PolicyId {
    PolicyId::parse("33333333-3333-4333-8333-333333333333").unwrap()
}
fn rego() -> RegoSource {
    RegoSource::parse("package gate\n\nallow := true\n").unwrap()
}

/// One example of every kind, as the decoded value it must come back as.
fn examples() -> Vec<Recorded> {
    let mark = LinkMark {
        regulation: RegulationCode::Hipaa,
        requirement_id: RequirementId::parse("164.312(d)").unwrap(),
        control_id: ControlId::parse("PR.AA-03").unwrap(),
        rationale: reason(),
        actor: actor(),
    };
    let submission = Submission {
        evidence_id: EvidenceId::parse("44444444-4444-4444-8444-444444444444").unwrap(),
        tenant_id: tenant(),
        workflow_id: WorkflowId::parse("55555555-5555-4555-8555-555555555555").unwrap(),
        requirement_ids: vec![RequirementId::parse("CC6.1").unwrap()],
        control_ids: vec![],
        kind: EvidenceKind::PolicyDecisionReference,
        description: Description::default(),
        valid_from: day("2026-01-01"),
        valid_until: day("2026-12-31"),
        artifact: Artifact { sha256: Sha256::from_digest([1; 32]), size_bytes: 8, content_type: "text/plain".into(), filename: None },
        decision_id: Some(DecisionId::from_uuid(Uuid::nil())),
        outcome: Outcome::Fail,
        actor: actor(),
    };
    let finding = Finding { finding_id: Uuid::nil(), title: reason(), owner: actor(), due_date: day("2026-10-01") };
    let certification = Certification {
        as_of: day("2026-07-01"),
        valid_until: day("2027-07-01"),
        statuses: vec![CertifiedStatus { requirement_id: RequirementId::parse("CC6.1").unwrap(), status: RequirementStatus::Satisfied }],
    };
    vec![
        Recorded::Policy(PolicyEvent::PolicyCreated {
            data: Default::default(),
            modules: Default::default(),
            policy_id: policy(),
            tenant_id: tenant(),
            name: PolicyName::parse("gate").unwrap(),
            description: Description::default(),
            version: 1,
            rego: rego(),
            input_logging: InputLogging::HashOnly,
            input_mask: Default::default(),
            control_checks: Default::default(),
            actor: actor(),
            reason: None,
        }),
        Recorded::Policy(PolicyEvent::PolicyVersionAdded {
            data: Default::default(),
            modules: Default::default(),
            version: 2,
            rego: rego(),
            control_checks: crate::policy::ControlChecks::new(vec![crate::policy::ControlCheck {
                control_id: ControlId::parse("PR.AA-01").unwrap(),
                rule: Some(RulePath::parse("allow").unwrap()),
                pass_when: crate::policy::PassWhen::AllAllowed,
            }])
            .unwrap(),
            actor: actor(),
            reason: Some(reason()),
        }),
        Recorded::Policy(PolicyEvent::PolicyActivated {
            version: 2,
            replay_id: Some(ReplayId::from_uuid(Uuid::nil())),
            actor: actor(),
            reason: None,
        }),
        Recorded::Policy(PolicyEvent::PolicyDeactivated { actor: actor(), reason: None }),
        Recorded::Policy(PolicyEvent::PolicyArchived { actor: actor(), reason: None }),
        Recorded::PolicyNameClaim(NameClaimEvent::PolicyNameClaimed {
            tenant_id: tenant(),
            name: PolicyName::parse("gate").unwrap(),
            policy_id: policy(),
        }),
        Recorded::Decision(DecisionEvent::PolicyEvaluated(PolicyEvaluated {
            decision_id: DecisionId::from_uuid(Uuid::nil()),
            policy_id: policy(),
            policy_version: 1,
            engine: EngineKind::Embedded,
            rule: Some(RulePath::parse("allow").unwrap()),
            input_sha256: Sha256::from_digest([2; 32]),
            input: Some(crate::facts::JsonText::of(&json!({"user": "a"})).unwrap()),
            result: Some(json!(false)),
            defined: true,
            allowed: Some(false),
            latency_ms: 0.25,
        })),
        Recorded::Workflow(WorkflowEvent::WorkflowCreated {
            workflow_id: WorkflowId::parse("55555555-5555-4555-8555-555555555555").unwrap(),
            tenant_id: tenant(),
            regulation: RegulationCode::Soc2,
            name: PolicyName::parse("SOC 2").unwrap(),
            scope: Scope::Requirements { ids: vec![RequirementId::parse("CC6.1").unwrap()] },
            owner: actor(),
            audit_period: Period::new(day("2026-01-01"), day("2026-06-30")).unwrap(),
            due_date: day("2026-09-30"),
            actor: actor(),
        }),
        Recorded::Workflow(WorkflowEvent::WorkflowStatusChanged {
            from: WorkflowState::Draft,
            to: WorkflowState::Scoping,
            reason: reason(),
            actor: actor(),
        }),
        Recorded::Workflow(WorkflowEvent::RequirementMarkedNotApplicable {
            requirement_id: RequirementId::parse("CC6.1").unwrap(),
            justification: reason(),
            actor: actor(),
        }),
        Recorded::Workflow(WorkflowEvent::NotApplicableWithdrawn {
            requirement_id: RequirementId::parse("CC6.1").unwrap(),
            reason: reason(),
            actor: actor(),
        }),
        Recorded::Workflow(WorkflowEvent::WorkflowChanged {
            change: WorkflowChange { scope: None, owner: Some(actor()), due_date: None },
            reason: reason(),
            actor: actor(),
        }),
        Recorded::Workflow(WorkflowEvent::WorkflowCertified { certification, actor: actor() }),
        Recorded::Workflow(WorkflowEvent::FindingRaised { finding, actor: actor() }),
        Recorded::Workflow(WorkflowEvent::FindingClosed {
            finding_id: Uuid::nil(),
            evidence_id: EvidenceId::from_uuid(Uuid::nil()),
            actor: actor(),
        }),
        Recorded::Evidence(EvidenceEvent::EvidenceSubmitted(submission)),
        Recorded::Evidence(EvidenceEvent::EvidenceSuperseded { by: EvidenceId::from_uuid(Uuid::nil()), actor: actor(), reason: None }),
        Recorded::Evidence(EvidenceEvent::EvidenceWithdrawn { actor: actor(), reason: reason() }),
        Recorded::Evidence(EvidenceEvent::EvidenceReviewed { verdict: Verdict::Rejected, actor: actor(), reason: reason() }),
        Recorded::ControlMapping(ControlMappingEvent::ControlMappingSet(MappingSet {
            regulation: mark.regulation,
            requirement_id: mark.requirement_id.clone(),
            control_id: mark.control_id.clone(),
            relation: Relation::Intersects,
            rationale: reason(),
            actor: actor(),
        })),
        Recorded::ControlMapping(ControlMappingEvent::ControlMappingNotApplicable(mark.clone())),
        Recorded::ControlMapping(ControlMappingEvent::ControlMappingNotApplicableWithdrawn(mark)),
        Recorded::ProjectionSkip(ProjectionSkipEvent::ProjectionEntrySkipped(ProjectionEntrySkipped {
            projection: ProjectionName::parse("kafka").unwrap(),
            seq: 9,
            reason: SkipReason::parse("too large for the broker").unwrap(),
        })),
        Recorded::Replay(ReplayEvent::PolicyReplayed(PolicyReplayed {
            replay_id: ReplayId::from_uuid(Uuid::nil()),
            policy_id: policy(),
            version: 2,
            engine: EngineKind::Embedded,
            from: "2026-11-01T00:00:00Z".parse().unwrap(),
            to: "2026-11-30T00:00:00Z".parse().unwrap(),
            limit: Some(1000),
            through_seq: 99,
            first_seq: Some(3),
            last_seq: Some(12),
            decisions_sha256: decision_set_sha256(&[3, 7, 12]),
            report: ReplayReport {
                read: 3,
                replayed: 2,
                skipped: 1,
                skipped_by_reason: [(crate::facts::replay::SkipReason::HashOnly, 1)].into(),
                unchanged: 1,
                changed: ChangeCounts { allow_to_deny: 1, ..ChangeCounts::default() },
                examples: vec![ChangeExample {
                    kind: ChangeKind::AllowToDeny,
                    decision_id: DecisionId::from_uuid(Uuid::nil()),
                    ledger_seq: 7,
                    policy_version: 1,
                    old_result: Some(json!(true)),
                    new_result: Some(json!(false)),
                    error: None,
                }],
                controls_affected: vec![ControlId::parse("PR.AA-01").unwrap()],
            },
            report_sha256: Sha256::from_digest([2; 32]),
        })),
    ]
}

/// What the ledger stores of an example: aggregate type, event type, event version, body.
fn stored(r: &Recorded) -> (&'static str, String, String, Value) {
    fn parts<E: DomainEvent + LedgerEvent>(e: &E) -> (String, String, Value) {
        (e.event_type(), e.event_version(), e.ledger_payload().unwrap())
    }
    let (event_type, version, payload) = match r {
        Recorded::Policy(e) => parts(e),
        Recorded::PolicyNameClaim(e) => parts(e),
        Recorded::Workflow(e) => parts(e),
        Recorded::Evidence(e) => parts(e),
        Recorded::Decision(e) => parts(e),
        Recorded::ControlMapping(e) => parts(e),
        Recorded::ProjectionSkip(e) => parts(e),
        Recorded::Replay(e) => parts(e),
    };
    (r.kind().stream().aggregate_type(), event_type, version, payload)
}

#[test]
fn every_kind_of_entry_decodes_into_the_event_it_was_encoded_from() {
    let mut seen = BTreeSet::new();
    for example in examples() {
        let (aggregate_type, event_type, version, payload) = stored(&example);
        let kind = example.kind();
        assert_eq!(kind.event_type(), event_type, "the kind names the event's own type");
        assert_eq!(version, "1");
        assert_eq!(EventKind::of(aggregate_type, &event_type), Some(kind));
        let text = serde_json::to_string(&payload).unwrap();
        assert_eq!(Recorded::decode(aggregate_type, &event_type, payload).unwrap(), example);
        assert_eq!(Recorded::decode_text(aggregate_type, &event_type, &text).unwrap(), example);
        seen.insert(kind);
    }
    assert_eq!(seen, EventKind::ALL.iter().copied().collect(), "the examples cover every kind");
}

#[test]
fn the_ledger_streams_keep_their_aggregate_type_names() {
    let names: Vec<&str> = Stream::ALL.iter().map(|s| s.aggregate_type()).collect();
    assert_eq!(
        names,
        [
            "Policy",
            "PolicyNameClaim",
            "ComplianceWorkflow",
            "Evidence",
            "PolicyDecision",
            "ControlMapping",
            "ProjectionSkip",
            "PolicyReplay"
        ]
    );
}

#[test]
fn an_entry_of_an_unknown_kind_is_told_apart_from_a_bad_field() {
    let unknown = Recorded::decode("Policy", "PolicyRenamed", json!({"name": "x"}));
    assert!(matches!(unknown, Err(DecodeError::Unknown { .. })), "{unknown:?}");
    let unknown = Recorded::decode("Budget", "PolicyCreated", json!({}));
    assert!(matches!(unknown, Err(DecodeError::Unknown { .. })), "{unknown:?}");
    let bad = Recorded::decode("Policy", "PolicyActivated", json!({"version": "two", "actor": "a", "reason": null}));
    assert!(matches!(bad, Err(DecodeError::Malformed { kind: EventKind::PolicyActivated, .. })), "{bad:?}");
    let bad = Recorded::decode_text("PolicyDecision", "PolicyEvaluated", "{not json");
    assert!(matches!(bad, Err(DecodeError::Malformed { kind: EventKind::PolicyEvaluated, .. })), "{bad:?}");
}

#[test]
fn a_stored_payload_text_that_is_not_exactly_one_event_body_does_not_decode() {
    let good = r#"{"version":2,"actor":"a","reason":null}"#;
    assert!(matches!(Recorded::decode_text("Policy", "PolicyActivated", good), Ok(Recorded::Policy(_))));
    for text in [
        // A second variant smuggled after the body, in the wrapper the text path builds.
        r#"{"version":2,"actor":"a","reason":null}, "PolicyArchived": {"actor":"a","reason":null}"#,
        // The wrapper closed early.
        r#"{"version":2,"actor":"a","reason":null}}"#,
        // A field given twice: the parsed-value path would keep the last one silently.
        r#"{"version":2,"version":3,"actor":"a","reason":null}"#,
        // Not a body at all.
        "",
        "null",
        r#""PolicyActivated""#,
    ] {
        let decoded = Recorded::decode_text("Policy", "PolicyActivated", text);
        assert!(matches!(decoded, Err(DecodeError::Malformed { kind: EventKind::PolicyActivated, .. })), "{text}: {decoded:?}");
    }
}

#[test]
fn a_bad_field_of_a_policy_event_is_an_error_never_an_empty_string() {
    let Recorded::Policy(created) = &examples()[0] else { panic!("the first example is PolicyCreated") };
    let good = created.ledger_payload().unwrap();
    for (field, bad) in [("name", json!(7)), ("name", json!("poison\u{0}name")), ("description", json!(["x"])), ("rego", json!(""))] {
        let mut payload = good.clone();
        payload[field] = bad;
        let decoded = Recorded::decode("Policy", "PolicyCreated", payload);
        assert!(matches!(decoded, Err(DecodeError::Malformed { .. })), "{field}: {decoded:?}");
    }
    let mut missing = good;
    missing.as_object_mut().unwrap().remove("rego");
    assert!(Recorded::decode("Policy", "PolicyCreated", missing).is_err(), "a missing field is an error too");
}
