//! `governance-engine ledger …`: the auditor's commands.
//!
//! `verify` and `verify-proof` need no database and no service configuration: only a
//! file and trusted public keys. The others connect as the ledger's reader role (and
//! `checkpoint`/`prove` sign with the configured ledger key).

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::app::{self, AppError};
use crate::config::Config;
use crate::ledger::checkpoint::VerifierKey;
use crate::ledger::export::{ExportEntry, ExportLine, ProofFile};
use crate::ledger::verify::{verify_proof, Summary, Verifier, VerifyError};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Write the whole ledger (entries and signed checkpoints) as JSON Lines, as the reader role.
    ///
    /// Each line is an object whose `kind` is `entry` or `checkpoint` (docs/ledger-format.md).
    /// Progress goes to stderr.
    Export {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an export offline (or the live database with --database): every hash, the chain,
    /// every checkpoint's Merkle root and signature, and consistency between checkpoints.
    ///
    /// Exits 0 with a summary when everything holds; otherwise exits 1 naming the first bad seq.
    Verify(VerifyArgs),
    /// Sign a checkpoint of the ledger now and print it.
    Checkpoint,
    /// Write a self-contained inclusion proof of one entry (entry, audit path, signed checkpoint).
    Prove {
        /// The entry's seq.
        #[arg(long)]
        seq: i64,
        /// A checkpointed tree size to prove against (default: the smallest covering the entry).
        #[arg(long)]
        tree_size: Option<i64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Consume the audit topic from Kafka and verify the chain and signed checkpoints as entries
    /// arrive; report the verified head or the first bad entry.
    Replicate(super::replicate::ReplicateArgs),
    /// Check a proof file (inclusion or consistency) offline.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// Trusted verifier key(s): a file with one key per line, or the key text itself.
        #[arg(long = "public-key", required = true)]
        public_key: Vec<String>,
    },
    /// Check an evidence bundle offline (GET /api/v1/compliance/workflows/{id}/evidence-bundle):
    /// every proof, that each proven entry is the submission of its evidence with its hash, and
    /// with --artifacts that each artifact hashes to the recorded value.
    VerifyBundle {
        /// The bundle (JSON, as the API returns it).
        file: PathBuf,
        /// Trusted verifier key(s): a file with one key per line, or the key text itself.
        #[arg(long = "public-key", required = true)]
        public_key: Vec<String>,
        /// A directory holding the artifacts, each named by its evidence id or its SHA-256.
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The export to verify (omit with --database).
    #[arg(required_unless_present = "database", conflicts_with = "database")]
    pub file: Option<PathBuf>,
    /// Verify the live ledger instead, as the reader role.
    #[arg(long)]
    pub database: bool,
    /// Trusted verifier key(s): a file with one key per line, or the key text itself. Repeat for
    /// rotated keys.
    #[arg(long = "public-key", required = true)]
    pub public_key: Vec<String>,
    /// A signed checkpoint note kept by the auditor (file); the log must be consistent with it.
    #[arg(long = "checkpoint")]
    pub checkpoints: Vec<PathBuf>,
    /// Require this origin in every checkpoint.
    #[arg(long)]
    pub origin: Option<String>,
}

/// Reads trusted keys from files or literal key text.
pub fn load_keys(specs: &[String]) -> Result<Vec<VerifierKey>, AppError> {
    let mut keys = Vec::new();
    for spec in specs {
        let text = if Path::new(spec).exists() {
            std::fs::read_to_string(spec).map_err(|e| AppError::Io(format!("{spec}: {e}")))?
        } else {
            spec.clone()
        };
        keys.extend(VerifierKey::parse_all(&text).map_err(|e| AppError::Io(format!("--public-key {spec}: {e}")))?);
    }
    if keys.is_empty() {
        return Err(AppError::Io("no verifier key given".into()));
    }
    Ok(keys)
}

fn progress(what: &str, n: u64) {
    if n.is_multiple_of(100_000) {
        eprintln!("{what}: {n} lines");
    }
}

/// The outcome a command reports: success text, or the first bad seq.
#[derive(Debug)]
pub enum Outcome {
    Ok(String),
    Failed(VerifyError),
}

pub async fn run(cmd: LedgerCommand, config: Config) -> Result<Outcome, AppError> {
    match cmd {
        LedgerCommand::Verify(args) if !args.database => {
            let file = args.file.ok_or_else(|| AppError::Io("a file to verify".into()))?;
            let mut v = Verifier::new(load_keys(&args.public_key)?).with_origin(args.origin);
            Ok(match verify_file(&file, &mut v, &args.checkpoints).and_then(|_| v.finish()) {
                Ok(s) => Outcome::Ok(summary(&s)),
                Err(e) => Outcome::Failed(e),
            })
        }
        LedgerCommand::VerifyProof { file, public_key } => {
            let keys = load_keys(&public_key)?;
            let text = std::fs::read_to_string(&file).map_err(|e| AppError::Io(format!("{}: {e}", file.display())))?;
            let proof: ProofFile =
                serde_json::from_str(&text).map_err(|e| AppError::Io(format!("{}: not a proof file: {e}", file.display())))?;
            Ok(match verify_proof(&proof, &keys) {
                Ok(s) => Outcome::Ok(s),
                Err(e) => Outcome::Failed(e),
            })
        }
        LedgerCommand::VerifyBundle { file, public_key, artifacts } => {
            let keys = load_keys(&public_key)?;
            let text = std::fs::read_to_string(&file).map_err(|e| AppError::Io(format!("{}: {e}", file.display())))?;
            let bundle: crate::ledger::bundle::EvidenceBundle =
                serde_json::from_str(&text).map_err(|e| AppError::Io(format!("{}: not an evidence bundle: {e}", file.display())))?;
            Ok(match crate::ledger::bundle::verify_bundle(&bundle, &keys, artifacts.as_deref()) {
                Ok(s) => Outcome::Ok(s),
                Err(e) => Outcome::Failed(e),
            })
        }
        LedgerCommand::Replicate(args) => {
            let bootstrap = config.kafka_bootstrap.clone();
            tokio::task::spawn_blocking(move || super::replicate::run(args, bootstrap.as_deref()))
                .await
                .map_err(|e| AppError::Io(e.to_string()))?
        }
        other => with_database(other, config).await,
    }
}

fn summary(s: &Summary) -> String {
    format!(
        "OK: {} entries, {} signed checkpoints (largest covers {}), head hash {}, root {}",
        s.entries,
        s.checkpoints,
        s.largest_checkpoint,
        hex::encode(s.head_hash),
        hex::encode(s.root)
    )
}

/// Verifies an export file (the ledger benchmark times this same code). A reader thread
/// parses lines while this one hashes, so the two cores share the work.
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

async fn with_database(cmd: LedgerCommand, config: Config) -> Result<Outcome, AppError> {
    let (urls, stack) = app::databases(&config).await?;
    let result = async {
        let pools = app::pools(&config, &urls).await?;
        match cmd {
            LedgerCommand::Export { out } => export(&pools.reader, &out).await,
            LedgerCommand::Verify(args) => {
                let mut v = Verifier::new(load_keys(&args.public_key)?).with_origin(args.origin);
                for note in &args.checkpoints {
                    let text = std::fs::read_to_string(note).map_err(|e| AppError::Io(format!("{}: {e}", note.display())))?;
                    if let Err(e) = v.note(&text) {
                        return Ok(Outcome::Failed(e));
                    }
                }
                Ok(match verify_database(&pools.reader, &mut v).await? {
                    Err(e) => Outcome::Failed(e),
                    Ok(()) => match v.finish() {
                        Ok(s) => Outcome::Ok(summary(&s)),
                        Err(e) => Outcome::Failed(e),
                    },
                })
            }
            LedgerCommand::Checkpoint => {
                let notary = app::notary(&config, &pools, app::ledger_signer(&config)?);
                let cp = notary.checkpoint_now().await.map_err(|e| AppError::Io(e.to_string()))?;
                Ok(Outcome::Ok(serde_json::to_string_pretty(&cp.to_export()).unwrap_or_default()))
            }
            LedgerCommand::Prove { seq, tree_size, out } => {
                let notary = app::notary(&config, &pools, app::ledger_signer(&config)?);
                let p = notary.inclusion(seq, tree_size).await.map_err(|e| AppError::Io(e.to_string()))?;
                let file = ProofFile::InclusionProof {
                    entry: ExportEntry::from(&p.entry),
                    leaf_index: u64::try_from(seq - 1).unwrap_or(0),
                    tree_size: u64::try_from(p.checkpoint.tree_size).unwrap_or(0),
                    inclusion_proof: p.proof.iter().map(hex::encode).collect(),
                    checkpoint: p.checkpoint.note,
                };
                let json = serde_json::to_string_pretty(&file).map_err(|e| AppError::Io(e.to_string()))?;
                std::fs::write(&out, json).map_err(|e| AppError::Io(format!("{}: {e}", out.display())))?;
                Ok(Outcome::Ok(format!("wrote the proof of entry {seq} against tree size {} to {}", p.checkpoint.tree_size, out.display())))
            }
            LedgerCommand::VerifyProof { .. } | LedgerCommand::VerifyBundle { .. } | LedgerCommand::Replicate(_) => {
                Err(AppError::Io("this command needs no database".into()))
            }
        }
    }
    .await;
    if let Some(stack) = stack {
        stack.stop_started()?;
    }
    result
}

const PAGE: i64 = 10_000;

async fn export(reader: &crate::ledger::LedgerReader, out: &Path) -> Result<Outcome, AppError> {
    let io = |e: std::io::Error| AppError::Io(format!("{}: {e}", out.display()));
    let checkpoints = reader.checkpoints().await?;
    let head = reader.head_seq().await?;
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out).map_err(io)?);
    let mut cps = checkpoints.iter().peekable();
    let (mut after, mut n) = (0i64, 0u64);
    loop {
        let batch = reader.entries_after(after, PAGE).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for e in &batch {
            let line = serde_json::to_string(&ExportLine::Entry(ExportEntry::from(e))).map_err(|e| AppError::Io(e.to_string()))?;
            writeln!(w, "{line}").map_err(io)?;
            while let Some(cp) = cps.next_if(|c| c.tree_size <= e.seq) {
                let line = serde_json::to_string(&ExportLine::Checkpoint(cp.to_export())).map_err(|e| AppError::Io(e.to_string()))?;
                writeln!(w, "{line}").map_err(io)?;
            }
            n += 1;
            if n % 100_000 == 0 {
                eprintln!("export: {n} of about {head} entries");
            }
        }
    }
    // Checkpoints beyond the last entry (only if entries were removed) are exported too, so
    // the verifier sees the truncation.
    for cp in cps {
        let line = serde_json::to_string(&ExportLine::Checkpoint(cp.to_export())).map_err(|e| AppError::Io(e.to_string()))?;
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(Outcome::Ok(format!("exported {n} entries and {} checkpoints to {}", checkpoints.len(), out.display())))
}

async fn verify_database(reader: &crate::ledger::LedgerReader, v: &mut Verifier) -> Result<Result<(), VerifyError>, AppError> {
    for cp in reader.checkpoints().await? {
        if let Err(e) = v.checkpoint(&cp.to_export()) {
            return Ok(Err(e));
        }
    }
    let (mut after, mut n) = (0i64, 0u64);
    loop {
        let batch = reader.entries_after(after, PAGE).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for e in &batch {
            if let Err(err) = v.entry(e) {
                return Ok(Err(err));
            }
            n += 1;
            progress("verify", n);
        }
    }
    Ok(Ok(()))
}
