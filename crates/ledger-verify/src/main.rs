//! `ledger-verify`: the auditor's offline verifier of the aumos-governance ledger.
//!
//! It checks an export, a proof file or an evidence bundle against the ledger's published
//! verifier key, and needs nothing else: no database, no service configuration, no
//! network. It is built from the `ledger` crate alone and runs the same code as
//! `governance-engine ledger verify`, `verify-proof` and `verify-bundle`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ledger::offline::{self, load_keys, InputError, Outcome};

#[derive(Debug, Parser)]
#[command(
    name = "ledger-verify",
    version,
    about = "Verify the aumos-governance ledger offline, trusting only its public key",
    long_about = "Verify the aumos-governance ledger offline, trusting only its public key.\n\n\
The key is the ledger's C2SP verifier key (GET /api/v1/ledger/public-key, or `governance-engine ledger` \
output); pin it out of band. The formats are specified in docs/ledger-format.md.\n\n\
Exit codes: 0 verified (a summary on stdout); 1 not verified (`FAILED: first bad seq <seq>: <reason>` \
on stderr); 2 an input that cannot be used (unreadable file, bad key, bad arguments)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify an export (`governance-engine ledger export`): every hash, the chain, every
    /// checkpoint's Merkle root and signature, and consistency between checkpoints.
    ///
    /// Exits 0 with a summary when everything holds; otherwise exits 1 naming the first bad
    /// seq. Progress goes to stderr.
    Verify {
        /// The export to verify (JSON Lines of entries and signed checkpoints).
        file: PathBuf,
        /// Trusted verifier key(s): a file with one key per line, or the key text itself.
        /// Repeat for rotated keys.
        #[arg(long = "public-key", required = true)]
        public_key: Vec<String>,
        /// A signed checkpoint note kept by the auditor (file); the log must be consistent
        /// with it. Repeatable.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// Require this origin in every checkpoint.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Check a proof file offline: an inclusion proof (an entry, its audit path and a signed
    /// checkpoint) or a consistency proof (two signed checkpoints and the proof that the
    /// second extends the first).
    ///
    /// Proof files come from `governance-engine ledger prove`, GET
    /// /api/v1/ledger/entries/{seq}/proof and GET /api/v1/ledger/consistency.
    VerifyProof {
        /// The proof file (JSON).
        file: PathBuf,
        /// Trusted verifier key(s): a file with one key per line, or the key text itself.
        #[arg(long = "public-key", required = true)]
        public_key: Vec<String>,
    },
    /// Check an evidence bundle offline (GET /api/v1/compliance/workflows/{id}/evidence-bundle):
    /// every proof, that each proven entry is the submission of its evidence with its hash,
    /// and with --artifacts that each artifact hashes to the recorded value.
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

fn run(command: Command) -> Result<Outcome, InputError> {
    match command {
        Command::Verify { file, public_key, checkpoints, origin } => {
            Ok(offline::verify_export(&file, load_keys(&public_key)?, origin, &checkpoints))
        }
        Command::VerifyProof { file, public_key } => offline::verify_proof_file(&file, &load_keys(&public_key)?),
        Command::VerifyBundle { file, public_key, artifacts } => {
            offline::verify_bundle_file(&file, &load_keys(&public_key)?, artifacts.as_deref())
        }
    }
}

fn main() -> ExitCode {
    offline::report(run(Cli::parse().command))
}
