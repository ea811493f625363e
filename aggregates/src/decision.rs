//! A policy decision: the durable record of one evaluation. Decisions are facts, not an
//! aggregate with invariants: each is appended once, under its own id, and never changes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The ledger's aggregate type for decisions.
pub const DECISION_AGGREGATE: &str = "PolicyDecision";
/// The event type of a decision record.
pub const POLICY_EVALUATED: &str = "PolicyEvaluated";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvaluated {
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub policy_version: u32,
    pub engine: String,
    /// The rule path evaluated; `None` for the whole package document.
    pub rule: Option<String>,
    /// SHA-256 (hex) of the input's canonical JSON.
    pub input_sha256: String,
    /// The input itself, unless the policy keeps only its hash.
    pub input: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub defined: bool,
    pub allowed: Option<bool>,
    pub latency_ms: f64,
}

/// `allowed`: the result when it is a boolean, or its boolean `allow` field.
pub fn allowed(result: Option<&serde_json::Value>) -> Option<bool> {
    match result? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Object(map) => map.get("allow").and_then(serde_json::Value::as_bool),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn allowed_reads_a_boolean_or_a_boolean_allow_field_and_nothing_else() {
        assert_eq!(allowed(Some(&json!(true))), Some(true));
        assert_eq!(allowed(Some(&json!({"allow": false, "reasons": []}))), Some(false));
        assert_eq!(allowed(Some(&json!({"allow": "yes"}))), None);
        assert_eq!(allowed(Some(&json!(["allow"]))), None);
        assert_eq!(allowed(None), None, "undefined is never allowed");
    }
}
