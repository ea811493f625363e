//! Adapters: everything that talks to the world outside the process.
//!
//! - [`http`]: the axum API (routes, extractors, request middleware, OpenAPI).
//! - [`ledger`]: the only code that touches the audit database (appender, reader, the
//!   appender's recent entries, notary).
//!   The formats, proofs and offline verifier are the `ledger` crate (`crates/ledger`).
//! - [`engine`]: the policy engines behind one trait; the embedded one runs tenants' Rego in
//!   sandboxed worker processes (`engine::sandbox`, the hidden `engine-worker` subcommand).
//! - [`relay`]: publishes every ledger entry to Kafka; [`kafka`]: the TLS and SASL settings
//!   of every Kafka client, and their error reporting.
//! - [`artifacts`]: the content-addressed evidence store (local disk, S3, GCS).
//! - [`auth`]: bearer-token verification, roles, development keys; [`jwks`]: keys from a JWKS URL.
//! - [`tls`]: the rustls HTTP client (system roots plus `AUMOS_TLS_CA_FILE`, no redirects).
//! - [`telemetry`]: JSON logs and OpenTelemetry export; [`metrics`]: the Prometheus registry.
//! - [`devstack`]: local PostgreSQL clusters (embedded default, development, tests);
//!   [`migrate`]: applies `migrations/` (primary) and `audit-schema/` (audit).
//! - [`fsutil`]: small filesystem helpers shared by the key and cluster code.

pub mod artifacts;
pub mod auth;
pub mod devstack;
pub mod engine;
pub mod fsutil;
pub mod http;
pub mod jwks;
pub mod kafka;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod relay;
pub mod telemetry;
pub mod tls;
