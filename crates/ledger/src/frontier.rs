//! The right edge of the Merkle tree (a compact range from 0): one complete subtree hash
//! per set bit of the tree size, largest first. That is all a writer needs to extend the
//! tree and compute its root: O(log n) memory whatever the ledger's size.

use crate::format::node_hash;
use crate::merkle::{empty_root, Hash, Nodes, ProofError};

/// A complete subtree: `(level, index, hash)`, covering leaves `[index·2^level, (index+1)·2^level)`.
pub type Node = (u32, u64, Hash);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, largest subtree first; the levels are the set bits of `size`.
    edge: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The `(level, index)` of the subtrees that make up the frontier of a tree of `size`.
    pub fn node_ids(size: u64) -> Vec<(u32, u64)> {
        let mut ids = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                ids.push((level, start >> level));
                start += width;
            }
        }
        ids
    }

    /// The frontier of a tree of `size`, from its nodes.
    pub fn from_nodes(size: u64, nodes: &impl Nodes) -> Result<Self, ProofError> {
        let edge = Self::node_ids(size)
            .into_iter()
            .map(|(level, index)| nodes.node(level, index).map(|h| (level, h)).ok_or(ProofError::MissingNode { level, index }))
            .collect::<Result<_, _>>()?;
        Ok(Self { size, edge })
    }

    /// Appends a leaf; returns the complete subtrees it completes, the leaf itself first.
    pub fn push(&mut self, leaf: Hash) -> Vec<Node> {
        let mut done = Vec::new();
        self.grow(leaf, |node| done.push(node));
        done
    }

    /// Appends a leaf, keeping only the right edge (no list of completed subtrees).
    pub fn append(&mut self, leaf: Hash) {
        self.grow(leaf, |_| {});
    }

    /// Appends a leaf; `completed` sees each complete subtree it completes, the leaf first.
    fn grow(&mut self, leaf: Hash, mut completed: impl FnMut(Node)) {
        let index = self.size;
        completed((0, index, leaf));
        let (mut level, mut hash) = (0u32, leaf);
        while let Some(&(l, left)) = self.edge.last() {
            if l != level {
                break;
            }
            self.edge.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            completed((level, index >> level, hash));
        }
        self.edge.push((level, hash));
        self.size += 1;
    }

    /// The root of the tree (RFC 6962 MTH).
    pub fn root(&self) -> Hash {
        let mut it = self.edge.iter().rev();
        let Some(&(_, mut acc)) = it.next() else { return empty_root() };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;
    use crate::merkle::{self, MerkleTree};

    fn leaf(i: u64) -> Hash {
        crate::format::leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn the_frontier_root_equals_the_full_tree_root_at_every_size() {
        let (mut f, mut t) = (Frontier::new(), MerkleTree::new());
        assert_eq!(f.root(), t.root(0).unwrap());
        for i in 0..300 {
            f.push(leaf(i));
            t.push(leaf(i));
            assert_eq!(f.root(), t.root(i + 1).unwrap(), "size {}", i + 1);
            assert!(f.edge.len() <= 64);
        }
    }

    #[test]
    fn the_nodes_a_push_completes_are_the_ones_the_full_tree_holds() {
        let (mut f, mut t) = (Frontier::new(), MerkleTree::new());
        let mut stored = HashMap::new();
        for i in 0..130 {
            t.push(leaf(i));
            for (level, index, hash) in f.push(leaf(i)) {
                assert_eq!(Some(hash), t.node(level, index), "level {level} index {index}");
                assert!(stored.insert((level, index), hash).is_none(), "each node is completed once");
            }
        }
        // Every complete subtree of 130 leaves: 130 + 65 + 32 + 16 + 8 + 4 + 2 + 1.
        assert_eq!(stored.len(), 130 + 65 + 32 + 16 + 8 + 4 + 2 + 1);
        // And proofs computed from those stored nodes equal the in-memory tree's.
        for size in 1..=130 {
            assert_eq!(merkle::root(&stored, size).unwrap(), t.root(size).unwrap());
            let index = size / 3;
            assert_eq!(merkle::inclusion_proof(&stored, index, size).unwrap(), t.inclusion_proof(index, size).unwrap());
            assert_eq!(merkle::consistency_proof(&stored, size / 2 + 1, size).unwrap(), t.consistency_proof(size / 2 + 1, size).unwrap());
        }
    }

    #[test]
    fn a_frontier_rebuilt_from_stored_nodes_continues_the_same_tree() {
        let mut stored = HashMap::new();
        let mut f = Frontier::new();
        for i in 0..77 {
            for (l, x, h) in f.push(leaf(i)) {
                stored.insert((l, x), h);
            }
        }
        let mut again = Frontier::from_nodes(77, &stored).unwrap();
        assert_eq!(again, f);
        again.push(leaf(77));
        f.push(leaf(77));
        assert_eq!(again.root(), f.root());
        assert_eq!(Frontier::node_ids(77), vec![(6, 0), (3, 8), (2, 18), (0, 76)]);
    }

    #[test]
    fn the_nodes_a_proof_needs_are_few_and_suffice() {
        let mut t = MerkleTree::new();
        for i in 0..1000 {
            t.push(leaf(i));
        }
        let ids = merkle::NeededNodes::of(|n| merkle::inclusion_proof(n, 417, 999)).unwrap();
        assert!(ids.len() <= 2 * 10 * 10, "O(log² n) nodes, got {}", ids.len());
        let fetched: HashMap<(u32, u64), Hash> = ids.iter().map(|&(l, i)| ((l, i), t.node(l, i).unwrap())).collect();
        assert_eq!(merkle::inclusion_proof(&fetched, 417, 999).unwrap(), t.inclusion_proof(417, 999).unwrap());
        let missing = merkle::inclusion_proof(&HashMap::new(), 417, 999).unwrap_err();
        assert!(matches!(missing, ProofError::MissingNode { .. }));
    }
}
