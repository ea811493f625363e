//! The pure domain of the governance engine.
//!
//! Layout:
//! - [`ids`]: parsed identifiers and bounded strings (`TenantId`, `PolicyId`, `Actor`, ...).
//!   Every value that crosses the domain boundary is parsed once, here, by a fallible
//!   constructor, so the rest of the code never re-validates.
//! - [`facts`]: ledger entries no aggregate decides (decision records, replay reports, a
//!   tenant's control-mapping facts, an operator's projection skips), typed and encoded
//!   like events.
//! - [`recorded`]: any ledger entry decoded into its typed event or fact ([`Recorded`]),
//!   with [`EventKind`] naming every kind; the one decode every consumer uses.
//! - [`compliance`]: regulation codes, CSF 2.0 control ids, the ComplianceWorkflow and
//!   Evidence aggregates, and requirement status derivation.
//! - [`policy`]: the Policy aggregate (commands, events, state machine) built on
//!   `cqrs_es::Aggregate`.
//! - [`ledger_event`]: how an event becomes a ledger payload and back.
//! - [`services`]: the one error an aggregate's services return when the outside world
//!   cannot answer or refuses (the adapter's own error, carried to the edge).
//!
//! Nothing in this crate performs I/O: no HTTP, SQL or Kafka. Adapters in the service
//! crate persist the events this crate emits (to the ledger) and project them (to read
//! models). That keeps every invariant testable in microseconds with
//! `cqrs_es::test::TestFramework`.

pub mod compliance;
pub mod facts;
pub mod ids;
pub mod ledger_event;
pub mod policy;
pub mod recorded;
pub mod services;

pub use facts::Fact;
pub use ids::{
    Actor, DecisionId, Description, EvidenceId, IdError, PolicyId, PolicyName, Reason, RegoSource, ReplayId, TenantId, WorkflowId,
};
pub use ledger_event::{LedgerEvent, LedgerEventError};
pub use recorded::{DecodeError, EventKind, Recorded, Stream};

#[cfg(test)]
mod recorded_tests;
