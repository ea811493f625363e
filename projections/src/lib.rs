//! Read models in the primary database and the projectors that build them.
//!
//! Layout:
//! - [`EventRecord`]: what a projector sees of a ledger entry (the service's ledger
//!   adapter converts; this crate never touches the audit database).
//! - [`tenant`]: transactions scoped to one tenant through `app.tenant_id`, which the
//!   row-level-security policies of every tenant table read.
//! - [`policies`]: the Policy read model (`gov_governance_policies`,
//!   `gov_governance_policy_versions`), its projector and its queries.
//! - [`decisions`]: decision records (`gov_policy_decisions`), one per evaluation.
//! - [`compliance`]: workflows, their transitions and not-applicable justifications, and
//!   tenant-defined requirement → control mappings.
//! - [`compliance_review`]: what a workflow records after creation (changes, findings,
//!   certification) and tenants' not-applicable marks on requirement → control links.
//! - [`evidence`]: evidence records (`gov_evidence`).
//! - [`Projector`]: the trait the projection runner drives.
//!
//! Projectors are idempotent per event: they run inside the transaction that advances
//! the projector's stored position, so each event takes effect exactly once.

pub mod compliance;
pub mod compliance_review;
pub mod decisions;
pub mod evidence;
pub mod policies;
pub mod tenant;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A ledger entry, as a projector reads it.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub seq: i64,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot decode event: {0}")]
    Decode(String),
}

/// A read model builder. `apply` runs inside the runner's transaction, with
/// `app.tenant_id` already set to the event's tenant.
#[async_trait::async_trait]
pub trait Projector: Send + Sync {
    /// The name under which the position is stored (`gov_projection_positions`).
    fn name(&self) -> &'static str;
    /// The read-model tables this projector owns (rebuilt and swapped together).
    fn tables(&self) -> &'static [&'static str];
    /// The aggregate types whose events this projector applies.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Whether this projector cares about an aggregate type.
    fn handles(&self, aggregate_type: &str) -> bool {
        self.aggregate_types().contains(&aggregate_type)
    }
    async fn apply(&self, tx: &mut sqlx::PgConnection, event: &EventRecord) -> Result<(), ProjectionError>;
    /// Applies a run of events of one tenant, in order. Projectors whose events are
    /// independent rows override it with one multi-row statement (rebuilds and backlogs).
    async fn apply_many(&self, tx: &mut sqlx::PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        for e in events {
            self.apply(&mut *tx, e).await?;
        }
        Ok(())
    }
}

/// Every projector, in the order the service runs them.
pub fn all() -> Vec<std::sync::Arc<dyn Projector>> {
    vec![
        std::sync::Arc::new(policies::PolicyProjector),
        std::sync::Arc::new(decisions::DecisionProjector),
        std::sync::Arc::new(compliance::ComplianceProjector),
        std::sync::Arc::new(evidence::EvidenceProjector),
    ]
}

/// One page of a list, with the total that matched.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub page_size: u32,
    pub total: i64,
}

/// The row offset of a 1-based page.
pub fn offset(page: u32, page_size: u32) -> i64 {
    i64::from(page.saturating_sub(1)) * i64::from(page_size)
}

/// Sort direction of a list query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    pub fn sql(self) -> &'static str {
        match self {
            SortOrder::Asc => "ASC",
            SortOrder::Desc => "DESC",
        }
    }
}
