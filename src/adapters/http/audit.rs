//! The auditor's acts: during `auditor_review`, accept a workflow (certify it with the
//! statuses derived as of today, recorded in the ledger) or send it back to remediation
//! with findings; accept or reject a piece of evidence. And the officer's closing of a
//! finding by evidence.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Days, NaiveDate, Utc};
use serde::Deserialize;
use uuid::Uuid;

use aggregates::compliance::{Certification, CertifiedStatus, EvidenceCommand, Finding, RequirementId, Verdict, WorkflowCommand};
use aggregates::{Actor, EvidenceId, Reason};

use super::evidence::{evidence_id, run as run_evidence};
use super::extract::{ApiJson, ApiPath, Caller};
use super::regulations::OFFICERS;
use super::workflows::{run, workflow_id, workflow_statuses, WorkflowDetail};
use super::SharedState;
use crate::adapters::auth::Role;
use crate::error::{ApiError, ErrorCode};

/// Only the auditor accepts, sends back and gives verdicts on evidence: the people who
/// collect evidence do not certify it.
pub(crate) const AUDITORS: &[Role] = &[Role::Auditor];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// Why; recorded with the actor in the ledger.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    /// How many days the certification is valid (default 365); after it, re-certify.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1095)]
    pub valid_days: Option<u32>,
}

/// The auditor accepts a workflow in `auditor_review`: it is certified, and the ledger
/// records the statuses of its requirements as of today, which it keeps from then on.
#[utoipa::path(post, path = "/compliance/workflows/{id}/accept", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), request_body = AcceptBody,
    responses((status = 200, description = "Certified", body = WorkflowDetail)))]
pub async fn accept(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Response, ApiError> {
    caller.require(AUDITORS)?;
    let id = workflow_id(&id)?;
    let reason = Reason::parse(&body.reason)?;
    let valid_days = body.valid_days.unwrap_or(365);
    if !(1..=1095).contains(&valid_days) {
        return Err(ApiError::validation("valid_days must be from 1 to 1095"));
    }
    // The statuses certified are derived from read models that have applied the whole
    // ledger as it stands now, never from lagging ones.
    let head = state.ledger.head_seq().await?;
    if !state.projections.wait_for(head, state.config.read_your_writes_timeout).await {
        return Err(ApiError::new(
            ErrorCode::RequestTimeout,
            "the read models are catching up with the ledger; nothing was changed, try again",
        ));
    }
    let as_of = Utc::now().date_naive();
    let (_, items) = workflow_statuses(&state, &caller, id, as_of).await?;
    let statuses = items
        .into_iter()
        .map(|i| Ok(CertifiedStatus { requirement_id: RequirementId::parse(&i.requirement_id)?, status: i.status }))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let valid_until = as_of.checked_add_days(Days::new(u64::from(valid_days))).unwrap_or(NaiveDate::MAX);
    let certification = Certification { as_of, valid_until, statuses };
    let command = WorkflowCommand::Accept { tenant_id: caller.tenant_id, certification, reason, actor: caller.subject.clone() };
    run(&state, &caller, id, command, StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingInput {
    /// A short statement of what is wrong.
    #[schema(min_length = 1, max_length = 2000)]
    pub title: String,
    /// Who must resolve it.
    pub owner: String,
    pub due_date: NaiveDate,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBackBody {
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    /// From 1 to 100 findings; each is closed by evidence before remediation can end.
    #[schema(min_items = 1, max_items = 100)]
    pub findings: Vec<FindingInput>,
}

/// The auditor sends a workflow in `auditor_review` back to remediation, with findings.
#[utoipa::path(post, path = "/compliance/workflows/{id}/send-back", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), request_body = SendBackBody,
    responses((status = 200, description = "In remediation", body = WorkflowDetail)))]
pub async fn send_back(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SendBackBody>,
) -> Result<Response, ApiError> {
    caller.require(AUDITORS)?;
    let id = workflow_id(&id)?;
    if body.findings.len() > 100 {
        return Err(ApiError::validation("at most 100 findings at once"));
    }
    let findings = body
        .findings
        .iter()
        .map(|f| {
            Ok(Finding {
                finding_id: Uuid::now_v7(),
                title: Reason::parse(&f.title)?,
                owner: Actor::parse(&f.owner)?,
                due_date: f.due_date,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let command = WorkflowCommand::SendBack {
        tenant_id: caller.tenant_id,
        findings,
        reason: Reason::parse(&body.reason)?,
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseFindingBody {
    /// Active evidence of the same workflow that resolves the finding.
    pub evidence_id: Uuid,
}

/// Closes a finding with the evidence that resolves it.
#[utoipa::path(post, path = "/compliance/workflows/{id}/findings/{finding_id}/close", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id"), ("finding_id" = Uuid, Path, description = "The finding id")),
    request_body = CloseFindingBody, responses((status = 200, description = "Closed", body = WorkflowDetail)))]
pub async fn close_finding(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath((id, finding)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CloseFindingBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = workflow_id(&id)?;
    let finding_id = Uuid::parse_str(&finding).map_err(|_| ApiError::not_found("finding"))?;
    // The aggregate checks the evidence against the ledger: active, of this workflow.
    let command = WorkflowCommand::CloseFinding {
        tenant_id: caller.tenant_id,
        finding_id,
        evidence_id: EvidenceId::from_uuid(body.evidence_id),
        actor: caller.subject.clone(),
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// `accepted` or `rejected`; rejected evidence no longer counts for any requirement.
    #[schema(pattern = "^(accepted|rejected)$")]
    pub verdict: String,
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// The auditor accepts or rejects a piece of active evidence (a later verdict replaces an earlier one).
#[utoipa::path(post, path = "/evidence/{id}/review", tag = "compliance",
    params(("id" = Uuid, Path, description = "The evidence id")), request_body = ReviewBody,
    responses((status = 200, description = "Recorded", body = projections::evidence::EvidenceView)))]
pub async fn review(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> Result<Response, ApiError> {
    caller.require(AUDITORS)?;
    let id = evidence_id(&id)?;
    let verdict = Verdict::parse(&body.verdict).ok_or_else(|| ApiError::validation(format!("unknown verdict {:?}", body.verdict)))?;
    let command = EvidenceCommand::Review {
        tenant_id: caller.tenant_id,
        verdict,
        actor: caller.subject.clone(),
        reason: Reason::parse(&body.reason)?,
    };
    run_evidence(&state, &caller, id, command).await
}
