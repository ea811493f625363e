//! Any ledger entry, decoded: the one way every consumer (projectors, the Kafka relay, OPA
//! sync, the skip decisions) turns an entry's aggregate type, event type and payload into
//! a typed event or fact.
//!
//! [`EventKind`] names every kind of entry the service writes. [`Recorded::decode`] tells
//! an entry of a kind this code does not know (written by newer code: consumers skip it)
//! from an entry of a known kind whose payload does not decode (a bad field: an error,
//! never a default).

use cqrs_es::Aggregate;
use serde_json::Value;

use crate::compliance::{ComplianceWorkflow, Evidence, EvidenceEvent, WorkflowEvent};
use crate::facts::{ControlMappingEvent, DecisionEvent, Fact, ProjectionSkipEvent, ReplayEvent};
use crate::ledger_event::LedgerEvent;
use crate::policy::name::{NameClaimEvent, PolicyNameClaim};
use crate::policy::{Policy, PolicyEvent};

/// The streams of the ledger: one per aggregate type, aggregates and facts alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Policy,
    PolicyNameClaim,
    ComplianceWorkflow,
    Evidence,
    PolicyDecision,
    ControlMapping,
    ProjectionSkip,
    PolicyReplay,
}

impl Stream {
    pub const ALL: [Stream; 8] = [
        Self::Policy,
        Self::PolicyNameClaim,
        Self::ComplianceWorkflow,
        Self::Evidence,
        Self::PolicyDecision,
        Self::ControlMapping,
        Self::ProjectionSkip,
        Self::PolicyReplay,
    ];

    /// The ledger's `aggregate_type`.
    pub const fn aggregate_type(self) -> &'static str {
        match self {
            Self::Policy => Policy::TYPE,
            Self::PolicyNameClaim => PolicyNameClaim::TYPE,
            Self::ComplianceWorkflow => ComplianceWorkflow::TYPE,
            Self::Evidence => Evidence::TYPE,
            Self::PolicyDecision => DecisionEvent::AGGREGATE_TYPE,
            Self::ControlMapping => ControlMappingEvent::AGGREGATE_TYPE,
            Self::ProjectionSkip => ProjectionSkipEvent::AGGREGATE_TYPE,
            Self::PolicyReplay => ReplayEvent::AGGREGATE_TYPE,
        }
    }

    pub fn of(aggregate_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.aggregate_type() == aggregate_type)
    }
}

macro_rules! event_kinds {
    ($($kind:ident: $stream:ident),+ $(,)?) => {
        /// Every kind of entry the service writes, as (stream, event type).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($kind),+
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(Self::$kind),+];

            /// The ledger's `event_type`.
            pub fn event_type(self) -> &'static str {
                match self {
                    $(Self::$kind => stringify!($kind)),+
                }
            }

            pub fn stream(self) -> Stream {
                match self {
                    $(Self::$kind => Stream::$stream),+
                }
            }
        }
    };
}

event_kinds! {
    PolicyCreated: Policy,
    PolicyVersionAdded: Policy,
    PolicyActivated: Policy,
    PolicyDeactivated: Policy,
    PolicyArchived: Policy,
    PolicyNameClaimed: PolicyNameClaim,
    PolicyEvaluated: PolicyDecision,
    WorkflowCreated: ComplianceWorkflow,
    WorkflowStatusChanged: ComplianceWorkflow,
    RequirementMarkedNotApplicable: ComplianceWorkflow,
    NotApplicableWithdrawn: ComplianceWorkflow,
    WorkflowChanged: ComplianceWorkflow,
    WorkflowCertified: ComplianceWorkflow,
    FindingRaised: ComplianceWorkflow,
    FindingClosed: ComplianceWorkflow,
    EvidenceSubmitted: Evidence,
    EvidenceSuperseded: Evidence,
    EvidenceWithdrawn: Evidence,
    EvidenceReviewed: Evidence,
    ControlMappingSet: ControlMapping,
    ControlMappingNotApplicable: ControlMapping,
    ControlMappingNotApplicableWithdrawn: ControlMapping,
    ProjectionEntrySkipped: ProjectionSkip,
    PolicyReplayed: PolicyReplay,
}

impl EventKind {
    /// The kind of an entry, when this code knows it.
    pub fn of(aggregate_type: &str, event_type: &str) -> Option<Self> {
        let stream = Stream::of(aggregate_type)?;
        Self::ALL.iter().copied().find(|k| k.stream() == stream && k.event_type() == event_type)
    }
}

/// Why an entry did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A kind this code does not know: written by newer code. Consumers skip it.
    #[error("unknown entry kind {aggregate_type}/{event_type}")]
    Unknown { aggregate_type: String, event_type: String },
    /// A known kind whose payload does not decode: a bad field, never read as a default.
    #[error("{kind:?} does not decode: {reason}")]
    Malformed { kind: EventKind, reason: String },
}

/// A decoded ledger entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Policy(PolicyEvent),
    PolicyNameClaim(NameClaimEvent),
    Workflow(WorkflowEvent),
    Evidence(EvidenceEvent),
    Decision(DecisionEvent),
    ControlMapping(ControlMappingEvent),
    ProjectionSkip(ProjectionSkipEvent),
    Replay(ReplayEvent),
}

/// A payload as parsed JSON or as the stored text.
enum Body<'a> {
    Value(Value),
    Text(&'a str),
}

impl Body<'_> {
    fn decode<E: LedgerEvent>(self, event_type: &str) -> Result<E, crate::ledger_event::LedgerEventError> {
        match self {
            Body::Value(v) => E::from_ledger(event_type, v),
            Body::Text(t) => E::from_ledger_text(event_type, t),
        }
    }
}

impl Recorded {
    /// Decodes an entry from its aggregate type, event type and payload.
    pub fn decode(aggregate_type: &str, event_type: &str, payload: Value) -> Result<Self, DecodeError> {
        Self::decode_body(aggregate_type, event_type, Body::Value(payload))
    }

    /// Decodes an entry whose payload is the stored JSON text, without an intermediate
    /// [`Value`] (see [`LedgerEvent::from_ledger_text`]).
    pub fn decode_text(aggregate_type: &str, event_type: &str, payload: &str) -> Result<Self, DecodeError> {
        Self::decode_body(aggregate_type, event_type, Body::Text(payload))
    }

    fn decode_body(aggregate_type: &str, event_type: &str, body: Body<'_>) -> Result<Self, DecodeError> {
        let kind = EventKind::of(aggregate_type, event_type)
            .ok_or_else(|| DecodeError::Unknown { aggregate_type: aggregate_type.to_owned(), event_type: event_type.to_owned() })?;
        let bad = |e: crate::ledger_event::LedgerEventError| DecodeError::Malformed { kind, reason: e.to_string() };
        Ok(match kind.stream() {
            Stream::Policy => Self::Policy(body.decode(event_type).map_err(bad)?),
            Stream::PolicyNameClaim => Self::PolicyNameClaim(body.decode(event_type).map_err(bad)?),
            Stream::ComplianceWorkflow => Self::Workflow(body.decode(event_type).map_err(bad)?),
            Stream::Evidence => Self::Evidence(body.decode(event_type).map_err(bad)?),
            Stream::PolicyDecision => Self::Decision(body.decode(event_type).map_err(bad)?),
            Stream::ControlMapping => Self::ControlMapping(body.decode(event_type).map_err(bad)?),
            Stream::ProjectionSkip => Self::ProjectionSkip(body.decode(event_type).map_err(bad)?),
            Stream::PolicyReplay => Self::Replay(body.decode(event_type).map_err(bad)?),
        })
    }

    /// The entry's kind.
    pub fn kind(&self) -> EventKind {
        use EventKind as K;
        match self {
            Self::Policy(e) => match e {
                PolicyEvent::PolicyCreated { .. } => K::PolicyCreated,
                PolicyEvent::PolicyVersionAdded { .. } => K::PolicyVersionAdded,
                PolicyEvent::PolicyActivated { .. } => K::PolicyActivated,
                PolicyEvent::PolicyDeactivated { .. } => K::PolicyDeactivated,
                PolicyEvent::PolicyArchived { .. } => K::PolicyArchived,
            },
            Self::PolicyNameClaim(NameClaimEvent::PolicyNameClaimed { .. }) => K::PolicyNameClaimed,
            Self::Workflow(e) => match e {
                WorkflowEvent::WorkflowCreated { .. } => K::WorkflowCreated,
                WorkflowEvent::WorkflowStatusChanged { .. } => K::WorkflowStatusChanged,
                WorkflowEvent::RequirementMarkedNotApplicable { .. } => K::RequirementMarkedNotApplicable,
                WorkflowEvent::NotApplicableWithdrawn { .. } => K::NotApplicableWithdrawn,
                WorkflowEvent::WorkflowChanged { .. } => K::WorkflowChanged,
                WorkflowEvent::WorkflowCertified { .. } => K::WorkflowCertified,
                WorkflowEvent::FindingRaised { .. } => K::FindingRaised,
                WorkflowEvent::FindingClosed { .. } => K::FindingClosed,
            },
            Self::Evidence(e) => match e {
                EvidenceEvent::EvidenceSubmitted(_) => K::EvidenceSubmitted,
                EvidenceEvent::EvidenceSuperseded { .. } => K::EvidenceSuperseded,
                EvidenceEvent::EvidenceWithdrawn { .. } => K::EvidenceWithdrawn,
                EvidenceEvent::EvidenceReviewed { .. } => K::EvidenceReviewed,
            },
            Self::Decision(DecisionEvent::PolicyEvaluated(_)) => K::PolicyEvaluated,
            Self::ControlMapping(e) => match e {
                ControlMappingEvent::ControlMappingSet(_) => K::ControlMappingSet,
                ControlMappingEvent::ControlMappingNotApplicable(_) => K::ControlMappingNotApplicable,
                ControlMappingEvent::ControlMappingNotApplicableWithdrawn(_) => K::ControlMappingNotApplicableWithdrawn,
            },
            Self::ProjectionSkip(ProjectionSkipEvent::ProjectionEntrySkipped(_)) => K::ProjectionEntrySkipped,
            Self::Replay(ReplayEvent::PolicyReplayed(_)) => K::PolicyReplayed,
        }
    }
}
