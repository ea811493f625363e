//! The ledger store: the only code that touches the audit database.
//!
//! - [`appender`]: the group-commit appender, connected as `gov_ledger_writer`.
//! - [`reader`]: reads entries and checkpoints, connected as `gov_ledger_reader`.
//! - [`recent`]: the entries this process committed last, in memory, so its tailing
//!   readers need not read them back ([`LedgerReader::with_recent`]).
//! - [`notary`]: keeps the Merkle tree in memory, signs checkpoints, answers proofs.
//!
//! The writer can only append and the reader can only read; neither can change history.
//! The formats, hashes, proofs and the offline verifier need no database: they are the
//! `ledger` crate (`crates/ledger`), which this module builds on.

pub mod appender;
pub mod notary;
pub mod reader;
pub mod recent;

use chrono::{DateTime, Utc};
use ledger::EntryMetadata;

pub use appender::{Appender, AppenderHandle, DEFAULT_BATCH_MAX_BYTES};
pub use reader::LedgerReader;
pub use recent::RecentEntries;

/// An entry to append. `seq`, `recorded_at` and the hashes are assigned by the appender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub tenant_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub aggregate_seq: i64,
    pub event_type: String,
    pub event_version: String,
    /// Canonical JSON text (see [`ledger::format::canonical_json`]).
    pub payload: String,
    pub metadata: EntryMetadata,
}

impl NewEntry {
    /// The entry that records a fact (a decision record, a link fact, a skip decision):
    /// its stream's aggregate type, at aggregate_seq 1 of `aggregate_id`, its event type and
    /// version, and its body as canonical JSON, exactly as aggregate events are encoded.
    pub fn fact<F: aggregates::Fact>(
        tenant_id: uuid::Uuid,
        aggregate_id: String,
        fact: &F,
        metadata: EntryMetadata,
    ) -> Result<Self, aggregates::LedgerEventError> {
        Ok(Self {
            tenant_id,
            aggregate_type: F::AGGREGATE_TYPE.to_owned(),
            aggregate_id,
            aggregate_seq: 1,
            event_type: fact.event_type(),
            event_version: fact.event_version(),
            payload: fact.ledger_text()?,
            metadata,
        })
    }
}

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub hash: [u8; 32],
    pub recorded_at: DateTime<Utc>,
}

/// Errors of the ledger adapter.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another command appended to the same aggregate first (optimistic concurrency).
    #[error("concurrent modification of {aggregate_type} {aggregate_id}")]
    Conflict { aggregate_type: String, aggregate_id: String },
    /// The audit database could not be reached or refused the append; nothing was stored.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The appender has shut down.
    #[error("ledger appender is shut down")]
    Closed,
    /// The entry is too large for the relay or holds text a read model cannot store;
    /// nothing was stored.
    #[error(transparent)]
    Refused(#[from] crate::application::limits::EntryRefused),
    /// The stored Merkle tree nodes do not match the entries or the signed checkpoints.
    #[error("the stored Merkle tree is inconsistent: {0}")]
    Tree(String),
    /// A stored entry could not be read back (corrupt or foreign data).
    #[error("ledger entry {seq} is unreadable: {reason}")]
    Corrupt { seq: i64, reason: String },
}

#[cfg(test)]
mod fact_tests;

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Unavailable(e.to_string())
    }
}
