//! The export format: JSON Lines, one object per line, `kind` = `entry` or `checkpoint`.
//! It is what `ledger export` writes, what `ledger verify` and `tests/verify_ledger.py`
//! read, and what the Kafka relay publishes for every entry. `docs/ledger-format.md`
//! specifies it.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{EntryMetadata, LedgerEntry};

/// One ledger entry, every hashed field included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportEntry {
    pub seq: i64,
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload's exact JSON text, as hashed.
    pub payload: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub causation_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Microseconds since the Unix epoch: the hashed form of `recorded_at`.
    pub recorded_at_micros: i64,
    /// The same instant, RFC 3339, for people.
    pub recorded_at: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportCheckpoint {
    pub tree_size: u64,
    pub root_hash: String,
    pub key_id: String,
    /// The whole signed note.
    pub note: String,
    pub created_at: String,
}

// Lines are short-lived and mostly entries; boxing would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportLine {
    Entry(ExportEntry),
    Checkpoint(ExportCheckpoint),
}

impl From<&LedgerEntry> for ExportEntry {
    fn from(e: &LedgerEntry) -> Self {
        ExportEntry {
            seq: e.seq,
            tenant_id: e.tenant_id.hyphenated().to_string(),
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            aggregate_seq: e.aggregate_seq,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload.clone(),
            actor: e.metadata.actor.clone(),
            request_id: e.metadata.request_id.clone(),
            trace_id: e.metadata.trace_id.clone(),
            causation_id: e.metadata.causation_id.clone(),
            correlation_id: e.metadata.correlation_id.clone(),
            recorded_at_micros: e.recorded_at.timestamp_micros(),
            recorded_at: e.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
        }
    }
}

fn hash32(field: &str, text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|_| format!("{field} is not hex"))?;
    bytes.as_slice().try_into().map_err(|_| format!("{field} is not 32 bytes"))
}

impl TryFrom<&ExportEntry> for LedgerEntry {
    type Error = String;

    fn try_from(e: &ExportEntry) -> Result<Self, Self::Error> {
        let recorded_at: DateTime<Utc> = Utc.timestamp_micros(e.recorded_at_micros).single().ok_or("recorded_at_micros is out of range")?;
        Ok(LedgerEntry {
            seq: e.seq,
            tenant_id: uuid::Uuid::parse_str(&e.tenant_id).map_err(|_| "tenant_id is not a UUID")?,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            aggregate_seq: e.aggregate_seq,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload.clone(),
            metadata: EntryMetadata {
                actor: e.actor.clone(),
                request_id: e.request_id.clone(),
                trace_id: e.trace_id.clone(),
                causation_id: e.causation_id.clone(),
                correlation_id: e.correlation_id.clone(),
            },
            recorded_at,
            prev_hash: hash32("prev_hash", &e.prev_hash)?,
            hash: hash32("hash", &e.hash)?,
        })
    }
}

impl ExportLine {
    /// Parses one line. Entry lines (which the exporter writes with `kind` first) skip
    /// serde's buffering of internally tagged enums, which would halve verify speed.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        Self::parse_bytes(line.as_bytes())
    }

    /// [`ExportLine::parse`] of a line's bytes (UTF-8 is checked as it is parsed).
    pub fn parse_bytes(line: &[u8]) -> Result<Self, serde_json::Error> {
        if line.starts_with(br#"{"kind":"entry","#) {
            return serde_json::from_slice::<ExportEntry>(line).map(ExportLine::Entry);
        }
        serde_json::from_slice(line)
    }
}

/// A self-contained proof file (`ledger prove`, the proof endpoints), checked offline by
/// `ledger verify-proof`.
#[allow(clippy::large_enum_variant)] // one per file or response
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProofFile {
    /// An entry, its audit path, and the signed checkpoint whose root it leads to.
    InclusionProof { entry: ExportEntry, leaf_index: u64, tree_size: u64, inclusion_proof: Vec<String>, checkpoint: String },
    /// Two signed checkpoints and the proof that the second extends the first.
    ConsistencyProof { from_checkpoint: String, to_checkpoint: String, consistency_proof: Vec<String> },
}

pub fn decode_hashes(field: &str, hashes: &[String]) -> Result<Vec<[u8; 32]>, String> {
    hashes.iter().map(|h| hash32(field, h)).collect()
}
