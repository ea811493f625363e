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

/// A 32-byte hash from its 64 hex digits, exactly as the ledger writes them: nothing
/// before or after (`hex` here is `const-hex`, which alone would also take a `0x` prefix).
pub(crate) fn hash32(field: &str, text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(format!("{field} is not 32 bytes of hex"));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_read_only_from_exactly_64_hex_digits() {
        let text = "00ff".repeat(16);
        assert_eq!(hash32("hash", &text).unwrap(), [[0x00, 0xff]; 16].concat().as_slice());
        assert_eq!(hash32("hash", &text.to_uppercase()).unwrap(), hash32("hash", &text).unwrap());
        for bad in
            [format!("0x{text}"), format!("0x{}", &text[2..]), text[1..].to_string(), format!("{text}00"), format!("{}g", &text[1..])]
        {
            assert_eq!(hash32("prev_hash", &bad), Err("prev_hash is not 32 bytes of hex".to_string()), "{bad}");
        }
    }
}
