//! The HTTP adapter: routes, extractors and the request middleware.

pub mod evaluate;
pub mod extract;
pub mod health;
pub mod ledger;
pub mod middleware;
pub mod openapi;
pub mod policies;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use sqlx::PgPool;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::TokenVerifier;
use crate::commands::CommandBus;
use crate::config::Config;
use crate::error::ApiError;
use crate::ledger::LedgerReader;
use crate::projection::ProjectionWatch;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub primary: PgPool,
    pub ledger: LedgerReader,
    pub bus: CommandBus,
    pub verifier: TokenVerifier,
    pub projections: ProjectionWatch,
    pub notary: Arc<crate::ledger::notary::Notary>,
    pub runtime: crate::runtime::PolicyRuntime,
    pub opa_sync: Option<Arc<crate::opa_sync::OpaSync>>,
    pub relay: Option<Arc<crate::relay::KafkaRelay>>,
    pub kafka_bootstrap: Option<String>,
    pub http: reqwest::Client,
    /// Per-tenant evaluation rate limit.
    pub evaluate_limiter: crate::limits::TenantRateLimiter,
}

pub type SharedState = Arc<AppState>;

/// Every route, each registered with the `#[utoipa::path]` attribute that documents it.
fn routes() -> OpenApiRouter<SharedState> {
    let api = OpenApiRouter::new()
        .routes(routes!(policies::create, policies::list))
        .routes(routes!(policies::get))
        .routes(routes!(policies::versions, policies::add_version))
        .routes(routes!(policies::activate))
        .routes(routes!(policies::deactivate))
        .routes(routes!(policies::archive))
        .routes(routes!(evaluate::evaluate))
        .routes(routes!(evaluate::list_decisions))
        .routes(routes!(evaluate::get_decision))
        .routes(routes!(ledger::public_key))
        .routes(routes!(ledger::create_checkpoint))
        .routes(routes!(ledger::latest_checkpoint))
        .routes(routes!(ledger::inclusion_proof))
        .routes(routes!(ledger::consistency));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", api)
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::page))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
}

/// The OpenAPI 3.1 document (also `governance-engine openapi`).
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    openapi::finish(&mut doc);
    doc
}

pub fn router(state: SharedState) -> Router {
    let limit = state.config.request_body_limit;
    let (router, mut doc) = routes().split_for_parts();
    openapi::finish(&mut doc);
    let json = serde_json::to_string(&doc).unwrap_or_default();
    router
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::Extension(openapi::Document(Arc::new(json))))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, state.config.request_timeout))
        .layer(DefaultBodyLimit::max(limit))
        // Rejects a declared Content-Length over the limit before reading any of the body.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}
