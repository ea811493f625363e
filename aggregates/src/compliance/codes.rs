//! Compliance identifiers: regulation codes, NIST CSF 2.0 control ids, requirement ids,
//! SHA-256 digests. Parsed once; valid by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::IdError;

/// The six regulations the catalog covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RegulationCode {
    Soc2,
    Iso27001,
    Hipaa,
    Iso42001,
    EuAiAct,
    Fedramp,
}

impl RegulationCode {
    pub const ALL: [RegulationCode; 6] = [Self::Soc2, Self::Iso27001, Self::Hipaa, Self::Iso42001, Self::EuAiAct, Self::Fedramp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soc2 => "soc2",
            Self::Iso27001 => "iso27001",
            Self::Hipaa => "hipaa",
            Self::Iso42001 => "iso42001",
            Self::EuAiAct => "eu_ai_act",
            Self::Fedramp => "fedramp",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw).ok_or_else(|| IdError::Malformed {
            field: "regulation",
            message: format!("must be one of soc2, iso27001, hipaa, iso42001, eu_ai_act, fedramp (got {raw:?})"),
        })
    }
}

impl fmt::Display for RegulationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for RegulationCode {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<RegulationCode> for String {
    fn from(c: RegulationCode) -> String {
        c.as_str().to_owned()
    }
}

const FUNCTIONS: [&str; 6] = ["GV", "ID", "PR", "DE", "RS", "RC"];

/// A NIST CSF 2.0 subcategory id, e.g. `PR.AA-01`: function, category, two digits. The
/// shape is checked here; whether the subcategory exists is the catalog's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ControlId(String);

impl ControlId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let b = raw.as_bytes();
        let ok = b.len() == 8
            && raw.is_ascii()
            && FUNCTIONS.contains(&&raw[..2])
            && b[2] == b'.'
            && b[3..5].iter().all(u8::is_ascii_uppercase)
            && b[5] == b'-'
            && b[6..8].iter().all(u8::is_ascii_digit);
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::Malformed {
                field: "control_id",
                message: format!("must be a NIST CSF 2.0 subcategory id like PR.AA-01 (got {raw:?})"),
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The category, e.g. `PR.AA`.
    pub fn category(&self) -> &str {
        &self.0[..5]
    }
    /// The function, e.g. `PR`.
    pub fn function(&self) -> &str {
        &self.0[..2]
    }
}

impl fmt::Display for ControlId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ControlId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ControlId> for String {
    fn from(c: ControlId) -> String {
        c.0
    }
}

/// A requirement's id within its regulation (`CC6.1`, `A.5.1`, `164.308(a)(1)`, `AC-2(1)`,
/// `Art.9`): printable ASCII, at most 64 bytes. Existence is the catalog's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequirementId(String);

impl RequirementId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError::Empty { field: "requirement_id" });
        }
        if raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::Malformed { field: "requirement_id", message: "must be at most 64 printable ASCII characters".into() });
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequirementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RequirementId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<RequirementId> for String {
    fn from(r: RequirementId) -> String {
        r.0
    }
}

/// A SHA-256 digest in lowercase hex (64 characters): how artifacts are addressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

impl Sha256 {
    /// Accepts upper- or lowercase hex and stores lowercase.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(IdError::Malformed { field: "sha256", message: "must be 64 hexadecimal characters".into() })
        }
    }
    pub fn from_digest(bytes: [u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sha256 {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Sha256> for String {
    fn from(s: Sha256) -> String {
        s.0
    }
}

/// How a requirement relates to a CSF 2.0 control it is mapped to, read as "the
/// requirement is a {relation} of the control" (NIST IR 8477 set relationships).
///
/// For coverage: evidence that a control operates satisfies a requirement only when the
/// control covers all of it (`subset` or `equal`); when the control covers only part of
/// it (`superset`: the requirement asks for more; `intersects`: they share only part),
/// the evidence counts towards the requirement but cannot satisfy it alone (`partial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Subset,
    Intersects,
    Equal,
    Superset,
}

impl Relation {
    pub const ALL: [Relation; 4] = [Self::Subset, Self::Intersects, Self::Equal, Self::Superset];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subset => "subset",
            Self::Intersects => "intersects",
            Self::Equal => "equal",
            Self::Superset => "superset",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
    /// Whether evidence for the control alone satisfies the requirement.
    pub fn covers_requirement(self) -> bool {
        matches!(self, Self::Subset | Self::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ids_follow_the_csf_2_0_shape() {
        for ok in ["PR.AA-01", "GV.OC-04", "RC.RP-06"] {
            let c = ControlId::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(c.category(), &ok[..5]);
        }
        for bad in ["", "PR.AA-1", "XX.AA-01", "pr.aa-01", "PR.AA-011", "PR.A1-01", "PR-AA.01", "ÄR.AA-01", "aÄ.AA-01"] {
            assert!(ControlId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regulation_codes_are_the_six_and_nothing_else() {
        assert_eq!(RegulationCode::ALL.map(|c| RegulationCode::parse(c.as_str()).ok()), RegulationCode::ALL.map(Some));
        for bad in ["SOC2", "gdpr", "", "fedramp-moderate"] {
            assert!(RegulationCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sha256_is_64_hex_stored_lowercase() {
        let upper = "A".repeat(64);
        assert_eq!(Sha256::parse(&upper).map(|s| s.as_str().to_owned()), Ok("a".repeat(64)));
        assert!(Sha256::parse(&"g".repeat(64)).is_err());
        assert!(Sha256::parse("abc").is_err());
        assert_eq!(Sha256::from_digest([0xab; 32]).as_str(), "ab".repeat(32));
    }

    #[test]
    fn requirement_ids_are_bounded_printable_ascii() {
        assert!(RequirementId::parse("164.308(a)(1)(ii)(A)").is_ok());
        assert!(RequirementId::parse("").is_err());
        assert!(RequirementId::parse("a b").is_err());
        assert!(RequirementId::parse(&"x".repeat(65)).is_err());
    }
}
