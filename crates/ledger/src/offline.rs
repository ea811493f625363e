//! The auditor's offline commands on files: verify an export, a proof file or an evidence
//! bundle against trusted verifier keys. `ledger-verify` and `governance-engine ledger`
//! both call these, so the two tools always reach the same verdict with the same words.
//!
//! The convention of both tools: a verified input prints a summary on stdout and exits 0;
//! a failed verification prints `FAILED: first bad seq <seq>: <reason>` on stderr and exits
//! 1; an input that cannot be used at all (unreadable file, no key) exits 2 (see [`report`]).

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bundle::{verify_bundle, EvidenceBundle};
use crate::checkpoint::VerifierKey;
use crate::export::{ExportCheckpoint, ExportLine, ProofFile};
use crate::verify::{verify_proof, EntryDigest, Verifier, VerifyError};

/// An input that could not be used (unreadable, not the expected format, no key given):
/// no verdict on the ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The verdict of a command: success text, or the first bad seq.
#[derive(Debug)]
pub enum Outcome {
    Ok(String),
    Failed(VerifyError),
}

impl From<Result<String, VerifyError>> for Outcome {
    fn from(r: Result<String, VerifyError>) -> Self {
        match r {
            Ok(text) => Outcome::Ok(text),
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// Prints a command's result and returns its exit code: 0 verified (summary on stdout),
/// 1 not verified (the first bad seq on stderr), 2 unusable input (the error on stderr).
#[allow(clippy::print_stdout)] // stdout carries the verdict
pub fn report<E: Display>(result: Result<Outcome, E>) -> ExitCode {
    match result {
        Ok(Outcome::Ok(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed(e)) => {
            eprintln!("FAILED: first bad seq {}: {}", e.seq, e.reason);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reads trusted keys: each spec is a file with one key per line, or the key text itself.
pub fn load_keys(specs: &[String]) -> Result<Vec<VerifierKey>, InputError> {
    let mut keys = Vec::new();
    for spec in specs {
        let text = if Path::new(spec).exists() {
            std::fs::read_to_string(spec).map_err(|e| InputError(format!("{spec}: {e}")))?
        } else {
            spec.clone()
        };
        keys.extend(VerifierKey::parse_all(&text).map_err(|e| InputError(format!("--public-key {spec}: {e}")))?);
    }
    if keys.is_empty() {
        return Err(InputError("no verifier key given".into()));
    }
    Ok(keys)
}

/// Verifies an export file completely: every hash, the chain, every checkpoint's root and
/// signature, consistency between checkpoints, and consistency with the auditor's own
/// signed `notes`. With `origin`, every checkpoint must carry it.
pub fn verify_export(file: &Path, keys: Vec<VerifierKey>, origin: Option<String>, notes: &[PathBuf]) -> Outcome {
    let mut v = Verifier::new(keys).with_origin(origin);
    verify_file(file, &mut v, notes).and_then(|_| v.finish()).map(|s| s.to_string()).into()
}

fn progress(what: &str, n: u64) {
    if n.is_multiple_of(100_000) {
        eprintln!("{what}: {n} lines");
    }
}

/// Bytes of an export handed to a worker at a time (cut at a line end).
const CHUNK_BYTES: usize = 1 << 20;

/// One line of an export as a worker leaves it for the verifier: an entry's digest, a
/// checkpoint, or why the line (its index in the chunk) cannot be read.
enum Line {
    Entry(Result<EntryDigest, VerifyError>),
    Checkpoint(ExportCheckpoint),
    Unreadable(usize, String),
}

/// A chunk's lines as digested, and how many lines it holds.
struct Digested {
    lines: usize,
    items: Vec<Line>,
}

/// Parses and hashes the lines of one chunk. After an unreadable line the chunk ends: the
/// verifier stops there.
fn digest_chunk(chunk: &[u8]) -> Digested {
    let mut items = Vec::with_capacity(chunk.len() / 512 + 1);
    let (mut start, mut lines) = (0, 0);
    while start < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
        let raw = &chunk[start..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (index, next) = (lines, end + 1);
        lines += 1;
        start = next;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match ExportLine::parse_bytes(raw) {
            Ok(ExportLine::Entry(e)) => items.push(Line::Entry(EntryDigest::of_export(&e))),
            Ok(ExportLine::Checkpoint(c)) => items.push(Line::Checkpoint(c)),
            Err(e) => {
                items.push(Line::Unreadable(index, e.to_string()));
                break;
            }
        }
    }
    Digested { lines, items }
}

type Work = (Vec<u8>, std::sync::mpsc::SyncSender<Digested>);
type Ordered = Result<std::sync::mpsc::Receiver<Digested>, String>;

/// Reads the file in chunks cut at line ends; each goes to the workers, and its answer's
/// receiver, in file order, to the verifier.
fn split(file: std::fs::File, work: std::sync::mpsc::SyncSender<Work>, order: std::sync::mpsc::SyncSender<Ordered>) {
    use std::io::Read;
    let mut file = std::io::BufReader::with_capacity(0, file);
    let mut carry = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        buf.reserve(CHUNK_BYTES);
        let read = match file.by_ref().take(CHUNK_BYTES as u64).read_to_end(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = order.send(Err(e.to_string()));
                return;
            }
        };
        let end = if read == 0 { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1) };
        if end == 0 && read > 0 {
            // A line longer than what is read so far: read on.
            carry = buf;
            continue;
        }
        carry = buf.split_off(end);
        if buf.is_empty() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if order.send(Ok(rx)).is_err() || work.send((buf, tx)).is_err() {
            return;
        }
    }
}

/// Feeds an export file (and the auditor's signed `notes`) into `v`; the caller then calls
/// [`Verifier::finish`]. Workers, one per core, parse and hash chunks of lines at once;
/// this thread takes their digests in file order and checks the chain and the tree (the
/// ledger benchmark times this same code). Memory stays bounded: a few chunks are in
/// flight. Progress goes to stderr.
pub fn verify_file(path: &Path, v: &mut Verifier, notes: &[PathBuf]) -> Result<(), VerifyError> {
    use std::sync::mpsc::sync_channel;
    let io = |e: String| VerifyError { seq: 0, reason: e };
    for note in notes {
        let text = std::fs::read_to_string(note).map_err(|e| io(format!("{}: {e}", note.display())))?;
        v.note(&text)?;
    }
    let file = std::fs::File::open(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let (work_tx, work_rx) = sync_channel::<Work>(workers * 2);
    let (order_tx, order_rx) = sync_channel(workers * 4);
    let work_rx = std::sync::Arc::new(std::sync::Mutex::new(work_rx));
    let mut threads: Vec<_> = (0..workers)
        .map(|_| {
            let work = work_rx.clone();
            std::thread::spawn(move || loop {
                let next = match work.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                let Ok((chunk, answer)) = next else { return };
                let _ = answer.send(digest_chunk(&chunk));
            })
        })
        .collect();
    threads.push(std::thread::spawn(move || split(file, work_tx, order_tx)));
    let (mut n, mut lines_before) = (0u64, 0usize);
    let result = (|| {
        for chunk in order_rx {
            let digested = chunk.map_err(io)?.recv().map_err(|_| io("a verifier thread stopped".into()))?;
            for line in digested.items {
                match line {
                    Line::Entry(digest) => v.digest(&digest?)?,
                    Line::Checkpoint(c) => v.checkpoint(&c)?,
                    Line::Unreadable(index, e) => {
                        let reason = format!("line {}: {e}", lines_before + index + 1);
                        return Err(VerifyError { seq: v.entries() as i64 + 1, reason });
                    }
                }
                n += 1;
                progress("verify", n);
            }
            lines_before += digested.lines;
        }
        Ok(())
    })();
    // On an early error the receivers are gone: the reader stops at its next send, and the
    // workers when their queue closes.
    for t in threads {
        let _ = t.join();
    }
    result
}

/// Checks a proof file (inclusion or consistency) offline.
pub fn verify_proof_file(file: &Path, keys: &[VerifierKey]) -> Result<Outcome, InputError> {
    let text = std::fs::read_to_string(file).map_err(|e| InputError(format!("{}: {e}", file.display())))?;
    let proof: ProofFile = serde_json::from_str(&text).map_err(|e| InputError(format!("{}: not a proof file: {e}", file.display())))?;
    Ok(verify_proof(&proof, keys).into())
}

/// Checks an evidence bundle offline; with `artifacts`, also each artifact's hash.
pub fn verify_bundle_file(file: &Path, keys: &[VerifierKey], artifacts: Option<&Path>) -> Result<Outcome, InputError> {
    let text = std::fs::read_to_string(file).map_err(|e| InputError(format!("{}: {e}", file.display())))?;
    let bundle: EvidenceBundle =
        serde_json::from_str(&text).map_err(|e| InputError(format!("{}: not an evidence bundle: {e}", file.display())))?;
    Ok(verify_bundle(&bundle, keys, artifacts).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::NoteSigner;
    use crate::export::ExportEntry;
    use crate::format::{leaf_hash, GENESIS_HASH};
    use crate::merkle::MerkleTree;
    use crate::{EntryMetadata, LedgerEntry};

    /// An export of `n` entries of about 700 bytes (several chunks), signed at every 2,000.
    fn export(n: i64) -> (String, NoteSigner) {
        let signer = NoteSigner::from_pem("test.example/ledger", &NoteSigner::generate_pem().unwrap()).unwrap();
        let (mut out, mut tree, mut prev) = (String::new(), MerkleTree::new(), GENESIS_HASH);
        for seq in 1..=n {
            let mut e = LedgerEntry {
                seq,
                tenant_id: uuid::Uuid::nil(),
                aggregate_type: "Policy".into(),
                aggregate_id: format!("agg-{}", seq % 7),
                aggregate_seq: seq,
                event_type: "PolicyEvaluated".into(),
                event_version: "1".into(),
                payload: format!("{{\"n\":{seq},\"pad\":\"{}\"}}", "x".repeat(300)),
                metadata: EntryMetadata { actor: "svc".into(), ..Default::default() },
                recorded_at: chrono::TimeZone::timestamp_micros(&chrono::Utc, 1_764_320_000_000_000 + seq).single().unwrap(),
                prev_hash: prev,
                hash: [0; 32],
            };
            e.hash = e.computed_hash();
            prev = e.hash;
            tree.push(leaf_hash(&e.encode()));
            out.push_str(&serde_json::to_string(&ExportLine::Entry(ExportEntry::from(&e))).unwrap());
            out.push('\n');
            if seq % 2000 == 0 {
                let root = tree.root(seq as u64).unwrap();
                let cp = ExportCheckpoint {
                    tree_size: seq as u64,
                    root_hash: hex::encode(root),
                    key_id: signer.key_id_hex(),
                    note: signer.sign_checkpoint("test.example/ledger", seq as u64, &root),
                    created_at: "2026-11-30T00:00:00Z".into(),
                };
                out.push_str(&serde_json::to_string(&ExportLine::Checkpoint(cp)).unwrap());
                out.push('\n');
            }
        }
        (out, signer)
    }

    fn verify(text: &str, signer: &NoteSigner, name: &str) -> Result<crate::verify::Summary, VerifyError> {
        let dir = std::env::temp_dir().join(format!("ledger-offline-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("export.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut v = Verifier::new(vec![VerifierKey::parse(&signer.verifier_key()).unwrap()]);
        let result = verify_file(&path, &mut v, &[]).and_then(|_| v.finish());
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn an_export_of_many_chunks_verifies_and_the_first_bad_entry_or_line_is_named() {
        let (text, signer) = export(6000);
        assert!(text.len() > 3 * CHUNK_BYTES, "several chunks: {} bytes", text.len());
        let summary = verify(&text, &signer, "ok").unwrap();
        assert_eq!((summary.entries, summary.checkpoints), (6000, 3));

        // Entry 5,000 altered, deep in a later chunk (and 5,500 too: the first is named).
        let altered = text.replace("{\\\"n\\\":5000,", "{\\\"n\\\":5001,").replace("{\\\"n\\\":5500,", "{\\\"n\\\":5502,");
        assert_ne!(altered, text);
        let e = verify(&altered, &signer, "altered").unwrap_err();
        assert_eq!((e.seq, e.reason.contains("altered entry")), (5000, true), "{e}");

        // A line that is not JSON after entry 4,500: the next seq, and its line number.
        let mut lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.contains("\"seq\":4500,")).unwrap() + 1;
        lines.insert(at, "{not json");
        let e = verify(&(lines.join("\n") + "\n"), &signer, "garbage").unwrap_err();
        assert_eq!(e.seq, 4501, "{e}");
        assert!(e.reason.starts_with(&format!("line {}:", at + 1)), "{e}");

        // A checkpoint moved after later entries: an export lists each one right after the
        // entry that completes it, and the verifier keeps no tree to look back into.
        let mut lines: Vec<&str> = text.lines().collect();
        let cp = lines.iter().position(|l| l.contains("\"tree_size\":2000,")).unwrap();
        let moved = lines.remove(cp);
        let after = lines.iter().position(|l| l.contains("\"seq\":2500,")).unwrap() + 1;
        lines.insert(after, moved);
        let e = verify(&(lines.join("\n") + "\n"), &signer, "late").unwrap_err();
        assert_eq!(e.seq, 2000, "{e}");
        assert!(e.reason.contains("comes after entry 2500"), "{e}");

        // Entries missing from the middle.
        let cut: Vec<&str> = text.lines().filter(|l| !l.contains("\"seq\":3001,")).collect();
        let e = verify(&(cut.join("\n") + "\n"), &signer, "missing").unwrap_err();
        assert_eq!(e.seq, 3001, "{e}");

        // A hash written as 0x and its 64 digits: the same bytes, but not the ledger's text.
        let prefixed: Vec<String> = text
            .lines()
            .map(|l| if l.contains("\"seq\":3500,") { l.replacen("\"prev_hash\":\"", "\"prev_hash\":\"0x", 1) } else { l.to_owned() })
            .collect();
        assert_ne!(prefixed.join("\n") + "\n", text);
        let e = verify(&(prefixed.join("\n") + "\n"), &signer, "prefixed").unwrap_err();
        assert_eq!((e.seq, e.reason.as_str()), (3500, "prev_hash is not 32 bytes of hex"), "{e}");
    }
}
