//! A tenant's word on requirement → control links: its own mappings, and not-applicable
//! marks on links (baseline or its own) with their withdrawals. Recorded facts, not
//! decided by an aggregate: each is one entry under a fresh id, and the latest word on a
//! (regulation, requirement, control) wins in the read models.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::Fact;
use crate::compliance::{ControlId, RegulationCode, Relation, RequirementId};
use crate::ids::{Actor, Reason};
use crate::ledger_event::LedgerEvent;

/// The ledger's aggregate type of link facts.
pub const CONTROL_MAPPING_AGGREGATE: &str = "ControlMapping";

/// A tenant maps a requirement to a CSF control, with a relation and a rationale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSet {
    pub regulation: RegulationCode,
    pub requirement_id: RequirementId,
    pub control_id: ControlId,
    pub relation: Relation,
    pub rationale: Reason,
    pub actor: Actor,
}

/// A not-applicable mark on a link, or its withdrawal, with the rationale auditors read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMark {
    pub regulation: RegulationCode,
    pub requirement_id: RequirementId,
    pub control_id: ControlId,
    pub rationale: Reason,
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMappingEvent {
    /// The latest mapping of a (regulation, requirement, control) wins.
    ControlMappingSet(MappingSet),
    /// The link carries no evidence to the requirement for this tenant.
    ControlMappingNotApplicable(LinkMark),
    /// ... and carries evidence again.
    ControlMappingNotApplicableWithdrawn(LinkMark),
}

impl DomainEvent for ControlMappingEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ControlMappingSet(_) => "ControlMappingSet",
            Self::ControlMappingNotApplicable(_) => "ControlMappingNotApplicable",
            Self::ControlMappingNotApplicableWithdrawn(_) => "ControlMappingNotApplicableWithdrawn",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for ControlMappingEvent {}

impl Fact for ControlMappingEvent {
    const AGGREGATE_TYPE: &'static str = CONTROL_MAPPING_AGGREGATE;
}
