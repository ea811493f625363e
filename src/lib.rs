//! aumos-governance-engine: the governance layer of the AumOS platform.
//!
//! Layout (see `docs/ARCHITECTURE.md` for how a command and a query flow):
//! - [`config`]: every environment variable, parsed once.
//! - [`cli`]: the `governance-engine` command line (clap).
//! - [`app`]: wiring and graceful shutdown.
//! - [`http`]: the axum adapter (routes, extractors, request middleware).
//! - [`error`]: error codes and the code → HTTP status table.
//! - [`auth`]: bearer-token verification, roles, development keys; [`jwks`]: keys from a JWKS URL.
//! - [`commands`]: the command bus running `aggregates` against the ledger, and the fold
//!   ([`commands::load`]) that every reader of an aggregate's state shares.
//! - [`references`]: the Evidence aggregate's services on the ledger and the catalog (the
//!   workflow, decision and evidence a command references, never a read model).
//! - [`catalog`]: the compiled-in regulation → CSF 2.0 baseline; [`compliance`]: requirement
//!   statuses of workflows; [`artifacts`]: the content-addressed evidence store.
//! - [`ledger`]: the only code that touches the audit database (appender, reader, notary).
//!   The formats, proofs and offline verifier are the `ledger` crate (`crates/ledger`),
//!   which `governance-engine ledger verify` and the standalone `ledger-verify` both call.
//! - [`engine`]: the policy engines behind one trait; the embedded one runs tenants' Rego in
//!   sandboxed worker processes (`engine::sandbox`, the hidden `engine-worker` subcommand).
//! - [`projection`]: the runner that tails the ledger into the `projections` read models;
//!   it reports a stuck projector and honours operators' recorded skips.
//! - [`limits`]: rate, text and size limits on what tenants send and the ledger records.
//! - [`devstack`]: local PostgreSQL clusters (embedded default, development, tests).
//! - [`migrate`]: applies `migrations/` (primary) and `audit-schema/` (audit).
//! - [`kafka`]: TLS and SASL settings of every Kafka client, and their error reporting.
//! - [`tls`]: the rustls HTTP client (system roots plus `AUMOS_TLS_CA_FILE`, no redirects).
//! - [`telemetry`]: JSON logs and OpenTelemetry export; [`metrics`]: the Prometheus registry
//!   behind `GET /metrics`.

pub mod app;
pub mod artifacts;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod compliance;
pub mod config;
pub mod devstack;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod jwks;
pub mod kafka;
pub mod leader;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod opa_sync;
pub mod projection;
pub mod rebuild;
pub mod references;
pub mod relay;
pub mod runtime;
pub mod telemetry;
pub mod tls;
