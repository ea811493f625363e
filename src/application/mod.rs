//! Application services: what runs the domain (`aggregates`) against the adapters. No HTTP
//! types, no SQL of their own beyond the read-model positions they keep.
//!
//! - [`commands`]: the command bus: loads an aggregate from the ledger, handles the command
//!   with its cqrs-es services, appends the events (optimistic concurrency).
//! - [`references`]: the Evidence aggregate's services, answered from the ledger.
//! - [`runtime`]: the evaluation runtime: the prepared-policy cache and its invalidation.
//! - [`projection`]: the runner that tails the ledger into the `projections` read models;
//!   it reports a stuck projector and honours operators' recorded skips.
//! - [`apply`]: applies ledger entries to a projector (the runner's and the rebuild's
//!   shared step).
//! - [`rebuild`]: rebuilds a read model from the ledger beside the live one, then swaps.
//! - [`replay`]: replays recorded decisions against a policy version (impact analysis), as
//!   background jobs that end in a `PolicyReplayed` fact.
//! - [`leader`]: advisory-lock leadership and the one loop for leader-only tasks.
//! - [`opa_sync`]: keeps the OPA sidecar holding exactly the active policy versions.
//! - [`catalog`]: the compiled-in regulation → CSF 2.0 baseline; [`compliance`]: requirement
//!   statuses of workflows.
//! - [`limits`]: rate, text and size limits on what tenants send and the ledger records.

pub mod apply;
pub mod catalog;
pub mod commands;
pub mod compliance;
pub mod leader;
pub mod limits;
pub mod opa_sync;
pub mod projection;
pub mod rebuild;
pub mod references;
pub mod replay;
pub mod runtime;
