//! The offline verifier: recomputes every hash, the chain, the Merkle root of every
//! checkpoint and their signatures, and the consistency between successive checkpoints.
//! It needs no database and no service configuration: an export and trusted public keys.

use crate::checkpoint::{verify_checkpoint, VerifierKey};
use crate::export::{decode_hashes, ExportCheckpoint, ExportEntry, ProofFile};
use crate::format::{leaf_hash, GENESIS_HASH};
use crate::merkle::{verify_consistency, verify_inclusion, MerkleTree};
use crate::LedgerEntry;

/// Why verification failed, and where: the first offending seq (or checkpoint size).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq}: {reason}")]
pub struct VerifyError {
    pub seq: i64,
    pub reason: String,
}

fn fail(seq: i64, reason: impl Into<String>) -> VerifyError {
    VerifyError { seq, reason: reason.into() }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub checkpoints: u64,
    pub head_hash: [u8; 32],
    pub root: [u8; 32],
    pub largest_checkpoint: u64,
}

impl std::fmt::Display for Summary {
    /// The one-line report of `ledger verify`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OK: {} entries, {} signed checkpoints (largest covers {}), head hash {}, root {}",
            self.entries,
            self.checkpoints,
            self.largest_checkpoint,
            hex::encode(self.head_hash),
            hex::encode(self.root)
        )
    }
}

/// What the verifier needs of one entry, computed from the entry alone (so that many can
/// be computed at once, on several threads, and fed in seq order): its seq, its link, its
/// recorded hash, whether that hash is its contents', and its Merkle leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryDigest {
    pub seq: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub hash_matches: bool,
    pub leaf: [u8; 32],
}

impl EntryDigest {
    fn of_encoded(seq: i64, prev_hash: [u8; 32], hash: [u8; 32], encoded: &[u8]) -> Self {
        Self { seq, prev_hash, hash, hash_matches: crate::format::entry_hash(encoded) == hash, leaf: leaf_hash(encoded) }
    }

    /// An export line's entry, hashed from its fields as given (no re-formatting).
    pub fn of_export(e: &ExportEntry) -> Result<Self, VerifyError> {
        let hex32 = |field: &str, text: &str| -> Result<[u8; 32], VerifyError> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(text, &mut out).map_err(|_| fail(e.seq, format!("{field} is not 32 bytes of hex")))?;
            Ok(out)
        };
        let (prev_hash, hash) = (hex32("prev_hash", &e.prev_hash)?, hex32("hash", &e.hash)?);
        let recorded_at = chrono::TimeZone::timestamp_micros(&chrono::Utc, e.recorded_at_micros)
            .single()
            .ok_or_else(|| fail(e.seq, "recorded_at_micros is out of range"))?;
        let (seq, aggregate_seq) = match (u64::try_from(e.seq), u64::try_from(e.aggregate_seq)) {
            (Ok(s), Ok(a)) => (s, a),
            _ => return Err(fail(e.seq, "negative seq")),
        };
        let (content_hash, leaf) = crate::format::entry_and_leaf_hash(&crate::format::EntryFields {
            seq,
            tenant_id: &e.tenant_id,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            aggregate_seq,
            event_type: &e.event_type,
            event_version: &e.event_version,
            payload: &e.payload,
            actor: &e.actor,
            request_id: e.request_id.as_deref(),
            trace_id: e.trace_id.as_deref(),
            causation_id: e.causation_id.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            recorded_at,
            prev_hash: &prev_hash,
        });
        Ok(Self { seq: e.seq, prev_hash, hash, hash_matches: content_hash == hash, leaf })
    }
}

/// Feeds entries in seq order and checkpoints in any order, then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<VerifierKey>,
    tree: MerkleTree,
    /// Hash of every entry so far (index = seq - 1), to diagnose inserted entries.
    hashes: Vec<[u8; 32]>,
    checkpoints: Vec<(u64, [u8; 32], String)>,
    origin: Option<String>,
}

impl Verifier {
    pub fn new(keys: Vec<VerifierKey>) -> Self {
        Self { keys, tree: MerkleTree::new(), hashes: Vec::new(), checkpoints: Vec::new(), origin: None }
    }

    /// Expects the ledger to have exactly this origin in every checkpoint.
    pub fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }

    pub fn entries(&self) -> u64 {
        self.tree.size()
    }

    pub fn entry(&mut self, e: &LedgerEntry) -> Result<(), VerifyError> {
        self.digest(&EntryDigest::of_encoded(e.seq, e.prev_hash, e.hash, &e.encode()))
    }

    /// An export line's entry, hashed from its fields as given (no re-formatting).
    pub fn export_entry(&mut self, e: &ExportEntry) -> Result<(), VerifyError> {
        self.digest(&EntryDigest::of_export(e)?)
    }

    /// The next entry, from its digest: in seq order, linked to the previous one, its
    /// recorded hash that of its contents; then a leaf of the tree.
    pub fn digest(&mut self, d: &EntryDigest) -> Result<(), VerifyError> {
        let EntryDigest { seq, prev_hash, hash, hash_matches, leaf } = *d;
        let expected_seq = self.hashes.len() as i64 + 1;
        if seq != expected_seq {
            let why = if seq > expected_seq {
                format!("expected seq {expected_seq}, found {seq}: entries are missing")
            } else {
                format!("expected seq {expected_seq}, found {seq}: entries are out of order or duplicated")
            };
            return Err(fail(expected_seq, why));
        }
        let prev = self.hashes.last().copied().unwrap_or(GENESIS_HASH);
        if prev_hash != prev {
            // An entry inserted before this one leaves this one pointing past it.
            if self.hashes.len() >= 2 && prev_hash == self.hashes[self.hashes.len() - 2] {
                return Err(fail(
                    seq - 1,
                    "this entry is not part of the chain: the next entry links to the one before it (inserted entry)",
                ));
            }
            return Err(fail(seq, "prev_hash does not match the previous entry's hash (broken chain)"));
        }
        if !hash_matches {
            return Err(fail(seq, "hash does not match the entry's contents (altered entry)"));
        }
        self.tree.push(leaf);
        self.hashes.push(hash);
        Ok(())
    }

    /// Records a checkpoint; its signature is checked now, its root at [`finish`](Verifier::finish).
    pub fn checkpoint(&mut self, c: &ExportCheckpoint) -> Result<(), VerifyError> {
        self.note_at(&c.note, i64::try_from(c.tree_size).ok()).map(|_| ())
    }

    /// A signed checkpoint note, e.g. one an auditor kept from earlier.
    pub fn note(&mut self, note: &str) -> Result<u64, VerifyError> {
        self.note_at(note, None)
    }

    /// `tree_size`, when known from outside the note, names the checkpoint in errors
    /// (a tampered note's own size line cannot be trusted).
    fn note_at(&mut self, note: &str, tree_size: Option<i64>) -> Result<u64, VerifyError> {
        let size_hint = tree_size.or_else(|| note.lines().nth(1).and_then(|s| s.parse::<i64>().ok())).unwrap_or(0);
        let cp = verify_checkpoint(note, &self.keys).map_err(|e| fail(size_hint, format!("checkpoint at tree size {size_hint}: {e}")))?;
        if let Some(origin) = &self.origin {
            if &cp.origin != origin {
                return Err(fail(size_hint, format!("checkpoint origin {:?} is not {origin:?}", cp.origin)));
            }
        }
        self.checkpoints.push((cp.tree_size, cp.root, note.to_owned()));
        Ok(cp.tree_size)
    }

    /// Checks, as entries stream in, every checkpoint the tree has now reached (each is
    /// checked once). Returns how many checkpoints have been verified so far.
    pub fn verify_reached(&mut self) -> Result<u64, VerifyError> {
        self.checkpoints.sort_by_key(|c| c.0);
        let size = self.tree.size();
        let mut verified = 0;
        for (cp_size, root, _) in &self.checkpoints {
            if *cp_size > size {
                break;
            }
            let computed = self.tree.root(*cp_size).map_err(|e| fail(*cp_size as i64, e.to_string()))?;
            if &computed != root {
                return Err(fail(
                    *cp_size as i64,
                    format!("the Merkle root of the first {cp_size} entries does not match the signed checkpoint"),
                ));
            }
            verified += 1;
        }
        Ok(verified)
    }

    /// The hash of the last verified entry.
    pub fn head_hash(&self) -> [u8; 32] {
        self.hashes.last().copied().unwrap_or(GENESIS_HASH)
    }

    /// The hash of entry `seq`, if verified.
    pub fn hash_of(&self, seq: i64) -> Option<[u8; 32]> {
        usize::try_from(seq - 1).ok().and_then(|i| self.hashes.get(i)).copied()
    }

    pub fn finish(mut self) -> Result<Summary, VerifyError> {
        self.checkpoints.sort_by_key(|c| c.0);
        let size = self.tree.size();
        let mut previous: Option<(u64, [u8; 32])> = None;
        for (cp_size, root, _) in &self.checkpoints {
            if *cp_size > size {
                return Err(fail(
                    size as i64 + 1,
                    format!("the signed checkpoint at tree size {cp_size} covers entries that are missing: the log ends at seq {size} (truncated)"),
                ));
            }
            let computed = self.tree.root(*cp_size).map_err(|e| fail(*cp_size as i64, e.to_string()))?;
            if &computed != root {
                return Err(fail(
                    *cp_size as i64,
                    format!("the Merkle root of the first {cp_size} entries does not match the signed checkpoint"),
                ));
            }
            if let Some((p_size, p_root)) = previous {
                if p_size > 0 && p_size < *cp_size {
                    let proof = self.tree.consistency_proof(p_size, *cp_size).map_err(|e| fail(*cp_size as i64, e.to_string()))?;
                    if !verify_consistency(p_size, *cp_size, &p_root, root, &proof) {
                        return Err(fail(*cp_size as i64, format!("checkpoint {cp_size} is not consistent with checkpoint {p_size}")));
                    }
                } else if p_size == *cp_size && p_root != *root {
                    return Err(fail(*cp_size as i64, "two checkpoints of the same size disagree (fork)"));
                }
            }
            previous = Some((*cp_size, *root));
        }
        let root = self.tree.root(size).map_err(|e| fail(size as i64, e.to_string()))?;
        Ok(Summary {
            entries: size,
            checkpoints: self.checkpoints.len() as u64,
            head_hash: self.hashes.last().copied().unwrap_or(GENESIS_HASH),
            root,
            largest_checkpoint: self.checkpoints.last().map(|c| c.0).unwrap_or(0),
        })
    }
}

/// Checks a proof file offline. Returns a one-line description of what was proven.
pub fn verify_proof(proof: &ProofFile, keys: &[VerifierKey]) -> Result<String, VerifyError> {
    match proof {
        ProofFile::InclusionProof { entry, leaf_index, tree_size, inclusion_proof, checkpoint } => {
            let e = LedgerEntry::try_from(entry).map_err(|r| fail(entry.seq, r))?;
            let encoded = e.encode();
            if crate::format::entry_hash(&encoded) != e.hash {
                return Err(fail(entry.seq, "the entry's hash does not match its contents"));
            }
            if *leaf_index + 1 != entry.seq as u64 {
                return Err(fail(entry.seq, "leaf_index must be seq - 1"));
            }
            let cp = verify_checkpoint(checkpoint, keys).map_err(|err| fail(entry.seq, format!("checkpoint: {err}")))?;
            if cp.tree_size != *tree_size {
                return Err(fail(entry.seq, "tree_size differs from the checkpoint's"));
            }
            let path = decode_hashes("inclusion_proof", inclusion_proof).map_err(|r| fail(entry.seq, r))?;
            if !verify_inclusion(&leaf_hash(&encoded), *leaf_index, cp.tree_size, &path, &cp.root) {
                return Err(fail(entry.seq, "the inclusion proof does not lead to the checkpoint's root"));
            }
            Ok(format!("entry {} is included in the ledger of {} entries signed by {}", entry.seq, cp.tree_size, cp.signed_by))
        }
        ProofFile::ConsistencyProof { from_checkpoint, to_checkpoint, consistency_proof } => {
            let a = verify_checkpoint(from_checkpoint, keys).map_err(|e| fail(0, format!("from checkpoint: {e}")))?;
            let b = verify_checkpoint(to_checkpoint, keys).map_err(|e| fail(0, format!("to checkpoint: {e}")))?;
            let path = decode_hashes("consistency_proof", consistency_proof).map_err(|r| fail(b.tree_size as i64, r))?;
            if a.origin != b.origin || !verify_consistency(a.tree_size, b.tree_size, &a.root, &b.root, &path) {
                return Err(fail(
                    b.tree_size as i64,
                    format!("the ledger of {} entries does not extend the ledger of {}", b.tree_size, a.tree_size),
                ));
            }
            Ok(format!("the ledger of {} entries extends the ledger of {} entries", b.tree_size, a.tree_size))
        }
    }
}
