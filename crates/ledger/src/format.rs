//! The canonical, versioned encoding of a ledger entry and the hashes computed over it.
//!
//! `docs/ledger-format.md` is the normative description; this module is one
//! implementation of it and `tests/verify_ledger.py` is another. Any change here is a new
//! format version, never an edit of v1.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Domain-separation tag of format v1; the first field of every encoded entry.
pub const ENTRY_TAG_V1: &[u8] = b"aumos.governance.ledger.entry.v1";
/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// Every field of a ledger entry, exactly as hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFields<'a> {
    pub seq: u64,
    /// Lowercase hyphenated UUID text.
    pub tenant_id: &'a str,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub aggregate_seq: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// The exact UTF-8 bytes of the JSON payload as stored.
    pub payload: &'a str,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub causation_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: &'a [u8; 32],
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths above u32::MAX cannot occur: payloads are bounded far below it by the API.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_bytes(out, v.as_bytes());
        }
    }
}

/// Microseconds since the Unix epoch: the precision PostgreSQL stores.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The canonical bytes of one entry (format v1).
pub fn encode_entry(f: &EntryFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + f.payload.len());
    encode_entry_into(&mut out, f);
    out
}

/// Both hashes of an entry from its fields, `(entry hash, leaf hash)`, encoding it once
/// behind the leaf's `0x00` prefix so each digest runs over one contiguous slice.
pub fn entry_and_leaf_hash(f: &EntryFields<'_>) -> ([u8; 32], [u8; 32]) {
    let mut leaf = Vec::with_capacity(161 + f.payload.len());
    leaf.push(0u8);
    encode_entry_into(&mut leaf, f);
    (Sha256::digest(&leaf[1..]).into(), Sha256::digest(&leaf).into())
}

/// Appends the canonical bytes of one entry (format v1) to `out`.
fn encode_entry_into(out: &mut Vec<u8>, f: &EntryFields<'_>) {
    put_bytes(out, ENTRY_TAG_V1);
    out.extend_from_slice(&f.seq.to_be_bytes());
    put_bytes(out, f.tenant_id.as_bytes());
    put_bytes(out, f.aggregate_type.as_bytes());
    put_bytes(out, f.aggregate_id.as_bytes());
    out.extend_from_slice(&f.aggregate_seq.to_be_bytes());
    put_bytes(out, f.event_type.as_bytes());
    put_bytes(out, f.event_version.as_bytes());
    put_bytes(out, f.payload.as_bytes());
    put_bytes(out, f.actor.as_bytes());
    put_opt(out, f.request_id);
    put_opt(out, f.trace_id);
    put_opt(out, f.causation_id);
    put_opt(out, f.correlation_id);
    out.extend_from_slice(&micros(f.recorded_at).to_be_bytes());
    out.extend_from_slice(f.prev_hash);
}

/// The chain hash: SHA-256 over the canonical bytes (which end with `prev_hash`).
pub fn entry_hash(encoded: &[u8]) -> [u8; 32] {
    Sha256::digest(encoded).into()
}

/// RFC 6962 leaf hash of an entry: SHA-256(0x00 ‖ canonical bytes).
pub fn leaf_hash(encoded: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(encoded);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Serialises a JSON value in the form the ledger stores: compact, object keys sorted
/// (serde_json's default map is ordered), numbers as serde_json prints them. Hashing uses
/// the stored bytes, so a verifier never has to re-canonicalise JSON.
pub fn canonical_json(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings and it holds no foreign types.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fields(prev: &[u8; 32]) -> EntryFields<'_> {
        EntryFields {
            seq: 1,
            tenant_id: "11111111-1111-4111-8111-111111111111",
            aggregate_type: "Policy",
            aggregate_id: "33333333-3333-4333-8333-333333333333",
            aggregate_seq: 1,
            event_type: "PolicyCreated",
            event_version: "1",
            payload: r#"{"name":"gate"}"#,
            actor: "alice",
            request_id: Some("req-1"),
            trace_id: None,
            causation_id: None,
            correlation_id: None,
            recorded_at: Utc.timestamp_micros(1_764_000_000_000_000).single().unwrap(),
            prev_hash: prev,
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = entry_hash(&encode_entry(&fields(&GENESIS_HASH)));
        let mut f = fields(&GENESIS_HASH);
        f.payload = r#"{"name":"gatf"}"#;
        assert_ne!(entry_hash(&encode_entry(&f)), base, "payload");
        let mut f = fields(&GENESIS_HASH);
        f.request_id = None;
        assert_ne!(entry_hash(&encode_entry(&f)), base, "metadata presence");
        let mut f = fields(&GENESIS_HASH);
        f.tenant_id = "22222222-2222-4222-8222-222222222222";
        assert_ne!(entry_hash(&encode_entry(&f)), base, "tenant");
        let other_prev = [7u8; 32];
        assert_ne!(entry_hash(&encode_entry(&fields(&other_prev))), base, "prev_hash");
    }

    #[test]
    fn length_prefixes_keep_adjacent_fields_apart() {
        let mut a = fields(&GENESIS_HASH);
        a.aggregate_type = "Pol";
        a.aggregate_id = "icy";
        let mut b = fields(&GENESIS_HASH);
        b.aggregate_type = "Policy";
        b.aggregate_id = "";
        assert_ne!(encode_entry(&a), encode_entry(&b));
    }

    #[test]
    fn leaf_and_chain_hashes_are_domain_separated() {
        let enc = encode_entry(&fields(&GENESIS_HASH));
        assert_ne!(leaf_hash(&enc), entry_hash(&enc));
    }

    #[test]
    fn both_hashes_at_once_are_the_hashes_of_the_encoding() {
        let prev = [7u8; 32];
        let encoded = encode_entry(&fields(&prev));
        assert_eq!(entry_and_leaf_hash(&fields(&prev)), (entry_hash(&encoded), leaf_hash(&encoded)));
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let v: serde_json::Value = serde_json::from_str(r#"{ "b": 1, "a": [true, null] }"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":[true,null],"b":1}"#);
    }
}
