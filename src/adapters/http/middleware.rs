//! The request middleware: request ids, the request span, and error rendering.
//!
//! Every response passes through here. An [`ApiError`] travels in the response's
//! extensions and is rendered as `{"error":{"code","message","request_id"}}`; a bare
//! error status from the framework (405, 413, ...) gets the same body. This is the one
//! place errors are logged, inside the request span.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request (echoed from `X-Request-ID` or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // The route template, never the raw path: no ids in metric labels.
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        tenant_id = tracing::field::Empty,
        method = %req.method(),
        path = %req.uri().path(),
    );
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(req).await;
        let status = response.status();
        if let Some(error) = response.extensions_mut().remove::<ApiError>() {
            response = render(error, &id);
        } else if status == StatusCode::REQUEST_TIMEOUT {
            // Only the per-request timeout layer answers 408; we answer it as a 503.
            response =
                render(ApiError::new(ErrorCode::RequestTimeout, "the request took longer than the service allows").retry_after(1), &id);
        } else if (status.is_client_error() || status.is_server_error()) && !is_json(&response) {
            response = render(ApiError::new(code_for(status), status.canonical_reason().unwrap_or("error").to_lowercase()), &id);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID.clone(), v);
        }
        crate::adapters::metrics::get().http_request(method.as_str(), &route, response.status().as_u16(), started.elapsed());
        tracing::debug!(status = response.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request done");
        response
    }
    .instrument(span)
    .await
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        s if s.is_client_error() => ErrorCode::InvalidRequest,
        _ => ErrorCode::Internal,
    }
}

fn render(error: ApiError, request_id: &str) -> Response {
    let status = error.code.status();
    if status.is_server_error() {
        tracing::error!(code = error.code.as_str(), detail = %error.message, cause = error.cause.as_deref().unwrap_or(""), "request failed");
    } else {
        tracing::info!(code = error.code.as_str(), detail = %error.message, "request rejected");
    }
    let mut body = serde_json::json!({
        "error": { "code": error.code.as_str(), "message": error.message, "request_id": request_id }
    });
    if let Some(details) = error.details {
        body["error"]["details"] = details;
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = error.retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
