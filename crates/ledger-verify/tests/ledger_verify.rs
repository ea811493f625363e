//! The `ledger-verify` binary on files made here with the `ledger` crate's own API: a small
//! ledger signed by a key generated in the test, its export, a proof file and an evidence
//! bundle. What verifies exits 0; what was tampered with exits 1 naming the first bad seq.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{TimeZone, Utc};
use ledger::bundle::{BundleItem, EvidenceBundle};
use ledger::checkpoint::NoteSigner;
use ledger::export::{ExportCheckpoint, ExportEntry, ExportLine, ProofFile};
use ledger::format::{canonical_json, leaf_hash, GENESIS_HASH};
use ledger::merkle::MerkleTree;
use ledger::{EntryMetadata, LedgerEntry};
use serde_json::json;
use sha2::{Digest, Sha256};

const ORIGIN: &str = "test.example/ledger";
const EVIDENCE_ID: &str = "0190a6a0-0000-7000-8000-000000000004";
const ARTIFACT: &[u8] = b"user,role,reviewed\nalice,admin,2026-01-05\n";

/// A ledger of five chained entries (the fourth is an evidence submission) and a signer.
struct Ledger {
    entries: Vec<LedgerEntry>,
    tree: MerkleTree,
    signer: NoteSigner,
}

impl Ledger {
    fn new() -> Self {
        let artifact_sha256 = hex::encode(Sha256::digest(ARTIFACT));
        let signer = NoteSigner::from_pem(ORIGIN, &NoteSigner::generate_pem().unwrap()).unwrap();
        let tenant = uuid::Uuid::parse_str("6f9619ff-8b86-4011-b42d-00c04fc964ff").unwrap();
        let (mut entries, mut tree, mut prev) = (Vec::new(), MerkleTree::new(), GENESIS_HASH);
        for seq in 1..=5i64 {
            let evidence = seq == 4;
            let payload = if evidence {
                json!({"evidence_id": EVIDENCE_ID, "artifact": {"sha256": artifact_sha256}})
            } else {
                json!({"n": seq, "rego": "package gate\n\nallow if input.accuracy >= 0.9\n"})
            };
            let mut e = LedgerEntry {
                seq,
                tenant_id: tenant,
                aggregate_type: if evidence { "Evidence" } else { "Policy" }.into(),
                aggregate_id: if evidence { EVIDENCE_ID.into() } else { "01a222d8-761d-75d4-808f-d1f0a65cccc7".into() },
                aggregate_seq: if evidence { 1 } else { seq },
                event_type: if evidence { "EvidenceSubmitted" } else { "PolicyVersionAdded" }.into(),
                event_version: "1".into(),
                payload: canonical_json(&payload),
                metadata: EntryMetadata { actor: "alice".into(), request_id: Some(format!("req-{seq}")), ..Default::default() },
                recorded_at: Utc.timestamp_micros(1_764_320_000_000_000 + seq * 1000).single().unwrap(),
                prev_hash: prev,
                hash: [0; 32],
            };
            e.hash = e.computed_hash();
            prev = e.hash;
            tree.push(leaf_hash(&e.encode()));
            entries.push(e);
        }
        Ledger { entries, tree, signer }
    }

    fn note(&self, size: u64) -> String {
        self.signer.sign_checkpoint(ORIGIN, size, &self.tree.root(size).unwrap())
    }

    fn checkpoint(&self, size: u64) -> ExportCheckpoint {
        ExportCheckpoint {
            tree_size: size,
            root_hash: hex::encode(self.tree.root(size).unwrap()),
            key_id: self.signer.key_id_hex(),
            note: self.note(size),
            created_at: "2025-11-28T09:00:00.000000Z".into(),
        }
    }

    /// The export as `governance-engine ledger export` writes it: entries in seq order, each
    /// checkpoint right after the entry that completes it (here at sizes 3 and 5).
    fn export(&self) -> Vec<ExportLine> {
        let mut lines = Vec::new();
        for e in &self.entries {
            lines.push(ExportLine::Entry(ExportEntry::from(e)));
            if e.seq == 3 || e.seq == 5 {
                lines.push(ExportLine::Checkpoint(self.checkpoint(e.seq as u64)));
            }
        }
        lines
    }

    fn inclusion_proof(&self, seq: i64) -> ProofFile {
        let size = self.tree.size();
        ProofFile::InclusionProof {
            entry: ExportEntry::from(&self.entries[(seq - 1) as usize]),
            leaf_index: (seq - 1) as u64,
            tree_size: size,
            inclusion_proof: self.tree.inclusion_proof((seq - 1) as u64, size).unwrap().iter().map(hex::encode).collect(),
            checkpoint: self.note(size),
        }
    }
}

/// A fresh directory for one test under Cargo's temporary directory for integration tests.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ledger-verify").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_export(path: &Path, lines: &[ExportLine]) {
    let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(path, text).unwrap();
}

fn ledger_verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger-verify")).args(args).output().expect("runs ledger-verify")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_export_signed_by_the_trusted_key_verifies() {
    let dir = scratch("verifies");
    let ledger = Ledger::new();
    let export = dir.join("ledger.jsonl");
    write_export(&export, &ledger.export());
    let key = ledger.signer.verifier_key();

    let out = ledger_verify(&["verify", export.to_str().unwrap(), "--public-key", &key, "--origin", ORIGIN]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("OK: 5 entries, 2 signed checkpoints (largest covers 5)"), "{stdout}");
}

#[test]
fn an_export_with_one_payload_byte_changed_fails_naming_its_seq() {
    let dir = scratch("tampered");
    let ledger = Ledger::new();
    let mut lines = ledger.export();
    let ExportLine::Entry(third) = &mut lines[2] else { panic!("line 3 is entry 3") };
    assert_eq!(third.seq, 3);
    third.payload = third.payload.replacen(r#""n":3"#, r#""n":4"#, 1);
    let export = dir.join("ledger.jsonl");
    write_export(&export, &lines);

    let out = ledger_verify(&["verify", export.to_str().unwrap(), "--public-key", &ledger.signer.verifier_key()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("FAILED: first bad seq 3: hash does not match the entry's contents"), "{stderr}");
}

#[test]
fn an_export_checked_against_another_key_fails() {
    let dir = scratch("other-key");
    let ledger = Ledger::new();
    let export = dir.join("ledger.jsonl");
    write_export(&export, &ledger.export());
    let other = NoteSigner::from_pem(ORIGIN, &NoteSigner::generate_pem().unwrap()).unwrap().verifier_key();

    let out = ledger_verify(&["verify", export.to_str().unwrap(), "--public-key", &other]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("FAILED: first bad seq 3: checkpoint at tree size 3: no signature by a known key"), "{stderr}");
}

#[test]
fn an_inclusion_proof_verifies_and_a_tampered_one_fails() {
    let dir = scratch("proof");
    let ledger = Ledger::new();
    let key_file = dir.join("ledger.pub");
    std::fs::write(&key_file, ledger.signer.verifier_key() + "\n").unwrap();
    let key = key_file.to_str().unwrap();

    let good = dir.join("proof.json");
    std::fs::write(&good, serde_json::to_string_pretty(&ledger.inclusion_proof(2)).unwrap()).unwrap();
    let out = ledger_verify(&["verify-proof", good.to_str().unwrap(), "--public-key", key]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("entry 2 is included in the ledger of 5 entries"), "{stdout}");

    let mut proof = ledger.inclusion_proof(2);
    let ProofFile::InclusionProof { entry, .. } = &mut proof else { unreachable!() };
    entry.actor = "mallory".into();
    let bad = dir.join("tampered.json");
    std::fs::write(&bad, serde_json::to_string_pretty(&proof).unwrap()).unwrap();
    let out = ledger_verify(&["verify-proof", bad.to_str().unwrap(), "--public-key", key]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("FAILED: first bad seq 2:"), "{stderr}");
}

#[test]
fn an_evidence_bundle_verifies_with_its_artifact_and_not_with_a_changed_one() {
    let dir = scratch("bundle");
    let ledger = Ledger::new();
    let sha256 = hex::encode(Sha256::digest(ARTIFACT));
    let bundle = EvidenceBundle {
        workflow_id: uuid::Uuid::parse_str("0190a6a0-0000-7000-8000-00000000000f").unwrap(),
        checkpoint: ledger.note(5),
        tree_size: 5,
        verifier_key: ledger.signer.verifier_key(),
        items: vec![BundleItem {
            evidence_id: uuid::Uuid::parse_str(EVIDENCE_ID).unwrap(),
            status: "accepted".into(),
            sha256: sha256.clone(),
            ledger_seq: 4,
            proof: ledger.inclusion_proof(4),
        }],
        system_evidence: vec![],
    };
    let file = dir.join("bundle.json");
    std::fs::write(&file, serde_json::to_string(&bundle).unwrap()).unwrap();
    let artifacts = dir.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(EVIDENCE_ID), ARTIFACT).unwrap();
    let key = ledger.signer.verifier_key();
    let args = ["verify-bundle", file.to_str().unwrap(), "--public-key", &key, "--artifacts", artifacts.to_str().unwrap()];

    let out = ledger_verify(&args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1 artifacts match their recorded hashes"), "{stdout}");

    std::fs::write(artifacts.join(EVIDENCE_ID), b"user,role,reviewed\nmallory,admin,2026-01-05\n").unwrap();
    let out = ledger_verify(&args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("FAILED: first bad seq 4:") && stderr.contains("not the recorded"), "{stderr}");
}

#[test]
fn an_unreadable_input_exits_2_without_a_verdict() {
    let dir = scratch("unreadable");
    let key = Ledger::new().signer.verifier_key();
    let missing = dir.join("missing.json");
    let out = ledger_verify(&["verify-proof", missing.to_str().unwrap(), "--public-key", &key]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("missing.json"), "{stderr}");

    let out = ledger_verify(&["verify", missing.to_str().unwrap(), "--public-key", "not-a-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
}

#[test]
fn every_subcommand_explains_itself_with_help() {
    for (sub, mentions) in [("verify", "--checkpoint"), ("verify-proof", "inclusion proof"), ("verify-bundle", "--artifacts")] {
        let out = ledger_verify(&[sub, "--help"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{sub}: {stderr}");
        assert!(stdout.contains("--public-key") && stdout.contains(mentions), "{sub}: {stdout}");
    }
    let (stdout, _) = text(&ledger_verify(&["--help"]));
    assert!(stdout.contains("Exit codes"), "{stdout}");
}
