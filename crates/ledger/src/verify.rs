//! The offline verifier: recomputes every hash, the chain, the Merkle root of every
//! checkpoint and their signatures, and the consistency between successive checkpoints.
//! It needs no database and no service configuration: an export and trusted public keys.

use std::collections::BTreeMap;

use crate::checkpoint::{verify_checkpoint, VerifierKey};
use crate::export::{decode_hashes, ExportCheckpoint, ExportEntry, ProofFile};
use crate::format::{leaf_hash, GENESIS_HASH};
use crate::frontier::Frontier;
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
        let hex32 = |field: &str, text: &str| crate::export::hash32(field, text).map_err(|why| fail(e.seq, why));
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

/// Every leaf and entry hash, kept only by a verifier that follows a stream in which a
/// checkpoint may come after its entries and an old entry may come again
/// ([`Verifier::keeping_history`]).
#[derive(Debug, Default)]
struct History {
    tree: MerkleTree,
    hashes: Vec<[u8; 32]>,
}

/// Feeds entries in seq order and checkpoints, then [`Verifier::finish`]. A checkpoint is
/// checked when the entries reach its size: given before (an auditor's kept notes, the
/// database's checkpoints) or right after the entry that completes it (an export's
/// order), so the verifier keeps only the tree's right edge, O(log n) memory whatever the
/// ledger's size. With every leaf at hand, a checkpoint whose root is that of the first
/// `tree_size` entries is consistent with every earlier one.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<VerifierKey>,
    origin: Option<String>,
    /// The right edge of the tree of the entries verified so far.
    frontier: Frontier,
    /// The hashes of the last two entries (the chain's link, and an inserted entry's
    /// diagnosis); the genesis hash before there are any.
    last: [[u8; 32]; 2],
    history: Option<History>,
    /// Signed roots of checkpoints the entries have not reached yet, by tree size.
    pending: BTreeMap<u64, Vec<[u8; 32]>>,
    /// Checkpoints verified so far, and the largest size among them.
    verified: u64,
    largest: u64,
}

impl Verifier {
    pub fn new(keys: Vec<VerifierKey>) -> Self {
        Self {
            keys,
            origin: None,
            frontier: Frontier::new(),
            last: [GENESIS_HASH; 2],
            history: None,
            pending: BTreeMap::new(),
            verified: 0,
            largest: 0,
        }
    }

    /// Expects the ledger to have exactly this origin in every checkpoint.
    pub fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }

    /// Keeps every leaf and entry hash (memory that grows with the ledger), so that a
    /// checkpoint may come after its entries and [`Verifier::hash_of`] answers.
    pub fn keeping_history(mut self) -> Self {
        self.history = Some(History::default());
        self
    }

    pub fn entries(&self) -> u64 {
        self.frontier.size()
    }

    pub fn entry(&mut self, e: &LedgerEntry) -> Result<(), VerifyError> {
        self.digest(&EntryDigest::of_encoded(e.seq, e.prev_hash, e.hash, &e.encode()))
    }

    /// An export line's entry, hashed from its fields as given (no re-formatting).
    pub fn export_entry(&mut self, e: &ExportEntry) -> Result<(), VerifyError> {
        self.digest(&EntryDigest::of_export(e)?)
    }

    /// The next entry, from its digest: in seq order, linked to the previous one, its
    /// recorded hash that of its contents; then a leaf of the tree, and the checkpoints of
    /// the size it reaches are checked.
    pub fn digest(&mut self, d: &EntryDigest) -> Result<(), VerifyError> {
        let EntryDigest { seq, prev_hash, hash, hash_matches, leaf } = *d;
        let size = self.frontier.size();
        let expected_seq = size as i64 + 1;
        if seq != expected_seq {
            let why = if seq > expected_seq {
                format!("expected seq {expected_seq}, found {seq}: entries are missing")
            } else {
                format!("expected seq {expected_seq}, found {seq}: entries are out of order or duplicated")
            };
            return Err(fail(expected_seq, why));
        }
        if prev_hash != self.last[1] {
            // An entry inserted before this one leaves this one pointing past it.
            if size >= 2 && prev_hash == self.last[0] {
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
        self.frontier.append(leaf);
        self.last = [self.last[1], hash];
        if let Some(h) = &mut self.history {
            h.tree.push(leaf);
            h.hashes.push(hash);
        }
        match self.pending.remove(&(size + 1)) {
            Some(roots) => roots.iter().try_for_each(|root| self.check_root(size + 1, root)),
            None => Ok(()),
        }
    }

    /// Compares a signed root with the root of the first `size` entries (all verified).
    fn check_root(&mut self, size: u64, root: &[u8; 32]) -> Result<(), VerifyError> {
        let computed = if size == self.frontier.size() {
            self.frontier.root()
        } else {
            let late = || {
                fail(
                    size as i64,
                    format!(
                        "the checkpoint at tree size {size} comes after entry {}: an export lists each checkpoint right after the entry that completes it",
                        self.frontier.size()
                    ),
                )
            };
            let tree = self.history.as_ref().map(|h| &h.tree).ok_or_else(late)?;
            tree.root(size).map_err(|e| fail(size as i64, e.to_string()))?
        };
        if &computed != root {
            return Err(fail(size as i64, format!("the Merkle root of the first {size} entries does not match the signed checkpoint")));
        }
        self.verified += 1;
        self.largest = self.largest.max(size);
        Ok(())
    }

    /// Records a checkpoint: its signature is checked now, its root when the entries
    /// reach its size (at once, if they have).
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
        if cp.tree_size > self.frontier.size() {
            self.pending.entry(cp.tree_size).or_default().push(cp.root);
        } else {
            self.check_root(cp.tree_size, &cp.root)?;
        }
        Ok(cp.tree_size)
    }

    /// How many checkpoints have been verified so far (each when the entries reached it).
    pub fn verified_checkpoints(&self) -> u64 {
        self.verified
    }

    /// The hash of the last verified entry.
    pub fn head_hash(&self) -> [u8; 32] {
        self.last[1]
    }

    /// The hash of entry `seq`, if verified and the history is kept.
    pub fn hash_of(&self, seq: i64) -> Option<[u8; 32]> {
        let h = self.history.as_ref()?;
        usize::try_from(seq - 1).ok().and_then(|i| h.hashes.get(i)).copied()
    }

    pub fn finish(self) -> Result<Summary, VerifyError> {
        let size = self.frontier.size();
        if let Some(cp_size) = self.pending.keys().next() {
            return Err(fail(
                size as i64 + 1,
                format!(
                    "the signed checkpoint at tree size {cp_size} covers entries that are missing: the log ends at seq {size} (truncated)"
                ),
            ));
        }
        Ok(Summary {
            entries: size,
            checkpoints: self.verified,
            head_hash: self.last[1],
            root: self.frontier.root(),
            largest_checkpoint: self.largest,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NoteSigner;
    use crate::format::{entry_hash, leaf_hash};

    /// `n` chained digests and the tree of their leaves.
    fn chain(n: i64) -> (Vec<EntryDigest>, MerkleTree) {
        let (mut out, mut tree, mut prev) = (Vec::new(), MerkleTree::new(), GENESIS_HASH);
        for seq in 1..=n {
            let encoded = format!("entry {seq} after {}", hex::encode(prev)).into_bytes();
            let hash = entry_hash(&encoded);
            out.push(EntryDigest { seq, prev_hash: prev, hash, hash_matches: true, leaf: leaf_hash(&encoded) });
            tree.push(leaf_hash(&encoded));
            prev = hash;
        }
        (out, tree)
    }

    #[test]
    fn a_checkpoint_is_checked_when_the_entries_reach_it_and_a_late_one_needs_the_history() {
        let signer = NoteSigner::from_pem("t.example/log", &NoteSigner::generate_pem().unwrap()).unwrap();
        let key = || vec![VerifierKey::parse(&signer.verifier_key()).unwrap()];
        let (digests, tree) = chain(10);
        let note = |size: u64, root: &[u8; 32]| signer.sign_checkpoint("t.example/log", size, root);

        // Given first, checked at size 4: a wrong root names size 4 even though later
        // entries are fine.
        let mut v = Verifier::new(key());
        v.note(&note(4, &tree.root(5).unwrap())).unwrap();
        let e = digests.iter().try_for_each(|d| v.digest(d)).unwrap_err();
        assert_eq!((e.seq, e.reason.contains("does not match")), (4, true), "{e}");

        // A right one is counted; the summary's root is the whole tree's.
        let mut v = Verifier::new(key());
        v.note(&note(4, &tree.root(4).unwrap())).unwrap();
        digests.iter().try_for_each(|d| v.digest(d)).unwrap();
        v.note(&note(10, &tree.root(10).unwrap())).unwrap();
        let summary = v.finish().unwrap();
        assert_eq!((summary.checkpoints, summary.largest_checkpoint, summary.root), (2, 10, tree.root(10).unwrap()));

        // After its entries: refused without the history, checked with it.
        let mut v = Verifier::new(key());
        digests.iter().try_for_each(|d| v.digest(d)).unwrap();
        assert!(v.note(&note(6, &tree.root(6).unwrap())).unwrap_err().reason.contains("comes after entry 10"));
        let mut v = Verifier::new(key()).keeping_history();
        digests.iter().try_for_each(|d| v.digest(d)).unwrap();
        v.note(&note(6, &tree.root(6).unwrap())).unwrap();
        assert_eq!(v.hash_of(3), Some(digests[2].hash));

        // Beyond the entries: truncated.
        let mut v = Verifier::new(key());
        v.note(&note(12, &tree.root(10).unwrap())).unwrap();
        digests.iter().try_for_each(|d| v.digest(d)).unwrap();
        assert_eq!(v.finish().unwrap_err().seq, 11);
    }
}
