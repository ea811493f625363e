//! `POST /api/v1/policies/{id}/versions/{v}/replay` and `GET …/replays/{replay_id}`:
//! replays of recorded decisions against a version, before it is activated
//! ([`crate::application::replay`]).
//!
//! A replay runs in the background; the POST waits a short while and answers 200 with the
//! report when it finished by then, or 202 with its progress. A finished replay is read
//! back from its `PolicyReplayed` fact in the ledger, so any instance answers for it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use aggregates::facts::{PolicyReplayed, ReplayReport};
use aggregates::{PolicyId, ReplayId};

use super::extract::{ApiJson, ApiPath, Caller};
use super::SharedState;
use crate::adapters::auth::Role;
use crate::application::replay::{Job, JobState, ReplayError, ReplaySpec};
use crate::error::{ApiError, ErrorCode};

const WRITERS: &[Role] = &[Role::Admin, Role::PolicyAuthor];
/// How long the POST waits for a replay to finish before answering 202.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::PolicyNotFound => ApiError::not_found("policy"),
            ReplayError::ReplayNotFound => ApiError::not_found("replay"),
            ReplayError::UnknownVersion { .. } | ReplayError::Invalid(_) => ApiError::validation(e.to_string()),
            ReplayError::Busy(m) => ApiError::new(ErrorCode::RateLimited, m).retry_after(1),
            ReplayError::Engine(engine) => engine.into(),
            ReplayError::Ledger(ledger) => ledger.into(),
            ReplayError::ReadModel(_) | ReplayError::Decode { .. } => ApiError::new(ErrorCode::Internal, e.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Replay decisions decided at or after this instant (RFC 3339).
    pub from: DateTime<Utc>,
    /// … and at or before this one.
    pub to: DateTime<Utc>,
    /// At most this many decisions (the oldest first), 1 to 1,000,000.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Decisions read so far, of those the replay reads in all.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub read: u64,
    pub total: u64,
}

/// A replay: running (with progress), failed, or done (with its report, as the ledger
/// records it; `report_sha256` is the SHA-256 of the report's canonical JSON).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayView {
    pub replay_id: Uuid,
    pub policy_id: Uuid,
    pub version: u32,
    /// `running`, `done` or `failed`.
    pub status: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: Option<u32>,
    /// Decisions recorded after this ledger seq were not considered.
    pub through_seq: i64,
    pub progress: Progress,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// SHA-256 of the seqs of the decisions read (ascending, decimal, one per line).
    pub decisions_sha256: Option<String>,
    pub report: Option<ReplayReport>,
    pub report_sha256: Option<String>,
    /// Where the replay's record sits in the ledger.
    pub ledger_seq: Option<i64>,
    /// Why a failed replay failed.
    pub error: Option<String>,
}

fn done(seq: i64, f: PolicyReplayed) -> ReplayView {
    ReplayView {
        replay_id: f.replay_id.as_uuid(),
        policy_id: f.policy_id.as_uuid(),
        version: f.version,
        status: "done",
        from: f.from,
        to: f.to,
        limit: f.limit,
        through_seq: f.through_seq,
        progress: Progress { read: f.report.read, total: f.report.read },
        first_seq: f.first_seq,
        last_seq: f.last_seq,
        decisions_sha256: Some(f.decisions_sha256.as_str().to_owned()),
        report: Some(f.report),
        report_sha256: Some(f.report_sha256.as_str().to_owned()),
        ledger_seq: Some(seq),
        error: None,
    }
}

fn view(id: ReplayId, job: &Job) -> ReplayView {
    let state = job.state.borrow().clone();
    if let JobState::Done { seq, fact } = state {
        return done(seq, *fact);
    }
    let s = &job.spec;
    let (status, error) = match state {
        JobState::Failed(e) => ("failed", Some(e.to_string())),
        _ => ("running", None),
    };
    ReplayView {
        replay_id: id.as_uuid(),
        policy_id: s.policy_id.as_uuid(),
        version: s.version,
        status,
        from: s.from,
        to: s.to,
        limit: s.limit,
        through_seq: job.through_seq,
        progress: Progress { read: job.read.load(Ordering::Relaxed), total: job.total },
        first_seq: None,
        last_seq: None,
        decisions_sha256: None,
        report: None,
        report_sha256: None,
        ledger_seq: None,
        error,
    }
}

/// Re-evaluates the policy's recorded decisions in the time range against version `v`
/// (with the evaluation's sandbox and deadline; no decision record is written) and
/// reports what would change, by kind, with examples and the controls affected. The
/// report is recorded in the ledger; `activate` may name the replay.
#[utoipa::path(post, path = "/policies/{id}/versions/{v}/replay", tag = "policies", operation_id = "replay_policy_version",
    params(("id" = uuid::Uuid, Path, description = "The policy id"), ("v" = u32, Path, description = "The version to replay against")),
    request_body = ReplayRequest,
    responses((status = 200, description = "Done", body = ReplayView), (status = 202, description = "Running; poll GET /policies/{id}/replays/{replay_id}", body = ReplayView)))]
pub async fn replay(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath((id, v)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let policy_id = PolicyId::parse(&id).map_err(|_| ApiError::not_found("policy"))?;
    let version: u32 = v.parse().map_err(|_| ApiError::validation("the version must be a positive integer"))?;
    let spec = ReplaySpec {
        tenant: caller.tenant_id,
        policy_id,
        version,
        from: req.from,
        to: req.to,
        limit: req.limit,
        actor: caller.subject.to_string(),
        request_id: Some(caller.request_id.clone()),
    };
    let (replay_id, job) = state.replays.start(spec).await?;
    let mut rx = job.state.subscribe();
    let _ = tokio::time::timeout(ANSWER_WITHIN, rx.wait_for(|s| !matches!(s, JobState::Running))).await;
    let view = view(replay_id, &job);
    let status = match view.status {
        "running" => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(view)).into_response())
}

/// Where a replay stands: its progress while it runs, its report once done.
#[utoipa::path(get, path = "/policies/{id}/replays/{replay_id}", tag = "policies", operation_id = "get_policy_replay",
    params(("id" = uuid::Uuid, Path, description = "The policy id"), ("replay_id" = uuid::Uuid, Path, description = "The replay id")),
    responses((status = 200, description = "The replay", body = ReplayView)))]
pub async fn get_replay(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath((id, replay_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(super::policies::READERS)?;
    let policy_id = PolicyId::parse(&id).map_err(|_| ApiError::not_found("replay"))?;
    let replay_id = ReplayId::parse(&replay_id).map_err(|_| ApiError::not_found("replay"))?;
    let found = match state.replays.job(caller.tenant_id, replay_id) {
        Some(job) => view(replay_id, &job),
        None => match state.replays.recorded(caller.tenant_id, replay_id).await? {
            Some((seq, fact)) => done(seq, fact),
            None => return Err(ReplayError::ReplayNotFound.into()),
        },
    };
    if found.policy_id != policy_id.as_uuid() {
        return Err(ReplayError::ReplayNotFound.into());
    }
    Ok(Json(found).into_response())
}
