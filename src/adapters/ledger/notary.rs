//! The notary: extends the ledger's Merkle tree, signs checkpoints (every N entries, every
//! T seconds, and on demand) and answers proofs against them.
//!
//! Memory does not grow with the ledger: the notary holds the tree's right edge (a
//! [`Frontier`], one hash per set bit of the size) and stores the hash of every complete
//! subtree of [`TILE`] leaves or more in the audit database (`gov_audit_tree_nodes`,
//! through the writer role's `gov_ledger_add_tree_nodes`): about one row per eight
//! entries. A smaller subtree lies inside one tile of [`TILE`] entries and is hashed again
//! from them when a proof needs it (as transparency-dev's tiles keep only what the entries
//! cannot give back). Proofs take the stored nodes they need in one round trip and at most
//! a few tiles' entries (held afterwards, read one at a time). At start-up it reads only
//! the entries the stored nodes do not cover yet (their payloads are needed to hash them),
//! and checks the stored nodes against the newest checkpoint within a tile of them, when
//! its key signed it. Checkpoints are written through the writer role, which may only
//! insert them. Smaller nodes that ledgers written before tiles stored are never read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ledger::checkpoint::{verify_checkpoint, NoteSigner, VerifierKey};
use ledger::format::leaf_hash;
use ledger::frontier::Frontier;
use ledger::merkle::{self, Hash, NeededNodes, Nodes, ProofError, Tile};
use ledger::LedgerEntry;
use sqlx::PgPool;
use tokio::sync::{watch, Mutex};

use super::reader::StoredCheckpoint;
use super::{LedgerError, LedgerReader};

/// When checkpoints are made.
#[derive(Debug, Clone)]
pub struct NotaryConfig {
    /// The origin line of every checkpoint: names this deployment's ledger.
    pub origin: String,
    pub every_entries: u64,
    pub every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NotaryError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("the ledger is empty")]
    Empty,
    #[error("no checkpoint at tree size {0}")]
    NoCheckpoint(i64),
    #[error("no entry {0}")]
    NoEntry(i64),
    #[error("the stored checkpoint at tree size {0} does not verify with the ledger key")]
    Unverified(i64),
}

#[derive(Debug)]
pub struct Notary {
    reader: LedgerReader,
    writer: PgPool,
    signer: NoteSigner,
    config: NotaryConfig,
    /// The tree's right edge up to what the stored nodes cover; `None` until first loaded.
    tree: Mutex<Option<Frontier>>,
    /// The tiles read last (entries never change): proofs in one tile read and hash its
    /// entries once. Bounded by [`TILES_HELD`] (31 hashes a tile at most).
    tiles: moka::sync::Cache<u64, Arc<Tile>>,
    /// One tile read at a time: proofs that miss [`Notary::tiles`] together read a tile
    /// once, and hold at most one tile's entries (16 of up to a few MiB) and one reader
    /// connection, whatever a tenant asks.
    tile_reads: tokio::sync::Semaphore,
}

/// A subtree's `(level, index)`.
type NodeId = (u32, u64);

/// Tiles held: about 1 KiB each at most.
const TILES_HELD: u64 = 4096;

/// Entries hashed per round trip while catching up (payloads are at most a few MiB each).
const SYNC_BATCH: i64 = 200;

/// Subtrees of at least 2^TILE_LEVEL leaves are stored; smaller ones are hashed again from
/// the entries of their tile.
const TILE_LEVEL: u32 = 4;
/// Entries per tile: the most a proof reads to hash one smaller subtree again.
pub const TILE: u64 = 1 << TILE_LEVEL;

/// An entry with its audit path to a signed checkpoint.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub entry: LedgerEntry,
    pub proof: Vec<Hash>,
    pub checkpoint: StoredCheckpoint,
}

impl Notary {
    pub fn new(reader: LedgerReader, writer: PgPool, signer: NoteSigner, config: NotaryConfig) -> Self {
        Self {
            reader,
            writer,
            signer,
            config,
            tree: Mutex::new(None),
            tiles: moka::sync::Cache::new(TILES_HELD),
            tile_reads: tokio::sync::Semaphore::new(1),
        }
    }

    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    pub fn origin(&self) -> &str {
        &self.config.origin
    }

    /// Loads the right edge from the stored nodes and checks them against the newest
    /// checkpoint our key signed that they and one tile of entries reach.
    async fn load(&self) -> Result<Frontier, LedgerError> {
        let corrupt = LedgerError::Tree;
        let size = self.reader.stored_tree_size(TILE_LEVEL).await?;
        let nodes = self.nodes(&Frontier::node_ids(size)).await?;
        let frontier = Frontier::from_nodes(size, &nodes).map_err(|e| corrupt(format!("stored tree nodes: {e}")))?;
        // Nodes are stored before a checkpoint is signed, so the newest one lies at most a
        // tile beyond what they cover; the rest of its root is hashed from that tile.
        let reach = size.saturating_add(TILE - 1);
        if let Some(c) = self.reader.checkpoint_at_most(i64::try_from(reach).unwrap_or(i64::MAX)).await? {
            if self.signed_by_us(&c) {
                let at = u64::try_from(c.tree_size).unwrap_or(0);
                let root = match self.stored_root(at).await {
                    Ok(root) => root,
                    Err(NotaryError::Ledger(e)) => return Err(e),
                    Err(e) => return Err(corrupt(format!("stored tree nodes: {e}"))),
                };
                if root.as_slice() != c.root_hash.as_slice() {
                    return Err(corrupt(format!("the stored tree nodes do not give the signed root of checkpoint {at}")));
                }
            }
        }
        Ok(frontier)
    }

    /// The root of the first `size` leaves, from stored nodes and tiles of entries.
    async fn stored_root(&self, size: u64) -> Result<Hash, NotaryError> {
        let ids = NeededNodes::of(|n| merkle::root(n, size))?;
        Ok(merkle::root(&self.nodes(&ids).await?, size)?)
    }

    /// The subtree hashes among `ids`: those of [`TILE`] leaves or more as stored (one
    /// round trip), and each smaller one hashed again from its tile's entries (see
    /// [`Notary::tile`]). Smaller nodes stored by older versions, or by anyone holding the
    /// writer role, are never read. Those neither stored nor complete in the ledger are
    /// missing from the answer.
    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, LedgerError> {
        let (large, missing): (Vec<NodeId>, Vec<NodeId>) = ids.iter().copied().partition(|&(level, _)| level >= TILE_LEVEL);
        let mut found = self.reader.tree_nodes(&large).await?;
        // Each tile, with the number of its leaves the missing nodes reach.
        let mut tiles: BTreeMap<u64, u64> = BTreeMap::new();
        for &(level, index) in &missing {
            let Some(end) = index.checked_add(1).and_then(|i| i.checked_mul(1 << level)) else { continue };
            let reach = tiles.entry((end - 1) / TILE).or_default();
            *reach = (*reach).max((end - 1) % TILE + 1);
        }
        for (tile, reach) in tiles {
            let tile = self.tile(tile, reach).await?;
            for &(level, index) in &missing {
                if let Some(hash) = tile.node(level, index) {
                    found.insert((level, index), hash);
                }
            }
        }
        Ok(found)
    }

    /// The tile of leaves `[tile·TILE, (tile+1)·TILE)` with at least its first `reach`
    /// leaves, as far as the ledger has them. Entries never change, so a tile read once is
    /// held; one held with fewer leaves than `reach` (the right edge has grown since) is
    /// read again: its entries (from this process's recent entries when it committed all
    /// of them), hashed on a blocking thread.
    async fn tile(&self, tile: u64, reach: u64) -> Result<Arc<Tile>, LedgerError> {
        let beyond = || LedgerError::Tree(format!("tile {tile} is beyond any ledger"));
        let first = tile.checked_mul(TILE).ok_or_else(beyond)?;
        let held = || self.tiles.get(&tile).filter(|t| t.leaves() >= reach);
        if let Some(held) = held() {
            return Ok(held);
        }
        let _one_at_a_time = self.tile_reads.acquire().await.map_err(|_| LedgerError::Closed)?;
        // Another proof may have read it while this one waited.
        if let Some(held) = held() {
            return Ok(held);
        }
        let after = i64::try_from(first).map_err(|_| beyond())?;
        let upto = after.saturating_add(i64::try_from(TILE).unwrap_or(i64::MAX));
        let entries = self.reader.entries_between(after, upto).await?;
        let read = tokio::task::spawn_blocking(move || leaf_hashes(&entries, after + 1).map(|leaves| Arc::new(Tile::new(first, leaves))))
            .await
            .map_err(|e| LedgerError::Tree(format!("hashing tile {tile}: {e}")))??;
        crate::adapters::metrics::get().ledger_tile_hashed();
        if self.tiles.get(&tile).is_none_or(|t| t.leaves() < read.leaves()) {
            self.tiles.insert(tile, read.clone());
        }
        Ok(read)
    }

    /// Brings the tree up to the ledger's head: hashes the entries the stored nodes do not
    /// cover and stores the nodes they complete. Returns the right edge.
    async fn sync<'a>(&'a self) -> Result<tokio::sync::MappedMutexGuard<'a, Frontier>, LedgerError> {
        let mut guard = self.tree.lock().await;
        let mut tree = match guard.take() {
            Some(t) => t,
            None => self.load().await?,
        };
        let result = self.extend(&mut tree).await;
        *guard = Some(tree);
        result?;
        Ok(tokio::sync::MutexGuard::map(guard, |t| t.get_or_insert_with(Frontier::new)))
    }

    async fn extend(&self, tree: &mut Frontier) -> Result<(), LedgerError> {
        loop {
            let size = i64::try_from(tree.size()).unwrap_or(i64::MAX);
            let batch = self.reader.entries_after(size, SYNC_BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            // Extend a copy, and keep it only once its nodes are stored. Hashing the entries
            // (up to a few MiB each) runs on a blocking thread, not the async runtime.
            let start = tree.clone();
            let (next, levels, idxs, hashes) = tokio::task::spawn_blocking(move || extended(start, &batch))
                .await
                .map_err(|e| LedgerError::Tree(format!("hashing entries after {size}: {e}")))??;
            if !levels.is_empty() {
                sqlx::query("SELECT gov_ledger_add_tree_nodes($1, $2, $3)")
                    .bind(&levels)
                    .bind(&idxs)
                    .bind(&hashes)
                    .execute(&self.writer)
                    .await?;
            }
            *tree = next;
        }
    }

    /// Signs and stores a checkpoint of the whole ledger, unless the newest checkpoint
    /// already covers it. Returns the newest checkpoint.
    pub async fn checkpoint_now(&self) -> Result<StoredCheckpoint, NotaryError> {
        let tree = self.sync().await?;
        let size = tree.size();
        if size == 0 {
            return Err(NotaryError::Empty);
        }
        let tree_size = i64::try_from(size).unwrap_or(i64::MAX);
        // Only a checkpoint of exactly this size that our key signed counts: a row the
        // writer role inserted by other means (any size, any note) is ignored.
        if let Some(existing) = self.reader.checkpoint_at(tree_size).await? {
            if self.signed_by_us(&existing) {
                return Ok(existing);
            }
        }
        let root = tree.root();
        drop(tree);
        let note = self.signer.sign_checkpoint(&self.config.origin, size, &root);
        sqlx::query("SELECT gov_ledger_add_checkpoint($1, $2, $3, $4, $5)")
            .bind(tree_size)
            .bind(root.to_vec())
            .bind(&self.config.origin)
            .bind(self.signer.key_id_hex())
            .bind(&note)
            .execute(&self.writer)
            .await
            .map_err(LedgerError::from)?;
        tracing::info!(tree_size, root = %hex::encode(root), "ledger checkpoint signed");
        self.verified(self.reader.checkpoint_at(tree_size).await?, tree_size)
    }

    /// The newest checkpoint our key signed: the newest stored one if it verifies, else a
    /// fresh one of the head (None when the ledger is empty).
    pub async fn latest(&self) -> Result<Option<StoredCheckpoint>, NotaryError> {
        match self.reader.latest_checkpoint().await? {
            None => Ok(None),
            Some(c) if self.signed_by_us(&c) => Ok(Some(c)),
            Some(c) => {
                tracing::error!(tree_size = c.tree_size, "the newest stored checkpoint does not verify with the ledger key; ignored");
                self.checkpoint_now().await.map(Some)
            }
        }
    }

    /// Whether the stored checkpoint's note verifies with this notary's key and matches
    /// its row (size and root).
    fn signed_by_us(&self, c: &StoredCheckpoint) -> bool {
        let Ok(key) = VerifierKey::parse(&self.signer.verifier_key()) else { return false };
        match verify_checkpoint(&c.note, &[key]) {
            Ok(v) => i64::try_from(v.tree_size).ok() == Some(c.tree_size) && v.root.as_slice() == c.root_hash.as_slice(),
            Err(_) => false,
        }
    }

    /// `c` if our key signed it; a checkpoint that does not verify is reported and never used.
    fn verified(&self, c: Option<StoredCheckpoint>, tree_size: i64) -> Result<StoredCheckpoint, NotaryError> {
        match c {
            Some(c) if self.signed_by_us(&c) => Ok(c),
            Some(c) => {
                tracing::error!(tree_size = c.tree_size, key_id = %c.key_id, "a stored checkpoint does not verify with the ledger key; ignored");
                Err(NotaryError::Unverified(c.tree_size))
            }
            None => Err(NotaryError::NoCheckpoint(tree_size)),
        }
    }

    /// The inclusion proof of `seq` against the checkpoint of `tree_size` (default: the
    /// smallest checkpoint covering it, made now if there is none).
    pub async fn inclusion(&self, seq: i64, tree_size: Option<i64>) -> Result<InclusionProof, NotaryError> {
        let entry = self.reader.entry(seq).await?.ok_or(NotaryError::NoEntry(seq))?;
        let checkpoint = match tree_size {
            Some(n) => self.verified(self.reader.checkpoint_at(n).await?, n)?,
            None => match self.reader.checkpoint_covering(seq).await? {
                Some(c) if self.signed_by_us(&c) => c,
                _ => self.checkpoint_now().await?,
            },
        };
        if checkpoint.tree_size < seq {
            return Err(ProofError::IndexOutOfRange {
                index: u64::try_from(seq - 1).unwrap_or(0),
                size: u64::try_from(checkpoint.tree_size).unwrap_or(0),
            }
            .into());
        }
        let (index, size) = (u64::try_from(seq - 1).unwrap_or(0), u64::try_from(checkpoint.tree_size).unwrap_or(0));
        self.covered(size).await?;
        let ids = NeededNodes::of(|n| merkle::inclusion_proof(n, index, size))?;
        let proof = merkle::inclusion_proof(&self.nodes(&ids).await?, index, size)?;
        Ok(InclusionProof { entry, proof, checkpoint })
    }

    /// The consistency proof between two checkpoints.
    pub async fn consistency(&self, from: i64, to: i64) -> Result<(StoredCheckpoint, StoredCheckpoint, Vec<Hash>), NotaryError> {
        let a = self.verified(self.reader.checkpoint_at(from).await?, from)?;
        let b = self.verified(self.reader.checkpoint_at(to).await?, to)?;
        let (from, to) = (u64::try_from(from).unwrap_or(0), u64::try_from(to).unwrap_or(0));
        self.covered(to).await?;
        let ids = NeededNodes::of(|n| merkle::consistency_proof(n, from, to))?;
        let proof = merkle::consistency_proof(&self.nodes(&ids).await?, from, to)?;
        Ok((a, b, proof))
    }

    /// Makes sure the stored nodes cover the first `size` leaves.
    async fn covered(&self, size: u64) -> Result<(), NotaryError> {
        let tree = self.sync().await?;
        if size > tree.size() {
            return Err(ProofError::TreeTooSmall { requested: size, size: tree.size() }.into());
        }
        Ok(())
    }

    /// Makes a checkpoint whenever `every_entries` entries have been appended since the
    /// last one, or `every` has passed with new entries, until `shutdown`; then one last.
    pub async fn run(&self, mut head: watch::Receiver<i64>, mut shutdown: watch::Receiver<bool>) {
        // Not the newest stored row: that may be one we cannot verify. The first tick
        // signs the head unless our own checkpoint of it exists.
        let mut last_size: i64 = 0;
        let mut ticker = tokio::time::interval(self.config.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let threshold = i64::try_from(self.config.every_entries).unwrap_or(i64::MAX);
        loop {
            let due = tokio::select! {
                _ = ticker.tick() => true,
                changed = head.changed() => changed.is_ok() && *head.borrow() - last_size >= threshold,
                _ = shutdown.changed() => break,
            };
            if due {
                self.checkpoint_if_new(&mut last_size).await;
            }
        }
        self.checkpoint_if_new(&mut last_size).await;
    }

    async fn checkpoint_if_new(&self, last_size: &mut i64) {
        match self.reader.head_seq().await {
            Ok(head) if head > *last_size => match self.checkpoint_now().await {
                Ok(c) => *last_size = c.tree_size,
                Err(e) => tracing::warn!(error = %e, "cannot make a ledger checkpoint; will retry"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the ledger head"),
        }
    }
}

/// A tree extended by some entries, with the columns `gov_ledger_add_tree_nodes` takes.
type Extended = (Frontier, Vec<i16>, Vec<i64>, Vec<Vec<u8>>);

/// `tree` extended by `batch` (which must continue it), with the subtrees of [`TILE`]
/// leaves or more it completes.
fn extended(mut tree: Frontier, batch: &[LedgerEntry]) -> Result<Extended, LedgerError> {
    let (mut levels, mut idxs, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    let first = i64::try_from(tree.size()).unwrap_or(i64::MAX).saturating_add(1);
    for leaf in leaf_hashes(batch, first)? {
        for (level, index, hash) in tree.push(leaf).into_iter().filter(|(level, ..)| *level >= TILE_LEVEL) {
            levels.push(i16::try_from(level).unwrap_or(i16::MAX));
            idxs.push(i64::try_from(index).unwrap_or(i64::MAX));
            hashes.push(hash.to_vec());
        }
    }
    Ok((tree, levels, idxs, hashes))
}

/// The leaf hashes of `entries`, which must be consecutive from seq `first`.
fn leaf_hashes(entries: &[LedgerEntry], first: i64) -> Result<Vec<Hash>, LedgerError> {
    entries
        .iter()
        .zip(first..)
        .map(|(e, seq)| {
            if e.seq == seq {
                Ok(leaf_hash(&e.encode()))
            } else {
                Err(LedgerError::Corrupt { seq: e.seq, reason: "the ledger has a gap".into() })
            }
        })
        .collect()
}
