//! aumos-governance-engine: the governance layer of the AumOS platform.
//!
//! The tree is the architecture (see `docs/ARCHITECTURE.md` for how a command and a query
//! flow):
//! - the domain is the `aggregates` crate (commands, events, facts, invariants; no I/O),
//!   and the read models are the `projections` crate;
//! - [`application`]: the services that run the domain: the command bus, the projection
//!   runner and rebuild, the leader loop, the evaluation runtime, OPA sync, limits;
//! - [`adapters`]: HTTP, the ledger store, the policy engines, the Kafka relay, the
//!   artifact store, authentication, TLS, telemetry and metrics, local clusters;
//! - [`app`]: wiring and graceful shutdown; [`cli`]: the `governance-engine` command line
//!   (clap); [`config`]: every environment variable, parsed once; [`error`]: error codes
//!   and the code → HTTP status table.

pub mod adapters;
pub mod app;
pub mod application;
pub mod cli;
pub mod config;
pub mod error;
