//! An operator's recorded decision that a projector (or the Kafka relay, as projection
//! `kafka`) does not apply one ledger entry: the way past an entry it can never apply,
//! without editing the ledger. One per projection and seq.

use std::fmt;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::Fact;
use crate::ids::IdError;
use crate::ledger_event::LedgerEvent;

/// The ledger's aggregate type of skip decisions.
pub const SKIP_AGGREGATE: &str = "ProjectionSkip";

/// A projector's name (`policies`, `decisions`, …, or `kafka` for the relay): lowercase
/// ASCII letters, digits, `-` and `_`, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectionName(String);

impl ProjectionName {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let field = "projection";
        if raw.is_empty() {
            return Err(IdError::Empty { field });
        }
        if raw.len() > 64 {
            return Err(IdError::TooLong { field, max: 64 });
        }
        if !raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(IdError::Malformed { field, message: "must be lowercase letters, digits, - and _".into() });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ProjectionName {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ProjectionName> for String {
    fn from(p: ProjectionName) -> String {
        p.0
    }
}

/// Why the operator skips the entry: any text that is not blank, kept exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SkipReason(String);

impl SkipReason {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.trim().is_empty() {
            return Err(IdError::Empty { field: "reason" });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SkipReason {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<SkipReason> for String {
    fn from(r: SkipReason) -> String {
        r.0
    }
}

/// `projection` does not apply ledger entry `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionEntrySkipped {
    pub projection: ProjectionName,
    pub seq: i64,
    pub reason: SkipReason,
}

impl ProjectionEntrySkipped {
    /// The entry's aggregate id: one decision per projection and seq (a second conflicts).
    pub fn aggregate_id(&self) -> String {
        format!("{}/{}", self.projection, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectionSkipEvent {
    ProjectionEntrySkipped(ProjectionEntrySkipped),
}

impl DomainEvent for ProjectionSkipEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProjectionEntrySkipped(_) => "ProjectionEntrySkipped",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for ProjectionSkipEvent {}

impl Fact for ProjectionSkipEvent {
    const AGGREGATE_TYPE: &'static str = SKIP_AGGREGATE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_names_are_short_lowercase_words() {
        for ok in ["policies", "kafka", "compliance_review", "a-1"] {
            assert!(ProjectionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Policies", "a b", "a/b", &"a".repeat(65)] {
            assert!(ProjectionName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_skip_reason_is_kept_exactly_as_given_but_never_blank() {
        assert_eq!(SkipReason::parse("  NUL in the name\n").map(String::from), Ok("  NUL in the name\n".to_owned()));
        assert_eq!(SkipReason::parse(" \t"), Err(IdError::Empty { field: "reason" }));
    }
}
