//! `/api/v1/policies`: the Policy aggregate's commands and its read model.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use aggregates::policy::{Policy, PolicyCommand, PolicyError};
use aggregates::{Description, PolicyId, PolicyName, Reason, RegoSource};
use projections::policies::{self as read, PolicyListQuery, PolicySort};
use projections::SortOrder;

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use super::SharedState;
use crate::auth::Role;
use crate::commands::{CommandContext, CommandError};
use crate::error::{ApiError, ErrorCode};

const WRITERS: &[Role] = &[Role::Admin, Role::PolicyAuthor];
const READERS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::PolicyEvaluator, Role::ComplianceOfficer, Role::Auditor];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub rego: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match &e {
            PolicyError::NotFound => ApiError::not_found("policy"),
            PolicyError::AlreadyExists => ApiError::new(ErrorCode::Conflict, e.to_string()),
            PolicyError::InvalidTransition { from, allowed, .. } => ApiError::new(ErrorCode::InvalidTransition, e.to_string())
                .with_details(serde_json::json!({ "status": from.as_str(), "allowed_transitions": allowed })),
            PolicyError::UnknownVersion { .. } => ApiError::validation(e.to_string()),
            PolicyError::AlreadyActive(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
        }
    }
}

impl From<CommandError<PolicyError>> for ApiError {
    fn from(e: CommandError<PolicyError>) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Ledger(l) => l.into(),
        }
    }
}

fn context(caller: &Caller) -> CommandContext {
    CommandContext {
        tenant_id: caller.tenant_id,
        actor: caller.subject.clone(),
        request_id: Some(caller.request_id.clone()),
        trace_id: None,
        correlation_id: None,
    }
}

fn optional_reason(r: Option<String>) -> Result<Option<Reason>, ApiError> {
    match r {
        Some(r) if !r.trim().is_empty() => Ok(Some(Reason::parse(&r)?)),
        _ => Ok(None),
    }
}

/// Reads a policy once its projection has caught up with `seq`, or answers 202 with the
/// seq when that takes longer than the read-your-writes bound.
async fn read_after(state: &SharedState, caller: &Caller, policy_id: Uuid, seq: i64, created: bool) -> Result<Response, ApiError> {
    if !state.projections.wait_for(seq, state.config.read_your_writes_timeout).await {
        let body = serde_json::json!({ "policy_id": policy_id, "ledger_seq": seq, "status": "accepted" });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let mut tx =
        projections::tenant::begin(&state.primary, caller.tenant_id.as_uuid()).await.map_err(projections::ProjectionError::from)?;
    let view = read::get(&mut tx, policy_id).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    tx.commit().await.map_err(projections::ProjectionError::from)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)).into_response())
}

pub async fn create(State(state): State<SharedState>, caller: Caller, ApiJson(body): ApiJson<CreatePolicy>) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let policy_id = PolicyId::generate();
    let command = PolicyCommand::Create {
        policy_id,
        tenant_id: caller.tenant_id,
        name: PolicyName::parse(&body.name)?,
        description: Description::parse(&body.description)?,
        rego: RegoSource::parse(&body.rego)?,
        actor: caller.subject.clone(),
        reason: optional_reason(body.reason)?,
    };
    let appended = state.bus.execute::<Policy>(&policy_id.to_string(), command, &(), &context(&caller)).await?;
    let seq = appended.last().map(|a| a.seq).unwrap_or(0);
    read_after(&state, &caller, policy_id.as_uuid(), seq, true).await
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    // A malformed id cannot name any policy: 404, like an id of another tenant.
    PolicyId::parse(raw).map(|p| p.as_uuid()).map_err(|_| ApiError::not_found("policy"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    pub min_seq: Option<i64>,
}

pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = parse_id(&id)?;
    wait_min_seq(&state, p.min_seq).await;
    let mut tx =
        projections::tenant::begin(&state.primary, caller.tenant_id.as_uuid()).await.map_err(projections::ProjectionError::from)?;
    let view = read::get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    Ok(Json(view).into_response())
}

pub async fn versions(State(state): State<SharedState>, caller: Caller, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = parse_id(&id)?;
    let mut tx =
        projections::tenant::begin(&state.primary, caller.tenant_id.as_uuid()).await.map_err(projections::ProjectionError::from)?;
    read::get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    let items = read::versions(&mut tx, id).await?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// Waits, within the read-your-writes bound, until the read models reach `min_seq`.
async fn wait_min_seq(state: &SharedState, min_seq: Option<i64>) {
    if let Some(seq) = min_seq {
        state.projections.wait_for(seq, state.config.read_your_writes_timeout).await;
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub page: Option<u32>,
    pub page_size: Option<u32>,
    pub sort_by: Option<PolicySort>,
    pub sort_order: Option<String>,
    pub min_seq: Option<i64>,
}

/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

pub async fn list(State(state): State<SharedState>, caller: Caller, ApiQuery(p): ApiQuery<ListParams>) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let page = p.page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::invalid("page starts at 1"));
    }
    let page_size = p.page_size.unwrap_or(20);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::invalid(format!("page_size must be from 1 to {MAX_PAGE_SIZE}")));
    }
    let order = match p.sort_order.as_deref() {
        None | Some("desc") => SortOrder::Desc,
        Some("asc") => SortOrder::Asc,
        Some(_) => return Err(ApiError::invalid("sort_order must be asc or desc")),
    };
    wait_min_seq(&state, p.min_seq).await;
    let q = PolicyListQuery { page, page_size, sort: p.sort_by.unwrap_or(PolicySort::CreatedAt), order };
    let mut tx =
        projections::tenant::begin(&state.primary, caller.tenant_id.as_uuid()).await.map_err(projections::ProjectionError::from)?;
    let result = read::list(&mut tx, q).await?;
    Ok(Json(result).into_response())
}
