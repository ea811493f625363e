//! Extractors that turn every malformed input into an [`ApiError`] (a 4xx with the JSON
//! error body) instead of the framework's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use aggregates::{Actor, TenantId};

use super::middleware::RequestId;
use super::SharedState;
use crate::adapters::auth::Role;
use crate::application::limits::{check_json_text, TextError};
use crate::error::{ApiError, ErrorCode};

/// A JSON body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|m| m.strip_prefix("application/").is_some_and(|sub| sub == "json" || sub.ends_with("+json")));
        if !json_content_type {
            return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "expected Content-Type: application/json"));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large"))
            }
            Err(e) => return Err(ApiError::new(ErrorCode::InvalidRequest, e.body_text())),
        };
        check_body_text(&bytes)?;
        // The same parse as axum's, without tracking the path for an error message (a
        // string per key): a body that fails is parsed again below, for that message.
        if let Ok(v) = serde_json::from_slice::<T>(&bytes) {
            return Ok(ApiJson(v));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::new(ErrorCode::UnsupportedMediaType, "expected Content-Type: application/json"))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(ErrorCode::MalformedJson, e.body_text())),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(ErrorCode::InvalidRequest, e.body_text())),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large"))
            }
            Err(e) => Err(ApiError::new(ErrorCode::InvalidRequest, e.body_text())),
        }
    }
}

/// Refuses (422) a JSON body with text no read model or the relay can hold. Every JSON
/// body passes here: [`ApiJson`], and the handlers that take an optional body.
pub fn check_body_text(body: &[u8]) -> Result<(), ApiError> {
    check_json_text(body).map_err(|e| ApiError::validation(format!("request body: {e}")))
}

/// Query-string parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.to_ascii_lowercase().contains("%00")) {
            return Err(ApiError::validation(format!("query string: {}", TextError::Nul)));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::invalid(e.body_text()))
    }
}

/// An authenticated caller, acting for the tenant in both its token and `X-Tenant-ID`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub subject: Actor,
    pub roles: Vec<Role>,
    pub request_id: String,
}

/// `?min_seq=` of reads that follow a write.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Wait (up to the read-your-writes bound) until the read models have applied this ledger seq.
    pub min_seq: Option<i64>,
}

impl Caller {
    /// Who runs a command and in which request.
    pub fn context(&self) -> crate::application::commands::CommandContext {
        crate::application::commands::CommandContext {
            tenant_id: self.tenant_id,
            actor: self.subject.clone(),
            request_id: Some(self.request_id.clone()),
            trace_id: None,
            correlation_id: None,
        }
    }

    /// Fails with 403 unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.roles.iter().any(|r| roles.contains(r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::new(ErrorCode::Forbidden, format!("this operation requires one of the roles: {}", names.join(", ")))
                .with_details(serde_json::json!({ "required_roles": names })))
        }
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let unauthenticated = |m: &str| ApiError::new(ErrorCode::Unauthenticated, m);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("missing Authorization: Bearer token"))?
            .to_str()
            .map_err(|_| unauthenticated("malformed Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("expected Authorization: Bearer <token>"))?;
        let claims = state.verifier.verify(token).await.map_err(|e| unauthenticated(&format!("invalid token: {e}")))?;
        let token_tenant = TenantId::parse(&claims.tenant_id).map_err(|_| unauthenticated("the token's tenant_id claim is not a UUID"))?;
        let subject = Actor::parse(&claims.sub).map_err(|_| unauthenticated("the token's sub claim is invalid"))?;
        let header_tenant = parts
            .headers
            .get("x-tenant-id")
            .ok_or_else(|| ApiError::invalid("missing X-Tenant-ID header"))?
            .to_str()
            .ok()
            .and_then(|v| TenantId::parse(v).ok())
            .ok_or_else(|| ApiError::invalid("X-Tenant-ID must be a UUID"))?;
        if header_tenant != token_tenant {
            return Err(ApiError::new(ErrorCode::TenantMismatch, "X-Tenant-ID does not match the token's tenant"));
        }
        tracing::Span::current().record("tenant_id", tracing::field::display(token_tenant));
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        Ok(Caller { tenant_id: token_tenant, subject, roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(), request_id })
    }
}
