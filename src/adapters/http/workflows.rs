//! `/api/v1/compliance/workflows`: the ComplianceWorkflow aggregate's commands, its read
//! model and the derived requirement statuses (from uploaded and system evidence); the
//! auditor's evidence bundle is [`super::system_evidence::bundle`].

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use aggregates::compliance::{
    ComplianceWorkflow, Period, RequirementId, RequirementStatus, Scope, WorkflowChange, WorkflowCommand, WorkflowError, WorkflowState,
};
use aggregates::{Actor, PolicyName, Reason, WorkflowId};
use projections::compliance::{self as read, NotApplicableView, TransitionView, WorkflowSort, WorkflowView};
use projections::compliance_review::{self as review, ChangeView, FindingView};
use projections::{Page, SortOrder};

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ReadParams};
use super::paging::{Listed, PageParams};
use super::policies::wait_min_seq;
use super::regulations::{regulation, requirement_of, tenant_links, OFFICERS, READERS};
use super::SharedState;
use crate::application::commands::CommandError;
use crate::application::compliance::{statuses, Judging, RegulationIndex, RequirementStatusView};
use crate::error::{ApiError, ErrorCode};

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match &e {
            WorkflowError::NotFound => ApiError::not_found("workflow"),
            WorkflowError::AlreadyExists => ApiError::new(ErrorCode::Conflict, e.to_string()),
            WorkflowError::InvalidTransition { from, allowed, .. } => ApiError::new(ErrorCode::InvalidTransition, e.to_string())
                .with_details(serde_json::json!({ "state": from, "allowed_transitions": allowed })),
            WorkflowError::AuditorDecides(_) => ApiError::new(ErrorCode::InvalidTransition, e.to_string()),
            WorkflowError::OpenFindings(open) => {
                ApiError::new(ErrorCode::Conflict, e.to_string()).with_details(serde_json::json!({ "open_findings": open }))
            }
            WorkflowError::Invalid(m) => ApiError::validation(m.clone()),
            WorkflowError::ReferenceUnavailable(r) => crate::application::references::unavailable_answer(r),
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
    /// Changes of scope, owner or due date after creation, with their reasons.
    pub changes: Vec<ChangeView>,
    /// The auditor's findings, open and closed.
    pub findings: Vec<FindingView>,
    /// The states it may move to now.
    pub allowed_transitions: Vec<String>,
}

async fn detail(state: &SharedState, caller: &Caller, id: Uuid) -> Result<Option<WorkflowDetail>, ApiError> {
    let mut tx = state.tenant_tx(caller).await?;
    let Some(workflow) = read::workflow(&mut tx, id).await? else { return Ok(None) };
    let transitions = read::transitions(&mut tx, id).await?;
    let not_applicable = read::not_applicable(&mut tx, Some(id)).await?.into_iter().map(|(_, v)| v).collect();
    let changes = review::changes(&mut tx, id).await?;
    let findings = review::findings(&mut tx, id).await?;
    let allowed =
        WorkflowState::parse(&workflow.state).map(|s| s.allowed().iter().map(|a| a.as_str().to_owned()).collect()).unwrap_or_default();
    Ok(Some(WorkflowDetail { workflow, transitions, not_applicable, changes, findings, allowed_transitions: allowed }))
}

/// Runs a command and answers with the workflow once its read model has caught up.
pub(crate) async fn run(
    state: &SharedState,
    caller: &Caller,
    id: WorkflowId,
    command: WorkflowCommand,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let services = crate::application::references::workflow_services(state.ledger.clone());
    let appended = state.bus.execute::<ComplianceWorkflow>(&id.to_string(), command, &services, &caller.context()).await?;
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
    let scope = scope_of(reg, &body.scope)?;
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

/// Requirement ids of `reg`, without repeats; none: every requirement.
fn scope_of(reg: &crate::application::catalog::Regulation, raw: &[String]) -> Result<Scope, ApiError> {
    let mut ids = Vec::with_capacity(raw.len());
    for r in raw {
        let id = requirement_of(reg, r)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(if ids.is_empty() { Scope::All } else { Scope::Requirements { ids } })
}

/// The workflow as its read model has it (404 when the tenant has none by that id).
pub(crate) async fn view(state: &SharedState, caller: &Caller, id: WorkflowId) -> Result<WorkflowView, ApiError> {
    let mut tx = state.tenant_tx(caller).await?;
    read::workflow(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// The new scope: requirement ids; an empty list means every requirement.
    #[serde(default)]
    pub scope: Option<Vec<String>>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
    /// Why; recorded with the actor in the ledger.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// Changes the scope, owner and/or due date of an open workflow, with a recorded reason.
#[utoipa::path(patch, path = "/compliance/workflows/{id}", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), request_body = ChangeBody,
    responses((status = 200, description = "Changed", body = WorkflowDetail)))]
pub async fn change(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = workflow_id(&id)?;
    let reason = Reason::parse(&body.reason)?;
    let owner = body.owner.as_deref().map(Actor::parse).transpose()?;
    let wf = view(&state, &caller, id).await?;
    let scope = body.scope.as_deref().map(|raw| scope_of(regulation(&wf.regulation)?, raw)).transpose()?;
    let change = WorkflowChange { scope, owner, due_date: body.due_date };
    let command = WorkflowCommand::Change { tenant_id: caller.tenant_id, change, reason, actor: caller.subject.clone() };
    run(&state, &caller, id, command, StatusCode::OK).await
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
    let wf = view(&state, &caller, id).await?;
    let requirement_id = requirement_of(regulation(&wf.regulation)?, &body.requirement_id)?;
    let command = WorkflowCommand::MarkNotApplicable {
        tenant_id: caller.tenant_id,
        requirement_id,
        justification: Reason::parse(&body.justification)?,
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawNotApplicableBody {
    pub requirement_id: String,
    /// Why the mark no longer holds; recorded with the actor in the ledger.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// Withdraws a not-applicable mark: the requirement is judged on its evidence again.
#[utoipa::path(post, path = "/compliance/workflows/{id}/not-applicable/withdrawals", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), request_body = WithdrawNotApplicableBody,
    responses((status = 200, description = "Withdrawn", body = WorkflowDetail)))]
pub async fn withdraw_not_applicable(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<WithdrawNotApplicableBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = workflow_id(&id)?;
    let command = WorkflowCommand::WithdrawNotApplicable {
        tenant_id: caller.tenant_id,
        requirement_id: RequirementId::parse(&body.requirement_id)?,
        reason: Reason::parse(&body.reason)?,
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

/// The certification a workflow was granted, as a status read reports it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertifiedInfo {
    /// The day the recorded statuses were derived as of.
    pub as_of: NaiveDate,
    pub valid_until: NaiveDate,
    /// True once `as_of` of the read is after `valid_until`: re-certify (a new workflow).
    pub recertification_due: bool,
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
pub struct RequirementsParams {
    /// `catalog_order` (the only key); default order `asc`.
    pub sort_by: Option<CatalogSort>,
    /// Judge freshness (expiring, expired) as of this day (default: today).
    pub as_of: Option<NaiveDate>,
    /// Only requirements with this status (the summary still counts all).
    #[param(pattern = "^(satisfied|expiring|expired|partial|missing|not_applicable)$")]
    pub status: Option<String>,
    /// Wait (up to the read-your-writes bound) until the read models have applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// The workflow and the statuses of its in-scope requirements as of `as_of`.
pub(crate) async fn workflow_statuses(
    state: &SharedState,
    caller: &Caller,
    id: WorkflowId,
    as_of: NaiveDate,
) -> Result<(WorkflowView, Vec<RequirementStatusView>), ApiError> {
    // Judged like a cold dashboard: in the tenant's turn, with a judging permit (taken
    // before the transaction opens), on a blocking thread, not on the runtime's workers.
    let failed = |e: String| ApiError::new(ErrorCode::Internal, format!("judging the workflow: {e}"));
    let held = state.dashboards.judging_turn(caller.tenant_id.as_uuid()).await.map_err(|e| failed(e.to_string()))?;
    let mut tx = state.tenant_tx(caller).await?;
    let wf = read::workflow(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow"))?;
    let evidence = projections::evidence::workflow_facts(&mut tx, id.as_uuid()).await?;
    let system = projections::system_evidence::of_days(&mut tx, wf.audit_period_start, wf.audit_period_end).await?;
    let na: HashMap<String, String> =
        read::not_applicable(&mut tx, Some(id.as_uuid())).await?.into_iter().map(|(_, v)| (v.requirement_id, v.justification)).collect();
    let code = regulation(&wf.regulation)?.code;
    let links = tenant_links(&mut tx, Some(code)).await?;
    drop(tx);
    let expiring_days = state.config.evidence_expiring_days;
    tokio::task::spawn_blocking(move || {
        let _held = held;
        let index = RegulationIndex::new(code, &links);
        let items = statuses(Judging {
            workflow: &wf,
            index: &index,
            evidence: &evidence,
            system: &system,
            not_applicable: &na,
            as_of,
            expiring_days,
        });
        (wf, items)
    })
    .await
    .map_err(|e| failed(e.to_string()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequirementStatuses {
    pub workflow_id: Uuid,
    pub regulation: String,
    pub as_of: NaiveDate,
    pub expiring_within_days: u32,
    /// Set when certified: the statuses below are the ones recorded at certification.
    pub certified: Option<CertifiedInfo>,
    /// Counts by status, over every in-scope requirement (not only this page or filter).
    pub summary: HashMap<String, usize>,
    pub items: Vec<RequirementStatusView>,
    pub page: u32,
    pub page_size: u32,
    /// In-scope requirements that match the filters.
    pub total: i64,
}

/// The derived status of every in-scope requirement (evidence for a control counts
/// towards every requirement that maps to it, by the link's relation). Coverage is judged
/// over the audit period, freshness as of `as_of`.
#[utoipa::path(get, path = "/compliance/workflows/{id}/requirements", tag = "compliance", operation_id = "list_workflow_requirements",
    params(("id" = Uuid, Path, description = "The workflow id"), PageParams, RequirementsParams),
    responses((status = 200, description = "One page of statuses", body = RequirementStatuses)))]
pub async fn requirements(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    Listed { page, filter: p }: Listed<RequirementsParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = workflow_id(&id)?;
    let only = match p.status.as_deref() {
        Some(s) => Some(RequirementStatus::parse(s).ok_or_else(|| ApiError::validation(format!("unknown requirement status {s:?}")))?),
        None => None,
    };
    wait_min_seq(&state, p.min_seq).await;
    let as_of = p.as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let (wf, mut items) = workflow_statuses(&state, &caller, id, as_of).await?;
    let mut summary = HashMap::new();
    for i in &items {
        *summary.entry(i.status.as_str().to_owned()).or_insert(0) += 1;
    }
    if let Some(only) = only {
        items.retain(|i| i.status == only);
    }
    if page.order_or(SortOrder::Asc) == SortOrder::Desc {
        items.reverse();
    }
    let items = page.slice(items);
    let certified = wf.certification.as_ref().map(|c| CertifiedInfo {
        as_of: c.as_of,
        valid_until: c.valid_until,
        recertification_due: as_of > c.valid_until,
    });
    let body = RequirementStatuses {
        workflow_id: wf.workflow_id,
        regulation: wf.regulation,
        as_of,
        expiring_within_days: state.config.evidence_expiring_days,
        certified,
        summary,
        items: items.items,
        page: items.page,
        page_size: items.page_size,
        total: items.total,
    };
    Ok(Json(body).into_response())
}
