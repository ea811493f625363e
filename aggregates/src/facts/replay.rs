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
    /// [`decision_set_sha256`] of the seqs read.
    pub decisions_sha256: Sha256,
    /// What the replay found: exactly the report the API serves.
    pub report: ReplayReport,
    /// SHA-256 of `report`'s canonical JSON.
    pub report_sha256: Sha256,
}

/// How a replayed decision's answer changed. `allowed` is the decision's boolean answer
/// ([`super::decision::allowed`]); a deny is an answer of `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    AllowToDeny,
    DenyToAllow,
    /// The recorded result was defined; the replayed one is undefined.
    DefinedToUndefined,
    /// Any other change of the result (including undefined to defined).
    OtherChange,
    /// The version answered an evaluation error (or ran past its deadline).
    Error,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 5] = [Self::AllowToDeny, Self::DenyToAllow, Self::DefinedToUndefined, Self::OtherChange, Self::Error];

    /// How `new` differs from the recorded `old` result; `None` when it does not.
    pub fn of(old: Option<&serde_json::Value>, new: Option<&serde_json::Value>) -> Option<Self> {
        use super::decision::allowed;
        if old == new {
            return None;
        }
        Some(match (old.is_some(), new.is_some(), allowed(old), allowed(new)) {
            (true, false, ..) => Self::DefinedToUndefined,
            (_, _, Some(true), Some(false)) => Self::AllowToDeny,
            (_, _, Some(false), Some(true)) => Self::DenyToAllow,
            _ => Self::OtherChange,
        })
    }
}

/// How many replayed decisions changed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeCounts {
    pub allow_to_deny: u64,
    pub deny_to_allow: u64,
    pub defined_to_undefined: u64,
    pub other_change: u64,
    pub error: u64,
}

impl ChangeCounts {
    pub fn add(&mut self, kind: ChangeKind) {
        let n = match kind {
            ChangeKind::AllowToDeny => &mut self.allow_to_deny,
            ChangeKind::DenyToAllow => &mut self.deny_to_allow,
            ChangeKind::DefinedToUndefined => &mut self.defined_to_undefined,
            ChangeKind::OtherChange => &mut self.other_change,
            ChangeKind::Error => &mut self.error,
        };
        *n = n.saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        [self.allow_to_deny, self.deny_to_allow, self.defined_to_undefined, self.other_change, self.error]
            .into_iter()
            .fold(0, u64::saturating_add)
    }
}

/// Why a recorded decision was not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The policy kept only the input's hash (`input_logging: hash_only`): nothing to replay.
    HashOnly,
}

/// One changed decision, as an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeExample {
    pub kind: ChangeKind,
    #[schema(value_type = uuid::Uuid)]
    pub decision_id: crate::ids::DecisionId,
    pub ledger_seq: i64,
    pub policy_version: u32,
    pub old_result: Option<serde_json::Value>,
    pub new_result: Option<serde_json::Value>,
    /// The evaluation error, for kind `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// Decisions read (`replayed + skipped`).
    pub read: u64,
    pub replayed: u64,
    pub skipped: u64,
    /// Skipped decisions by reason.
    #[schema(value_type = Object)]
    pub skipped_by_reason: std::collections::BTreeMap<SkipReason, u64>,
    pub unchanged: u64,
    pub changed: ChangeCounts,
    /// At most [`ReplayReport::EXAMPLES_PER_KIND`] changed decisions of each kind, the
    /// oldest first.
    pub examples: Vec<ChangeExample>,
    /// The CSF controls whose checks count a changed decision: checked by the version
    /// that made it, or by the replayed version (for the decision's rule).
    #[schema(value_type = Vec<String>)]
    pub controls_affected: Vec<crate::compliance::ControlId>,
}

impl ReplayReport {
    pub const EXAMPLES_PER_KIND: usize = 3;
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
    let mut set = DecisionSet::default();
    for s in sorted {
        set.push(s);
    }
    set.finish().2
}

/// [`decision_set_sha256`] computed as seqs arrive in ascending order, in constant memory.
#[derive(Debug, Clone, Default)]
pub struct DecisionSet {
    hasher: sha2::Sha256,
    first: Option<i64>,
    last: Option<i64>,
}

impl DecisionSet {
    /// Adds the next seq; returns `false` (and adds nothing) when it is not above the last.
    pub fn push(&mut self, seq: i64) -> bool {
        if self.last.is_some_and(|last| seq <= last) {
            return false;
        }
        self.first.get_or_insert(seq);
        self.last = Some(seq);
        self.hasher.update(seq.to_string().as_bytes());
        self.hasher.update(b"\n");
        true
    }

    /// The first and last seq, and the digest.
    pub fn finish(self) -> (Option<i64>, Option<i64>, Sha256) {
        (self.first, self.last, Sha256::from_digest(self.hasher.finalize().into()))
    }
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
        let mut set = DecisionSet::default();
        assert!(set.push(3) && set.push(7) && !set.push(7) && !set.push(5) && set.push(12));
        assert_eq!(set.finish(), (Some(3), Some(12), a));
    }

    #[test]
    fn a_change_is_classified_by_the_recorded_and_replayed_answers() {
        use serde_json::json;
        let (t, f) = (json!(true), json!(false));
        let obj = |a: bool| json!({"allow": a, "reasons": []});
        assert_eq!(ChangeKind::of(Some(&t), Some(&t)), None);
        assert_eq!(ChangeKind::of(None, None), None);
        assert_eq!(ChangeKind::of(Some(&t), Some(&f)), Some(ChangeKind::AllowToDeny));
        assert_eq!(ChangeKind::of(Some(&obj(false)), Some(&obj(true))), Some(ChangeKind::DenyToAllow));
        assert_eq!(ChangeKind::of(Some(&t), None), Some(ChangeKind::DefinedToUndefined));
        assert_eq!(ChangeKind::of(None, Some(&t)), Some(ChangeKind::OtherChange), "undefined to defined");
        assert_eq!(ChangeKind::of(Some(&json!(3)), Some(&json!(4))), Some(ChangeKind::OtherChange));
        assert_eq!(
            ChangeKind::of(Some(&json!({"allow": true, "n": 1})), Some(&json!({"allow": true, "n": 2}))),
            Some(ChangeKind::OtherChange),
            "same answer, other result"
        );
    }

    #[test]
    fn change_counts_add_up() {
        let mut c = ChangeCounts::default();
        for k in ChangeKind::ALL {
            c.add(k);
        }
        c.add(ChangeKind::AllowToDeny);
        assert_eq!((c.allow_to_deny, c.total()), (2, 6));
    }
}
