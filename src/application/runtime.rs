//! The evaluation hot path's state: which policies are active, prepared for the engine.
//!
//! A moka cache maps (tenant, policy) to the policy's runtime state, including the
//! prepared engine module. A hit costs no database read; the projection runner
//! invalidates an entry whenever it applies an event of that policy (in every process),
//! and entries expire after a short time as a backstop.

use std::sync::Arc;
use std::time::Duration;

use ledger::LedgerEntry;
use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;

use crate::adapters::engine::{EngineError, PolicyEngine, PolicyModule, PolicySource, PreparedPolicy};

/// A policy as evaluation sees it.
#[derive(Debug, Clone)]
pub struct RuntimePolicy {
    pub policy_id: Uuid,
    pub status: String,
    pub version: Option<u32>,
    pub hash_only_input: bool,
    /// Input fields the decision record keeps out.
    pub input_mask: aggregates::policy::mask::InputMask,
    /// Present when the policy is active.
    pub prepared: Option<Arc<dyn PreparedPolicy>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Projection(#[from] projections::ProjectionError),
}

#[derive(Clone)]
pub struct PolicyRuntime {
    engine: Arc<dyn PolicyEngine>,
    primary: PgPool,
    cache: Cache<(Uuid, Uuid), Option<Arc<RuntimePolicy>>>,
}

impl std::fmt::Debug for PolicyRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRuntime").field("engine", &self.engine.kind()).field("cached", &self.cache.entry_count()).finish()
    }
}

impl PolicyRuntime {
    pub fn new(engine: Arc<dyn PolicyEngine>, primary: PgPool) -> Self {
        let cache = Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(30)).build();
        Self { engine, primary, cache }
    }

    pub fn engine(&self) -> &Arc<dyn PolicyEngine> {
        &self.engine
    }

    /// The policy's runtime state; `None` when the tenant has no such policy.
    pub async fn get(&self, tenant: Uuid, policy_id: Uuid) -> Result<Option<Arc<RuntimePolicy>>, Arc<RuntimeError>> {
        self.cache.try_get_with((tenant, policy_id), self.load(tenant, policy_id)).await
    }

    async fn load(&self, tenant: Uuid, policy_id: Uuid) -> Result<Option<Arc<RuntimePolicy>>, RuntimeError> {
        let mut tx = projections::tenant::begin(&self.primary, tenant).await.map_err(projections::ProjectionError::from)?;
        let view = projections::policies::runtime_view(&mut tx, policy_id).await?;
        drop(tx);
        let Some(view) = view else { return Ok(None) };
        let version = view.active_version.and_then(|v| u32::try_from(v).ok());
        let prepared = match (view.status.as_str(), version, &view.rego) {
            ("active", Some(version), Some(rego)) => {
                let mut source = PolicySource::single(rego.clone());
                if let Some(modules) = &view.modules {
                    source.modules.extend(modules.0.iter().map(|m| m.as_str().to_owned()));
                }
                source.data = view.data.as_ref().and_then(|d| d.0.to_value());
                let module = PolicyModule { policy_id, version, package: String::new(), source };
                Some(self.engine.prepare(&module).await?)
            }
            _ => None,
        };
        Ok(Some(Arc::new(RuntimePolicy {
            policy_id,
            status: view.status,
            version,
            hash_only_input: view.input_logging == "hash_only",
            input_mask: view.input_mask.map(|m| m.0).unwrap_or_default(),
            prepared,
        })))
    }

    pub async fn invalidate(&self, tenant: Uuid, policy_id: Uuid) {
        self.cache.invalidate(&(tenant, policy_id)).await;
    }
}

/// Told of every ledger entry of its aggregate types that a projector has applied (after
/// its transaction commits).
#[async_trait::async_trait]
pub trait AppliedListener: Send + Sync {
    /// The aggregate types whose entries this listener acts on: it is told of no others,
    /// and a projector handling none of them reads no entries for it.
    fn aggregate_types(&self) -> &'static [&'static str];
    async fn applied(&self, entry: &LedgerEntry);
}

#[async_trait::async_trait]
impl AppliedListener for PolicyRuntime {
    fn aggregate_types(&self) -> &'static [&'static str] {
        const TYPES: &[&str] = &[aggregates::Stream::Policy.aggregate_type()];
        TYPES
    }

    async fn applied(&self, entry: &LedgerEntry) {
        if let Ok(id) = Uuid::parse_str(&entry.aggregate_id) {
            self.invalidate(entry.tenant_id, id).await;
        }
    }
}
