//! A policy decision: the durable record of one evaluation. Decisions are facts, not an
//! aggregate with invariants: each is appended once, under its own id, and never changes.

use std::fmt;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Fact, JsonText};
use crate::compliance::Sha256;
use crate::ids::{DecisionId, IdError, PolicyId};
use crate::ledger_event::{LedgerEvent, LedgerEventError};

/// The ledger's aggregate type for decisions.
pub const DECISION_AGGREGATE: &str = "PolicyDecision";

/// The engine that made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// regorus, in the service's sandboxed worker processes.
    Embedded,
    /// Open Policy Agent over REST.
    Opa,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Opa => "opa",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule a decision evaluated: a dot-separated path of identifiers inside the policy's
/// package (`allow`, `limits.max`), at most 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RulePath(String);

impl RulePath {
    pub const MAX_BYTES: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let identifier = |seg: &str| {
            let mut chars = seg.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if raw.is_empty() {
            return Err(IdError::Empty { field: "rule" });
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(IdError::TooLong { field: "rule", max: Self::MAX_BYTES });
        }
        if !raw.split('.').all(identifier) {
            return Err(IdError::Malformed { field: "rule", message: "must be a dot-separated path of identifiers".into() });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RulePath {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<RulePath> for String {
    fn from(r: RulePath) -> String {
        r.0
    }
}

/// The record of one evaluation. Its JSON body is what the ledger hashes: fields are only
/// ever added, never renamed.
///
/// The fields are declared in the order of their names, which is the order of the keys in
/// the ledger's canonical body, so that [`LedgerEvent::ledger_text`] can write the body
/// straight from the record (the input as its text), with no tree of it built on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvaluated {
    pub allowed: Option<bool>,
    pub decision_id: DecisionId,
    pub defined: bool,
    pub engine: EngineKind,
    /// The input itself (its canonical JSON text), unless the policy keeps only its hash.
    /// An input of `null` is recorded as `null`, as no input is: `input_sha256` tells them
    /// apart.
    pub input: Option<JsonText>,
    /// SHA-256 (hex) of the input's canonical JSON; [`NO_INPUT_SHA256`] when the caller
    /// gave no input (the policy's `input` was undefined).
    pub input_sha256: Sha256,
    pub latency_ms: f64,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub result: Option<serde_json::Value>,
    /// The rule path evaluated; `None` for the whole package document.
    pub rule: Option<RulePath>,
}

/// The `input_sha256` of a decision made without an input: the SHA-256 of zero bytes. It is
/// never the hash of an input, because a canonical JSON text is never empty.
pub const NO_INPUT_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl PolicyEvaluated {
    /// Whether the caller gave an input (`false`: the policy saw `input` undefined).
    pub fn had_input(&self) -> bool {
        self.input_sha256.as_str() != NO_INPUT_SHA256
    }

    /// The entry's aggregate id: the decision's own.
    pub fn aggregate_id(&self) -> String {
        self.decision_id.to_string()
    }

    /// Whether the decision allowed: a result that is not a boolean decision, or none,
    /// never allowed (fail closed).
    pub fn is_allowed(&self) -> bool {
        self.allowed.unwrap_or(false)
    }
}

/// The events of the `PolicyDecision` stream: one record per decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DecisionEvent {
    PolicyEvaluated(PolicyEvaluated),
}

impl DomainEvent for DecisionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PolicyEvaluated(_) => "PolicyEvaluated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for DecisionEvent {
    /// The record's body, written straight from its fields (declared in key order): the
    /// same bytes as the default's canonical JSON of [`LedgerEvent::ledger_payload`], on
    /// the path every evaluation takes.
    fn ledger_text(&self) -> Result<String, LedgerEventError> {
        match self {
            Self::PolicyEvaluated(record) => Ok(serde_json::to_string(record)?),
        }
    }
}

impl Fact for DecisionEvent {
    const AGGREGATE_TYPE: &'static str = DECISION_AGGREGATE;
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

    #[test]
    fn the_no_input_digest_is_the_sha256_of_zero_bytes() {
        use sha2::Digest;
        assert_eq!(NO_INPUT_SHA256, hex::encode(sha2::Sha256::digest(b"")));
    }

    #[test]
    fn rule_paths_are_dot_separated_identifiers() {
        for ok in ["allow", "deny_reasons", "limits.max.tokens", "_x"] {
            assert!(RulePath::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "1a", "a/b", "a[0]", ".a", "a.", "allow; drop"] {
            assert!(RulePath::parse(bad).is_err(), "{bad}");
        }
        assert!(RulePath::parse(&"a".repeat(257)).is_err());
    }
}
