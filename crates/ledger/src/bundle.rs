//! The auditor's evidence bundle: what `GET /api/v1/compliance/workflows/{id}/evidence-bundle`
//! returns and what `governance-engine ledger verify-bundle` checks offline.
//!
//! For every evidence record the bundle holds its artifact hash, its ledger seq and a
//! proof file (the `EvidenceSubmitted` entry, its inclusion proof and one signed
//! checkpoint). Verifying it needs the bundle, the ledger's verifier key and, optionally,
//! the artifacts: each proof must verify, its entry must be the submission of that
//! evidence with that hash, and each artifact must hash to it.
//!
//! For every roll-up of *system evidence* (a policy's decisions on one UTC day, counted for
//! a control) it holds proofs of the decisions it summarises: all of them, or a sample
//! that includes the first and the last. Each proof must verify against the same
//! checkpoint, and its entry must be a `PolicyEvaluated` of that policy, recorded on that
//! day, within the roll-up's seq range; an unsampled roll-up must prove every decision.

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
    /// Roll-ups of policy decisions that count for the workflow (absent in bundles made
    /// before system evidence existed).
    #[serde(default)]
    pub system_evidence: Vec<SystemEvidenceItem>,
}

/// One roll-up of system evidence, with proofs of the decisions it summarises.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemEvidenceItem {
    /// Stable across rebuilds: derived from tenant, policy, control and day.
    pub evidence_id: Uuid,
    /// Always `policy_evaluation`.
    pub kind: String,
    pub policy_id: Uuid,
    /// The CSF 2.0 control the policy's versions check.
    pub control_id: String,
    /// The UTC day of the decisions' ledger time.
    pub day: chrono::NaiveDate,
    pub allowed: i64,
    pub denied: i64,
    pub undefined: i64,
    /// The policy versions whose decisions count, ascending.
    pub versions: Vec<i32>,
    /// The ledger seqs of the first and last counted decision.
    pub min_seq: i64,
    pub max_seq: i64,
    /// `pass` or `fail`.
    pub outcome: String,
    /// True when `proofs` is a sample (the first, the last and evenly spaced ones).
    pub sampled: bool,
    pub proofs: Vec<DecisionProof>,
}

impl SystemEvidenceItem {
    /// How many decisions the roll-up counts.
    pub fn decisions(&self) -> i64 {
        self.allowed.saturating_add(self.denied).saturating_add(self.undefined)
    }
}

/// One proven decision of a roll-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionProof {
    pub ledger_seq: i64,
    /// The decision's `PolicyEvaluated` entry, its inclusion proof and the bundle's checkpoint.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub proof: ProofFile,
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
    let mut decisions = 0;
    for item in &bundle.system_evidence {
        decisions += verify_system_evidence(item, bundle.tree_size, keys)?;
    }
    let artifacts = if artifacts.is_some() { format!(", {checked_files} artifacts match their recorded hashes") } else { String::new() };
    let system = if bundle.system_evidence.is_empty() {
        String::new()
    } else {
        format!(", and {} system-evidence roll-ups with {decisions} proven decisions", bundle.system_evidence.len())
    };
    Ok(format!(
        "OK: {} evidence records{system} of workflow {} are in the ledger of {} entries{artifacts}",
        bundle.items.len(),
        bundle.workflow_id,
        bundle.tree_size
    ))
}

/// Checks one roll-up's proofs; returns how many decisions they prove.
fn verify_system_evidence(item: &SystemEvidenceItem, tree_size: i64, keys: &[VerifierKey]) -> Result<usize, VerifyError> {
    let id = item.evidence_id;
    let seqs: Vec<i64> = item.proofs.iter().map(|p| p.ledger_seq).collect();
    let complete = !item.sampled && i64::try_from(seqs.len()).unwrap_or(i64::MAX) == item.decisions();
    let ends = seqs.first() == Some(&item.min_seq) && seqs.last() == Some(&item.max_seq);
    if !(complete || item.sampled) || !ends || seqs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(fail(
            item.min_seq,
            format!(
                "system evidence {id}: the proofs must cover its {} decisions, or a sample from the first to the last",
                item.decisions()
            ),
        ));
    }
    for p in &item.proofs {
        let seq = p.ledger_seq;
        verify_proof(&p.proof, keys)?;
        let ProofFile::InclusionProof { entry, tree_size: proven_size, .. } = &p.proof else {
            return Err(fail(seq, format!("system evidence {id}: expected an inclusion proof")));
        };
        if *proven_size != u64::try_from(tree_size).unwrap_or(0) {
            return Err(fail(seq, format!("system evidence {id}: proved against another checkpoint")));
        }
        let payload: serde_json::Value =
            serde_json::from_str(&entry.payload).map_err(|e| fail(seq, format!("system evidence {id}: payload: {e}")))?;
        let day = chrono::DateTime::from_timestamp_micros(entry.recorded_at_micros).map(|t| t.date_naive());
        let is_decision = entry.seq == seq
            && entry.aggregate_type == "PolicyDecision"
            && entry.event_type == "PolicyEvaluated"
            && payload["policy_id"] == item.policy_id.to_string()
            && (item.min_seq..=item.max_seq).contains(&seq)
            && day == Some(item.day);
        if !is_decision {
            return Err(fail(
                seq,
                format!("system evidence {id}: the proven entry is not a decision of policy {} on {}", item.policy_id, item.day),
            ));
        }
    }
    Ok(item.proofs.len())
}
