//! `/api/v1/evidence`: streamed multipart upload into the content-addressed artifact
//! store, the Evidence aggregate's commands and downloads that verify the hash first (the
//! auditor's evidence bundle of a workflow is [`super::system_evidence::bundle`]). The handlers parse input into domain types;
//! the aggregate checks what evidence references (its workflow, a decision record, the
//! superseding record) against the ledger ([`crate::application::references`]), never a read model.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;
use uuid::Uuid;

use aggregates::compliance::{
    Artifact, Evidence, EvidenceCommand, EvidenceError, EvidenceKind, EvidenceStatus, Outcome, RequirementId, Sha256, SubmitEvidence,
};
use aggregates::{DecisionId, Description, EvidenceId, Reason, WorkflowId};
use projections::evidence::{self as read, EvidenceSort, EvidenceView};
use projections::{Page, SortOrder};

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ReadParams};
use super::paging::{Listed, PageParams};
use super::policies::wait_min_seq;
use super::regulations::{csf_control, OFFICERS, READERS};
use super::SharedState;
use crate::adapters::artifacts::{ArtifactError, Staged, Upload};
use crate::application::limits::{check_json_text, check_text};
use crate::error::{ApiError, ErrorCode};

impl From<EvidenceError> for ApiError {
    fn from(e: EvidenceError) -> Self {
        match &e {
            EvidenceError::NotFound => ApiError::not_found("evidence"),
            EvidenceError::AlreadyExists | EvidenceError::Closed(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            EvidenceError::Invalid(m) => ApiError::validation(m.clone()),
            EvidenceError::ReferenceUnavailable(r) => crate::application::references::unavailable_answer(r),
        }
    }
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        match &e {
            ArtifactError::TooLarge(max) => ApiError::new(ErrorCode::PayloadTooLarge, format!("the artifact exceeds {max} bytes")),
            ArtifactError::Corrupt(_) => {
                ApiError::new(ErrorCode::ArtifactCorrupt, "the stored artifact does not match its recorded hash").caused_by(e)
            }
            ArtifactError::Config(_) | ArtifactError::Unavailable(_) => {
                ApiError::new(ErrorCode::ArtifactStoreUnavailable, "the artifact store is unavailable; nothing was changed").caused_by(e)
            }
        }
    }
}

/// The `metadata` part of an upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceMetadata {
    pub workflow_id: Uuid,
    /// Requirements of the workflow's regulation this evidence is for.
    #[serde(default)]
    pub requirement_ids: Vec<String>,
    /// CSF 2.0 subcategories: the evidence counts for every requirement mapped to them.
    #[serde(default)]
    pub control_ids: Vec<String>,
    /// `document`, `screenshot`, `configuration_export`, `automated_test_result`, `policy_decision_reference` or `attestation`.
    #[schema(pattern = "^(document|screenshot|configuration_export|automated_test_result|policy_decision_reference|attestation)$")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// First day the evidence is effective (distinct from the upload time).
    pub valid_from: NaiveDate,
    /// Last day the evidence is effective.
    pub valid_until: NaiveDate,
    /// The artifact's SHA-256 as the client computed it; a mismatch is refused (422).
    #[serde(default)]
    pub sha256: Option<String>,
    /// For `policy_decision_reference`: the decision record it points at.
    #[serde(default)]
    pub decision_id: Option<Uuid>,
    /// `pass`, `fail` or `informational` (default `pass`; required for an
    /// `automated_test_result`). For a `policy_decision_reference` it is the decision's:
    /// `pass` when allowed, `fail` otherwise; a different one is refused.
    #[serde(default)]
    #[schema(pattern = "^(pass|fail|informational)$")]
    pub outcome: Option<String>,
}

/// The multipart body (documentation only: the handler streams it).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EvidenceUpload {
    /// JSON, as `EvidenceMetadata`.
    metadata: String,
    /// The artifact's bytes.
    #[schema(format = Binary, value_type = String)]
    artifact: Vec<u8>,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "the upload is too large")
    } else {
        ApiError::invalid(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The artifact part: staged bytes, and what the client said of them.
struct ArtifactPart {
    staged: Staged,
    filename: Option<String>,
    content_type: String,
}

/// A file name or media type from the client, kept only when short and printable; NUL is
/// refused (it is no name a read model can store).
fn clean(v: Option<&str>) -> Result<Option<String>, ApiError> {
    if let Some(v) = v {
        check_text(v).map_err(|e| ApiError::validation(format!("artifact part: {e}")))?;
    }
    Ok(v.map(str::trim).filter(|v| !v.is_empty() && v.len() <= 255 && !v.chars().any(char::is_control)).map(str::to_owned))
}

/// Reads the parts: the metadata (small) and the artifact, streamed into staging. A
/// refused body leaves nothing in staging.
async fn read_parts(state: &SharedState, request: Request) -> Result<(Option<EvidenceMetadata>, Option<ArtifactPart>), ApiError> {
    let mut staged = None;
    match read_parts_into(state, request, &mut staged).await {
        Ok(metadata) => Ok((metadata, staged)),
        Err(e) => {
            if let Some(a) = staged {
                state.artifacts.discard(&a.staged).await;
            }
            Err(e)
        }
    }
}

async fn read_parts_into(
    state: &SharedState,
    request: Request,
    staged: &mut Option<ArtifactPart>,
) -> Result<Option<EvidenceMetadata>, ApiError> {
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| ApiError::invalid(e.body_text()))?;
    let mut metadata: Option<EvidenceMetadata> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("metadata") if metadata.is_none() => {
                let text = field.text().await.map_err(multipart_error)?;
                if text.len() > 64 * 1024 {
                    return Err(ApiError::invalid("the metadata part is larger than 64 KiB"));
                }
                check_json_text(text.as_bytes()).map_err(|e| ApiError::validation(format!("metadata: {e}")))?;
                metadata = Some(serde_json::from_str(&text).map_err(|e| ApiError::validation(format!("metadata: {e}")))?);
            }
            Some("artifact") if staged.is_none() => {
                let filename = clean(field.file_name())?;
                let content_type = clean(field.content_type())?.unwrap_or_else(|| "application/octet-stream".to_owned());
                let upload = state.artifacts.begin().await?;
                *staged = Some(ArtifactPart { staged: stream(upload, field).await?, filename, content_type });
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unexpected or repeated part {:?}; expected metadata and artifact",
                    other.unwrap_or("")
                )));
            }
        }
    }
    Ok(metadata)
}

async fn stream(mut upload: Upload, mut field: axum::extract::multipart::Field<'_>) -> Result<Staged, ApiError> {
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = upload.write(&chunk).await {
                    upload.abort().await;
                    return Err(e.into());
                }
            }
            Ok(None) => return Ok(upload.finish().await?),
            Err(e) => {
                upload.abort().await;
                return Err(multipart_error(e));
            }
        }
    }
}

/// The metadata and the artifact as a submission command, in domain types. Whether the
/// workflow and the decision exist for the tenant, the requirements are its regulation's
/// and the outcome fits the decision is the aggregate's to decide, from the ledger.
fn submission(caller: &Caller, m: EvidenceMetadata, part: &ArtifactPart) -> Result<SubmitEvidence, ApiError> {
    let staged = &part.staged;
    let outcome = match m.outcome.as_deref() {
        Some(raw) => Some(Outcome::parse(raw).ok_or_else(|| ApiError::validation(format!("unknown outcome {raw:?}")))?),
        None => None,
    };
    let requirement_ids = m.requirement_ids.iter().map(|raw| RequirementId::parse(raw)).collect::<Result<Vec<_>, _>>()?;
    let control_ids = m.control_ids.iter().map(|raw| csf_control(raw).map(|(id, _)| id)).collect::<Result<Vec<_>, _>>()?;
    let kind = EvidenceKind::parse(&m.kind).ok_or_else(|| ApiError::validation(format!("unknown evidence kind {:?}", m.kind)))?;
    if let Some(declared) = &m.sha256 {
        let declared = Sha256::parse(declared)?;
        if declared != staged.sha256 {
            return Err(ApiError::new(
                ErrorCode::ArtifactHashMismatch,
                "the artifact's SHA-256 is not the declared one; nothing was stored",
            )
            .with_details(serde_json::json!({ "declared": declared.as_str(), "computed": staged.sha256.as_str() })));
        }
    }
    Ok(SubmitEvidence {
        evidence_id: EvidenceId::generate(),
        tenant_id: caller.tenant_id,
        workflow_id: WorkflowId::from_uuid(m.workflow_id),
        requirement_ids,
        control_ids,
        kind,
        description: Description::parse(&m.description)?,
        valid_from: m.valid_from,
        valid_until: m.valid_until,
        artifact: Artifact {
            sha256: staged.sha256.clone(),
            size_bytes: staged.size_bytes,
            content_type: part.content_type.clone(),
            filename: part.filename.clone(),
        },
        decision_id: m.decision_id.map(DecisionId::from_uuid),
        outcome,
        actor: caller.subject.clone(),
    })
}

/// Submits evidence: a multipart body with a `metadata` part (JSON) and an `artifact` part.
#[utoipa::path(post, path = "/evidence", tag = "compliance",
    request_body(content = EvidenceUpload, content_type = "multipart/form-data"),
    responses((status = 201, description = "Recorded", body = EvidenceView)))]
pub async fn upload(State(state): State<SharedState>, caller: Caller, request: Request) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let (metadata, part) = read_parts(&state, request).await?;
    let Some(part) = part else { return Err(ApiError::validation("the artifact part is missing")) };
    let staged = &part.staged;
    let result = async {
        let metadata = metadata.ok_or_else(|| ApiError::validation("the metadata part is missing"))?;
        let s = submission(&caller, metadata, &part)?;
        // Store at the content address, then record. If recording fails, an artifact
        // that was not there before is removed again. (Identical bytes uploaded at the same
        // moment by a request that does record them could lose their object to this
        // removal; the same upload restores it, and downloads fail closed meanwhile.)
        let existed = state.artifacts.exists(&staged.sha256).await?;
        state.artifacts.commit(staged).await?;
        let id = s.evidence_id;
        let command = EvidenceCommand::Submit(Box::new(s));
        match state.bus.execute::<Evidence>(&id.to_string(), command, &services(&state), &caller.context()).await {
            Ok(appended) => Ok((id, appended.last().map(|a| a.seq).unwrap_or(0))),
            Err(e) => {
                if !existed {
                    state.artifacts.remove(&staged.sha256).await;
                }
                Err(ApiError::from(e))
            }
        }
    }
    .await;
    let (id, seq) = match result {
        Ok(r) => r,
        Err(e) => {
            state.artifacts.discard(staged).await;
            return Err(e);
        }
    };
    read_after(&state, &caller, id, seq, StatusCode::CREATED).await
}

async fn read_after(state: &SharedState, caller: &Caller, id: EvidenceId, seq: i64, status: StatusCode) -> Result<Response, ApiError> {
    let accepted = serde_json::json!({ "evidence_id": id.as_uuid(), "ledger_seq": seq, "status": "accepted" });
    state.answer_after(seq, status, accepted, view(state, caller, id)).await
}

/// The Evidence aggregate's services: the ledger and the catalog.
fn services(state: &SharedState) -> aggregates::compliance::EvidenceServices {
    crate::application::references::evidence_services(state.ledger.clone())
}

/// Runs a command on existing evidence and answers with the record.
pub(crate) async fn run(state: &SharedState, caller: &Caller, id: EvidenceId, command: EvidenceCommand) -> Result<Response, ApiError> {
    let appended = state.bus.execute::<Evidence>(&id.to_string(), command, &services(state), &caller.context()).await?;
    read_after(state, caller, id, appended.last().map(|a| a.seq).unwrap_or(0), StatusCode::OK).await
}

pub(crate) fn evidence_id(raw: &str) -> Result<EvidenceId, ApiError> {
    EvidenceId::parse(raw).map_err(|_| ApiError::not_found("evidence"))
}

async fn view(state: &SharedState, caller: &Caller, id: EvidenceId) -> Result<EvidenceView, ApiError> {
    let mut tx = state.tenant_tx(caller).await?;
    read::get(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("evidence"))
}

/// Reads one evidence record.
#[utoipa::path(get, path = "/evidence/{id}", tag = "compliance", operation_id = "get_evidence",
    params(("id" = Uuid, Path, description = "The evidence id"), ReadParams), responses((status = 200, description = "The record", body = EvidenceView)))]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = evidence_id(&id)?;
    wait_min_seq(&state, p.min_seq).await;
    Ok(Json(view(&state, &caller, id).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `submitted_at` (default) or `valid_until`; default order `desc`.
    pub sort_by: Option<EvidenceSort>,
    /// Only evidence of this workflow.
    pub workflow_id: Option<Uuid>,
    /// Only evidence in this status.
    #[param(pattern = "^(active|superseded|withdrawn)$")]
    pub status: Option<String>,
    /// Only evidence of this kind.
    #[param(pattern = "^(document|screenshot|configuration_export|automated_test_result|policy_decision_reference|attestation)$")]
    pub kind: Option<String>,
    /// Only evidence naming this CSF 2.0 control.
    pub control: Option<String>,
    /// Only evidence naming this requirement directly.
    pub requirement: Option<String>,
    /// Only evidence whose `valid_until` is before this day.
    pub expiring_before: Option<NaiveDate>,
}

/// Lists the tenant's evidence records, newest first.
#[utoipa::path(get, path = "/evidence", tag = "compliance", operation_id = "list_evidence", params(PageParams, ListParams),
    responses((status = 200, description = "One page", body = Page<EvidenceView>)))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    Listed { page, filter: p }: Listed<ListParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let sort = (p.sort_by.unwrap_or(EvidenceSort::SubmittedAt), page.order_or(SortOrder::Desc));
    let status = match p.status.as_deref() {
        Some(s) => Some(
            [EvidenceStatus::Active, EvidenceStatus::Superseded, EvidenceStatus::Withdrawn]
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| ApiError::validation(format!("unknown evidence status {s:?}")))?,
        ),
        None => None,
    };
    if let Some(k) = &p.kind {
        EvidenceKind::parse(k).ok_or_else(|| ApiError::validation(format!("unknown evidence kind {k:?}")))?;
    }
    let control_id = p.control.as_deref().map(csf_control).transpose()?.map(|(id, _)| id.as_str().to_owned());
    let requirement_id = p.requirement.as_deref().map(RequirementId::parse).transpose()?.map(String::from);
    let filter = read::EvidenceFilter {
        workflow_id: p.workflow_id,
        status: status.map(|s| s.as_str().to_owned()),
        kind: p.kind,
        control_id,
        requirement_id,
        expiring_before: p.expiring_before,
    };
    let mut tx = state.tenant_tx(&caller).await?;
    Ok(Json(read::page(&mut tx, &filter, (page.page, page.page_size), sort).await?).into_response())
}

/// Downloads the artifact, after checking it against the SHA-256 the ledger recorded.
#[utoipa::path(get, path = "/evidence/{id}/artifact", tag = "compliance",
    params(("id" = Uuid, Path, description = "The evidence id")),
    responses((status = 200, description = "The artifact's bytes, with the media type and file name recorded at upload, as an attachment; `X-Artifact-SHA256` carries the verified hash", content_type = "*/*", body = Vec<u8>)))]
pub async fn artifact(State(state): State<SharedState>, caller: Caller, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let v = view(&state, &caller, evidence_id(&id)?).await?;
    let sha = Sha256::parse(&v.sha256)?;
    let bytes = state.artifacts.get_verified(&sha).await?;
    let disposition = match &v.filename {
        Some(f) => format!("attachment; filename=\"{}\"", f.replace(['"', '\\'], "_")),
        None => "attachment".to_owned(),
    };
    // The media type is the client's word: served as an attachment and never sniffed.
    let headers = [
        (header::CONTENT_TYPE, v.content_type.clone()),
        (header::CONTENT_DISPOSITION, disposition),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::HeaderName::from_static("x-artifact-sha256"), v.sha256),
    ];
    let mut response = bytes.into_response();
    for (name, value) in headers {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupersedeBody {
    /// The evidence that replaces this one (same tenant).
    pub by: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Marks evidence superseded by newer evidence (a new event; nothing is edited).
#[utoipa::path(post, path = "/evidence/{id}/supersede", tag = "compliance",
    params(("id" = Uuid, Path, description = "The evidence id")), request_body = SupersedeBody,
    responses((status = 200, description = "Superseded", body = EvidenceView)))]
pub async fn supersede(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SupersedeBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = evidence_id(&id)?;
    let by = EvidenceId::from_uuid(body.by);
    let reason = body.reason.as_deref().filter(|r| !r.trim().is_empty()).map(Reason::parse).transpose()?;
    let command = EvidenceCommand::Supersede { tenant_id: caller.tenant_id, by, actor: caller.subject.clone(), reason };
    run(&state, &caller, id, command).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// Withdraws evidence (a new event; the record and its artifact stay for the audit trail).
#[utoipa::path(post, path = "/evidence/{id}/withdraw", tag = "compliance",
    params(("id" = Uuid, Path, description = "The evidence id")), request_body = WithdrawBody,
    responses((status = 200, description = "Withdrawn", body = EvidenceView)))]
pub async fn withdraw(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<WithdrawBody>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let id = evidence_id(&id)?;
    let command =
        EvidenceCommand::Withdraw { tenant_id: caller.tenant_id, actor: caller.subject.clone(), reason: Reason::parse(&body.reason)? };
    run(&state, &caller, id, command).await
}
