//! The auditor's offline commands on files: verify an export, a proof file or an evidence
//! bundle against trusted verifier keys. `ledger-verify` and `governance-engine ledger`
//! both call these, so the two tools always reach the same verdict with the same words.
//!
//! The convention of both tools: a verified input prints a summary on stdout and exits 0;
//! a failed verification prints `FAILED: first bad seq <seq>: <reason>` on stderr and exits
//! 1; an input that cannot be used at all (unreadable file, no key) exits 2 (see [`report`]).

use std::fmt::Display;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bundle::{verify_bundle, EvidenceBundle};
use crate::checkpoint::VerifierKey;
use crate::export::{ExportLine, ProofFile};
use crate::verify::{verify_proof, Verifier, VerifyError};

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

/// Feeds an export file (and the auditor's signed `notes`) into `v`; the caller then calls
/// [`Verifier::finish`]. A reader thread parses lines while this one hashes, so two cores
/// share the work (the ledger benchmark times this same code). Progress goes to stderr.
pub fn verify_file(path: &Path, v: &mut Verifier, notes: &[PathBuf]) -> Result<(), VerifyError> {
    let io = |e: String| VerifyError { seq: 0, reason: e };
    for note in notes {
        let text = std::fs::read_to_string(note).map_err(|e| io(format!("{}: {e}", note.display())))?;
        v.note(&text)?;
    }
    let file = std::fs::File::open(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<ExportLine, String>>>(64);
    let reader = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(1024);
        for (i, line) in std::io::BufReader::with_capacity(1 << 20, file).lines().enumerate() {
            let parsed = match line {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => ExportLine::parse(&l).map_err(|e| format!("line {}: {e}", i + 1)),
                Err(e) => Err(e.to_string()),
            };
            let stop = parsed.is_err();
            batch.push(parsed);
            if batch.len() == 1024 || stop {
                // A parse error is sent too (the verifier reports it), then reading stops.
                let full = std::mem::replace(&mut batch, Vec::with_capacity(1024));
                if tx.send(full).is_err() || stop {
                    return;
                }
            }
        }
        let _ = tx.send(batch);
    });
    let mut n = 0u64;
    let result = (|| {
        for batch in rx {
            for parsed in batch {
                match parsed.map_err(|reason| VerifyError { seq: v.entries() as i64 + 1, reason })? {
                    ExportLine::Entry(e) => v.export_entry(&e)?,
                    ExportLine::Checkpoint(c) => v.checkpoint(&c)?,
                }
                n += 1;
                progress("verify", n);
            }
        }
        Ok(())
    })();
    // On an early error the receiver is gone and the reader stops at its next send.
    let _ = reader.join();
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
