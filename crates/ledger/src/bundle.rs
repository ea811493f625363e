//! The auditor's evidence bundle: what `GET /api/v1/compliance/workflows/{id}/evidence-bundle`
//! returns and what `governance-engine ledger verify-bundle` checks offline.
//!
//! For every evidence record the bundle holds its artifact hash, its ledger seq and a
//! proof file (the `EvidenceSubmitted` entry, its inclusion proof and one signed
//! checkpoint). Verifying it needs the bundle, the ledger's verifier key and, optionally,
//! the artifacts: each proof must verify, its entry must be the submission of that
//! evidence with that hash, and each artifact must hash to it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::checkpoint::VerifierKey;
use crate::export::ProofFile;
use crate::verify::{verify_proof, VerifyError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleItem {
    pub evidence_id: Uuid,
    pub status: String,
    pub sha256: String,
    pub ledger_seq: i64,
    /// A self-contained proof file: `governance-engine ledger verify-proof` checks it offline.
    pub proof: ProofFile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceBundle {
    pub workflow_id: Uuid,
    /// The signed checkpoint every proof leads to.
    pub checkpoint: String,
    pub tree_size: i64,
    /// The ledger's verifier key (auditors should pin theirs out of band).
    pub verifier_key: String,
    pub items: Vec<BundleItem>,
}

fn fail(seq: i64, reason: impl Into<String>) -> VerifyError {
    VerifyError { seq, reason: reason.into() }
}

/// Checks every item of a bundle with trusted `keys`; with `artifacts`, also that each
/// evidence's artifact (a file named by its evidence id or its SHA-256) hashes to the
/// recorded value. Returns a one-line summary.
pub fn verify_bundle(bundle: &EvidenceBundle, keys: &[VerifierKey], artifacts: Option<&Path>) -> Result<String, VerifyError> {
    let mut checked_files = 0;
    for item in &bundle.items {
        let seq = item.ledger_seq;
        verify_proof(&item.proof, keys)?;
        let ProofFile::InclusionProof { entry, tree_size, .. } = &item.proof else {
            return Err(fail(seq, format!("evidence {}: expected an inclusion proof", item.evidence_id)));
        };
        if *tree_size != u64::try_from(bundle.tree_size).unwrap_or(0) {
            return Err(fail(seq, format!("evidence {}: proved against another checkpoint", item.evidence_id)));
        }
        let payload: serde_json::Value =
            serde_json::from_str(&entry.payload).map_err(|e| fail(seq, format!("evidence {}: payload: {e}", item.evidence_id)))?;
        let recorded = payload["artifact"]["sha256"].as_str().unwrap_or_default();
        let is_submission = entry.seq == seq
            && entry.event_type == "EvidenceSubmitted"
            && entry.aggregate_id == item.evidence_id.to_string()
            && payload["evidence_id"] == item.evidence_id.to_string();
        if !is_submission || recorded != item.sha256 {
            return Err(fail(
                seq,
                format!("evidence {}: the proven entry is not its submission with hash {}", item.evidence_id, item.sha256),
            ));
        }
        if let Some(dir) = artifacts {
            let file = [item.evidence_id.to_string(), item.sha256.clone()].into_iter().map(|n| dir.join(n)).find(|p| p.is_file());
            let Some(file) = file else {
                return Err(fail(seq, format!("evidence {}: no artifact named by its id or hash in {}", item.evidence_id, dir.display())));
            };
            let bytes = std::fs::read(&file).map_err(|e| fail(seq, format!("{}: {e}", file.display())))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != item.sha256 {
                return Err(fail(
                    seq,
                    format!("evidence {}: {} hashes to {actual}, not the recorded {}", item.evidence_id, file.display(), item.sha256),
                ));
            }
            checked_files += 1;
        }
    }
    let artifacts = if artifacts.is_some() { format!(", {checked_files} artifacts match their recorded hashes") } else { String::new() };
    Ok(format!(
        "OK: {} evidence records of workflow {} are in the ledger of {} entries{artifacts}",
        bundle.items.len(),
        bundle.workflow_id,
        bundle.tree_size
    ))
}
