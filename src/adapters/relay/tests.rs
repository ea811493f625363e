use super::*;

#[test]
fn every_domain_event_and_fact_has_a_topic_in_the_naming_scheme() {
    for kind in EventKind::ALL.iter().copied().filter(|k| *k != EventKind::ProjectionEntrySkipped) {
        let topic = domain_topic(kind).unwrap_or_else(|| panic!("{kind:?} has no topic"));
        let parts: Vec<&str> = topic.split('.').collect();
        assert!(parts[0] == "governance" && (3..=4).contains(&parts.len()), "{topic}");
    }
    assert_eq!(domain_topic(EventKind::ProjectionEntrySkipped), None, "an operator's skip is on the audit topic only");
    let distinct: std::collections::BTreeSet<&str> = topics().collect();
    assert_eq!(distinct.len(), domain_topics().count() + 1, "no two kinds share a topic");
    assert_eq!(domain_topics().count(), 23);
}

fn entry(aggregate_type: &str, event_type: &str, payload: &str) -> LedgerEntry {
    LedgerEntry {
        seq: 7,
        tenant_id: uuid::Uuid::nil(),
        aggregate_type: aggregate_type.into(),
        aggregate_id: "a".into(),
        aggregate_seq: 1,
        event_type: event_type.into(),
        event_version: "1".into(),
        payload: payload.into(),
        metadata: ledger::EntryMetadata::default(),
        recorded_at: chrono::Utc::now(),
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

#[test]
fn an_entry_goes_to_its_decoded_kinds_topic_an_unknown_kind_to_none_and_a_bad_field_is_an_error() {
    let activated = entry("Policy", "PolicyActivated", r#"{"actor":"alice","reason":null,"version":2}"#);
    assert_eq!(entry_topic(&activated).unwrap(), Some(("governance.policy.activated", EventKind::PolicyActivated)));
    let newer = entry("Policy", "PolicyRenamed", r#"{"name":"x"}"#);
    assert_eq!(entry_topic(&newer).unwrap(), None);
    let elsewhere = entry("Evidence", "PolicyActivated", r#"{"actor":"alice","reason":null,"version":2}"#);
    assert_eq!(entry_topic(&elsewhere).unwrap(), None, "the kind is the stream's, not the event name alone");
    let bad = entry("Policy", "PolicyActivated", r#"{"actor":"alice","reason":null,"version":"2"}"#);
    assert!(matches!(entry_topic(&bad), Err(RelayError::Decode(_))));
}

#[test]
fn the_readme_lists_every_topic() {
    let readme = include_str!("../../../README.md");
    for (kind, topic) in domain_topics() {
        let event = kind.event_type();
        assert!(readme.contains(&format!("| {event} | {topic} |")), "README lists {event} → {topic}");
    }
}

#[test]
fn ce_ids_are_stable_and_distinct_per_topic() {
    assert_eq!(ce_id("o", 7, AUDIT_TOPIC), ce_id("o", 7, AUDIT_TOPIC));
    assert_ne!(ce_id("o", 7, AUDIT_TOPIC), ce_id("o", 7, "governance.policy.created"));
}
