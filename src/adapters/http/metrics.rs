//! `GET /metrics`: the Prometheus text exposition. Counters and histograms are recorded as
//! work is done; the lag and checkpoint gauges are measured here, at scrape time, with a
//! handful of indexed reads (no payloads).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::Utc;

use super::SharedState;
use crate::error::ApiError;

/// Marks the router of the separate metrics listener (`AUMOS_METRICS_ADDR`).
#[derive(Debug, Clone, Copy)]
pub struct MetricsListener;

const TEXT_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics in the Prometheus (OpenMetrics) text format. Labels never carry tenant ids.
/// When `AUMOS_METRICS_ADDR` is set, served only there (404 on the API's address).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<SharedState>, listener: Option<Extension<MetricsListener>>) -> Response {
    if state.config.metrics_addr.is_some() && listener.is_none() {
        return ApiError::not_found("route").into_response();
    }
    if let Err(e) = measure(&state).await {
        tracing::warn!(error = %e, "cannot measure the ledger lags for /metrics");
    }
    ([(CONTENT_TYPE, TEXT_FORMAT)], crate::adapters::metrics::get().render()).into_response()
}

/// Sets the gauges: ledger head, each projector's and the relay's lag, checkpoint age.
async fn measure(state: &SharedState) -> Result<(), String> {
    let m = crate::adapters::metrics::get();
    let head = state.ledger.head_seq().await.map_err(|e| e.to_string())?;
    m.ledger_head.set(head);
    let mut consumers: Vec<(String, i64)> = state.projections.positions().into_iter().map(|(n, p)| (n.to_owned(), p)).collect();
    if let Some(relay) = &state.relay {
        consumers.push(("kafka_relay".to_owned(), relay.published_upto().await.map_err(|e| e.to_string())?));
    }
    // The oldest entry each consumer still has to handle is the one after its position.
    let next: Vec<i64> = consumers.iter().filter(|(_, p)| *p < head).map(|(_, p)| p + 1).collect();
    let recorded = state.ledger.recorded_at(&next).await.map_err(|e| e.to_string())?;
    let now = Utc::now();
    for (name, position) in &consumers {
        let behind = (head - position).max(0);
        let age = recorded
            .iter()
            .find(|(seq, _)| *seq == position + 1)
            .filter(|_| behind > 0)
            .map_or(0.0, |(_, at)| (now - *at).num_milliseconds().max(0) as f64 / 1e3);
        m.consumer_lag(name, behind, age);
    }
    match state.ledger.latest_checkpoint().await.map_err(|e| e.to_string())? {
        Some(c) => {
            m.checkpoint_age_seconds.set((now - c.created_at).num_milliseconds().max(0) as f64 / 1e3);
            m.checkpoint_tree_size.set(c.tree_size);
        }
        None => {
            m.checkpoint_age_seconds.set(-1.0);
        }
    }
    Ok(())
}
