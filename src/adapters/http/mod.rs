//! The HTTP adapter: routes, extractors and the request middleware.

pub mod audit;
pub mod dashboard;
pub mod evaluate;
pub mod evidence;
pub mod extract;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod paging;
pub mod policies;
pub mod regulations;
pub mod replay;
pub mod system_evidence;
pub mod workflows;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use sqlx::PgPool;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::adapters::auth::TokenVerifier;
use crate::adapters::ledger::LedgerReader;
use crate::application::commands::CommandBus;
use crate::application::projection::ProjectionWatch;
use crate::config::Config;
use crate::error::ApiError;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub primary: PgPool,
    pub ledger: LedgerReader,
    pub bus: CommandBus,
    pub verifier: TokenVerifier,
    pub projections: ProjectionWatch,
    pub notary: Arc<crate::adapters::ledger::notary::Notary>,
    pub runtime: crate::application::runtime::PolicyRuntime,
    /// Replays of recorded decisions (impact analysis before activation).
    pub replays: crate::application::replay::Replayer,
    pub opa_sync: Option<Arc<crate::application::opa_sync::OpaSync>>,
    pub relay: Option<Arc<crate::adapters::relay::KafkaRelay>>,
    pub kafka_bootstrap: Option<String>,
    pub http: reqwest::Client,
    /// Per-tenant evaluation rate limit.
    pub evaluate_limiter: crate::application::limits::TenantRateLimiter,
    pub artifacts: crate::adapters::artifacts::ArtifactStore,
    pub dashboards: dashboard::DashboardCache,
    /// The last readiness report (probes reuse it for a second).
    pub health: health::HealthCache,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// A transaction that sees only the caller's tenant's rows.
    pub async fn tenant_tx(&self, caller: &extract::Caller) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ApiError> {
        projections::tenant::begin(&self.primary, caller.tenant_id.as_uuid()).await.map_err(crate::error::database)
    }

    /// Answers a command that landed at ledger `seq`: with what `read` returns once the read
    /// models have applied it, or 202 with `accepted` when that takes longer than the
    /// read-your-writes bound.
    pub async fn answer_after<T: serde::Serialize>(
        &self,
        seq: i64,
        status: axum::http::StatusCode,
        accepted: impl serde::Serialize,
        read: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<axum::response::Response, ApiError> {
        use axum::response::IntoResponse;
        if !self.projections.wait_for(seq, self.config.read_your_writes_timeout).await {
            return Ok((axum::http::StatusCode::ACCEPTED, axum::Json(accepted)).into_response());
        }
        Ok((status, axum::Json(read.await?)).into_response())
    }
}

/// Every route, each registered with the `#[utoipa::path]` attribute that documents it.
/// Bodies are limited to `body_limit` bytes, except evidence uploads (`upload_limit`).
fn routes(body_limit: usize, upload_limit: usize) -> OpenApiRouter<SharedState> {
    let api = OpenApiRouter::new()
        .routes(routes!(policies::create, policies::list))
        .routes(routes!(policies::get))
        .routes(routes!(policies::versions, policies::add_version))
        .routes(routes!(policies::activate))
        .routes(routes!(policies::deactivate))
        .routes(routes!(policies::archive))
        .routes(routes!(replay::replay))
        .routes(routes!(replay::get_replay))
        .routes(routes!(evaluate::evaluate))
        .routes(routes!(evaluate::evaluate_by_name))
        .routes(routes!(evaluate::list_decisions))
        .routes(routes!(evaluate::get_decision))
        .routes(routes!(ledger::public_key))
        .routes(routes!(ledger::create_checkpoint))
        .routes(routes!(ledger::latest_checkpoint))
        .routes(routes!(ledger::inclusion_proof))
        .routes(routes!(ledger::export))
        .routes(routes!(ledger::consistency))
        .routes(routes!(regulations::list))
        .routes(routes!(regulations::requirements))
        .routes(routes!(regulations::set_mappings))
        .routes(routes!(regulations::control))
        .routes(routes!(workflows::create, workflows::list))
        .routes(routes!(workflows::get, workflows::change))
        .routes(routes!(workflows::transition))
        .routes(routes!(workflows::not_applicable))
        .routes(routes!(workflows::withdraw_not_applicable))
        .routes(routes!(audit::accept))
        .routes(routes!(audit::send_back))
        .routes(routes!(audit::close_finding))
        .routes(routes!(audit::review))
        .routes(routes!(regulations::exclude_link))
        .routes(routes!(regulations::withdraw_link_exclusion))
        .routes(routes!(workflows::requirements))
        .routes(routes!(system_evidence::bundle))
        .routes(routes!(system_evidence::list))
        .routes(routes!(evidence::list))
        .routes(routes!(evidence::get))
        .routes(routes!(evidence::artifact))
        .routes(routes!(evidence::supersede))
        .routes(routes!(evidence::withdraw))
        .routes(routes!(dashboard::dashboard))
        .layer(DefaultBodyLimit::max(body_limit))
        // Rejects a declared Content-Length over the limit before reading any of the body.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit))
        .routes(routes!(evidence::upload))
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(upload_limit));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", api)
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::page))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
}

/// The OpenAPI 3.1 document (also `governance-engine openapi`).
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes(0, 0).split_for_parts();
    openapi::finish(&mut doc);
    doc
}

/// The router of the separate metrics listener (`AUMOS_METRICS_ADDR`): `/metrics` only.
pub fn metrics_router(state: SharedState) -> Router {
    let (router, _) = OpenApiRouter::<SharedState>::new().routes(routes!(metrics::metrics)).split_for_parts();
    router
        .layer(axum::Extension(metrics::MetricsListener))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}

pub fn router(state: SharedState) -> Router {
    let upload = usize::try_from(state.config.evidence_max_bytes).unwrap_or(usize::MAX).saturating_add(1024 * 1024);
    let (router, mut doc) = routes(state.config.request_body_limit, upload).split_for_parts();
    openapi::finish(&mut doc);
    let json = serde_json::to_string(&doc).unwrap_or_default();
    let page = openapi::render_page(&doc);
    router
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::Extension(openapi::Document(Arc::new(json))))
        .layer(axum::Extension(openapi::DocsPage(Arc::new(page))))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, state.config.request_timeout))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}
