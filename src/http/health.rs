//! Liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::SharedState;
use crate::config::PolicyEngineKind;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object)))]
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

fn check(result: Result<(), String>) -> Value {
    match result {
        Ok(()) => json!({ "status": "ok" }),
        Err(e) => json!({ "status": "unavailable", "error": e }),
    }
}

/// Ready when both databases answer, and OPA and Kafka too where they are configured.
/// Readiness: both databases, and OPA and Kafka when configured, answer.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, description = "Ready; every check and each projection's position", body = Object),
              (status = 503, description = "Not ready; the failing checks say why", body = Object)))]
pub async fn ready(State(state): State<SharedState>) -> impl IntoResponse {
    let timeout = Duration::from_secs(2);
    let primary = async {
        let q = sqlx::query("SELECT 1").execute(&state.primary);
        tokio::time::timeout(timeout, q).await.map_err(|_| "timed out".to_owned())?.map(|_| ()).map_err(|e| e.to_string())
    };
    let audit = async {
        let q = state.ledger.head_seq();
        tokio::time::timeout(timeout, q).await.map_err(|_| "timed out".to_owned())?.map(|_| ()).map_err(|e| e.to_string())
    };
    let (primary, audit) = tokio::join!(primary, audit);
    let mut checks = serde_json::Map::new();
    checks.insert("primary_database".into(), check(primary));
    checks.insert("audit_database".into(), check(audit));
    if state.config.policy_engine == PolicyEngineKind::Opa {
        let url = format!("{}/health", state.config.opa_url);
        let mut req = state.http.get(url).timeout(timeout);
        if let Some(token) = &state.config.opa_token {
            req = req.bearer_auth(token.expose());
        }
        let r = req.send().await;
        let r = match r {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("OPA answered {}", resp.status())),
            Err(e) => Err(e.to_string()),
        };
        checks.insert("opa".into(), check(r));
        if let Some(sync) = &state.opa_sync {
            let st = sync.status();
            let mut v = serde_json::to_value(&st).unwrap_or_default();
            v["status"] = json!(if st.ok { "ok" } else { "unavailable" });
            checks.insert("opa_policies".into(), v);
        }
    }
    if let Some(bootstrap) = state.kafka_bootstrap.clone() {
        let mut kafka = check(kafka_reachable(bootstrap, timeout).await);
        if let Some(relay) = &state.relay {
            kafka["relay_lag_entries"] = json!(relay.lag());
        }
        checks.insert("kafka".into(), kafka);
    }
    let ok = checks.values().all(|c| c["status"] == "ok");
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let positions: serde_json::Map<String, Value> =
        state.projections.positions().into_iter().map(|(n, p)| (n.to_owned(), json!(p))).collect();
    // A projector or the relay stuck on a ledger entry (see `projections skip`): the
    // process still serves, so it stays ready, but says where and why.
    let stuck = state.projections.stuck.snapshot();
    (status, Json(json!({ "status": if ok { "ready" } else { "not_ready" }, "checks": checks, "projections": positions, "stuck": stuck })))
}

/// Asks the broker for its metadata: a real protocol round trip, not just a TCP connect.
async fn kafka_reachable(bootstrap: String, timeout: Duration) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().map_err(|e| e.to_string())?;
        consumer.fetch_metadata(None, timeout).map(|_| ()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
