//! The API's error codes and the one table that maps each to its HTTP status.
//!
//! Handlers return [`ApiError`]; the request middleware (`http::middleware`) renders it as
//! `{"error":{"code","message","request_id"}}` and logs it once, inside the request span.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:ident;)*) => {
        /// Every error code the API can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }
            /// The table: code → HTTP status.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }
        }
    };
}

error_codes! {
    Unauthenticated => "unauthenticated", UNAUTHORIZED;
    TenantMismatch => "tenant_mismatch", FORBIDDEN;
    Forbidden => "forbidden", FORBIDDEN;
    NotFound => "not_found", NOT_FOUND;
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    InvalidRequest => "invalid_request", BAD_REQUEST;
    MalformedJson => "malformed_json", BAD_REQUEST;
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    ValidationFailed => "validation_failed", UNPROCESSABLE_ENTITY;
    PolicyCompileFailed => "policy_compile_failed", UNPROCESSABLE_ENTITY;
    PolicyTestsFailed => "policy_tests_failed", UNPROCESSABLE_ENTITY;
    EvaluationFailed => "evaluation_failed", UNPROCESSABLE_ENTITY;
    ArtifactHashMismatch => "artifact_hash_mismatch", UNPROCESSABLE_ENTITY;
    PolicyInactive => "policy_inactive", CONFLICT;
    InvalidTransition => "invalid_transition", CONFLICT;
    Conflict => "conflict", CONFLICT;
    PolicyNameTaken => "policy_name_taken", CONFLICT;
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE;
    RateLimited => "rate_limited", TOO_MANY_REQUESTS;
    RequestTimeout => "request_timeout", SERVICE_UNAVAILABLE;
    LedgerUnavailable => "ledger_unavailable", SERVICE_UNAVAILABLE;
    DatabaseUnavailable => "database_unavailable", SERVICE_UNAVAILABLE;
    PolicyEngineUnavailable => "policy_engine_unavailable", SERVICE_UNAVAILABLE;
    PolicyEngineError => "policy_engine_error", BAD_GATEWAY;
    PolicyEvaluationTimeout => "policy_evaluation_timeout", SERVICE_UNAVAILABLE;
    PolicyResourceLimitExceeded => "policy_resource_limit_exceeded", UNPROCESSABLE_ENTITY;
    PolicyEngineOverloaded => "policy_engine_overloaded", SERVICE_UNAVAILABLE;
    PolicyEngineQuarantined => "policy_engine_quarantined", SERVICE_UNAVAILABLE;
    PolicyEngineFault => "policy_engine_fault", SERVICE_UNAVAILABLE;
    ArtifactStoreUnavailable => "artifact_store_unavailable", SERVICE_UNAVAILABLE;
    ArtifactCorrupt => "artifact_corrupt", INTERNAL_SERVER_ERROR;
    Internal => "internal_error", INTERNAL_SERVER_ERROR;
}

/// An error answered to a caller.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra machine-readable context, e.g. the allowed transitions.
    pub details: Option<serde_json::Value>,
    /// Seconds for the `Retry-After` header (429 and 503 answers).
    pub retry_after: Option<u64>,
    /// What went wrong underneath, for the log only: never sent to the caller.
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None, retry_after: None, cause: None }
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub fn caused_by(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    /// The body is written by the request middleware, which knows the request id; the
    /// error travels to it in the response extensions.
    fn into_response(self) -> Response {
        let mut response = self.code.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<aggregates::IdError> for ApiError {
    fn from(e: aggregates::IdError) -> Self {
        ApiError::validation(e.to_string())
    }
}

impl From<crate::adapters::ledger::LedgerError> for ApiError {
    fn from(e: crate::adapters::ledger::LedgerError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&crate::adapters::ledger::LedgerError> for ApiError {
    fn from(e: &crate::adapters::ledger::LedgerError) -> Self {
        use crate::adapters::ledger::LedgerError;
        match e {
            LedgerError::Conflict { .. } => ApiError::new(ErrorCode::Conflict, "the resource was changed concurrently; retry"),
            LedgerError::Unavailable(_) | LedgerError::Closed => {
                ApiError::new(ErrorCode::LedgerUnavailable, "the audit ledger is unavailable; nothing was changed")
            }
            LedgerError::Corrupt { seq, .. } => ApiError::new(ErrorCode::Internal, format!("ledger entry {seq} is unreadable")),
            LedgerError::Tree(_) => {
                ApiError::new(ErrorCode::Internal, "the stored Merkle tree does not match the ledger; see the service log")
            }
            &LedgerError::Refused(crate::application::limits::EntryRefused::TooLarge { bytes, max }) => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the record would be {bytes} bytes, over the ledger entry limit of {max} bytes; nothing was changed"),
            )
            .with_details(serde_json::json!({ "entry_bytes": bytes, "max_bytes": max })),
            LedgerError::Refused(r @ crate::application::limits::EntryRefused::Text(_)) => {
                ApiError::validation(format!("{r}; nothing was changed"))
            }
        }
    }
}

impl From<projections::ProjectionError> for ApiError {
    fn from(e: projections::ProjectionError) -> Self {
        match e {
            projections::ProjectionError::Database(e) => database(e),
            projections::ProjectionError::Decode(m) => ApiError::new(ErrorCode::Internal, m),
        }
    }
}

/// A database error: unreachable, overloaded or shutting down is 503 (retry later);
/// anything else is a fault of ours (500). The cause is logged, never answered.
pub fn database(e: sqlx::Error) -> ApiError {
    let unavailable = match &e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 53: insufficient resources; 57: operator intervention.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57")),
        _ => false,
    };
    if unavailable {
        ApiError::new(ErrorCode::DatabaseUnavailable, "the database is unavailable").caused_by(e)
    } else {
        ApiError::new(ErrorCode::Internal, "a database query failed").caused_by(e)
    }
}

impl From<crate::adapters::engine::EngineError> for ApiError {
    fn from(e: crate::adapters::engine::EngineError) -> Self {
        use crate::adapters::engine::EngineError;
        match e {
            EngineError::Compile(errors) => ApiError::new(ErrorCode::PolicyCompileFailed, "the policy does not compile")
                .with_details(serde_json::json!({ "errors": errors })),
            EngineError::TestsFailed(failed) => {
                ApiError::new(ErrorCode::PolicyTestsFailed, format!("{} policy test(s) failed", failed.len()))
                    .with_details(serde_json::json!({ "failed_tests": failed }))
            }
            EngineError::Unavailable(m) => ApiError::new(ErrorCode::PolicyEngineUnavailable, m),
            EngineError::BadResponse(m) => ApiError::new(ErrorCode::PolicyEngineError, m),
            EngineError::Evaluation(m) => ApiError::new(ErrorCode::EvaluationFailed, m),
            EngineError::Timeout(m) => ApiError::new(ErrorCode::PolicyEvaluationTimeout, m),
            EngineError::ResourceLimit(m) => ApiError::new(ErrorCode::PolicyResourceLimitExceeded, m),
            EngineError::Overloaded(m) => ApiError::new(ErrorCode::PolicyEngineOverloaded, m).retry_after(1),
            EngineError::Fault(m) => ApiError::new(ErrorCode::PolicyEngineFault, m),
            EngineError::Quarantined(m, seconds) => ApiError::new(ErrorCode::PolicyEngineQuarantined, m).retry_after(seconds),
        }
    }
}

impl From<std::sync::Arc<crate::application::runtime::RuntimeError>> for ApiError {
    fn from(e: std::sync::Arc<crate::application::runtime::RuntimeError>) -> Self {
        match &*e {
            crate::application::runtime::RuntimeError::Engine(engine) => engine.clone().into(),
            crate::application::runtime::RuntimeError::Projection(_) => {
                ApiError::new(ErrorCode::DatabaseUnavailable, "the database is unavailable")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_a_client_or_server_error_status() {
        for code in ErrorCode::ALL {
            let s = code.status();
            assert!(s.is_client_error() || s.is_server_error(), "{code:?} -> {s}");
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
