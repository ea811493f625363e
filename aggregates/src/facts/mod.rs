//! Facts: ledger entries that no aggregate decides. Each is appended once, at
//! aggregate_seq 1 of its own aggregate id, and never changes, so there is no state to
//! fold and no invariant to keep; but they are events all the same. They are typed here
//! and encoded like aggregate events ([`LedgerEvent`]: the ledger body is the variant's
//! fields), and every consumer decodes them through these types ([`crate::recorded`]).
//!
//! - [`decision`]: `PolicyEvaluated`, the record of one evaluation (`PolicyDecision`).
//! - [`json_text`]: [`JsonText`], a JSON value carried as its canonical text (a
//!   decision's input), never built into a tree on the record's path.
//! - [`control_mapping`]: a tenant's requirement → control mappings and not-applicable
//!   marks on links (`ControlMapping`).
//! - [`replay`]: `PolicyReplayed`, the report of one replay of recorded decisions
//!   against a policy version (`PolicyReplay`).
//! - [`projection_skip`]: an operator's decision that a projector skips an entry
//!   (`ProjectionSkip`).

pub mod control_mapping;
pub mod decision;
pub mod json_text;
pub mod projection_skip;
pub mod replay;

use cqrs_es::DomainEvent;

use crate::ledger_event::LedgerEvent;

pub use control_mapping::{ControlMappingEvent, LinkMark, MappingSet, CONTROL_MAPPING_AGGREGATE};
pub use decision::{DecisionEvent, EngineKind, PolicyEvaluated, RulePath, DECISION_AGGREGATE, NO_INPUT_SHA256};
pub use json_text::JsonText;
pub use projection_skip::{ProjectionEntrySkipped, ProjectionName, ProjectionSkipEvent, SkipReason, SKIP_AGGREGATE};
pub use replay::{
    decision_set_sha256, ChangeCounts, ChangeExample, ChangeKind, DecisionSet, PolicyReplayed, ReplayEvent, ReplayReport, REPLAY_AGGREGATE,
};

/// A fact's event enum: its ledger aggregate type, and (from [`DomainEvent`]) its
/// `event_type` and `event_version`.
pub trait Fact: DomainEvent + LedgerEvent {
    /// The ledger's aggregate type of this fact's entries.
    const AGGREGATE_TYPE: &'static str;
}

#[cfg(test)]
mod tests;
