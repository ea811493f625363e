//! What the Policy aggregate asks of the world outside the domain: whether a version may
//! become active. The service answers with its policy engine (the version compiles, its
//! `test_` rules pass and the engine has loaded it); the aggregate decides *which* version
//! that is, from its own events, so an untested version can never become active.

use std::sync::Arc;

use crate::ids::{PolicyId, RegoSource, TenantId};

/// Why a version may not become active. It wraps the engine's own error so the edge can
/// answer with the engine's code (failed tests are 422, an engine that is down is 503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct VersionRejected(pub Arc<dyn std::error::Error + Send + Sync>);

impl PartialEq for VersionRejected {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// Checks a version before it becomes active.
#[async_trait::async_trait]
pub trait ActivationCheck: Send + Sync {
    /// `Ok` when `rego`, version `version` of `policy`, may become active.
    async fn check_version(&self, tenant: TenantId, policy: PolicyId, version: u32, rego: &RegoSource) -> Result<(), VersionRejected>;
}

/// The Policy aggregate's services (cqrs-es `Aggregate::Services`).
#[derive(Clone)]
pub struct PolicyServices {
    activation: Arc<dyn ActivationCheck>,
}

impl PolicyServices {
    pub fn new(activation: Arc<dyn ActivationCheck>) -> Self {
        Self { activation }
    }

    pub(super) async fn check_version(
        &self,
        tenant: TenantId,
        policy: PolicyId,
        version: u32,
        rego: &RegoSource,
    ) -> Result<(), VersionRejected> {
        self.activation.check_version(tenant, policy, version, rego).await
    }
}

impl std::fmt::Debug for PolicyServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyServices").finish_non_exhaustive()
    }
}
