//! Events of the Policy aggregate. Their JSON bodies are what the ledger hashes and what
//! Kafka consumers read, so fields are only ever added, never renamed.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::bundle::{DataDocument, ExtraModules};
use super::controls::ControlChecks;
use super::mask::InputMask;
use crate::ids::{Actor, Description, PolicyId, PolicyName, Reason, RegoSource, ReplayId, TenantId};
use crate::ledger_event::LedgerEvent;

/// What a decision record keeps of the evaluation input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputLogging {
    /// The input itself and its SHA-256.
    #[default]
    Full,
    /// Only the SHA-256 of the input (for inputs that carry personal data).
    HashOnly,
}

impl InputLogging {
    pub fn as_str(self) -> &'static str {
        match self {
            InputLogging::Full => "full",
            InputLogging::HashOnly => "hash_only",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyEvent {
    PolicyCreated {
        policy_id: PolicyId,
        tenant_id: TenantId,
        name: PolicyName,
        description: Description,
        version: u32,
        rego: RegoSource,
        /// Further modules of the version and its data document (absent when none, so
        /// events without them hash exactly as before the fields existed).
        #[serde(default, skip_serializing_if = "ExtraModules::is_empty")]
        modules: ExtraModules,
        #[serde(default, skip_serializing_if = "DataDocument::is_empty")]
        data: DataDocument,
        /// Whether decision records keep the input or only its hash (absent in events
        /// written before the field existed: `full`).
        #[serde(default)]
        input_logging: InputLogging,
        /// Input fields decision records keep out (absent when none, so events without a
        /// mask hash exactly as before the field existed).
        #[serde(default, skip_serializing_if = "InputMask::is_empty")]
        input_mask: InputMask,
        /// The controls this version checks (absent when none, so events without checks
        /// hash exactly as before the field existed).
        #[serde(default, skip_serializing_if = "ControlChecks::is_empty")]
        control_checks: ControlChecks,
        actor: Actor,
        reason: Option<Reason>,
    },
    PolicyVersionAdded {
        version: u32,
        rego: RegoSource,
        /// Further modules of the version and its data document (absent when none, so
        /// events without them hash exactly as before the fields existed).
        #[serde(default, skip_serializing_if = "ExtraModules::is_empty")]
        modules: ExtraModules,
        #[serde(default, skip_serializing_if = "DataDocument::is_empty")]
        data: DataDocument,
        /// The controls this version checks (absent when none, so events without checks
        /// hash exactly as before the field existed).
        #[serde(default, skip_serializing_if = "ControlChecks::is_empty")]
        control_checks: ControlChecks,
        actor: Actor,
        reason: Option<Reason>,
    },
    PolicyActivated {
        version: u32,
        /// The replay of recorded decisions the activation relied on, when it named one
        /// (absent otherwise, so such events hash exactly as before the field existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replay_id: Option<ReplayId>,
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
