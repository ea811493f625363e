//! The RFC 6962 / RFC 9162 Merkle tree over ledger entries: roots, inclusion proofs and
//! consistency proofs, and the verifiers for both (RFC 9162 §2.1.3.2 and §2.1.4.2).
//!
//! Roots and proofs of any tree size are computed from complete subtree hashes alone
//! ([`Nodes`]): O(log² n) hashes rather than O(n). [`MerkleTree`] keeps them all in memory
//! (the offline verifier); the service reads them from the audit database, and
//! [`crate::frontier::Frontier`] extends the tree in O(log n) memory.

use crate::format::node_hash;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    let mut k = 1u64;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Append-only tree of leaf hashes with every complete subtree cached.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[h][i]` is the hash of leaves `[i·2^h, (i+1)·2^h)`.
    levels: Vec<Vec<Hash>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("tree size {requested} is larger than the tree ({size})")]
    TreeTooSmall { requested: u64, size: u64 },
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency needs 0 < from ≤ to, got from {from}, to {to}")]
    BadRange { from: u64, to: u64 },
    #[error("the tree node at level {level}, index {index} is not stored")]
    MissingNode { level: u32, index: u64 },
}

impl MerkleTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map(|l| l.len() as u64).unwrap_or(0)
    }

    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut idx = self.levels[0].len() - 1;
        let mut h = 0;
        while idx % 2 == 1 {
            let node = node_hash(&self.levels[h][idx - 1], &self.levels[h][idx]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(node);
            idx /= 2;
            h += 1;
        }
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            return Err(ProofError::TreeTooSmall { requested: size, size: self.size() });
        }
        Ok(())
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        root(self, size)
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        inclusion_proof(self, index, size)
    }

    /// The consistency proof between the trees of the first `from` and `to` leaves.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(to)?;
        consistency_proof(self, from, to)
    }
}

impl Nodes for MerkleTree {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.levels.get(usize::try_from(level).ok()?)?.get(usize::try_from(index).ok()?).copied()
    }
}

/// Where complete subtree hashes come from: `node(level, index)` is MTH of the leaves
/// `[index·2^level, (index+1)·2^level)`, if known. Roots and proofs of any tree size need
/// nothing else, so they can be computed from memory ([`MerkleTree`]) or from stored nodes.
pub trait Nodes {
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

impl Nodes for std::collections::HashMap<(u32, u64), Hash> {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.get(&(level, index)).copied()
    }
}

/// One run of consecutive leaves from `first` (a multiple of the tile's width) with every
/// complete subtree inside it: what a store that keeps only the larger subtrees hashes again
/// from entries when a proof needs a smaller one.
#[derive(Debug, Clone)]
pub struct Tile {
    first: u64,
    tree: MerkleTree,
}

impl Tile {
    pub fn new(first: u64, leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = MerkleTree::new();
        leaves.into_iter().for_each(|leaf| tree.push(leaf));
        Self { first, tree }
    }

    /// How many leaves the tile holds.
    pub fn leaves(&self) -> u64 {
        self.tree.size()
    }
}

impl Nodes for Tile {
    /// The subtree if it lies inside the tile and is complete there; `None` otherwise.
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let width = 1u64.checked_shl(level)?;
        let start = index.checked_mul(width)?;
        if !self.first.is_multiple_of(width) || start < self.first {
            return None;
        }
        self.tree.node(level, index - (self.first >> level))
    }
}

/// MTH(D[a:b]); requires a < b. Left subtrees produced by the recursion are always aligned
/// complete subtrees.
fn subtree(nodes: &impl Nodes, a: u64, b: u64) -> Result<Hash, ProofError> {
    let n = b - a;
    if n.is_power_of_two() && a.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return nodes.node(level, a >> level).ok_or(ProofError::MissingNode { level, index: a >> level });
    }
    let k = split(n);
    Ok(node_hash(&subtree(nodes, a, a + k)?, &subtree(nodes, a + k, b)?))
}

/// The root of the first `size` leaves.
pub fn root(nodes: &impl Nodes, size: u64) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(nodes, 0, size)
}

/// The audit path of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(nodes: &impl Nodes, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path(nodes: &impl Nodes, m: u64, a: u64, b: u64, out: &mut Vec<Hash>) -> Result<(), ProofError> {
    let n = b - a;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, a, a + k, out)?;
        out.push(subtree(nodes, a + k, b)?);
    } else {
        path(nodes, m - k, a + k, b, out)?;
        out.push(subtree(nodes, a, a + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of the first `from` and `to` leaves.
pub fn consistency_proof(nodes: &impl Nodes, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > to {
        return Err(ProofError::BadRange { from, to });
    }
    let mut proof = Vec::new();
    if from < to {
        subproof(nodes, from, 0, to, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof(nodes: &impl Nodes, m: u64, a: u64, b: u64, complete: bool, out: &mut Vec<Hash>) -> Result<(), ProofError> {
    let n = b - a;
    if m == n {
        if !complete {
            out.push(subtree(nodes, a, b)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, a, a + k, complete, out)?;
        out.push(subtree(nodes, a + k, b)?);
    } else {
        subproof(nodes, m - k, a + k, b, false, out)?;
        out.push(subtree(nodes, a, a + k)?);
    }
    Ok(())
}

/// Records which nodes a computation asks for (answering zeros), so a store can fetch
/// exactly those in one round trip; the computation's shape never depends on hash values.
#[derive(Debug, Default)]
pub struct NeededNodes(std::cell::RefCell<Vec<(u32, u64)>>);

impl NeededNodes {
    /// The nodes `f` reads, in first-use order, without duplicates.
    pub fn of<T>(f: impl FnOnce(&NeededNodes) -> Result<T, ProofError>) -> Result<Vec<(u32, u64)>, ProofError> {
        let recorder = NeededNodes::default();
        f(&recorder)?;
        let mut seen = std::collections::HashSet::new();
        Ok(recorder.0.into_inner().into_iter().filter(|id| seen.insert(*id)).collect())
    }
}

impl Nodes for NeededNodes {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.borrow_mut().push((level, index));
        Some([0; 32])
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (from - 1, to - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &fr == from_root && &sr == to_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        crate::format::leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn a_tile_gives_the_trees_subtrees_inside_it_and_none_outside_it() {
        let mut full = MerkleTree::new();
        (0..100).for_each(|i| full.push(leaf(i)));
        for first in (0..100u64).step_by(16) {
            let tile = Tile::new(first, (first..(first + 16).min(100)).map(leaf));
            for level in 0..6u32 {
                for index in 0..(100u64 >> level) {
                    let (start, end) = (index << level, (index + 1) << level);
                    let inside = start >= first && end <= first + 16;
                    let expected = if inside { full.node(level, index) } else { None };
                    assert_eq!(tile.node(level, index), expected, "tile {first}, node {level}/{index}");
                }
            }
        }
        // The last tile holds 4 leaves: no complete subtree of 8 there.
        assert_eq!(Tile::new(96, (96..100).map(leaf)).node(3, 12), None);
    }

    /// MTH straight from RFC 6962 §2.1, with no caching: the reference.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree(n: u64) -> (MerkleTree, Vec<Hash>) {
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        let mut t = MerkleTree::new();
        for l in &leaves {
            t.push(*l);
        }
        (t, leaves)
    }

    #[test]
    fn roots_match_the_rfc_definition_for_every_size() {
        let (t, leaves) = tree(70);
        for size in 0..=70u64 {
            assert_eq!(t.root(size).unwrap(), reference_root(&leaves[..size as usize]), "size {size}");
        }
    }

    #[test]
    fn the_empty_tree_root_is_the_hash_of_nothing() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn every_inclusion_proof_verifies_and_no_tampered_one_does() {
        let (t, leaves) = tree(33);
        for size in 1..=33u64 {
            let root = t.root(size).unwrap();
            for i in 0..size {
                let proof = t.inclusion_proof(i, size).unwrap();
                assert!(verify_inclusion(&leaves[i as usize], i, size, &proof, &root), "leaf {i} size {size}");
                if size > 1 {
                    assert!(!verify_inclusion(&leaves[i as usize], (i + 1) % size, size, &proof, &root), "wrong index");
                    let mut forged = proof.clone();
                    forged[0][0] ^= 1;
                    assert!(!verify_inclusion(&leaves[i as usize], i, size, &forged, &root), "flipped bit");
                    let mut longer = proof.clone();
                    longer.push(root);
                    assert!(!verify_inclusion(&leaves[i as usize], i, size, &longer, &root), "extra element");
                    assert!(!verify_inclusion(&leaves[i as usize], i, size, &proof[..proof.len() - 1], &root), "truncated");
                }
                assert!(!verify_inclusion(&leaf(999), i, size, &proof, &root), "other leaf");
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_no_tampered_one_does() {
        let (t, _) = tree(40);
        for to in 1..=40u64 {
            for from in 1..=to {
                let (r1, r2) = (t.root(from).unwrap(), t.root(to).unwrap());
                let proof = t.consistency_proof(from, to).unwrap();
                assert!(verify_consistency(from, to, &r1, &r2, &proof), "{from}->{to}");
                if from < to {
                    for i in 0..proof.len() {
                        let mut forged = proof.clone();
                        forged[i][31] ^= 0x80;
                        assert!(!verify_consistency(from, to, &r1, &r2, &forged), "{from}->{to} forged element {i}");
                    }
                    assert!(!verify_consistency(from, to, &r2, &r2, &proof), "{from}->{to} wrong old root");
                    assert!(!verify_consistency(from, to, &r1, &r1, &proof), "{from}->{to} wrong new root");
                    assert!(!verify_consistency(from, to, &r1, &r2, &[]), "{from}->{to} empty proof");
                }
            }
        }
    }

    #[test]
    fn a_fork_cannot_be_proven_consistent() {
        // Two trees share their first 5 leaves, then differ.
        let (a, _) = tree(9);
        let mut b = MerkleTree::new();
        for i in 0..9u64 {
            b.push(if i < 5 { leaf(i) } else { leaf(100 + i) });
        }
        let proof = b.consistency_proof(7, 9).unwrap();
        assert!(!verify_consistency(7, 9, &a.root(7).unwrap(), &b.root(9).unwrap(), &proof));
    }
}
