//! The ledger hashes every payload byte, so the typed facts must encode exactly what the
//! code before them wrote: each example is encoded through the new type and compared with
//! the payload the old code built (its struct or `json!` literal, copied here verbatim)
//! and with the literal bytes. The ledger stores `serde_json::to_string` of the payload
//! value (`ledger::format::canonical_json`), which is what `canonical` does here.

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::compliance::{ControlId, RegulationCode, Relation, RequirementId, Sha256};
use crate::ids::{Actor, DecisionId, PolicyId, Reason};
use crate::ledger_event::LedgerEvent;

fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The entry fields of a fact; its `ledger_text` (what the service appends) must be the
/// canonical text of its payload value, whichever way a fact writes it.
fn encoded<F: Fact>(fact: &F) -> (String, String, String, String) {
    let payload = canonical(&fact.ledger_payload().unwrap());
    assert_eq!(fact.ledger_text().unwrap(), payload, "ledger_text writes the canonical payload");
    (F::AGGREGATE_TYPE.to_owned(), fact.event_type(), fact.event_version(), payload)
}

/// The decision record as `src/http/evaluate.rs` built it before the fact was typed.
#[derive(serde::Serialize)]
struct OldPolicyEvaluated {
    decision_id: Uuid,
    policy_id: Uuid,
    policy_version: u32,
    engine: String,
    rule: Option<String>,
    input_sha256: String,
    input: Option<Value>,
    result: Option<Value>,
    defined: bool,
    allowed: Option<bool>,
    latency_ms: f64,
}

const DECISION: &str = "0190f5b2-7c1e-7a3b-9f00-1234567890ab";
const POLICY: &str = "6f9619ff-8b86-4011-b42d-00c04fc964ff";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn decision(engine: EngineKind, rule: Option<&str>, input: Option<Value>, result: Option<Value>, latency_ms: f64) -> DecisionEvent {
    DecisionEvent::PolicyEvaluated(PolicyEvaluated {
        decision_id: DecisionId::parse(DECISION).unwrap(),
        policy_id: PolicyId::parse(POLICY).unwrap(),
        policy_version: 2,
        engine,
        rule: rule.map(|r| RulePath::parse(r).unwrap()),
        input_sha256: Sha256::parse(SHA).unwrap(),
        input: input.as_ref().map(|v| JsonText::of(v).unwrap()),
        defined: result.is_some(),
        allowed: decision::allowed(result.as_ref()),
        result,
        latency_ms,
    })
}

fn old_decision(engine: &str, rule: Option<&str>, input: Option<Value>, result: Option<Value>, latency_ms: f64) -> String {
    let record = OldPolicyEvaluated {
        decision_id: Uuid::parse_str(DECISION).unwrap(),
        policy_id: Uuid::parse_str(POLICY).unwrap(),
        policy_version: 2,
        engine: engine.to_owned(),
        rule: rule.map(str::to_owned),
        input_sha256: SHA.to_owned(),
        input,
        defined: result.is_some(),
        allowed: decision::allowed(result.as_ref()),
        result,
        latency_ms,
    };
    canonical(&serde_json::to_value(&record).unwrap())
}

#[test]
fn a_decision_record_encodes_byte_for_byte_as_the_old_evaluate_handler_wrote_it() {
    let input = json!({"accuracy": 0.93, "user": {"email": "a@example.com"}});
    let full = decision(EngineKind::Embedded, Some("allow"), Some(input.clone()), Some(json!(true)), 1.25);
    let expected = format!(
        r#"{{"allowed":true,"decision_id":"{DECISION}","defined":true,"engine":"embedded","input":{{"accuracy":0.93,"user":{{"email":"a@example.com"}}}},"input_sha256":"{SHA}","latency_ms":1.25,"policy_id":"{POLICY}","policy_version":2,"result":true,"rule":"allow"}}"#
    );
    assert_eq!(old_decision("embedded", Some("allow"), Some(input), Some(json!(true)), 1.25), expected);
    assert_eq!(encoded(&full), ("PolicyDecision".into(), "PolicyEvaluated".into(), "1".into(), expected));

    let bare = decision(EngineKind::Opa, None, None, None, 0.5);
    let expected = format!(
        r#"{{"allowed":null,"decision_id":"{DECISION}","defined":false,"engine":"opa","input":null,"input_sha256":"{SHA}","latency_ms":0.5,"policy_id":"{POLICY}","policy_version":2,"result":null,"rule":null}}"#
    );
    assert_eq!(old_decision("opa", None, None, None, 0.5), expected);
    assert_eq!(encoded(&bare).3, expected);
}

#[test]
fn a_decision_record_the_old_code_wrote_decodes_into_the_typed_fact() {
    let raw = old_decision("embedded", Some("limits.max"), Some(json!({"n": 1})), Some(json!({"allow": false})), 7.0);
    let decoded = DecisionEvent::from_ledger("PolicyEvaluated", serde_json::from_str(&raw).unwrap()).unwrap();
    assert_eq!(decoded, decision(EngineKind::Embedded, Some("limits.max"), Some(json!({"n": 1})), Some(json!({"allow": false})), 7.0));
    assert_eq!(canonical(&decoded.ledger_payload().unwrap()), raw, "decoding and encoding again gives the same bytes");
    assert_eq!(decoded.ledger_text().unwrap(), raw);
    let from_text = DecisionEvent::from_ledger_text("PolicyEvaluated", &raw).unwrap();
    assert_eq!(from_text, decoded, "the text decode and the tree decode agree");
    assert_eq!(from_text.ledger_text().unwrap(), raw);
}

#[test]
fn a_decision_record_writes_its_body_in_key_order_with_the_input_as_given_text() {
    // Keys, escapes, numbers and nesting an input can hold, and every optional field
    // both present and absent: the direct text is the canonical text of the payload value.
    let input = json!({"z": [1, -2, 3.5e-7, 1e300, 18446744073709551615u64], "a": {"é\n\"q\"": "\u{1}", "m": null, "b": [true, false, {}]}, "": ""});
    for (rule, input, result) in [
        (Some("limits.max"), Some(input.clone()), Some(json!({"allow": true, "why": ["x"]}))),
        (None, None, None),
        (Some("allow"), Some(Value::Null), Some(json!(false))),
        (None, Some(json!("text")), Some(json!([1, {"b": 2, "a": 1}]))),
    ] {
        let record = decision(EngineKind::Opa, rule, input, result, 0.1 + 0.2);
        let (.., text) = encoded(&record);
        let reread: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical(&reread), text, "the body is canonical: keys sorted at every level");
        let back = DecisionEvent::from_ledger_text("PolicyEvaluated", &text).unwrap();
        // An input of `null` reads back as no recorded input, as it always has (the
        // input's hash tells them apart); its bytes are the same either way.
        let DecisionEvent::PolicyEvaluated(r) = &record;
        let expected = decision(
            EngineKind::Opa,
            rule,
            r.input.as_ref().filter(|t| t.get() != "null").map(|t| t.to_value().unwrap()),
            r.result.clone(),
            0.1 + 0.2,
        );
        assert_eq!(back, expected);
        assert_eq!(back.ledger_text().unwrap(), text, "a decoded record writes the same bytes again");
    }
}

fn link() -> (RegulationCode, RequirementId, ControlId, Reason, Actor) {
    (
        RegulationCode::Soc2,
        RequirementId::parse("CC6.1").unwrap(),
        ControlId::parse("PR.AA-01").unwrap(),
        Reason::parse("MFA covers it").unwrap(),
        Actor::parse("alice").unwrap(),
    )
}

#[test]
fn control_mapping_facts_encode_byte_for_byte_as_the_old_json_literals() {
    let (regulation, requirement, control, rationale, actor) = link();
    // `set_mappings` before the fact was typed (src/http/regulations.rs).
    let old_set = json!({
        "regulation": regulation.as_str(),
        "requirement_id": requirement.as_str(),
        "control_id": control.as_str(),
        "relation": Relation::Subset,
        "rationale": rationale.as_str(),
        "actor": actor.as_str(),
    });
    let set = ControlMappingEvent::ControlMappingSet(MappingSet {
        regulation,
        requirement_id: requirement.clone(),
        control_id: control.clone(),
        relation: Relation::Subset,
        rationale: rationale.clone(),
        actor: actor.clone(),
    });
    let expected = r#"{"actor":"alice","control_id":"PR.AA-01","rationale":"MFA covers it","regulation":"soc2","relation":"subset","requirement_id":"CC6.1"}"#;
    assert_eq!(canonical(&old_set), expected);
    assert_eq!(encoded(&set), ("ControlMapping".into(), "ControlMappingSet".into(), "1".into(), expected.into()));

    // `named_link` before the fact was typed: the body of a mark and of its withdrawal.
    let old_mark = json!({
        "regulation": regulation.as_str(),
        "requirement_id": requirement.as_str(),
        "control_id": control.as_str(),
        "rationale": rationale.as_str(),
        "actor": actor.as_str(),
    });
    let mark = LinkMark { regulation, requirement_id: requirement, control_id: control, rationale, actor };
    let expected = r#"{"actor":"alice","control_id":"PR.AA-01","rationale":"MFA covers it","regulation":"soc2","requirement_id":"CC6.1"}"#;
    assert_eq!(canonical(&old_mark), expected);
    let marked = ControlMappingEvent::ControlMappingNotApplicable(mark.clone());
    let withdrawn = ControlMappingEvent::ControlMappingNotApplicableWithdrawn(mark);
    assert_eq!(encoded(&marked), ("ControlMapping".into(), "ControlMappingNotApplicable".into(), "1".into(), expected.into()));
    assert_eq!(encoded(&withdrawn), ("ControlMapping".into(), "ControlMappingNotApplicableWithdrawn".into(), "1".into(), expected.into()));
}

/// The skip decision as `src/projection.rs` defined it before the fact was typed.
#[derive(serde::Serialize)]
struct OldProjectionEntrySkipped {
    projection: String,
    seq: i64,
    reason: String,
}

#[test]
fn a_projection_skip_encodes_byte_for_byte_as_the_old_struct_did() {
    let reason = "NUL in the name (written by v0.9)";
    let old = OldProjectionEntrySkipped { projection: "policies".into(), seq: 42, reason: reason.into() };
    let fact = ProjectionEntrySkipped {
        projection: ProjectionName::parse("policies").unwrap(),
        seq: 42,
        reason: SkipReason::parse(reason).unwrap(),
    };
    assert_eq!(fact.aggregate_id(), "policies/42");
    let expected = r#"{"projection":"policies","reason":"NUL in the name (written by v0.9)","seq":42}"#;
    assert_eq!(canonical(&serde_json::to_value(&old).unwrap()), expected);
    let event = ProjectionSkipEvent::ProjectionEntrySkipped(fact);
    assert_eq!(encoded(&event), ("ProjectionSkip".into(), "ProjectionEntrySkipped".into(), "1".into(), expected.into()));
}

#[test]
fn a_bad_field_in_a_fact_is_an_error_never_a_default() {
    let raw = old_decision("embedded", Some("allow"), None, Some(json!(true)), 1.0);
    for (field, bad) in [("engine", json!("wasm")), ("rule", json!("a/b")), ("input_sha256", json!("abc")), ("policy_id", json!(7))] {
        let mut payload: Value = serde_json::from_str(&raw).unwrap();
        payload[field] = bad;
        assert!(DecisionEvent::from_ledger("PolicyEvaluated", payload).is_err(), "{field}");
    }
    let bad_links = [
        json!({"regulation": "gdpr", "requirement_id": "CC6.1", "control_id": "PR.AA-01", "relation": "subset", "rationale": "r", "actor": "a"}),
        json!({"regulation": "soc2", "requirement_id": "CC6.1", "control_id": "XX.AA-01", "relation": "subset", "rationale": "r", "actor": "a"}),
        json!({"regulation": "soc2", "requirement_id": "CC6.1", "control_id": "PR.AA-01", "relation": "subset", "rationale": "", "actor": "a"}),
        json!({"regulation": "soc2", "requirement_id": "CC6.1", "control_id": "PR.AA-01", "relation": "subset", "rationale": "r"}),
    ];
    for payload in bad_links {
        assert!(ControlMappingEvent::from_ledger("ControlMappingSet", payload.clone()).is_err(), "{payload}");
    }
    let skip = json!({"projection": "policies", "seq": 3, "reason": "  "});
    assert!(ProjectionSkipEvent::from_ledger("ProjectionEntrySkipped", skip).is_err());
}
