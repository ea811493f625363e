//! The Policy aggregate: a tenant's Rego policy, its versions and its lifecycle.
//!
//! ```text
//!            add_version (any state but archived)
//!   create ──► draft ──activate──► active ──deactivate──► inactive
//!                 │                  ▲  │ activate (another version)   │
//!                 │                  └──┴──────────activate────────────┘
//!                 └──archive──► archived ◄──archive── inactive
//! ```
//! An active policy must be deactivated before it is archived, so that no caller is
//! evaluating against a policy that silently disappears.
//!
//! [`bundle`]: what one version holds: its main module, further modules, a data document.
//! [`services`]: what the aggregate asks of the engine before a version becomes active,
//! and of the ledger about a replay an activation names.
//! [`controls`]: the CSF controls a version checks (policies as continuous control checks).
//! [`mask`]: which input fields decision records keep out (erasure by design).
//! [`name`]: the PolicyNameClaim aggregate that keeps policy names unique per tenant.

mod aggregate;
pub mod bundle;
mod commands;
pub mod controls;
mod events;
pub mod mask;
pub mod name;
pub mod services;

pub use aggregate::{Policy, PolicyError, PolicyStatus};
pub use bundle::{DataDocument, ExtraModules, VersionSource};
pub use commands::PolicyCommand;
pub use controls::{ControlCheck, ControlChecks, PassWhen};
pub use events::{InputLogging, PolicyEvent};
pub use services::{ActivationCheck, PolicyServices, ReplaySubject, VersionRejected};

#[cfg(test)]
mod tests;
