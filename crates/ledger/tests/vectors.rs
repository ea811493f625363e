//! The test vectors of docs/ledger-format.md: three chained entries with their canonical
//! bytes, hashes, Merkle leaves, the tree root and a checkpoint signed with a published
//! test key. Run with UPDATE_LEDGER_VECTORS=1 to regenerate after a deliberate format
//! change (which must also bump the format version). The independent Python verifier's
//! check of the same file is `tests/ledger_vectors.rs` in the service (it needs PyNaCl).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use ledger::checkpoint::NoteSigner;
use ledger::export::ExportEntry;
use ledger::format::{leaf_hash, GENESIS_HASH};
use ledger::merkle::MerkleTree;
use ledger::{EntryMetadata, LedgerEntry};
use serde_json::{json, Value};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ledger-test-vectors.json");

fn entries() -> Vec<LedgerEntry> {
    let base = |seq: i64, payload: &str, meta: EntryMetadata, micros: i64| LedgerEntry {
        seq,
        tenant_id: uuid::Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap(),
        aggregate_type: "Policy".into(),
        aggregate_id: "01a222d8-761d-75d4-808f-d1f0a65cccc7".into(),
        aggregate_seq: seq,
        event_type: ["PolicyCreated", "PolicyVersionAdded", "PolicyActivated"][(seq - 1) as usize].into(),
        event_version: "1".into(),
        payload: payload.into(),
        metadata: meta,
        recorded_at: Utc.timestamp_micros(micros).single().unwrap(),
        prev_hash: GENESIS_HASH,
        hash: [0; 32],
    };
    let mut list = vec![
        base(
            1,
            r#"{"actor":"alice","description":"","name":"model-gate","policy_id":"01a222d8-761d-75d4-808f-d1f0a65cccc7","reason":null,"rego":"package gate\n\nallow if input.accuracy >= 0.9\n","tenant_id":"6f9619ff-8b86-4011-b42d-00c04fc964ff","version":1}"#,
            EntryMetadata {
                actor: "alice".into(),
                request_id: Some("req-1".into()),
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                causation_id: Some("cmd-1".into()),
                correlation_id: Some("corr-1".into()),
            },
            1_764_320_000_000_001,
        ),
        base(
            2,
            r#"{"actor":"bört","reason":"añadir umbral","rego":"package gate\n\nallow if input.accuracy >= 0.95\n","version":2}"#,
            EntryMetadata { actor: "bört".into(), ..Default::default() },
            1_764_320_000_500_000,
        ),
        base(
            3,
            r#"{"actor":"carol","reason":"go live","version":2,"weights":[0.5,1e-7,-3]}"#,
            EntryMetadata { actor: "carol".into(), request_id: Some("req-3".into()), ..Default::default() },
            1_764_320_001_000_000,
        ),
    ];
    let mut prev = GENESIS_HASH;
    for e in &mut list {
        e.prev_hash = prev;
        e.hash = e.computed_hash();
        prev = e.hash;
    }
    list
}

/// The published test key: its 32-byte seed is 0x01, 0x02, …, 0x20. Never use it.
fn test_signer() -> NoteSigner {
    let seed: [u8; 32] = core::array::from_fn(|i| (i + 1) as u8);
    NoteSigner::new("vectors.example/ledger", ed25519_dalek::SigningKey::from_bytes(&seed)).unwrap()
}

fn vectors() -> Value {
    let list = entries();
    let mut tree = MerkleTree::new();
    let mut out = Vec::new();
    for e in &list {
        let bytes = e.encode();
        tree.push(leaf_hash(&bytes));
        out.push(json!({
            "entry": ExportEntry::from(e),
            "canonical_bytes_hex": hex::encode(&bytes),
            "hash": hex::encode(e.hash),
            "leaf_hash": hex::encode(leaf_hash(&bytes)),
        }));
    }
    let root = tree.root(3).unwrap();
    let signer = test_signer();
    json!({
        "format": "aumos.governance.ledger.entry.v1",
        "entries": out,
        "merkle_root_size_1": hex::encode(tree.root(1).unwrap()),
        "merkle_root_size_2": hex::encode(tree.root(2).unwrap()),
        "merkle_root_size_3": hex::encode(root),
        "test_key_seed_hex": hex::encode(core::array::from_fn::<u8, 32, _>(|i| (i + 1) as u8)),
        "verifier_key": signer.verifier_key(),
        "checkpoint_note": signer.sign_checkpoint("vectors.example/ledger", 3, &root),
    })
}

#[test]
fn the_published_test_vectors_match_this_implementation() {
    let computed = vectors();
    if std::env::var("UPDATE_LEDGER_VECTORS").is_ok() {
        std::fs::write(PATH, serde_json::to_string_pretty(&computed).unwrap() + "\n").unwrap();
    }
    let published: Value = serde_json::from_str(&std::fs::read_to_string(PATH).expect("docs/ledger-test-vectors.json")).unwrap();
    assert_eq!(computed, published, "the canonical encoding changed: that needs a new format version, not new v1 vectors");
}

#[test]
fn the_doc_shows_the_published_hashes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ledger-format.md")).unwrap();
    let v = vectors();
    for e in v["entries"].as_array().unwrap() {
        assert!(doc.contains(e["hash"].as_str().unwrap()), "docs/ledger-format.md lists entry hash {}", e["hash"]);
    }
    assert!(doc.contains(v["merkle_root_size_3"].as_str().unwrap()));
}
