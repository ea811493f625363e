//! A replay: recorded decisions of a policy re-evaluated against one of its versions,
//! before that version is activated (impact analysis). The replay itself writes no
//! decision records; its report is recorded here, once, as a fact: the report's hash and
//! exactly which decisions it used, so anyone can later prove what the replay saw.
//!
//! `decisions_sha256` is the SHA-256 of the ledger seqs of the decisions the replay read
//! (replayed or skipped), in ascending order, each as decimal ASCII followed by `\n`
//! ([`decision_set_sha256`]). `report_sha256` is the SHA-256 of the served report's
//! canonical JSON (docs/ledger-format.md, "Canonical JSON").

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::decision::EngineKind;
use super::Fact;
use crate::compliance::Sha256;
use crate::ids::{PolicyId, ReplayId};
use crate::ledger_event::LedgerEvent;

/// The ledger's aggregate type for replays.
pub const REPLAY_AGGREGATE: &str = "PolicyReplay";

/// The record of one finished replay. Its JSON body is what the ledger hashes: fields are
/// only ever added, never renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReplayed {
    pub replay_id: ReplayId,
    pub policy_id: PolicyId,
    /// The version the decisions were replayed against.
    pub version: u32,
    pub engine: EngineKind,
    /// The time range asked for (inclusive, by the decisions' ledger time).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// At most this many decisions were read (the oldest first), when asked.
    pub limit: Option<u32>,
    /// Decisions recorded after this ledger seq were not considered (the replay's snapshot).
    pub through_seq: i64,
    /// The lowest and highest seq among the decisions read; absent when none was.
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Decisions read, of which replayed and skipped (`replayed + skipped == read`).
    pub read: u64,
    pub replayed: u64,
    pub skipped: u64,
    /// Replayed decisions whose answer changed.
    pub changed: u64,
    /// [`decision_set_sha256`] of the seqs read.
    pub decisions_sha256: Sha256,
    /// SHA-256 of the report's canonical JSON.
    pub report_sha256: Sha256,
}

impl PolicyReplayed {
    pub fn aggregate_id(&self) -> String {
        self.replay_id.to_string()
    }
}

/// The events of the `PolicyReplay` stream: one record per replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplayEvent {
    PolicyReplayed(PolicyReplayed),
}

impl DomainEvent for ReplayEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PolicyReplayed(_) => "PolicyReplayed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for ReplayEvent {}

impl Fact for ReplayEvent {
    const AGGREGATE_TYPE: &'static str = REPLAY_AGGREGATE;
}

/// The digest of a set of ledger seqs: SHA-256 over each seq, ascending, as decimal ASCII
/// followed by `\n`. The caller passes them in any order.
pub fn decision_set_sha256(seqs: &[i64]) -> Sha256 {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    let mut h = sha2::Sha256::new();
    for s in sorted {
        h.update(s.to_string().as_bytes());
        h.update(b"\n");
    }
    Sha256::from_digest(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_set_digest_is_order_free_and_documented() {
        let a = decision_set_sha256(&[12, 3, 7]);
        assert_eq!(a, decision_set_sha256(&[3, 7, 12]));
        // sha256("3\n7\n12\n"), computed independently with coreutils' sha256sum.
        assert_eq!(a.as_str(), "0c635a854989265d94a7d0a2e035640fce9fa40ebb9487afe9d1ecf89c1ba83b");
        assert_ne!(a, decision_set_sha256(&[3, 7]));
    }
}
