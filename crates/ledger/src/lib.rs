//! The Audit Wall ledger without a database: everything an auditor needs to check it.
//!
//! - [`format`](mod@format): the canonical encoding of an entry (format v1) and its chain,
//!   leaf and node hashes; the normative text is `docs/ledger-format.md`.
//! - [`entry`]: [`LedgerEntry`] and its [`EntryMetadata`], as stored and hashed.
//! - [`merkle`]: the RFC 6962 / RFC 9162 tree, inclusion and consistency proofs (from any
//!   source of complete subtree hashes) and their verifiers.
//! - [`frontier`]: the tree's right edge, O(log n) hashes: extends the tree and gives its root.
//! - [`checkpoint`]: C2SP signed notes over tlog checkpoints (Ed25519): signing, verifier
//!   keys, verification.
//! - [`export`]: the JSON Lines export format and the self-contained proof file.
//! - [`verify`]: the streaming [`verify::Verifier`] of a whole ledger (O(log n) memory: the
//!   tree's right edge; each checkpoint checked when the entries reach it), and the
//!   proof-file check.
//! - [`bundle`]: the compliance evidence bundle and its offline check.
//! - [`offline`]: the auditor's commands on files (`verify`, `verify-proof`,
//!   `verify-bundle`), shared by `ledger-verify` and `governance-engine ledger`; an export is
//!   parsed and hashed by one worker per core, in chunks, and checked in order.
//!
//! Nothing here touches a database or the network. The service (`governance-engine`) adds
//! the appender, reader and notary on top; `ledger-verify` is built from this crate alone.
//! The `openapi` feature derives `utoipa::ToSchema` for the types the HTTP API returns.

pub mod bundle;
pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod format;
pub mod frontier;
pub mod merkle;
pub mod offline;
pub mod verify;

pub use entry::{EntryMetadata, LedgerEntry};
