//! The Policy read model: one row per policy and one per version, projected from the
//! typed Policy events (a bad field stops the projector; it is never stored as a default).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::policy::{PolicyEvent, VersionSource};
use aggregates::{Recorded, Stream};

use crate::{EventRecord, Page, ProjectionError, Projector, SortOrder};

/// A policy as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PolicyView {
    pub policy_id: Uuid,
    pub name: String,
    pub description: String,
    pub status: String,
    pub latest_version: i32,
    pub active_version: Option<i32>,
    pub input_logging: String,
    /// The input fields decision records keep out; absent when none.
    #[schema(value_type = Option<aggregates::policy::mask::InputMask>)]
    pub input_mask: Option<sqlx::types::Json<aggregates::policy::mask::InputMask>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The ledger seq of the last event applied to this row.
    pub last_seq: i64,
}

/// One version of a policy's Rego.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PolicyVersionView {
    pub policy_id: Uuid,
    pub version: i32,
    /// The main module: it declares the policy's package.
    pub rego: String,
    /// Further modules of the version (absent when none).
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules: Option<sqlx::types::Json<aggregates::policy::ExtraModules>>,
    /// The version's data document (absent when none).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<sqlx::types::Json<aggregates::policy::DataDocument>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub ledger_seq: i64,
}

/// Sortable columns; anything else is rejected before it reaches SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySort {
    CreatedAt,
    UpdatedAt,
    Name,
}

impl PolicySort {
    fn column(self) -> &'static str {
        match self {
            PolicySort::CreatedAt => "created_at",
            PolicySort::UpdatedAt => "updated_at",
            PolicySort::Name => "name",
        }
    }
}

/// A policy status to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatusFilter {
    Draft,
    Active,
    Inactive,
    Archived,
}

impl PolicyStatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            PolicyStatusFilter::Draft => "draft",
            PolicyStatusFilter::Active => "active",
            PolicyStatusFilter::Inactive => "inactive",
            PolicyStatusFilter::Archived => "archived",
        }
    }
}

/// The only sort key of a policy's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionSort {
    Version,
}

#[derive(Debug, Clone)]
pub struct PolicyListQuery {
    pub page: u32,
    pub page_size: u32,
    pub sort: PolicySort,
    pub order: SortOrder,
    /// Names containing this text, case-insensitively.
    pub name: Option<String>,
    pub status: Option<PolicyStatusFilter>,
}

const VIEW_COLUMNS: &str =
    "policy_id, name, description, status, latest_version, active_version, input_logging, input_mask, created_by, created_at, updated_at, last_seq";

/// Reads one policy; the connection's transaction must be tenant-scoped.
pub async fn get(conn: &mut PgConnection, policy_id: Uuid) -> Result<Option<PolicyView>, ProjectionError> {
    let sql = format!("SELECT {VIEW_COLUMNS} FROM gov_governance_policies WHERE policy_id = $1");
    Ok(sqlx::query_as(&sql).bind(policy_id).fetch_optional(conn).await?)
}

/// Lists policies, one page at a time; ties are broken by id so pages are stable.
pub async fn list(conn: &mut PgConnection, q: &PolicyListQuery) -> Result<Page<PolicyView>, ProjectionError> {
    let filter = "($1::text IS NULL OR strpos(lower(name), lower($1)) > 0) AND ($2::text IS NULL OR status = $2)";
    let status = q.status.map(PolicyStatusFilter::as_str);
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM gov_governance_policies WHERE {filter}"))
        .bind(&q.name)
        .bind(status)
        .fetch_one(&mut *conn)
        .await?;
    let order = q.order.sql();
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM gov_governance_policies WHERE {filter} ORDER BY {} {order}, policy_id {order} LIMIT $3 OFFSET $4",
        q.sort.column()
    );
    let offset = crate::offset(q.page, q.page_size);
    let items = sqlx::query_as(&sql).bind(&q.name).bind(status).bind(i64::from(q.page_size)).bind(offset).fetch_all(&mut *conn).await?;
    Ok(Page { items, page: q.page, page_size: q.page_size, total })
}

/// One page of a policy's versions, by version number.
pub async fn versions_page(
    conn: &mut PgConnection,
    policy_id: Uuid,
    page: u32,
    page_size: u32,
    order: SortOrder,
) -> Result<Page<PolicyVersionView>, ProjectionError> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM gov_governance_policy_versions WHERE policy_id = $1")
        .bind(policy_id)
        .fetch_one(&mut *conn)
        .await?;
    let sql = format!(
        "SELECT policy_id, version, rego, modules, data, created_by, created_at, ledger_seq FROM gov_governance_policy_versions \
         WHERE policy_id = $1 ORDER BY version {} LIMIT $2 OFFSET $3",
        order.sql()
    );
    let items =
        sqlx::query_as(&sql).bind(policy_id).bind(i64::from(page_size)).bind(crate::offset(page, page_size)).fetch_all(&mut *conn).await?;
    Ok(Page { items, page, page_size, total })
}

/// The ids of the tenant's policies with exactly this name (tenant-scoped transaction).
pub async fn ids_named(conn: &mut PgConnection, name: &str) -> Result<Vec<Uuid>, ProjectionError> {
    Ok(sqlx::query_scalar("SELECT policy_id FROM gov_governance_policies WHERE name = $1 ORDER BY policy_id LIMIT 10")
        .bind(name)
        .fetch_all(conn)
        .await?)
}

/// What evaluation needs of a policy: its state and, when active, the active Rego.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PolicyRuntimeView {
    pub policy_id: Uuid,
    pub status: String,
    pub active_version: Option<i32>,
    pub input_logging: String,
    pub input_mask: Option<sqlx::types::Json<aggregates::policy::mask::InputMask>>,
    pub rego: Option<String>,
    pub modules: Option<sqlx::types::Json<aggregates::policy::ExtraModules>>,
    pub data: Option<sqlx::types::Json<aggregates::policy::DataDocument>>,
    pub last_seq: i64,
}

/// Reads a policy's runtime view (tenant-scoped transaction).
pub async fn runtime_view(conn: &mut PgConnection, policy_id: Uuid) -> Result<Option<PolicyRuntimeView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT p.policy_id, p.status, p.active_version, p.input_logging, p.input_mask, v.rego, v.modules, v.data, p.last_seq FROM gov_governance_policies p \
         LEFT JOIN gov_governance_policy_versions v ON v.tenant_id = p.tenant_id AND v.policy_id = p.policy_id AND v.version = p.active_version \
         WHERE p.policy_id = $1",
    )
    .bind(policy_id)
    .fetch_optional(conn)
    .await?)
}

/// One version's Rego.
pub async fn version(conn: &mut PgConnection, policy_id: Uuid, version: i32) -> Result<Option<PolicyVersionView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT policy_id, version, rego, modules, data, created_by, created_at, ledger_seq FROM gov_governance_policy_versions WHERE policy_id = $1 AND version = $2",
    )
    .bind(policy_id)
    .bind(version)
    .fetch_optional(conn)
    .await?)
}

/// Builds the Policy read model.
#[derive(Debug, Default)]
pub struct PolicyProjector;

/// A version number as the read model's columns hold it.
fn column(e: &EventRecord, version: u32) -> Result<i32, ProjectionError> {
    i32::try_from(version).map_err(|_| ProjectionError::Decode(format!("version at seq {} is out of range", e.seq)))
}

#[async_trait::async_trait]
impl Projector for PolicyProjector {
    fn name(&self) -> &'static str {
        "policies"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        const TYPES: &[&str] = &[Stream::Policy.aggregate_type()];
        TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gov_governance_policies", "gov_governance_policy_versions"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &EventRecord) -> Result<(), ProjectionError> {
        let id = e.aggregate_uuid()?;
        // Entries of other streams are not this projector's; unknown kinds are skipped.
        let Some(Recorded::Policy(event)) = e.decode()?.cloned() else { return Ok(()) };
        match event {
            PolicyEvent::PolicyCreated { name, description, version: v, rego, modules, data, input_logging, input_mask, .. } => {
                let mask = (!input_mask.is_empty()).then_some(sqlx::types::Json(input_mask));
                sqlx::query(
                    "INSERT INTO gov_governance_policies (tenant_id, policy_id, name, description, status, latest_version, \
                     active_version, created_by, created_at, updated_at, last_seq, input_logging, input_mask) VALUES ($1, $2, $3, $4, 'draft', $5, NULL, $6, $7, $7, $8, $9, $10)",
                )
                .bind(e.tenant_id)
                .bind(id)
                .bind(name.as_str())
                .bind(description.as_str())
                .bind(column(e, v)?)
                .bind(&e.actor)
                .bind(e.recorded_at)
                .bind(e.seq)
                .bind(input_logging.as_str())
                .bind(mask)
                .execute(&mut *tx)
                .await?;
                insert_version(tx, e, id, column(e, v)?, VersionSource { rego, modules, data }).await?;
            }
            PolicyEvent::PolicyVersionAdded { version: v, rego, modules, data, .. } => {
                update(tx, e, id, "latest_version = $4", Some(column(e, v)?)).await?;
                insert_version(tx, e, id, column(e, v)?, VersionSource { rego, modules, data }).await?;
            }
            PolicyEvent::PolicyActivated { version: v, .. } => {
                update(tx, e, id, "status = 'active', active_version = $4", Some(column(e, v)?)).await?
            }
            PolicyEvent::PolicyDeactivated { .. } => update(tx, e, id, "status = 'inactive', active_version = NULL", None).await?,
            PolicyEvent::PolicyArchived { .. } => update(tx, e, id, "status = 'archived'", None).await?,
        }
        Ok(())
    }
}

async fn update(tx: &mut PgConnection, e: &EventRecord, id: Uuid, set: &str, value: Option<i32>) -> Result<(), ProjectionError> {
    let sql = format!("UPDATE gov_governance_policies SET {set}, updated_at = $2, last_seq = $3 WHERE policy_id = $1");
    let mut q = sqlx::query(&sql).bind(id).bind(e.recorded_at).bind(e.seq);
    if let Some(v) = value {
        q = q.bind(v);
    }
    q.execute(tx).await?;
    Ok(())
}

async fn insert_version(
    tx: &mut PgConnection,
    e: &EventRecord,
    id: Uuid,
    version: i32,
    source: VersionSource,
) -> Result<(), ProjectionError> {
    let VersionSource { rego, modules, data } = source;
    sqlx::query(
        "INSERT INTO gov_governance_policy_versions (tenant_id, policy_id, version, rego, created_by, created_at, ledger_seq, modules, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.tenant_id)
    .bind(id)
    .bind(version)
    .bind(rego.as_str())
    .bind(&e.actor)
    .bind(e.recorded_at)
    .bind(e.seq)
    .bind((!modules.is_empty()).then_some(sqlx::types::Json(modules)))
    .bind((!data.is_empty()).then_some(sqlx::types::Json(data)))
    .execute(tx)
    .await?;
    Ok(())
}
