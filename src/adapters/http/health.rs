//! Liveness and readiness.
//!
//! `/health/live` is the process. `/health/ready` is "can serve commands and queries": both
//! databases answer, and OPA when it is the policy engine. Kafka is asynchronous (the relay
//! catches up), so a broker that does not answer makes the service `degraded`, still ready.
//! Probes are cheap: the checks run at most once per [`CACHE_FOR`] whatever the probe rate
//! (concurrent probes share one run), over the pools and clients the service already holds.
//! The public answer says only ok/unavailable per check; error text, lags and positions are
//! for an authenticated admin (and, as numbers, in `/metrics`).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::extract::Caller;
use super::SharedState;
use crate::adapters::auth::Role;
use crate::config::PolicyEngineKind;

/// How long a readiness result is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One run of the checks: name → error (None: ok), and whether each is required.
#[derive(Debug, Clone)]
struct Report {
    checks: Vec<(&'static str, bool, Option<String>)>,
}

impl Report {
    fn ready(&self) -> bool {
        self.checks.iter().all(|(_, required, e)| !required || e.is_none())
    }

    fn degraded(&self) -> bool {
        self.checks.iter().any(|(_, _, e)| e.is_some())
    }
}

/// The last readiness report and when it was made.
#[derive(Debug, Default)]
pub struct HealthCache {
    last: tokio::sync::Mutex<Option<(Instant, Report)>>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object)))]
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: both databases, and OPA when it is the engine, answer. Kafka down is
/// `degraded` (200). An admin's token adds `details`: errors, lags and positions.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, description = "Ready (`ready` or `degraded`); `checks` says ok or unavailable for each dependency", body = Object),
              (status = 503, description = "Not ready; `checks` names the dependency that is unavailable", body = Object)))]
pub async fn ready(State(state): State<SharedState>, caller: Result<Caller, crate::error::ApiError>) -> impl IntoResponse {
    let report = {
        let mut last = state.health.last.lock().await;
        match last.as_ref() {
            Some((at, r)) if at.elapsed() < CACHE_FOR => r.clone(),
            _ => {
                let r = run_checks(&state).await;
                *last = Some((Instant::now(), r.clone()));
                r
            }
        }
    };
    let ok = report.ready();
    let checks: Map<String, Value> =
        report.checks.iter().map(|(n, _, e)| ((*n).to_owned(), json!(if e.is_none() { "ok" } else { "unavailable" }))).collect();
    let status = match (ok, report.degraded()) {
        (false, _) => "not_ready",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let mut body = json!({ "status": status, "checks": checks });
    if caller.is_ok_and(|c| c.roles.contains(&Role::Admin)) {
        body["details"] = details(&state, &report);
    }
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn run_checks(state: &SharedState) -> Report {
    let primary = async {
        let q = sqlx::query("SELECT 1").execute(&state.primary);
        timed(q).await.and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    };
    let audit = async { timed(state.ledger.head_seq()).await.and_then(|r| r.map(|_| ()).map_err(|e| e.to_string())) };
    let opa = async {
        if state.config.policy_engine != PolicyEngineKind::Opa {
            return None;
        }
        let mut req = state.http.get(format!("{}/health", state.config.opa_url)).timeout(CHECK_TIMEOUT);
        if let Some(token) = &state.config.opa_token {
            req = req.bearer_auth(token.expose());
        }
        let r = match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("OPA answered {}", resp.status())),
            Err(e) => Err(e.to_string()),
        };
        Some(r)
    };
    let kafka = async {
        match &state.relay {
            Some(relay) => Some(relay.broker_reachable(CHECK_TIMEOUT).await),
            None => None,
        }
    };
    let (primary, audit, opa, kafka) = tokio::join!(primary, audit, opa, kafka);
    let mut checks = vec![("primary_database", true, primary.err()), ("audit_database", true, audit.err())];
    if let Some(r) = opa {
        checks.push(("opa", true, r.err()));
    }
    if let Some(r) = kafka {
        checks.push(("kafka", false, r.err()));
    }
    Report { checks }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(CHECK_TIMEOUT, f).await.map_err(|_| "timed out".to_owned())
}

/// What only an admin sees: each failing check's error, the projectors' positions, where a
/// projector or the relay is stuck on a ledger entry (see `projections skip`: the process
/// still serves, so it stays ready, but says where and why), the relay's lag and OPA's
/// policy sync. Read live, not from the cached report.
fn details(state: &SharedState, report: &Report) -> Value {
    let errors: Map<String, Value> = report.checks.iter().filter_map(|(n, _, e)| e.as_ref().map(|e| ((*n).to_owned(), json!(e)))).collect();
    let positions: Map<String, Value> = state.projections.positions().into_iter().map(|(n, p)| (n.to_owned(), json!(p))).collect();
    let stuck = state.projections.stuck.snapshot();
    let mut d = json!({ "errors": errors, "projections": positions, "stuck": stuck });
    if let Some(relay) = &state.relay {
        d["relay_lag_entries"] = json!(relay.lag());
    }
    if let Some(sync) = &state.opa_sync {
        d["opa_sync"] = serde_json::to_value(sync.status()).unwrap_or_default();
    }
    // Tenants refused by the OPA breaker for now (docs/SECURITY.md).
    d["engine_quarantined_tenants"] = json!(state.runtime.engine().quarantined());
    d
}
