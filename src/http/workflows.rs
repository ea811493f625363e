//! `/api/v1/compliance/workflows`: the ComplianceWorkflow aggregate's commands, its read
//! model, the derived requirement statuses and the auditor's evidence bundle.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use aggregates::compliance::{ComplianceWorkflow, Period, RequirementId, Scope, WorkflowCommand, WorkflowError, WorkflowState};
use aggregates::{Actor, PolicyName, Reason, WorkflowId};
use projections::compliance::{self as read, NotApplicableView, TransitionView, WorkflowSort, WorkflowView};
use projections::{Page, SortOrder};

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ReadParams};
use super::paging::{Listed, PageParams};
use super::policies::wait_min_seq;
use super::regulations::{regulation, requirement_of, tenant_links, OFFICERS, READERS};
use super::SharedState;
use crate::commands::CommandError;
use crate::compliance::{statuses, RegulationIndex, RequirementStatusView};
use crate::error::{ApiError, ErrorCode};

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match &e {
            WorkflowError::NotFound => ApiError::not_found("workflow"),
            WorkflowError::AlreadyExists => ApiError::new(ErrorCode::Conflict, e.to_string()),
            WorkflowError::InvalidTransition { from, allowed, .. } => ApiError::new(ErrorCode::InvalidTransition, e.to_string())
                .with_details(serde_json::json!({ "state": from, "allowed_transitions": allowed })),
            WorkflowError::Invalid(m) => ApiError::validation(m.clone()),
        }
    }
}

impl<E: std::error::Error + Into<ApiError>> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Ledger(l) => l.into(),
        }
    }
}

pub(crate) fn workflow_id(raw: &str) -> Result<WorkflowId, ApiError> {
    WorkflowId::parse(raw).map_err(|_| ApiError::not_found("workflow"))
}

/// A workflow with its history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowDetail {
    #[serde(flatten)]
    pub workflow: WorkflowView,
    pub transitions: Vec<TransitionView>,
    pub not_applicable: Vec<NotApplicableView>,
    /// The states it may move to now.
    pub allowed_transitions: Vec<String>,
}

async fn detail(state: &SharedState, caller: &Caller, id: Uuid) -> Result<Option<WorkflowDetail>, ApiError> {
    let mut tx = state.tenant_tx(caller).await?;
    let Some(workflow) = read::workflow(&mut tx, id).await? else { return Ok(None) };
    let transitions = read::transitions(&mut tx, id).await?;
    let not_applicable = read::not_applicable(&mut tx, Some(id)).await?.into_iter().map(|(_, v)| v).collect();
    let allowed =
        WorkflowState::parse(&workflow.state).map(|s| s.allowed().iter().map(|a| a.as_str().to_owned()).collect()).unwrap_or_default();
    Ok(Some(WorkflowDetail { workflow, transitions, not_applicable, allowed_transitions: allowed }))
}

/// Runs a command and answers with the workflow once its read model has caught up.
async fn run(
    state: &SharedState,
    caller: &Caller,
    id: WorkflowId,
    command: WorkflowCommand,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let appended = state.bus.execute::<ComplianceWorkflow>(&id.to_string(), command, &(), &caller.context()).await?;
    let seq = appended.last().map(|a| a.seq).unwrap_or(0);
    let accepted = serde_json::json!({ "workflow_id": id.as_uuid(), "ledger_seq": seq, "status": "accepted" });
    let read = async { detail(state, caller, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow")) };
    state.answer_after(seq, status, accepted, read).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// The regulation code, e.g. `soc2`.
    #[schema(pattern = "^(soc2|iso27001|hipaa|iso42001|eu_ai_act|fedramp)$")]
    pub regulation: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Requirement ids in scope; absent or empty: every requirement of the regulation.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Who owns the workflow (default: the caller).
    #[serde(default)]
    pub owner: Option<String>,
    pub audit_period_start: NaiveDate,
    pub audit_period_end: NaiveDate,
    pub due_date: NaiveDate,
}

/// Creates a workflow (state `draft`) for a regulation.
#[utoipa::path(post, path = "/compliance/workflows", tag = "compliance", operation_id = "create_workflow", request_body = CreateWorkflow,
    responses((status = 201, description = "Created", body = WorkflowDetail)))]
pub async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWorkflow>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let reg = regulation(&body.regulation)?;
    let mut ids = Vec::with_capacity(body.scope.len());
    for raw in &body.scope {
        let id = requirement_of(reg, raw)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let scope = if ids.is_empty() { Scope::All } else { Scope::Requirements { ids } };
    let owner = match &body.owner {
        Some(o) => Actor::parse(o)?,
        None => caller.subject.clone(),
    };
    let id = WorkflowId::generate();
    let command = WorkflowCommand::Create {
        workflow_id: id,
        tenant_id: caller.tenant_id,
        regulation: reg.code,
        name: PolicyName::parse(&body.name)?,
        scope,
        owner,
        audit_period: Period::new(body.audit_period_start, body.audit_period_end)?,
        due_date: body.due_date,
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::CREATED).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `created_at` (default), `updated_at`, `due_date` or `name`; default order `desc`.
    pub sort_by: Option<WorkflowSort>,
    /// Only workflows of this regulation.
    pub regulation: Option<String>,
    /// Only workflows in this state.
    pub state: Option<String>,
    /// Wait (up to the read-your-writes bound) until the read models have applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// Lists the tenant's workflows, newest first.
#[utoipa::path(get, path = "/compliance/workflows", tag = "compliance", operation_id = "list_workflows", params(PageParams, ListParams),
    responses((status = 200, description = "One page", body = Page<WorkflowView>)))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    Listed { page, filter: p }: Listed<ListParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let sort = (p.sort_by.unwrap_or(WorkflowSort::CreatedAt), page.order_or(SortOrder::Desc));
    let reg = p.regulation.as_deref().map(regulation).transpose()?;
    if let Some(s) = &p.state {
        WorkflowState::parse(s).ok_or_else(|| ApiError::validation(format!("unknown workflow state {s:?}")))?;
    }
    wait_min_seq(&state, p.min_seq).await;
    let mut tx = state.tenant_tx(&caller).await?;
    let result = read::workflows(&mut tx, reg.map(|r| r.code.as_str()), p.state.as_deref(), (page.page, page.page_size), sort).await?;
    Ok(Json(result).into_response())
}

/// Reads one workflow with its transitions and not-applicable justifications.
#[utoipa::path(get, path = "/compliance/workflows/{id}", tag = "compliance", operation_id = "get_workflow",
    params(("id" = Uuid, Path, description = "The workflow id"), ReadParams),
    responses((status = 200, description = "The workflow", body = WorkflowDetail)))]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = workflow_id(&id)?;
    wait_min_seq(&state, p.min_seq).await;
    let d = detail(&state, &caller, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow"))?;
    Ok(Json(d).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    /// The target state.
    #[schema(pattern = "^(draft|scoping|evidence_collection|internal_review|auditor_review|remediation|certified|cancelled)$")]
    pub to: String,
    /// Why; recorded with the actor in the ledger.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// Moves a workflow to another state; 409 lists the allowed ones when the move is not.
#[utoipa::path(post, path = "/compliance/workflows/{id}/transitions", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), request_body = TransitionBody,
    responses((status = 200, description = "Moved", body = WorkflowDetail)))]
pub async fn transition(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TransitionBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = workflow_id(&id)?;
    let to = WorkflowState::parse(&body.to).ok_or_else(|| ApiError::validation(format!("unknown workflow state {:?}", body.to)))?;
    let command = WorkflowCommand::Transition {
        tenant_id: caller.tenant_id,
        to,
        reason: Reason::parse(&body.reason)?,
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotApplicableBody {
    pub requirement_id: String,
    /// Required: a requirement is only `not_applicable` with a recorded justification.
    #[schema(min_length = 1, max_length = 2000)]
    pub justification: String,
}

/// Marks an in-scope requirement not applicable, with its justification.
#[utoipa::path(post, path = "/compliance/workflows/{id}/not-applicable", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), request_body = NotApplicableBody,
    responses((status = 200, description = "Recorded", body = WorkflowDetail)))]
pub async fn not_applicable(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NotApplicableBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = workflow_id(&id)?;
    // A malformed id is refused before the workflow is looked up.
    RequirementId::parse(&body.requirement_id)?;
    let mut tx = state.tenant_tx(&caller).await?;
    let wf = read::workflow(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow"))?;
    drop(tx);
    let requirement_id = requirement_of(regulation(&wf.regulation)?, &body.requirement_id)?;
    let command = WorkflowCommand::MarkNotApplicable {
        tenant_id: caller.tenant_id,
        requirement_id,
        justification: Reason::parse(&body.justification)?,
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequirementStatuses {
    pub workflow_id: Uuid,
    pub regulation: String,
    pub as_of: NaiveDate,
    pub expiring_within_days: u32,
    /// Counts by status, over every in-scope requirement (not only this page).
    pub summary: HashMap<String, usize>,
    pub items: Vec<RequirementStatusView>,
    pub page: u32,
    pub page_size: u32,
    /// In-scope requirements that match the filters.
    pub total: i64,
}

/// The only sort key of a workflow's requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogSort {
    /// The regulation's own order of its requirements.
    CatalogOrder,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequirementStatusParams {
    /// `catalog_order` (the only key); default order `asc`.
    pub sort_by: Option<CatalogSort>,
    /// Wait (up to the read-your-writes bound) until the read models have applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// The derived status of every in-scope requirement (evidence for a control counts
/// towards every requirement that maps to it).
#[utoipa::path(get, path = "/compliance/workflows/{id}/requirements", tag = "compliance", operation_id = "list_workflow_requirements",
    params(("id" = Uuid, Path, description = "The workflow id"), PageParams, RequirementStatusParams),
    responses((status = 200, description = "One page of statuses", body = RequirementStatuses)))]
pub async fn requirements(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    Listed { page, filter: p }: Listed<RequirementStatusParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = workflow_id(&id)?;
    wait_min_seq(&state, p.min_seq).await;
    let mut tx = state.tenant_tx(&caller).await?;
    let wf = read::workflow(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow"))?;
    let evidence = projections::evidence::of_workflow(&mut tx, Some(id.as_uuid()), true).await?;
    let na: HashMap<String, String> =
        read::not_applicable(&mut tx, Some(id.as_uuid())).await?.into_iter().map(|(_, v)| (v.requirement_id, v.justification)).collect();
    let code = regulation(&wf.regulation)?.code;
    let links = tenant_links(&mut tx, Some(code)).await?;
    drop(tx);
    let index = RegulationIndex::new(code, &links);
    let as_of = chrono::Utc::now().date_naive();
    let refs: Vec<_> = evidence.iter().collect();
    let mut items = statuses(&wf, &index, &refs, &na, as_of, state.config.evidence_expiring_days);
    let mut summary = HashMap::new();
    for i in &items {
        *summary.entry(i.status.as_str().to_owned()).or_insert(0) += 1;
    }
    if page.order_or(SortOrder::Asc) == SortOrder::Desc {
        items.reverse();
    }
    let items = page.slice(items);
    let body = RequirementStatuses {
        workflow_id: wf.workflow_id,
        regulation: wf.regulation,
        as_of,
        expiring_within_days: state.config.evidence_expiring_days,
        summary,
        items: items.items,
        page: items.page,
        page_size: items.page_size,
        total: items.total,
    };
    Ok(Json(body).into_response())
}
