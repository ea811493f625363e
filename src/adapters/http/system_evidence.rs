//! System evidence over HTTP: `GET /api/v1/system-evidence` (the tenant's roll-ups of
//! decisions of policies that check controls, kind `policy_evaluation`) and the auditor's
//! workflow evidence bundle, which proves both the uploaded records and the decisions the
//! system evidence counting for the workflow summarises.
//!
//! A bundle proves every decision of a roll-up of at most
//! [`aggregates::compliance::system_evidence::PROOF_SAMPLE`] decisions, and otherwise a
//! deterministic sample (first, last, evenly spaced: `proof_sample`); all proofs lead to
//! the bundle's one signed checkpoint.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use uuid::Uuid;

use aggregates::compliance::system_evidence::PROOF_SAMPLE;
use aggregates::compliance::{proof_sample, Outcome};
use ledger::bundle::{BundleItem, DecisionProof, EvidenceBundle, SystemEvidenceItem};
use ledger::export::{ExportEntry, ProofFile};
use projections::system_evidence::{self as read, SystemEvidenceFilter, SystemEvidenceView};
use projections::{Page, SortOrder};

use super::extract::{ApiPath, Caller};
use super::paging::{Listed, PageParams};
use super::policies::wait_min_seq;
use super::regulations::{csf_control, regulation, tenant_links, READERS};
use super::workflows::workflow_id;
use super::SharedState;
use crate::application::compliance::{system_evidence_counts, RegulationIndex};
use crate::error::{ApiError, ErrorCode};

/// The only sort key of the system evidence list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvidenceSort {
    /// The roll-up's day (then policy and control, in the same direction).
    Day,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `day` (the only key); default order `desc`.
    #[param(inline)]
    pub sort_by: Option<SystemEvidenceSort>,
    /// Only the roll-ups of this policy.
    pub policy_id: Option<Uuid>,
    /// Only the roll-ups of this CSF 2.0 control.
    pub control: Option<String>,
    /// Only days from this one.
    pub from: Option<NaiveDate>,
    /// Only days up to this one (included).
    pub to: Option<NaiveDate>,
    /// Only `pass` or only `fail`.
    #[param(pattern = "^(pass|fail)$")]
    pub outcome: Option<String>,
    /// Wait (up to the read-your-writes bound) until the read models have applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// Lists the tenant's system evidence: per policy, checked control and UTC day, the
/// decisions counted (allowed, denied, undefined), the versions, the ledger seq range and
/// the outcome. Newest day first.
#[utoipa::path(get, path = "/system-evidence", tag = "compliance", operation_id = "list_system_evidence", params(PageParams, ListParams),
    responses((status = 200, description = "One page", body = Page<SystemEvidenceView>)))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    Listed { page, filter: p }: Listed<ListParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let control_id = p.control.as_deref().map(csf_control).transpose()?.map(|(id, _)| id.as_str().to_owned());
    let outcome = match p.outcome.as_deref() {
        Some(o) => match Outcome::parse(o) {
            Some(x @ (Outcome::Pass | Outcome::Fail)) => Some(x.as_str().to_owned()),
            _ => return Err(ApiError::validation(format!("system evidence outcome is pass or fail, not {o:?}"))),
        },
        None => None,
    };
    if let (Some(from), Some(to)) = (p.from, p.to) {
        if from > to {
            return Err(ApiError::validation("from is after to"));
        }
    }
    wait_min_seq(&state, p.min_seq).await;
    let filter = SystemEvidenceFilter { policy_id: p.policy_id, control_id, from: p.from, to: p.to, outcome };
    let mut tx = state.tenant_tx(&caller).await?;
    Ok(Json(read::page(&mut tx, &filter, (page.page, page.page_size), page.order_or(SortOrder::Desc)).await?).into_response())
}

/// Inclusion proofs computed at once for a bundle (each reads the ledger's stored tree nodes
/// and, for its smaller subtrees, the tiles of entries the notary does not hold yet).
const PROOF_CONCURRENCY: usize = 8;

fn proof_file(p: &crate::adapters::ledger::notary::InclusionProof, seq: i64, tree_size: i64) -> ProofFile {
    ProofFile::InclusionProof {
        entry: ExportEntry::from(&p.entry),
        leaf_index: u64::try_from(seq - 1).unwrap_or(0),
        tree_size: u64::try_from(tree_size).unwrap_or(0),
        inclusion_proof: p.proof.iter().map(hex::encode).collect(),
        checkpoint: p.checkpoint.note.clone(),
    }
}

/// Every evidence record of a workflow with its artifact hash, ledger seq and an inclusion
/// proof, and the system evidence that counts for it with proofs of its decisions (all
/// when at most 20, else a sample), all against one signed checkpoint.
#[utoipa::path(get, path = "/compliance/workflows/{id}/evidence-bundle", tag = "compliance",
    params(("id" = Uuid, Path, description = "The workflow id")), responses((status = 200, description = "The bundle", body = EvidenceBundle)))]
pub async fn bundle(State(state): State<SharedState>, caller: Caller, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = workflow_id(&id)?;
    let mut tx = state.tenant_tx(&caller).await?;
    let wf = projections::compliance::workflow(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("workflow"))?;
    let evidence = projections::evidence::of_workflow(&mut tx, id.as_uuid()).await?;
    let code = regulation(&wf.regulation)?.code;
    let index = RegulationIndex::new(code, &tenant_links(&mut tx, Some(code)).await?);
    let system: Vec<SystemEvidenceView> = read::of_days(&mut tx, wf.audit_period_start, wf.audit_period_end)
        .await?
        .into_iter()
        .filter(|v| system_evidence_counts(&wf, &index, v))
        .collect();
    let mut sampled = Vec::with_capacity(system.len());
    for v in system {
        let n = u64::try_from(v.decisions()).unwrap_or(0);
        let seqs = read::decision_seqs_at(&mut tx, &v, &proof_sample(n, PROOF_SAMPLE)).await?;
        sampled.push((v, seqs));
    }
    drop(tx);
    let max = evidence.iter().map(|e| e.ledger_seq).chain(sampled.iter().flat_map(|(_, s)| s.iter().copied())).max();
    let Some(max) = max else {
        let latest = state.notary.latest().await.map_err(ApiError::from)?;
        let (checkpoint, tree_size) = latest.map(|c| (c.note.clone(), c.tree_size)).unwrap_or_default();
        let bundle = EvidenceBundle {
            workflow_id: id.as_uuid(),
            checkpoint,
            tree_size,
            verifier_key: state.notary.signer().verifier_key(),
            items: vec![],
            system_evidence: vec![],
        };
        return Ok(Json(bundle).into_response());
    };
    let anchor = state.notary.inclusion(max, None).await?;
    let tree_size = anchor.checkpoint.tree_size;
    // Every seq to prove (a decision may be counted for several controls: proven once),
    // PROOF_CONCURRENCY at a time, each against the anchor's checkpoint.
    let wanted: BTreeSet<i64> = evidence.iter().map(|e| e.ledger_seq).chain(sampled.iter().flat_map(|(_, s)| s.iter().copied())).collect();
    let notary = &state.notary;
    let proven: Vec<(i64, ProofFile)> = futures::stream::iter(wanted)
        .map(|seq| async move { notary.inclusion(seq, Some(tree_size)).await.map(|p| (seq, proof_file(&p, seq, tree_size))) })
        .buffered(PROOF_CONCURRENCY)
        .try_collect()
        .await?;
    let proofs: HashMap<i64, ProofFile> = proven.into_iter().collect();
    let proof_of = |seq: i64| proofs.get(&seq).cloned().ok_or_else(|| ApiError::new(ErrorCode::Internal, format!("no proof of seq {seq}")));
    let mut items = Vec::with_capacity(evidence.len());
    for e in evidence {
        let proof = proof_of(e.ledger_seq)?;
        items.push(BundleItem { evidence_id: e.evidence_id, status: e.status, sha256: e.sha256, ledger_seq: e.ledger_seq, proof });
    }
    let mut system_evidence = Vec::with_capacity(sampled.len());
    for (v, seqs) in sampled {
        let proofs =
            seqs.into_iter().map(|seq| Ok(DecisionProof { ledger_seq: seq, proof: proof_of(seq)? })).collect::<Result<_, ApiError>>()?;
        let sampled = usize::try_from(v.decisions()).unwrap_or(usize::MAX) > PROOF_SAMPLE;
        system_evidence.push(SystemEvidenceItem {
            evidence_id: v.evidence_id,
            kind: v.kind,
            policy_id: v.policy_id,
            control_id: v.control_id,
            day: v.day,
            allowed: v.allowed,
            denied: v.denied,
            undefined: v.undefined,
            versions: v.versions,
            min_seq: v.min_seq,
            max_seq: v.max_seq,
            outcome: v.outcome,
            sampled,
            proofs,
        });
    }
    let bundle = EvidenceBundle {
        workflow_id: id.as_uuid(),
        checkpoint: anchor.checkpoint.note,
        tree_size,
        verifier_key: state.notary.signer().verifier_key(),
        items,
        system_evidence,
    };
    Ok(Json(bundle).into_response())
}
