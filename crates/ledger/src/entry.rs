//! A ledger entry as stored, and the metadata hashed with it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::format;

/// Who and what caused an entry; hashed with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EntryMetadata {
    pub actor: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub causation_id: Option<String>,
    pub correlation_id: Option<String>,
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

mod hex_bytes {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}
