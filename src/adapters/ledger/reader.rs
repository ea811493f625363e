//! Reads the ledger as `gov_ledger_reader` (SELECT only). With [`LedgerReader::with_recent`],
//! the tail reads ([`LedgerReader::entries_after`], [`LedgerReader::events_of_types_between`],
//! [`LedgerReader::entries_between`]: the projectors, the relay, and the notary's hashing of
//! new entries and of tiles) are answered from this process's recently committed entries
//! when they hold the whole range, and from the database otherwise.

use std::collections::HashMap;

use ledger::export::ExportCheckpoint;
use ledger::{EntryMetadata, LedgerEntry};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::recent::RecentEntries;
use super::LedgerError;

const COLUMNS: &str = "seq, tenant_id, aggregate_type, aggregate_id, aggregate_seq, event_type, event_version, \
                       payload::text AS payload, actor, request_id, trace_id, causation_id, correlation_id, recorded_at, prev_hash, hash";

#[derive(Debug, Clone)]
pub struct LedgerReader {
    pool: PgPool,
    recent: Option<RecentEntries>,
}

fn hash32(row: &PgRow, column: &str, seq: i64) -> Result<[u8; 32], LedgerError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    bytes.as_slice().try_into().map_err(|_| LedgerError::Corrupt { seq, reason: format!("{column} is not 32 bytes") })
}

fn entry(row: &PgRow) -> Result<LedgerEntry, LedgerError> {
    let seq: i64 = row.try_get("seq")?;
    Ok(LedgerEntry {
        seq,
        tenant_id: row.try_get("tenant_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        aggregate_seq: row.try_get("aggregate_seq")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: EntryMetadata {
            actor: row.try_get("actor")?,
            request_id: row.try_get("request_id")?,
            trace_id: row.try_get("trace_id")?,
            causation_id: row.try_get("causation_id")?,
            correlation_id: row.try_get("correlation_id")?,
        },
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: hash32(row, "prev_hash", seq)?,
        hash: hash32(row, "hash", seq)?,
    })
}

impl LedgerReader {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, recent: None }
    }

    /// This reader, answering tail reads from `recent` (this process's appender's
    /// committed entries) when it holds them.
    pub fn with_recent(mut self, recent: RecentEntries) -> Self {
        self.recent = Some(recent);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Every event of one aggregate, in aggregate order.
    pub async fn aggregate_events(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Vec<LedgerEntry>, LedgerError> {
        let sql =
            format!("SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY aggregate_seq");
        let rows = sqlx::query(&sql).bind(aggregate_type).bind(aggregate_id).fetch_all(&self.pool).await?;
        rows.iter().map(entry).collect()
    }

    /// Up to `limit` entries with seq greater than `after`, in seq order.
    pub async fn entries_after(&self, after: i64, limit: i64) -> Result<Vec<LedgerEntry>, LedgerError> {
        if let Some(held) = self.recent.as_ref().and_then(|r| r.after(after, limit)) {
            return Ok(held);
        }
        let sql = format!("SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(&sql).bind(after).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(entry).collect()
    }

    /// The entries with seq in (after, upto], in seq order: from memory when this process
    /// committed all of them, else from the database.
    pub async fn entries_between(&self, after: i64, upto: i64) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.between(None, after, upto).await
    }

    /// The entries with seq in (after, upto], of the given aggregate types or all, in seq
    /// order: from memory when this process committed all of them, else from the database.
    async fn between(&self, types: Option<&[&str]>, after: i64, upto: i64) -> Result<Vec<LedgerEntry>, LedgerError> {
        if let Some(held) = self.recent.as_ref().and_then(|r| r.between(types, after, upto)) {
            return Ok(held);
        }
        let rows = match types {
            Some(types) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE aggregate_type = ANY($1) AND seq > $2 AND seq <= $3 ORDER BY seq"
                );
                sqlx::query(&sql).bind(types).bind(after).bind(upto).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE seq > $1 AND seq <= $2 ORDER BY seq");
                sqlx::query(&sql).bind(after).bind(upto).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(entry).collect()
    }

    /// Up to `limit` of one tenant's entries with seq greater than `after`, in seq order.
    pub async fn tenant_entries_after(&self, tenant: uuid::Uuid, after: i64, limit: i64) -> Result<Vec<LedgerEntry>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3");
        let rows = sqlx::query(&sql).bind(tenant).bind(after).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(entry).collect()
    }

    /// The highest seq in the ledger (0 when empty).
    pub async fn head_seq(&self) -> Result<i64, LedgerError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM gov_audit_trail_entries").fetch_one(&self.pool).await?;
        Ok(seq.unwrap_or(0))
    }

    /// When each of `seqs` was recorded (those that exist).
    pub async fn recorded_at(&self, seqs: &[i64]) -> Result<Vec<(i64, chrono::DateTime<chrono::Utc>)>, LedgerError> {
        let sql = "SELECT seq, recorded_at FROM gov_audit_trail_entries WHERE seq = ANY($1)";
        Ok(sqlx::query_as(sql).bind(seqs).fetch_all(&self.pool).await?)
    }

    /// How many entries there are; tests compare it before and after rejected requests.
    pub async fn count(&self) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries").fetch_one(&self.pool).await?)
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredCheckpoint {
    pub tree_size: i64,
    pub root_hash: Vec<u8>,
    pub origin: String,
    pub key_id: String,
    pub note: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl StoredCheckpoint {
    pub fn to_export(&self) -> ExportCheckpoint {
        ExportCheckpoint {
            tree_size: u64::try_from(self.tree_size).unwrap_or(0),
            root_hash: hex::encode(&self.root_hash),
            key_id: self.key_id.clone(),
            note: self.note.clone(),
            created_at: self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }
}

const CHECKPOINT_COLUMNS: &str = "tree_size, root_hash, origin, key_id, note, created_at";

impl LedgerReader {
    /// One entry by seq.
    pub async fn entry(&self, seq: i64) -> Result<Option<LedgerEntry>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE seq = $1");
        let row = sqlx::query(&sql).bind(seq).fetch_optional(&self.pool).await?;
        row.as_ref().map(entry).transpose()
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM gov_audit_checkpoints ORDER BY tree_size DESC LIMIT 1");
        Ok(sqlx::query_as(&sql).fetch_optional(&self.pool).await?)
    }

    pub async fn checkpoint_at(&self, tree_size: i64) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM gov_audit_checkpoints WHERE tree_size = $1");
        Ok(sqlx::query_as(&sql).bind(tree_size).fetch_optional(&self.pool).await?)
    }

    /// The smallest checkpoint that covers `seq`.
    pub async fn checkpoint_covering(&self, seq: i64) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM gov_audit_checkpoints WHERE tree_size >= $1 ORDER BY tree_size LIMIT 1");
        Ok(sqlx::query_as(&sql).bind(seq).fetch_optional(&self.pool).await?)
    }

    /// Checkpoints with tree size in (after, upto].
    pub async fn checkpoints_between(&self, after: i64, upto: i64) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let sql =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM gov_audit_checkpoints WHERE tree_size > $1 AND tree_size <= $2 ORDER BY tree_size");
        Ok(sqlx::query_as(&sql).bind(after).bind(upto).fetch_all(&self.pool).await?)
    }

    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM gov_audit_checkpoints ORDER BY tree_size");
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }
}

impl LedgerReader {
    /// How many leaves the stored tree nodes of `level` cover (0 when none are stored): the
    /// notary stores every complete subtree from that level up, so a node above it never
    /// reaches further.
    pub async fn stored_tree_size(&self, level: u32) -> Result<u64, LedgerError> {
        let level = i16::try_from(level).map_err(|_| LedgerError::Tree(format!("no tree level {level}")))?;
        let last: Option<i64> = sqlx::query_scalar("SELECT idx FROM gov_audit_tree_nodes WHERE level = $1 ORDER BY idx DESC LIMIT 1")
            .bind(level)
            .fetch_optional(&self.pool)
            .await?;
        Ok(last.and_then(|i| u64::try_from(i).ok()).and_then(|i| i.checked_add(1)).and_then(|n| n.checked_mul(1 << level)).unwrap_or(0))
    }

    /// The stored tree nodes among `ids` (`(level, index)`), in one round trip: one
    /// primary-key probe per id (a correlated subquery has no other plan; a join could be
    /// cached as a sequential scan while the table was small).
    pub async fn tree_nodes(&self, ids: &[(u32, u64)]) -> Result<HashMap<(u32, u64), [u8; 32]>, LedgerError> {
        let levels: Vec<i16> = ids.iter().map(|(l, _)| i16::try_from(*l).unwrap_or(i16::MAX)).collect();
        let idxs: Vec<i64> = ids.iter().map(|(_, i)| i64::try_from(*i).unwrap_or(i64::MAX)).collect();
        let rows: Vec<(i16, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT u.l, u.i, (SELECT n.hash FROM gov_audit_tree_nodes n WHERE n.level = u.l AND n.idx = u.i) \
             FROM unnest($1::smallint[], $2::bigint[]) AS u(l, i)",
        )
        .bind(&levels)
        .bind(&idxs)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .filter_map(|(l, i, h)| h.map(|h| (l, i, h)))
            .map(|(l, i, h)| {
                let hash: [u8; 32] =
                    h.try_into().map_err(|_| LedgerError::Corrupt { seq: 0, reason: format!("tree node {l}/{i} is not 32 bytes") })?;
                Ok(((u32::try_from(l).unwrap_or(u32::MAX), u64::try_from(i).unwrap_or(u64::MAX)), hash))
            })
            .collect()
    }

    /// The newest checkpoint of at most `tree_size` entries.
    pub async fn checkpoint_at_most(&self, tree_size: i64) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM gov_audit_checkpoints WHERE tree_size <= $1 ORDER BY tree_size DESC LIMIT 1");
        Ok(sqlx::query_as(&sql).bind(tree_size).fetch_optional(&self.pool).await?)
    }

    /// Events of the given aggregate types with seq in (after, upto], in seq order.
    pub async fn events_of_types_between(&self, types: &[&str], after: i64, upto: i64) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.between(Some(types), after, upto).await
    }

    /// Every event of one aggregate type, in seq order (uses the aggregate key's index).
    pub async fn events_of_type(&self, aggregate_type: &str) -> Result<Vec<LedgerEntry>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM gov_audit_trail_entries WHERE aggregate_type = $1 ORDER BY seq");
        let rows = sqlx::query(&sql).bind(aggregate_type).fetch_all(&self.pool).await?;
        rows.iter().map(entry).collect()
    }
}
