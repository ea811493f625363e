//! The compliance read models: workflows (`gov_compliance_workflows`), their transitions
//! and not-applicable justifications, and tenant-defined requirement → control mappings
//! (`gov_control_mappings`), with their queries.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::compliance::{Certification, Scope, WorkflowEvent};
use aggregates::facts::{ControlMappingEvent, MappingSet};
use aggregates::{Recorded, Stream};

use crate::{EventRecord, Page, ProjectionError, Projector};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkflowView {
    pub workflow_id: Uuid,
    pub regulation: String,
    pub name: String,
    /// True: every requirement of the regulation; false: `scope_requirements`.
    pub scope_all: bool,
    pub scope_requirements: Vec<String>,
    pub owner: String,
    pub audit_period_start: NaiveDate,
    pub audit_period_end: NaiveDate,
    pub due_date: NaiveDate,
    pub state: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seq: i64,
    /// Set when certified: the statuses it was certified with, as of which day, valid until when.
    #[schema(value_type = Option<Object>)]
    pub certification: Option<sqlx::types::Json<Certification>>,
    /// The last day the certification is valid; after it the regulation needs re-certification.
    pub certified_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TransitionView {
    pub from_state: String,
    pub to_state: String,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub ledger_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NotApplicableView {
    pub requirement_id: String,
    pub justification: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub ledger_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TenantMappingView {
    pub regulation: String,
    pub requirement_id: String,
    pub control_id: String,
    pub relation: String,
    pub rationale: String,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    pub ledger_seq: i64,
}

const WORKFLOW_COLUMNS: &str = "workflow_id, regulation, name, scope_all, scope_requirements, owner, audit_period_start, \
    audit_period_end, due_date, state, created_by, created_at, updated_at, last_seq, certification, certified_until";

pub async fn workflow(conn: &mut PgConnection, id: Uuid) -> Result<Option<WorkflowView>, ProjectionError> {
    let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM gov_compliance_workflows WHERE workflow_id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}

/// Newest first, optionally of one regulation and/or in one state.
/// Sort keys of the workflow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowSort {
    CreatedAt,
    UpdatedAt,
    DueDate,
    Name,
}

impl WorkflowSort {
    fn column(self) -> &'static str {
        match self {
            WorkflowSort::CreatedAt => "created_at",
            WorkflowSort::UpdatedAt => "updated_at",
            WorkflowSort::DueDate => "due_date",
            WorkflowSort::Name => "name",
        }
    }
}

pub async fn workflows(
    conn: &mut PgConnection,
    regulation: Option<&str>,
    state: Option<&str>,
    (page, page_size): (u32, u32),
    (sort, order): (WorkflowSort, crate::SortOrder),
) -> Result<Page<WorkflowView>, ProjectionError> {
    let filter = "($1::text IS NULL OR regulation = $1) AND ($2::text IS NULL OR state = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM gov_compliance_workflows WHERE {filter}"))
        .bind(regulation)
        .bind(state)
        .fetch_one(&mut *conn)
        .await?;
    let sql = format!(
        "SELECT {WORKFLOW_COLUMNS} FROM gov_compliance_workflows WHERE {filter} ORDER BY {} {o}, workflow_id {o} LIMIT $3 OFFSET $4",
        sort.column(),
        o = order.sql()
    );
    let items = sqlx::query_as(&sql)
        .bind(regulation)
        .bind(state)
        .bind(i64::from(page_size))
        .bind(crate::offset(page, page_size))
        .fetch_all(&mut *conn)
        .await?;
    Ok(Page { items, page, page_size, total })
}

/// Every workflow of the tenant (the dashboard's input), optionally of one regulation.
pub async fn all_workflows(conn: &mut PgConnection, regulation: Option<&str>) -> Result<Vec<WorkflowView>, ProjectionError> {
    let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM gov_compliance_workflows WHERE ($1::text IS NULL OR regulation = $1)");
    Ok(sqlx::query_as(&sql).bind(regulation).fetch_all(conn).await?)
}

pub async fn transitions(conn: &mut PgConnection, workflow_id: Uuid) -> Result<Vec<TransitionView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT from_state, to_state, reason, actor, at, ledger_seq FROM gov_compliance_transitions WHERE workflow_id = $1 ORDER BY ledger_seq",
    )
    .bind(workflow_id)
    .fetch_all(conn)
    .await?)
}

/// Not-applicable justifications by workflow (all of the tenant's when `workflow_id` is None).
pub async fn not_applicable(conn: &mut PgConnection, workflow_id: Option<Uuid>) -> Result<Vec<(Uuid, NotApplicableView)>, ProjectionError> {
    let rows: Vec<(Uuid, String, String, String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT workflow_id, requirement_id, justification, actor, at, ledger_seq FROM gov_compliance_not_applicable \
         WHERE ($1::uuid IS NULL OR workflow_id = $1) ORDER BY requirement_id",
    )
    .bind(workflow_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(w, requirement_id, justification, actor, at, ledger_seq)| {
            (w, NotApplicableView { requirement_id, justification, actor, at, ledger_seq })
        })
        .collect())
}

/// The tenant's own mappings, of one regulation or all.
pub async fn tenant_mappings(conn: &mut PgConnection, regulation: Option<&str>) -> Result<Vec<TenantMappingView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT regulation, requirement_id, control_id, relation, rationale, actor, recorded_at, ledger_seq FROM gov_control_mappings \
         WHERE ($1::text IS NULL OR regulation = $1) ORDER BY regulation, requirement_id, control_id",
    )
    .bind(regulation)
    .fetch_all(conn)
    .await?)
}

/// The tenant's mappings onto one control, across regulations.
pub async fn tenant_mappings_to(conn: &mut PgConnection, control_id: &str) -> Result<Vec<TenantMappingView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT regulation, requirement_id, control_id, relation, rationale, actor, recorded_at, ledger_seq FROM gov_control_mappings \
         WHERE control_id = $1 ORDER BY regulation, requirement_id",
    )
    .bind(control_id)
    .fetch_all(conn)
    .await?)
}

/// Builds the workflow and mapping read models.
#[derive(Debug, Default)]
pub struct ComplianceProjector;

#[async_trait::async_trait]
impl Projector for ComplianceProjector {
    fn name(&self) -> &'static str {
        "compliance"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        const TYPES: &[&str] = &[Stream::ComplianceWorkflow.aggregate_type(), Stream::ControlMapping.aggregate_type()];
        TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "gov_compliance_workflows",
            "gov_compliance_transitions",
            "gov_compliance_not_applicable",
            "gov_control_mappings",
            "gov_compliance_changes",
            "gov_compliance_findings",
            "gov_control_mapping_exclusions",
        ]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &EventRecord) -> Result<(), ProjectionError> {
        // Unknown kinds are skipped; a bad field is an error.
        let event = match e.decode()?.cloned() {
            Some(Recorded::ControlMapping(fact)) => return apply_mapping(tx, e, fact).await,
            Some(Recorded::Workflow(event)) => event,
            Some(_) | None => return Ok(()),
        };
        let id = e.aggregate_uuid()?;
        match event {
            WorkflowEvent::WorkflowCreated { regulation, name, scope, owner, audit_period, due_date, .. } => {
                let (all, ids) = match scope {
                    Scope::All => (true, vec![]),
                    Scope::Requirements { ids } => (false, ids.into_iter().map(String::from).collect::<Vec<_>>()),
                };
                sqlx::query(
                    "INSERT INTO gov_compliance_workflows (tenant_id, workflow_id, regulation, name, scope_all, scope_requirements, owner, \
                     audit_period_start, audit_period_end, due_date, state, created_by, created_at, updated_at, last_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', $11, $12, $12, $13)",
                )
                .bind(e.tenant_id)
                .bind(id)
                .bind(regulation.as_str())
                .bind(name.as_str())
                .bind(all)
                .bind(&ids)
                .bind(owner.as_str())
                .bind(audit_period.start)
                .bind(audit_period.end)
                .bind(due_date)
                .bind(&e.actor)
                .bind(e.recorded_at)
                .bind(e.seq)
                .execute(&mut *tx)
                .await?;
            }
            WorkflowEvent::WorkflowStatusChanged { from, to, reason, actor } => {
                sqlx::query("UPDATE gov_compliance_workflows SET state = $3, updated_at = $4, last_seq = $5 WHERE tenant_id = $1 AND workflow_id = $2")
                    .bind(e.tenant_id)
                    .bind(id)
                    .bind(to.as_str())
                    .bind(e.recorded_at)
                    .bind(e.seq)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO gov_compliance_transitions (tenant_id, workflow_id, ledger_seq, from_state, to_state, reason, actor, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(e.tenant_id)
                .bind(id)
                .bind(e.seq)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(reason.as_str())
                .bind(actor.as_str())
                .bind(e.recorded_at)
                .execute(&mut *tx)
                .await?;
            }
            WorkflowEvent::RequirementMarkedNotApplicable { requirement_id, justification, actor } => {
                sqlx::query(
                    "INSERT INTO gov_compliance_not_applicable (tenant_id, workflow_id, requirement_id, justification, actor, at, ledger_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, workflow_id, requirement_id) \
                     DO UPDATE SET justification = EXCLUDED.justification, actor = EXCLUDED.actor, at = EXCLUDED.at, ledger_seq = EXCLUDED.ledger_seq",
                )
                .bind(e.tenant_id)
                .bind(id)
                .bind(requirement_id.as_str())
                .bind(justification.as_str())
                .bind(actor.as_str())
                .bind(e.recorded_at)
                .bind(e.seq)
                .execute(&mut *tx)
                .await?;
                touch(tx, e, id).await?;
            }
            other => crate::compliance_review::apply(tx, e, id, other).await?,
        }
        Ok(())
    }
}

/// Moves a workflow's `updated_at` and `last_seq` to this event.
pub(crate) async fn touch(tx: &mut PgConnection, e: &EventRecord, id: Uuid) -> Result<(), ProjectionError> {
    sqlx::query("UPDATE gov_compliance_workflows SET updated_at = $3, last_seq = $4 WHERE tenant_id = $1 AND workflow_id = $2")
        .bind(e.tenant_id)
        .bind(id)
        .bind(e.recorded_at)
        .bind(e.seq)
        .execute(tx)
        .await?;
    Ok(())
}

/// A tenant's link fact: `ControlMappingSet` (the latest mapping of a (regulation,
/// requirement, control) wins), or a not-applicable mark or its withdrawal.
async fn apply_mapping(tx: &mut PgConnection, e: &EventRecord, fact: ControlMappingEvent) -> Result<(), ProjectionError> {
    let m: MappingSet = match fact {
        ControlMappingEvent::ControlMappingSet(m) => m,
        ControlMappingEvent::ControlMappingNotApplicable(mark) => {
            return crate::compliance_review::apply_exclusion(tx, e, &mark, true).await
        }
        ControlMappingEvent::ControlMappingNotApplicableWithdrawn(mark) => {
            return crate::compliance_review::apply_exclusion(tx, e, &mark, false).await
        }
    };
    sqlx::query(
        "INSERT INTO gov_control_mappings (tenant_id, regulation, requirement_id, control_id, relation, rationale, actor, recorded_at, ledger_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, regulation, requirement_id, control_id) DO UPDATE SET \
         relation = EXCLUDED.relation, rationale = EXCLUDED.rationale, actor = EXCLUDED.actor, recorded_at = EXCLUDED.recorded_at, \
         ledger_seq = EXCLUDED.ledger_seq",
    )
    .bind(e.tenant_id)
    .bind(m.regulation.as_str())
    .bind(m.requirement_id.as_str())
    .bind(m.control_id.as_str())
    .bind(m.relation.as_str())
    .bind(m.rationale.as_str())
    .bind(&e.actor)
    .bind(e.recorded_at)
    .bind(e.seq)
    .execute(tx)
    .await?;
    Ok(())
}
