//! Identifiers and bounded strings, each with a fallible constructor ("parse, don't
//! validate"). A value of one of these types is valid by construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a raw value could not become a domain identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{field} must be a UUID")]
    NotAUuid { field: &'static str },
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be at most {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacters { field: &'static str },
    #[error("{field} {message}")]
    Malformed { field: &'static str, message: String },
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Parses the textual form; the error names the field.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                Uuid::parse_str(raw.trim())
                    .map(Self)
                    .map_err(|_| IdError::NotAUuid { field: $field })
            }
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Always the lowercase hyphenated form: the ledger hashes this text.
                write!(f, "{}", self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// The tenant that owns a record. Every read model row and ledger entry carries one.
    TenantId,
    "tenant_id"
);
uuid_id!(
    /// A policy's stable identity across versions.
    PolicyId,
    "policy_id"
);

uuid_id!(
    /// A compliance workflow (one certification effort for one regulation).
    WorkflowId,
    "workflow_id"
);
uuid_id!(
    /// One evidence record.
    EvidenceId,
    "evidence_id"
);
uuid_id!(
    /// One decision record (one evaluation).
    DecisionId,
    "decision_id"
);

uuid_id!(
    /// One replay of recorded decisions against a policy version.
    ReplayId,
    "replay_id"
);

impl ReplayId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl WorkflowId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl EvidenceId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl DecisionId {
    /// A new, time-ordered id (UUIDv7): decision ids sort by when they were made.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl PolicyId {
    /// A new, time-ordered id (UUIDv7), so ids sort roughly by creation.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

fn bounded(field: &'static str, raw: &str, max: usize, allow_newlines: bool) -> Result<String, IdError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(IdError::Empty { field });
    }
    if trimmed.len() > max {
        return Err(IdError::TooLong { field, max });
    }
    let bad = |c: char| c.is_control() && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t'));
    if trimmed.chars().any(bad) {
        return Err(IdError::ControlCharacters { field });
    }
    Ok(trimmed.to_owned())
}

macro_rules! bounded_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $newlines:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_BYTES: usize = $max;
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                bounded($field, raw, $max, $newlines).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_string!(
    /// Who asked for a change: the token's subject. Recorded on every event.
    Actor,
    "actor",
    256,
    false
);
bounded_string!(
    /// A policy's human name.
    PolicyName,
    "name",
    200,
    false
);
bounded_string!(
    /// Why a change was made; auditors read it next to the actor.
    Reason,
    "reason",
    2000,
    true
);

/// A free-text description; may be empty, but is bounded and free of control characters
/// other than newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub const MAX_BYTES: usize = 4000;
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        bounded("description", raw, Self::MAX_BYTES, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Description> for String {
    fn from(v: Description) -> String {
        v.0
    }
}

/// Rego source text. Bounded so that one request cannot make the ledger or the engine
/// hold megabytes per version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegoSource(String);

impl RegoSource {
    /// 256 KiB: far above any hand-written policy, far below what would hurt the ledger.
    pub const MAX_BYTES: usize = 256 * 1024;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.trim().is_empty() {
            return Err(IdError::Empty { field: "rego" });
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(IdError::TooLong { field: "rego", max: Self::MAX_BYTES });
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RegoSource {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<RegoSource> for String {
    fn from(v: RegoSource) -> String {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_rejects_text_that_is_not_a_uuid() {
        assert_eq!(TenantId::parse("tenant-a"), Err(IdError::NotAUuid { field: "tenant_id" }));
    }

    #[test]
    fn tenant_id_displays_in_lowercase_hyphenated_form() {
        let id = TenantId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    }

    #[test]
    fn policy_name_is_trimmed_and_bounded() {
        assert_eq!(PolicyName::parse("  gate ").unwrap().as_str(), "gate");
        assert_eq!(PolicyName::parse("   "), Err(IdError::Empty { field: "name" }));
        let long = "x".repeat(201);
        assert_eq!(PolicyName::parse(&long), Err(IdError::TooLong { field: "name", max: 200 }));
    }

    #[test]
    fn actor_rejects_control_characters() {
        assert_eq!(Actor::parse("alice\u{7}"), Err(IdError::ControlCharacters { field: "actor" }));
    }

    #[test]
    fn reason_allows_newlines() {
        assert!(Reason::parse("first line\nsecond line").is_ok());
    }

    #[test]
    fn rego_source_rejects_oversize_text() {
        let big = "#".repeat(RegoSource::MAX_BYTES + 1);
        assert!(matches!(RegoSource::parse(&big), Err(IdError::TooLong { field: "rego", .. })));
    }

    #[test]
    fn bounded_strings_reject_invalid_values_when_deserialized() {
        let err = serde_json::from_str::<PolicyName>("\"\"");
        assert!(err.is_err());
    }
}
