//! A fact's entry is, field for field, the entry the handlers built before facts were
//! typed (the payloads' bytes are checked for every fact in `aggregates/src/facts/tests.rs`).

use aggregates::compliance::{ControlId, RegulationCode, Relation, RequirementId, Sha256};
use aggregates::facts::*;
use aggregates::{Actor, DecisionId, PolicyId, Reason};
use ledger::EntryMetadata;
use uuid::Uuid;

use super::NewEntry;

fn metadata() -> EntryMetadata {
    EntryMetadata { actor: "alice".into(), request_id: Some("req-1".into()), ..Default::default() }
}

#[test]
fn a_decision_records_entry_is_the_one_the_evaluate_handler_built() {
    let tenant = Uuid::new_v4();
    let id = DecisionId::generate();
    let record = PolicyEvaluated {
        decision_id: id,
        policy_id: PolicyId::generate(),
        policy_version: 3,
        engine: EngineKind::Opa,
        rule: Some(RulePath::parse("allow").unwrap()),
        input_sha256: Sha256::from_digest([5; 32]),
        input: None,
        result: Some(serde_json::json!(true)),
        defined: true,
        allowed: Some(true),
        latency_ms: 2.5,
    };
    let old_payload = ledger::format::canonical_json(&serde_json::to_value(&record).unwrap());
    let entry = NewEntry::fact(tenant, record.aggregate_id(), &DecisionEvent::PolicyEvaluated(record), metadata()).unwrap();
    let old = NewEntry {
        tenant_id: tenant,
        aggregate_type: "PolicyDecision".into(),
        aggregate_id: id.as_uuid().to_string(),
        aggregate_seq: 1,
        event_type: "PolicyEvaluated".into(),
        event_version: "1".into(),
        payload: old_payload,
        metadata: metadata(),
    };
    assert_eq!(entry, old);
}

#[test]
fn link_and_skip_entries_are_the_ones_the_old_code_built() {
    let tenant = Uuid::new_v4();
    let id = Uuid::now_v7().to_string();
    let mark = LinkMark {
        regulation: RegulationCode::Soc2,
        requirement_id: RequirementId::parse("CC6.1").unwrap(),
        control_id: ControlId::parse("DE.CM-09").unwrap(),
        rationale: Reason::parse("not ours").unwrap(),
        actor: Actor::parse("alice").unwrap(),
    };
    let set = MappingSet {
        regulation: mark.regulation,
        requirement_id: mark.requirement_id.clone(),
        control_id: mark.control_id.clone(),
        relation: Relation::Equal,
        rationale: mark.rationale.clone(),
        actor: mark.actor.clone(),
    };
    let entry = NewEntry::fact(tenant, id.clone(), &ControlMappingEvent::ControlMappingSet(set), metadata()).unwrap();
    assert_eq!(
        (
            entry.aggregate_type.as_str(),
            entry.aggregate_id.as_str(),
            entry.aggregate_seq,
            entry.event_type.as_str(),
            entry.event_version.as_str()
        ),
        ("ControlMapping", id.as_str(), 1, "ControlMappingSet", "1")
    );
    assert_eq!(
        entry.payload,
        r#"{"actor":"alice","control_id":"DE.CM-09","rationale":"not ours","regulation":"soc2","relation":"equal","requirement_id":"CC6.1"}"#
    );
    let withdrawn = NewEntry::fact(tenant, id, &ControlMappingEvent::ControlMappingNotApplicableWithdrawn(mark), metadata()).unwrap();
    assert_eq!(
        (withdrawn.aggregate_type.as_str(), withdrawn.event_type.as_str()),
        ("ControlMapping", "ControlMappingNotApplicableWithdrawn")
    );

    let skip = ProjectionEntrySkipped {
        projection: ProjectionName::parse("kafka").unwrap(),
        seq: 17,
        reason: SkipReason::parse("larger than the broker takes").unwrap(),
    };
    let entry =
        NewEntry::fact(tenant, skip.aggregate_id(), &ProjectionSkipEvent::ProjectionEntrySkipped(skip), EntryMetadata::default()).unwrap();
    assert_eq!(
        (
            entry.aggregate_type.as_str(),
            entry.aggregate_id.as_str(),
            entry.aggregate_seq,
            entry.event_type.as_str(),
            entry.event_version.as_str()
        ),
        ("ProjectionSkip", "kafka/17", 1, "ProjectionEntrySkipped", "1")
    );
    assert_eq!(entry.payload, r#"{"projection":"kafka","reason":"larger than the broker takes","seq":17}"#);
}
