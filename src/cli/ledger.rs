//! `governance-engine ledger …`: the auditor's commands.
//!
//! `verify` (of a file), `verify-proof` and `verify-bundle` need no database: they call
//! the `ledger` crate's [`ledger::offline`], as the standalone `ledger-verify` does. The
//! others connect as the ledger's reader role (and `checkpoint`/`prove` sign with the
//! configured ledger key).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ledger::export::{ExportEntry, ExportLine, ProofFile};
use ledger::offline::{self, load_keys, Outcome};
use ledger::verify::{Verifier, VerifyError};

use crate::app::{self, AppError};
use crate::config::Config;

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

pub async fn run(cmd: LedgerCommand, config: Config) -> Result<Outcome, AppError> {
    match cmd {
        LedgerCommand::Verify(args) if !args.database => {
            let file = args.file.ok_or_else(|| AppError::Io("a file to verify".into()))?;
            Ok(offline::verify_export(&file, load_keys(&args.public_key)?, args.origin, &args.checkpoints))
        }
        LedgerCommand::VerifyProof { file, public_key } => Ok(offline::verify_proof_file(&file, &load_keys(&public_key)?)?),
        LedgerCommand::VerifyBundle { file, public_key, artifacts } => {
            Ok(offline::verify_bundle_file(&file, &load_keys(&public_key)?, artifacts.as_deref())?)
        }
        LedgerCommand::Replicate(args) => {
            let (bootstrap, security) = (config.kafka_bootstrap.clone(), config.kafka_security.clone());
            tokio::task::spawn_blocking(move || super::replicate::run(args, bootstrap.as_deref(), &security))
                .await
                .map_err(|e| AppError::Io(e.to_string()))?
        }
        other => with_database(other, config).await,
    }
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
                    Ok(()) => v.finish().map(|s| s.to_string()).into(),
                })
            }
            LedgerCommand::Checkpoint => {
                let notary = app::notary(&config, pools.reader.clone(), pools.writer.clone(), app::ledger_signer(&config)?);
                let cp = notary.checkpoint_now().await.map_err(|e| AppError::Io(e.to_string()))?;
                Ok(Outcome::Ok(serde_json::to_string_pretty(&cp.to_export()).unwrap_or_default()))
            }
            LedgerCommand::Prove { seq, tree_size, out } => {
                let notary = app::notary(&config, pools.reader.clone(), pools.writer.clone(), app::ledger_signer(&config)?);
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

async fn export(reader: &crate::adapters::ledger::LedgerReader, out: &Path) -> Result<Outcome, AppError> {
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

async fn verify_database(reader: &crate::adapters::ledger::LedgerReader, v: &mut Verifier) -> Result<Result<(), VerifyError>, AppError> {
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
            if n.is_multiple_of(100_000) {
                eprintln!("verify: {n} lines");
            }
        }
    }
    Ok(Ok(()))
}
