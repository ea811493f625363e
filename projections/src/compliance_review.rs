//! What a workflow records after creation: changes (`gov_compliance_changes`), the
//! auditor's findings (`gov_compliance_findings`) and its certification (on the workflow
//! row); and tenants' not-applicable marks on requirement → control links
//! (`gov_control_mapping_exclusions`). Applied by the compliance projector.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::compliance::{Scope, WorkflowEvent};
use aggregates::facts::LinkMark;

use crate::compliance::touch;
use crate::{EventRecord, ProjectionError};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ChangeView {
    /// The fields that changed, with their new values.
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub ledger_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FindingView {
    pub finding_id: Uuid,
    pub title: String,
    pub owner: String,
    pub due_date: NaiveDate,
    pub raised_by: String,
    pub raised_at: DateTime<Utc>,
    pub raised_seq: i64,
    /// The evidence that closed it; `None` while open.
    pub closed_by_evidence: Option<Uuid>,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ExclusionView {
    pub regulation: String,
    pub requirement_id: String,
    pub control_id: String,
    pub rationale: String,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    pub ledger_seq: i64,
}

pub async fn changes(conn: &mut PgConnection, workflow_id: Uuid) -> Result<Vec<ChangeView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT change, reason, actor, at, ledger_seq FROM gov_compliance_changes WHERE workflow_id = $1 ORDER BY ledger_seq",
    )
    .bind(workflow_id)
    .fetch_all(conn)
    .await?)
}

pub async fn findings(conn: &mut PgConnection, workflow_id: Uuid) -> Result<Vec<FindingView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT finding_id, title, owner, due_date, raised_by, raised_at, raised_seq, closed_by_evidence, closed_by, closed_at \
         FROM gov_compliance_findings WHERE workflow_id = $1 ORDER BY raised_seq, finding_id",
    )
    .bind(workflow_id)
    .fetch_all(conn)
    .await?)
}

/// The tenant's not-applicable marks on links, of one regulation or all, or onto one control.
pub async fn exclusions(
    conn: &mut PgConnection,
    regulation: Option<&str>,
    control: Option<&str>,
) -> Result<Vec<ExclusionView>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT regulation, requirement_id, control_id, rationale, actor, recorded_at, ledger_seq FROM gov_control_mapping_exclusions \
         WHERE ($1::text IS NULL OR regulation = $1) AND ($2::text IS NULL OR control_id = $2) ORDER BY regulation, requirement_id, control_id",
    )
    .bind(regulation)
    .bind(control)
    .fetch_all(conn)
    .await?)
}

/// The workflow events that came after creation and not-applicable marks.
pub(crate) async fn apply(tx: &mut PgConnection, e: &EventRecord, id: Uuid, event: WorkflowEvent) -> Result<(), ProjectionError> {
    match event {
        WorkflowEvent::NotApplicableWithdrawn { requirement_id, .. } => {
            sqlx::query("DELETE FROM gov_compliance_not_applicable WHERE tenant_id = $1 AND workflow_id = $2 AND requirement_id = $3")
                .bind(e.tenant_id)
                .bind(id)
                .bind(requirement_id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        WorkflowEvent::WorkflowChanged { change, reason, actor } => {
            let (scope_all, ids) = match &change.scope {
                None => (None, None),
                Some(Scope::All) => (Some(true), Some(vec![])),
                Some(Scope::Requirements { ids }) => (Some(false), Some(ids.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>())),
            };
            sqlx::query(
                "UPDATE gov_compliance_workflows SET scope_all = coalesce($3, scope_all), scope_requirements = coalesce($4, scope_requirements), \
                 owner = coalesce($5, owner), due_date = coalesce($6, due_date) WHERE tenant_id = $1 AND workflow_id = $2",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(scope_all)
            .bind(ids)
            .bind(change.owner.as_ref().map(|o| o.as_str()))
            .bind(change.due_date)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO gov_compliance_changes (tenant_id, workflow_id, ledger_seq, change, reason, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(e.seq)
            .bind(sqlx::types::Json(&change))
            .bind(reason.as_str())
            .bind(actor.as_str())
            .bind(e.recorded_at)
            .execute(&mut *tx)
            .await?;
        }
        WorkflowEvent::WorkflowCertified { certification, .. } => {
            sqlx::query(
                "UPDATE gov_compliance_workflows SET certification = $3, certified_until = $4 WHERE tenant_id = $1 AND workflow_id = $2",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(sqlx::types::Json(&certification))
            .bind(certification.valid_until)
            .execute(&mut *tx)
            .await?;
        }
        WorkflowEvent::FindingRaised { finding, actor } => {
            sqlx::query(
                "INSERT INTO gov_compliance_findings (tenant_id, workflow_id, finding_id, title, owner, due_date, raised_by, raised_at, raised_seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(finding.finding_id)
            .bind(finding.title.as_str())
            .bind(finding.owner.as_str())
            .bind(finding.due_date)
            .bind(actor.as_str())
            .bind(e.recorded_at)
            .bind(e.seq)
            .execute(&mut *tx)
            .await?;
        }
        WorkflowEvent::FindingClosed { finding_id, evidence_id, actor } => {
            sqlx::query(
                "UPDATE gov_compliance_findings SET closed_by_evidence = $4, closed_by = $5, closed_at = $6, closed_seq = $7 \
                 WHERE tenant_id = $1 AND workflow_id = $2 AND finding_id = $3",
            )
            .bind(e.tenant_id)
            .bind(id)
            .bind(finding_id)
            .bind(evidence_id.as_uuid())
            .bind(actor.as_str())
            .bind(e.recorded_at)
            .bind(e.seq)
            .execute(&mut *tx)
            .await?;
        }
        // Applied by the compliance projector itself.
        WorkflowEvent::WorkflowCreated { .. }
        | WorkflowEvent::WorkflowStatusChanged { .. }
        | WorkflowEvent::RequirementMarkedNotApplicable { .. } => return Ok(()),
    }
    touch(tx, e, id).await
}

/// `ControlMappingNotApplicable` (`marked`) / `…Withdrawn`: the latest word on a link wins.
pub(crate) async fn apply_exclusion(tx: &mut PgConnection, e: &EventRecord, mark: &LinkMark, marked: bool) -> Result<(), ProjectionError> {
    if marked {
        sqlx::query(
            "INSERT INTO gov_control_mapping_exclusions (tenant_id, regulation, requirement_id, control_id, rationale, actor, recorded_at, ledger_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, regulation, requirement_id, control_id) DO UPDATE SET \
             rationale = EXCLUDED.rationale, actor = EXCLUDED.actor, recorded_at = EXCLUDED.recorded_at, ledger_seq = EXCLUDED.ledger_seq",
        )
        .bind(e.tenant_id)
        .bind(mark.regulation.as_str())
        .bind(mark.requirement_id.as_str())
        .bind(mark.control_id.as_str())
        .bind(mark.rationale.as_str())
        .bind(&e.actor)
        .bind(e.recorded_at)
        .bind(e.seq)
        .execute(tx)
        .await?;
    } else {
        sqlx::query(
            "DELETE FROM gov_control_mapping_exclusions WHERE tenant_id = $1 AND regulation = $2 AND requirement_id = $3 AND control_id = $4",
        )
        .bind(e.tenant_id)
        .bind(mark.regulation.as_str())
        .bind(mark.requirement_id.as_str())
        .bind(mark.control_id.as_str())
        .execute(tx)
        .await?;
    }
    Ok(())
}
