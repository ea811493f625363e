//! The pure domain of the governance engine.
//!
//! Layout:
//! - [`ids`]: parsed identifiers and bounded strings (`TenantId`, `PolicyId`, `Actor`, ...).
//!   Every value that crosses the domain boundary is parsed once, here, by a fallible
//!   constructor, so the rest of the code never re-validates.
//! - [`decision`]: the record of one policy evaluation (an append-only fact).
//! - [`compliance`]: regulation codes, CSF 2.0 control ids, the ComplianceWorkflow and
//!   Evidence aggregates, and requirement status derivation.
//! - [`policy`]: the Policy aggregate (commands, events, state machine) built on
//!   `cqrs_es::Aggregate`.
//!
//! Nothing in this crate performs I/O: no HTTP, SQL or Kafka. Adapters in the service
//! crate persist the events this crate emits (to the ledger) and project them (to read
//! models). That keeps every invariant testable in microseconds with
//! `cqrs_es::test::TestFramework`.

pub mod compliance;
pub mod decision;
pub mod ids;
pub mod ledger_event;
pub mod policy;

pub use ids::{Actor, Description, EvidenceId, IdError, PolicyId, PolicyName, Reason, RegoSource, TenantId, WorkflowId};
pub use ledger_event::{LedgerEvent, LedgerEventError};
