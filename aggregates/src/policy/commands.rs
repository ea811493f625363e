//! Commands on the Policy aggregate. Every command carries the tenant it acts for (checked
//! against the aggregate's owner), the actor and a reason, which end up in the ledger.

use super::bundle::{DataDocument, ExtraModules};
use super::controls::ControlChecks;
use super::mask::InputMask;
use super::InputLogging;
use crate::ids::{Actor, Description, PolicyId, PolicyName, Reason, RegoSource, ReplayId, TenantId};

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCommand {
    Create {
        policy_id: PolicyId,
        tenant_id: TenantId,
        name: PolicyName,
        description: Description,
        rego: RegoSource,
        modules: ExtraModules,
        data: DataDocument,
        input_logging: InputLogging,
        input_mask: InputMask,
        control_checks: ControlChecks,
        actor: Actor,
        reason: Option<Reason>,
    },
    AddVersion {
        tenant_id: TenantId,
        rego: RegoSource,
        modules: ExtraModules,
        data: DataDocument,
        control_checks: ControlChecks,
        actor: Actor,
        reason: Option<Reason>,
    },
    /// `version: None` activates the newest version. `replay_id` names a replay of
    /// recorded decisions against that very version, which the activation records.
    Activate {
        tenant_id: TenantId,
        version: Option<u32>,
        replay_id: Option<ReplayId>,
        actor: Actor,
        reason: Option<Reason>,
    },
    Deactivate {
        tenant_id: TenantId,
        actor: Actor,
        reason: Option<Reason>,
    },
    Archive {
        tenant_id: TenantId,
        actor: Actor,
        reason: Option<Reason>,
    },
}

impl PolicyCommand {
    pub fn tenant_id(&self) -> TenantId {
        match self {
            Self::Create { tenant_id, .. }
            | Self::AddVersion { tenant_id, .. }
            | Self::Activate { tenant_id, .. }
            | Self::Deactivate { tenant_id, .. }
            | Self::Archive { tenant_id, .. } => *tenant_id,
        }
    }

    /// The transition's name, as listed in `allowed_transitions`.
    pub fn transition(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::AddVersion { .. } => "add_version",
            Self::Activate { .. } => "activate",
            Self::Deactivate { .. } => "deactivate",
            Self::Archive { .. } => "archive",
        }
    }
}
