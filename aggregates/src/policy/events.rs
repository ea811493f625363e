//! Events of the Policy aggregate. Their JSON bodies are what the ledger hashes and what
//! Kafka consumers read, so fields are only ever added, never renamed.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{Actor, Description, PolicyId, PolicyName, Reason, RegoSource, TenantId};
use crate::ledger_event::LedgerEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyEvent {
    PolicyCreated {
        policy_id: PolicyId,
        tenant_id: TenantId,
        name: PolicyName,
        description: Description,
        version: u32,
        rego: RegoSource,
        actor: Actor,
        reason: Option<Reason>,
    },
    PolicyVersionAdded {
        version: u32,
        rego: RegoSource,
        actor: Actor,
        reason: Option<Reason>,
    },
    PolicyActivated {
        version: u32,
        actor: Actor,
        reason: Option<Reason>,
    },
    PolicyDeactivated {
        actor: Actor,
        reason: Option<Reason>,
    },
    PolicyArchived {
        actor: Actor,
        reason: Option<Reason>,
    },
}

impl DomainEvent for PolicyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PolicyCreated { .. } => "PolicyCreated",
            Self::PolicyVersionAdded { .. } => "PolicyVersionAdded",
            Self::PolicyActivated { .. } => "PolicyActivated",
            Self::PolicyDeactivated { .. } => "PolicyDeactivated",
            Self::PolicyArchived { .. } => "PolicyArchived",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for PolicyEvent {}
