//! `/api/v1/ledger`: the verifier key, signed checkpoints and proofs.
//!
//! Proofs are tenant-scoped like everything else: a caller gets the inclusion proof of
//! its own tenant's entries only (another tenant's seq answers 404). Checkpoints and
//! consistency proofs carry only hashes and are the same for every tenant.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledger::export::{ExportCheckpoint, ExportEntry, ProofFile};
use serde::Deserialize;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::SharedState;
use crate::adapters::auth::Role;
use crate::adapters::ledger::notary::NotaryError;
use crate::error::{ApiError, ErrorCode};

const PROOF_READERS: &[Role] = &[Role::Admin, Role::Auditor, Role::ComplianceOfficer, Role::PolicyAuthor];
const CHECKPOINTERS: &[Role] = &[Role::Admin, Role::Auditor];
/// Who may export the tenant's ledger entries.
const EXPORTERS: &[Role] = &[Role::Admin, Role::Auditor, Role::ComplianceOfficer];

impl From<NotaryError> for ApiError {
    fn from(e: NotaryError) -> Self {
        match e {
            NotaryError::Ledger(l) => l.into(),
            // A node the proof needs is not stored: the service's fault, not the caller's.
            NotaryError::Proof(p @ ledger::merkle::ProofError::MissingNode { .. }) => {
                ApiError::new(ErrorCode::LedgerUnavailable, p.to_string())
            }
            NotaryError::Proof(p) => ApiError::validation(p.to_string()),
            NotaryError::Empty => ApiError::new(ErrorCode::Conflict, "the ledger is empty; there is nothing to checkpoint"),
            NotaryError::NoCheckpoint(n) => ApiError::not_found(&format!("checkpoint at tree size {n}")),
            NotaryError::NoEntry(_) => ApiError::not_found("ledger entry"),
            NotaryError::Unverified(n) => ApiError::not_found(&format!("verifiable checkpoint at tree size {n}")),
        }
    }
}

fn hex_all(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// The checkpoint verifier key, as text, in the C2SP signed-note format.
/// The ledger's note verifier key (C2SP signed-note format), for offline verification.
#[utoipa::path(get, path = "/ledger/public-key", tag = "ledger", responses((status = 200, description = "`<name>+<key id>+<base64 key>`", content_type = "text/plain", body = String)))]
pub async fn public_key(State(state): State<SharedState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&Role::ALL)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", state.notary.signer().verifier_key())).into_response())
}

/// The newest signed checkpoint.
#[utoipa::path(get, path = "/ledger/checkpoints/latest", tag = "ledger", responses((status = 200, description = "The checkpoint", body = ExportCheckpoint)))]
pub async fn latest_checkpoint(State(state): State<SharedState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&Role::ALL)?;
    let latest = state.notary.latest().await.map_err(ApiError::from)?.ok_or_else(|| ApiError::not_found("checkpoint"))?;
    Ok(Json(latest.to_export()).into_response())
}

/// Signs a checkpoint over the whole ledger now.
#[utoipa::path(post, path = "/ledger/checkpoints", tag = "ledger", responses((status = 201, description = "The new checkpoint", body = ExportCheckpoint)))]
pub async fn create_checkpoint(State(state): State<SharedState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(CHECKPOINTERS)?;
    let cp = state.notary.checkpoint_now().await?;
    Ok((StatusCode::CREATED, Json(cp.to_export())).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    /// Prove against the checkpoint of this size (default: the newest checkpoint).
    #[param(minimum = 1)]
    pub tree_size: Option<i64>,
}

/// An inclusion proof of one of the tenant's entries against a signed checkpoint.
#[utoipa::path(get, path = "/ledger/entries/{seq}/proof", tag = "ledger",
    params(("seq" = i64, Path, minimum = 1, description = "The entry's ledger seq"), ProofParams), responses((status = 200, description = "A proof file", body = ProofFile)))]
pub async fn inclusion_proof(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(seq): ApiPath<i64>,
    ApiQuery(p): ApiQuery<ProofParams>,
) -> Result<Response, ApiError> {
    caller.require(PROOF_READERS)?;
    if seq < 1 {
        return Err(ApiError::not_found("ledger entry"));
    }
    // Check the owner before doing any proof work, so a foreign seq costs nothing.
    let entry = state
        .ledger
        .entry(seq)
        .await?
        .filter(|e| e.tenant_id == caller.tenant_id.as_uuid())
        .ok_or_else(|| ApiError::not_found("ledger entry"))?;
    if let Some(n) = p.tree_size {
        if n < seq {
            return Err(ApiError::validation(format!("tree_size {n} does not contain entry {seq}")));
        }
    }
    let proof = state.notary.inclusion(entry.seq, p.tree_size).await?;
    let file = ProofFile::InclusionProof {
        entry: ExportEntry::from(&proof.entry),
        leaf_index: u64::try_from(seq - 1).unwrap_or(0),
        tree_size: u64::try_from(proof.checkpoint.tree_size).unwrap_or(0),
        inclusion_proof: hex_all(&proof.proof),
        checkpoint: proof.checkpoint.note,
    };
    Ok(Json(file).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Entries after this seq (default 0: from the start).
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// At most this many entries (1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One page of a tenant's ledger export.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TenantExport {
    /// The tenant's entries in seq order, every hashed field included (docs/ledger-format.md).
    pub items: Vec<ExportEntry>,
    /// Pass as `after_seq` for the next page; absent on the last page.
    pub next_after_seq: Option<i64>,
}

/// The caller's tenant's ledger entries, a page at a time (keyset on seq). The chain
/// links entries of all tenants, so a tenant's entries are proved one by one with
/// `/ledger/entries/{seq}/proof`; whole-ledger verification is the reader-role CLI.
#[utoipa::path(get, path = "/ledger/entries", tag = "ledger", params(ExportParams),
    responses((status = 200, description = "One page of entries", body = TenantExport)))]
pub async fn export(State(state): State<SharedState>, caller: Caller, ApiQuery(p): ApiQuery<ExportParams>) -> Result<Response, ApiError> {
    caller.require(EXPORTERS)?;
    let after = p.after_seq.unwrap_or(0);
    let limit = p.limit.unwrap_or(1000);
    if after < 0 || !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("expected after_seq >= 0 and limit from 1 to 1000"));
    }
    let entries = state.ledger.tenant_entries_after(caller.tenant_id.as_uuid(), after, limit).await?;
    let next_after_seq = if entries.len() as i64 == limit { entries.last().map(|e| e.seq) } else { None };
    Ok(Json(TenantExport { items: entries.iter().map(ExportEntry::from).collect(), next_after_seq }).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The older checkpoint's tree size.
    #[param(minimum = 1)]
    pub from: i64,
    /// The newer checkpoint's tree size.
    #[param(minimum = 1)]
    pub to: i64,
}

/// A consistency proof between two signed checkpoints.
#[utoipa::path(get, path = "/ledger/consistency", tag = "ledger", params(ConsistencyParams), responses((status = 200, description = "A proof file", body = ProofFile)))]
pub async fn consistency(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<ConsistencyParams>,
) -> Result<Response, ApiError> {
    caller.require(PROOF_READERS)?;
    if p.from < 1 || p.to < p.from {
        return Err(ApiError::invalid("expected 1 <= from <= to"));
    }
    let (a, b, proof) = state.notary.consistency(p.from, p.to).await?;
    let file = ProofFile::ConsistencyProof { from_checkpoint: a.note, to_checkpoint: b.note, consistency_proof: hex_all(&proof) };
    Ok(Json(file).into_response())
}
