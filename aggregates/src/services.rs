//! What an aggregate's cqrs-es services return when the world outside the domain cannot
//! answer, or refuses: the adapter's own error, carried through the domain unchanged so
//! the edge can answer with that error's code (an engine's failed tests 422, a database
//! that is down 503). Each aggregate's services name it for what it means there
//! (`policy::VersionRejected`, `compliance::ReferenceUnavailable`).

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub Arc<dyn std::error::Error + Send + Sync>);

impl ServiceError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }
}

/// Two answers are the same when they say the same (errors have no equality of their own;
/// the given/when/then tests compare the domain's errors).
impl PartialEq for ServiceError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}
