//! What the Policy aggregate asks of the world outside the domain: whether a version may
//! become active. The service answers with its policy engine (the version compiles, its
//! `test_` rules pass and the engine has loaded it); the aggregate decides *which* version
//! that is, from its own events, so an untested version can never become active. An
//! activation that names a replay asks which policy and version that replay was of (the
//! service reads the replay's fact from the ledger), and refuses a replay of anything else.

use std::sync::Arc;

use super::bundle::VersionSource;
use crate::ids::{PolicyId, ReplayId, TenantId};

/// Why a version may not become active: the engine's own error (it does not compile, its
/// tests fail, the engine is down), or a ledger that cannot say what a replay was of.
pub use crate::services::ServiceError as VersionRejected;

/// Checks a version before it becomes active.
#[async_trait::async_trait]
pub trait ActivationCheck: Send + Sync {
    /// `Ok` when `source`, version `version` of `policy`, may become active.
    async fn check_version(&self, tenant: TenantId, policy: PolicyId, version: u32, source: &VersionSource) -> Result<(), VersionRejected>;
    /// What the tenant's replay `replay` replayed; `Ok(None)` when the tenant has no such
    /// replay. An error when the ledger cannot answer.
    async fn replay_subject(&self, tenant: TenantId, replay: ReplayId) -> Result<Option<ReplaySubject>, VersionRejected>;
}

/// The policy version a replay re-evaluated decisions against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySubject {
    pub policy_id: PolicyId,
    pub version: u32,
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
        source: &VersionSource,
    ) -> Result<(), VersionRejected> {
        self.activation.check_version(tenant, policy, version, source).await
    }

    pub(super) async fn replay_subject(&self, tenant: TenantId, replay: ReplayId) -> Result<Option<ReplaySubject>, VersionRejected> {
        self.activation.replay_subject(tenant, replay).await
    }
}

impl std::fmt::Debug for PolicyServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyServices").finish_non_exhaustive()
    }
}
