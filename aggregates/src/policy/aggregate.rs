//! The Policy aggregate's state and its invariants.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::bundle::VersionSource;
use super::services::{PolicyServices, ReplaySubject, VersionRejected};
use super::{PolicyCommand, PolicyEvent};
use crate::ids::{PolicyId, ReplayId, TenantId};

/// Where a policy is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// Not created yet: the state of an empty event stream.
    #[default]
    Uninitialized,
    Draft,
    Active,
    Inactive,
    Archived,
}

impl PolicyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uninitialized => "uninitialized",
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Archived => "archived",
        }
    }

    /// The transitions a policy in this state accepts; an error lists them to the caller.
    pub fn allowed_transitions(self) -> &'static [&'static str] {
        match self {
            Self::Uninitialized => &["create"],
            Self::Draft => &["add_version", "activate", "archive"],
            Self::Active => &["add_version", "activate", "deactivate"],
            Self::Inactive => &["add_version", "activate", "archive"],
            Self::Archived => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy not found")]
    NotFound,
    #[error("policy already exists")]
    AlreadyExists,
    #[error("cannot {transition} a policy that is {from}")]
    InvalidTransition { from: PolicyStatus, transition: &'static str, allowed: &'static [&'static str] },
    #[error("policy has no version {requested}; the newest is {latest}")]
    UnknownVersion { requested: u32, latest: u32 },
    #[error("version {0} is already the active version")]
    AlreadyActive(u32),
    /// The engine refused the version the activation would make active (it does not
    /// compile, its tests fail, or the engine could not check it).
    #[error("version {version} cannot become active: {reason}")]
    VersionRejected { version: u32, reason: VersionRejected },
    /// The replay the activation names is not a replay of the version it activates.
    #[error("replay {replay} is not a replay of version {version} of this policy")]
    ReplayMismatch { replay: ReplayId, version: u32 },
}

impl std::fmt::Display for PolicyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State folded from a policy's events: what the invariants need, including the source of
/// every version, so activation checks the very version it activates (never a read model's
/// idea of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub policy_id: Option<PolicyId>,
    pub tenant_id: Option<TenantId>,
    pub status: PolicyStatus,
    pub latest_version: u32,
    pub active_version: Option<u32>,
    /// What version `n` holds, at index `n - 1`.
    pub versions: Vec<VersionSource>,
}

impl Policy {
    fn invalid(&self, command: &PolicyCommand) -> PolicyError {
        PolicyError::InvalidTransition { from: self.status, transition: command.transition(), allowed: self.status.allowed_transitions() }
    }

    /// A command for another tenant's policy is answered as if the policy did not exist,
    /// so ids cannot be probed across tenants.
    fn check_owner(&self, command: &PolicyCommand) -> Result<(), PolicyError> {
        match self.tenant_id {
            Some(owner) if owner == command.tenant_id() => Ok(()),
            _ => Err(PolicyError::NotFound),
        }
    }

    /// The source of `version`, if the policy has it.
    pub fn source(&self, version: u32) -> Option<&VersionSource> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.versions.get(index)
    }

    async fn decide(&self, command: PolicyCommand, services: &PolicyServices) -> Result<PolicyEvent, PolicyError> {
        if let PolicyCommand::Create {
            policy_id,
            tenant_id,
            name,
            description,
            rego,
            modules,
            data,
            input_logging,
            input_mask,
            control_checks,
            actor,
            reason,
        } = command
        {
            if self.status != PolicyStatus::Uninitialized {
                return Err(PolicyError::AlreadyExists);
            }
            return Ok(PolicyEvent::PolicyCreated {
                policy_id,
                tenant_id,
                name,
                description,
                version: 1,
                rego,
                modules,
                data,
                input_logging,
                input_mask,
                control_checks,
                actor,
                reason,
            });
        }
        self.check_owner(&command)?;
        if !self.status.allowed_transitions().contains(&command.transition()) {
            return Err(self.invalid(&command));
        }
        Ok(match command {
            PolicyCommand::Create { .. } => return Err(PolicyError::AlreadyExists),
            PolicyCommand::AddVersion { rego, modules, data, control_checks, actor, reason, .. } => {
                PolicyEvent::PolicyVersionAdded { version: self.latest_version + 1, rego, modules, data, control_checks, actor, reason }
            }
            PolicyCommand::Activate { version, replay_id, actor, reason, .. } => {
                let version = version.unwrap_or(self.latest_version);
                if version == 0 || version > self.latest_version {
                    return Err(PolicyError::UnknownVersion { requested: version, latest: self.latest_version });
                }
                if self.active_version == Some(version) {
                    return Err(PolicyError::AlreadyActive(version));
                }
                let (Some(policy), Some(tenant), Some(rego)) = (self.policy_id, self.tenant_id, self.source(version)) else {
                    return Err(PolicyError::UnknownVersion { requested: version, latest: self.latest_version });
                };
                if let Some(replay) = replay_id {
                    let subject =
                        services.replay_subject(tenant, replay).await.map_err(|reason| PolicyError::VersionRejected { version, reason })?;
                    if subject != Some(ReplaySubject { policy_id: policy, version }) {
                        return Err(PolicyError::ReplayMismatch { replay, version });
                    }
                }
                services
                    .check_version(tenant, policy, version, rego)
                    .await
                    .map_err(|reason| PolicyError::VersionRejected { version, reason })?;
                PolicyEvent::PolicyActivated { version, replay_id, actor, reason }
            }
            PolicyCommand::Deactivate { actor, reason, .. } => PolicyEvent::PolicyDeactivated { actor, reason },
            PolicyCommand::Archive { actor, reason, .. } => PolicyEvent::PolicyArchived { actor, reason },
        })
    }
}

impl Aggregate for Policy {
    const TYPE: &'static str = "Policy";
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;
    type Services = PolicyServices;

    async fn handle(&mut self, command: Self::Command, services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let event = self.decide(command, services).await?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PolicyEvent::PolicyCreated { policy_id, tenant_id, version, rego, modules, data, .. } => {
                self.policy_id = Some(policy_id);
                self.tenant_id = Some(tenant_id);
                self.status = PolicyStatus::Draft;
                self.latest_version = version;
                self.versions.push(VersionSource { rego, modules, data });
            }
            PolicyEvent::PolicyVersionAdded { version, rego, modules, data, .. } => {
                self.latest_version = version;
                self.versions.push(VersionSource { rego, modules, data });
            }
            PolicyEvent::PolicyActivated { version, .. } => {
                self.status = PolicyStatus::Active;
                self.active_version = Some(version);
            }
            PolicyEvent::PolicyDeactivated { .. } => {
                self.status = PolicyStatus::Inactive;
                self.active_version = None;
            }
            PolicyEvent::PolicyArchived { .. } => self.status = PolicyStatus::Archived,
        }
    }
}
