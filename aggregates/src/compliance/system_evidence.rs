//! System evidence: the decisions of policy versions that check CSF controls
//! ([`crate::policy::ControlCheck`]), rolled up per tenant, policy, control and UTC day of
//! the decision's ledger `recorded_at` (see `docs/compliance.md`, "Policies as control
//! checks"). The rules here are pure; the `projections` crate stores the roll-ups.
//!
//! - A decision is *allowed*, *denied* or *undefined* by its `allowed` field
//!   ([`DecisionClass::of`]): a result that is not a boolean decision is undefined.
//! - Each version that decided on a day is judged by its own check's [`PassWhen`] on its
//!   own counts ([`VersionTally::passes`]); the day passes when every version that
//!   decided passes, and fails when any fails ([`day_outcome`]). So a version replaced
//!   at noon cannot hide a deny of the morning, and a version that checks nothing on
//!   that control (or not that rule) does not take part.
//! - The roll-up's outcome counts towards requirement status exactly as an uploaded
//!   record's does, for its one day: `pass` covers the day, `fail` marks it.
//! - An evidence bundle proves a roll-up's decisions: all of them when there are at most
//!   [`PROOF_SAMPLE`], else a deterministic sample ([`proof_sample`]).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::evidence::Outcome;
use crate::policy::PassWhen;

/// The `kind` system evidence shows wherever evidence is listed, so an auditor tells it
/// apart from uploaded records.
pub const SYSTEM_EVIDENCE_KIND: &str = "policy_evaluation";

/// At most this many decisions of one roll-up are proven in an evidence bundle.
pub const PROOF_SAMPLE: usize = 20;

/// How a decision counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionClass {
    Allowed,
    Denied,
    /// Undefined, or a result that is not a boolean decision.
    Undefined,
}

impl DecisionClass {
    /// By the decision record's `allowed` (`None`: undefined or not a boolean decision).
    pub fn of(allowed: Option<bool>) -> Self {
        match allowed {
            Some(true) => Self::Allowed,
            Some(false) => Self::Denied,
            None => Self::Undefined,
        }
    }
}

/// One version's decisions on one control and day, and the rule it is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTally {
    pub version: u32,
    pub pass_when: PassWhen,
    pub allowed: u64,
    pub denied: u64,
    pub undefined: u64,
}

impl VersionTally {
    pub fn new(version: u32, pass_when: PassWhen) -> Self {
        Self { version, pass_when, allowed: 0, denied: 0, undefined: 0 }
    }

    /// Counts one more decision.
    pub fn count(&mut self, class: DecisionClass) {
        let n = match class {
            DecisionClass::Allowed => &mut self.allowed,
            DecisionClass::Denied => &mut self.denied,
            DecisionClass::Undefined => &mut self.undefined,
        };
        *n = n.saturating_add(1);
    }

    pub fn decisions(&self) -> u64 {
        self.allowed.saturating_add(self.denied).saturating_add(self.undefined)
    }

    /// Whether this version's own check holds on its own counts.
    pub fn passes(&self) -> bool {
        self.pass_when.passes(self.allowed, self.denied, self.undefined)
    }
}

/// A day's outcome from the tallies of the versions that decided on it: `pass` when
/// there is at least one and every one passes by its own rule, `fail` otherwise.
pub fn day_outcome(tallies: &[VersionTally]) -> Outcome {
    if !tallies.is_empty() && tallies.iter().all(VersionTally::passes) {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

/// The stable id of the roll-up of (tenant, policy, control, day): the same on every
/// rebuild and in every process. A UUID (version 8) made of the first 16 bytes of the
/// SHA-256 of the four parts.
pub fn system_evidence_id(tenant_id: Uuid, policy_id: Uuid, control_id: &str, day: NaiveDate) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"aumos-governance/system-evidence/v1\0");
    h.update(tenant_id.as_bytes());
    h.update(policy_id.as_bytes());
    h.update(control_id.as_bytes());
    h.update(b"\0");
    h.update(day.to_string().as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Which of `n` decisions (0-based positions in ledger order) an evidence bundle proves:
/// all of them when `n <= max`; otherwise `max` positions, the first and the last among
/// them, evenly spaced in between (position `i * (n - 1) / (max - 1)`, rounded down).
pub fn proof_sample(n: u64, max: usize) -> Vec<u64> {
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    if n <= max {
        return (0..n).collect();
    }
    if max <= 1 {
        return (0..max).collect();
    }
    let span = u128::from(n - 1);
    let steps = u128::from(max - 1);
    (0..max).map(|i| u64::try_from(u128::from(i) * span / steps).unwrap_or(n - 1)).collect()
}

#[cfg(test)]
#[path = "system_evidence_tests.rs"]
mod tests;
