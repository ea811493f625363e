//! The ledger adapter: the only code that touches the audit database.
//!
//! - [`format`]: canonical encoding and hashes (normative text: `docs/ledger-format.md`).
//! - [`appender`]: the group-commit appender, connected as `gov_ledger_writer`.
//! - [`reader`]: reads entries, connected as `gov_ledger_reader`.
//!
//! The writer can only append and the reader can only read; neither can change history.

pub mod appender;
pub mod bundle;
pub mod checkpoint;
pub mod export;
pub mod format;
pub mod merkle;
pub mod notary;
pub mod reader;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use appender::{Appender, AppenderHandle};
pub use reader::LedgerReader;

/// Who and what caused an entry; hashed with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EntryMetadata {
    pub actor: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub causation_id: Option<String>,
    pub correlation_id: Option<String>,
}

/// An entry to append. `seq`, `recorded_at` and the hashes are assigned by the appender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub tenant_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub event_type: String,
    pub event_version: String,
    /// Canonical JSON text (see [`format::canonical_json`]).
    pub payload: String,
    pub metadata: EntryMetadata,
}

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub hash: [u8; 32],
    pub recorded_at: DateTime<Utc>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub seq: i64,
    pub tenant_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    #[serde(flatten)]
    pub metadata: EntryMetadata,
    pub recorded_at: DateTime<Utc>,
    #[serde(with = "hex_bytes")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

impl LedgerEntry {
    /// The canonical bytes of this entry (format v1).
    pub fn encode(&self) -> Vec<u8> {
        let tenant = self.tenant_id.hyphenated().to_string();
        format::encode_entry(&format::EntryFields {
            seq: u64::try_from(self.seq).unwrap_or(0),
            tenant_id: &tenant,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            aggregate_seq: u64::try_from(self.aggregate_seq).unwrap_or(0),
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            actor: &self.metadata.actor,
            request_id: self.metadata.request_id.as_deref(),
            trace_id: self.metadata.trace_id.as_deref(),
            causation_id: self.metadata.causation_id.as_deref(),
            correlation_id: self.metadata.correlation_id.as_deref(),
            recorded_at: self.recorded_at,
            prev_hash: &self.prev_hash,
        })
    }

    /// The chain hash this entry should carry, recomputed from its fields.
    pub fn computed_hash(&self) -> [u8; 32] {
        format::entry_hash(&self.encode())
    }
}

/// Errors of the ledger adapter.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another command appended to the same aggregate first (optimistic concurrency).
    #[error("concurrent modification of {aggregate_type} {aggregate_id}")]
    Conflict { aggregate_type: String, aggregate_id: String },
    /// The audit database could not be reached or refused the append; nothing was stored.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The appender has shut down.
    #[error("ledger appender is shut down")]
    Closed,
    /// The entry is too large for the relay or holds text a read model cannot store;
    /// nothing was stored.
    #[error(transparent)]
    Refused(#[from] crate::limits::EntryRefused),
    /// A stored entry could not be read back (corrupt or foreign data).
    #[error("ledger entry {seq} is unreadable: {reason}")]
    Corrupt { seq: i64, reason: String },
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Unavailable(e.to_string())
    }
}

pub(crate) mod hex_bytes {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}
