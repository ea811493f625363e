//! The HTTP adapter: routes, extractors and the request middleware.

pub mod evaluate;
pub mod extract;
pub mod health;
pub mod ledger;
pub mod middleware;
pub mod policies;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;

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
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    let limit = state.config.request_body_limit;
    let api = Router::new()
        .route("/policies", post(policies::create).get(policies::list))
        .route("/policies/{id}", get(policies::get))
        .route("/policies/{id}/versions", get(policies::versions).post(policies::add_version))
        .route("/policies/{id}/activate", post(policies::activate))
        .route("/policies/{id}/deactivate", post(policies::deactivate))
        .route("/policies/{id}/archive", post(policies::archive))
        .route("/policies/{id}/evaluate", post(evaluate::evaluate))
        .route("/decisions", get(evaluate::list_decisions))
        .route("/decisions/{id}", get(evaluate::get_decision))
        .route("/ledger/public-key", get(ledger::public_key))
        .route("/ledger/checkpoints", post(ledger::create_checkpoint))
        .route("/ledger/checkpoints/latest", get(ledger::latest_checkpoint))
        .route("/ledger/entries/{seq}/proof", get(ledger::inclusion_proof))
        .route("/ledger/consistency", get(ledger::consistency));
    Router::new()
        .nest("/api/v1", api)
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(limit))
        // Rejects a declared Content-Length over the limit before reading any of the body.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}
