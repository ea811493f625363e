//! The controls a policy version checks: each decision of the version is evidence for
//! these NIST CSF 2.0 subcategories, rolled up per control and per day into *system
//! evidence* (see `docs/compliance.md`, "Policies as control checks").
//!
//! A check names its control, optionally the rule whose decisions count (absent: every
//! decision of the version), and when a day passes ([`PassWhen`]). Recorded with the
//! version in the ledger, so a roll-up can always be recomputed from the ledger alone.

use serde::{Deserialize, Serialize};

use crate::compliance::ControlId;
use crate::facts::RulePath;
use crate::ids::IdError;

/// When one day's decisions of a checked control pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PassWhen {
    /// The default: the day passes when it has a decision and none of its decisions
    /// denied ("fail if any deny in the period"). Undefined results do not fail it.
    #[default]
    NoDeny,
    /// The day passes when every decision allowed: the policy's own rule held each time
    /// (a deny or an undefined result fails it).
    AllAllowed,
    /// The day passes when a decision exists ("the check ran"), whatever it answered.
    Decided,
}

impl PassWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoDeny => "no_deny",
            Self::AllAllowed => "all_allowed",
            Self::Decided => "decided",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::NoDeny, Self::AllAllowed, Self::Decided].into_iter().find(|p| p.as_str() == raw)
    }

    /// Whether a day with these counts passes. A day without decisions never does.
    pub fn passes(self, allowed: u64, denied: u64, undefined: u64) -> bool {
        let total = allowed.saturating_add(denied).saturating_add(undefined);
        total > 0
            && match self {
                Self::NoDeny => denied == 0,
                Self::AllAllowed => denied == 0 && undefined == 0,
                Self::Decided => true,
            }
    }
}

/// One control a version checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCheck {
    pub control_id: ControlId,
    /// Only decisions of this rule count; absent: every decision of the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RulePath>,
    #[serde(default)]
    pub pass_when: PassWhen,
}

impl ControlCheck {
    /// Whether a decision that evaluated `rule` counts for this check.
    pub fn counts(&self, rule: Option<&RulePath>) -> bool {
        self.rule.as_ref().is_none_or(|mine| Some(mine) == rule)
    }
}

/// The checks of one version: at most [`ControlChecks::MAX`], one per control.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ControlCheck>", into = "Vec<ControlCheck>")]
pub struct ControlChecks(Vec<ControlCheck>);

impl ControlChecks {
    pub const MAX: usize = 32;

    pub fn new(checks: Vec<ControlCheck>) -> Result<Self, IdError> {
        if checks.len() > Self::MAX {
            return Err(IdError::Malformed { field: "control_checks", message: format!("may name at most {} controls", Self::MAX) });
        }
        for (i, c) in checks.iter().enumerate() {
            if checks[..i].iter().any(|d| d.control_id == c.control_id) {
                return Err(IdError::Malformed {
                    field: "control_checks",
                    message: format!("names {} twice; one check per control", c.control_id.as_str()),
                });
            }
        }
        Ok(Self(checks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ControlCheck> {
        self.0.iter()
    }
}

impl TryFrom<Vec<ControlCheck>> for ControlChecks {
    type Error = IdError;
    fn try_from(checks: Vec<ControlCheck>) -> Result<Self, Self::Error> {
        Self::new(checks)
    }
}

impl From<ControlChecks> for Vec<ControlCheck> {
    fn from(c: ControlChecks) -> Self {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str) -> ControlCheck {
        ControlCheck { control_id: ControlId::parse(id).unwrap(), rule: None, pass_when: PassWhen::default() }
    }

    #[test]
    fn a_day_passes_by_its_rule_and_a_day_without_decisions_never_does() {
        assert!(PassWhen::NoDeny.passes(3, 0, 1));
        assert!(!PassWhen::NoDeny.passes(3, 1, 0), "one deny fails a no_deny day");
        assert!(!PassWhen::AllAllowed.passes(3, 0, 1), "an undefined result fails an all_allowed day");
        assert!(PassWhen::AllAllowed.passes(3, 0, 0));
        assert!(PassWhen::Decided.passes(0, 5, 5));
        for rule in [PassWhen::NoDeny, PassWhen::AllAllowed, PassWhen::Decided] {
            assert!(!rule.passes(0, 0, 0), "{rule:?}");
        }
    }

    #[test]
    fn checks_name_each_control_once_and_at_most_thirty_two() {
        assert!(ControlChecks::new(vec![check("PR.AA-01"), check("PR.AA-01")]).is_err());
        let many: Vec<ControlCheck> = (1..=33).map(|n| check(&format!("PR.DS-{n:02}"))).collect();
        assert!(ControlChecks::new(many).is_err());
        assert!(ControlChecks::new(vec![check("PR.AA-01"), check("DE.CM-01")]).is_ok());
    }

    #[test]
    fn a_bad_field_is_an_error_never_a_default() {
        let bad = serde_json::from_value::<ControlChecks>(serde_json::json!([{"control_id": "PR.AA-01", "pass_when": "sometimes"}]));
        assert!(bad.is_err());
        let bad = serde_json::from_value::<ControlChecks>(serde_json::json!([{"control_id": "XX.AA-01"}]));
        assert!(bad.is_err());
        let ok = serde_json::from_value::<ControlChecks>(serde_json::json!([{"control_id": "PR.AA-01"}])).unwrap();
        assert_eq!(ok.iter().next().map(|c| c.pass_when), Some(PassWhen::NoDeny));
    }

    #[test]
    fn a_check_with_a_rule_counts_only_that_rules_decisions() {
        let mut c = check("PR.AA-01");
        let allow = RulePath::parse("allow").unwrap();
        assert!(c.counts(None) && c.counts(Some(&allow)));
        c.rule = Some(allow.clone());
        assert!(c.counts(Some(&allow)));
        assert!(!c.counts(None));
        assert!(!c.counts(Some(&RulePath::parse("deny").unwrap())));
    }
}
