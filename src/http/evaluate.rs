//! `POST /api/v1/policies/{id}/evaluate` and the decision records it leaves.
//!
//! The hot path: the active policy comes from the runtime cache (no database read), the
//! prepared engine is cloned per request (embedded) or the pooled OPA connection reused,
//! and the decision record is durable in the ledger before the answer is sent. Every
//! failure answers an error, never an "allow".

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use aggregates::decision::{allowed, PolicyEvaluated, DECISION_AGGREGATE, POLICY_EVALUATED};
use projections::decisions::{self as read, DecisionFilter, DecisionView};
use projections::Page;

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ReadParams};
use super::policies::{paging, wait_min_seq};
use super::SharedState;
use crate::auth::Role;
use crate::error::{ApiError, ErrorCode};
use crate::ledger::format::canonical_json;
use crate::ledger::{EntryMetadata, NewEntry};

const EVALUATORS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::PolicyEvaluator];
const DECISION_READERS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::ComplianceOfficer, Role::Auditor];
/// The original SLA: an evaluation slower than this carries a warning.
const BUDGET_MS: f64 = 200.0;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Any JSON value; the policy sees it as `input`.
    pub input: serde_json::Value,
    /// A dot-separated path inside the policy's package; absent: the whole package.
    #[serde(default)]
    pub rule: Option<String>,
}

/// The answer to an evaluation. `result` is always present (`null` when undefined), and
/// `defined` says which.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EvaluateResponse {
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub policy_version: u32,
    /// `embedded` (regorus) or `opa`.
    #[schema(value_type = String)]
    pub engine: &'static str,
    pub result: serde_json::Value,
    pub defined: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    pub latency_ms: f64,
    pub warnings: Vec<String>,
    /// Where the decision record sits in the ledger (prove it with the ledger's proofs).
    pub ledger_seq: i64,
}

fn valid_rule(rule: &str) -> bool {
    !rule.is_empty()
        && rule.len() <= 256
        && rule.split('.').all(|seg| {
            let mut chars = seg.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Evaluates the active version of a policy and records the decision in the ledger.
/// Fails closed: when the engine is down or slower than the timeout, 503, never a decision.
#[utoipa::path(post, path = "/policies/{id}/evaluate", tag = "evaluation",
    params(("id" = uuid::Uuid, Path, description = "The policy id")), request_body = EvaluateRequest,
    responses((status = 200, description = "The decision", body = EvaluateResponse)))]
pub async fn evaluate(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    caller.require(EVALUATORS)?;
    if let Err(wait) = state.evaluate_limiter.check(caller.tenant_id.as_uuid()) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError::new(ErrorCode::RateLimited, "this tenant's evaluation rate limit is reached; retry later")
            .retry_after(seconds.max(1))
            .with_details(serde_json::json!({ "limit_per_second": state.config.evaluate_rate_per_tenant })));
    }
    let policy_id = aggregates::PolicyId::parse(&id).map_err(|_| ApiError::not_found("policy"))?.as_uuid();
    if let Some(rule) = &req.rule {
        if !valid_rule(rule) {
            return Err(ApiError::invalid("rule must be a dot-separated path of identifiers, e.g. allow or limits.max"));
        }
    }
    let tenant = caller.tenant_id.as_uuid();
    let policy = state.runtime.get(tenant, policy_id).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    let (Some(prepared), Some(version)) = (policy.prepared.clone(), policy.version) else {
        return Err(ApiError::new(ErrorCode::PolicyInactive, format!("the policy is {}, not active", policy.status))
            .with_details(serde_json::json!({ "status": policy.status })));
    };
    let started = Instant::now();
    // The engine enforces the evaluation's own deadline (the embedded sandbox kills its
    // worker); this bounds the wait for a free worker on top of it.
    let limit = state.config.eval_timeout + state.config.sandbox.queue_timeout;
    let evaluation =
        tokio::time::timeout(limit, crate::engine::on_behalf_of(tenant, prepared.evaluate(req.rule.as_deref(), &req.input))).await;
    let result = match evaluation {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::PolicyEngineUnavailable,
                format!("evaluation exceeded {} ms", state.config.eval_timeout.as_millis()),
            ))
        }
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut warnings = Vec::new();
    if latency_ms > BUDGET_MS {
        tracing::warn!(policy_id = %policy_id, latency_ms, "evaluation exceeded the 200 ms budget");
        warnings.push(format!("evaluation took {latency_ms:.1} ms, over the {BUDGET_MS} ms budget"));
    }
    let decision_id = Uuid::now_v7();
    let allowed = allowed(result.as_ref());
    let record = PolicyEvaluated {
        decision_id,
        policy_id,
        policy_version: version,
        engine: state.runtime.engine().kind().to_owned(),
        rule: req.rule.clone(),
        input_sha256: hex::encode(Sha256::digest(canonical_json(&req.input).as_bytes())),
        input: if policy.hash_only_input { None } else { Some(req.input) },
        result: result.clone(),
        defined: result.is_some(),
        allowed,
        latency_ms,
    };
    let payload = serde_json::to_value(&record).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let entry = NewEntry {
        tenant_id: tenant,
        aggregate_type: DECISION_AGGREGATE.to_owned(),
        aggregate_id: decision_id.to_string(),
        aggregate_seq: 1,
        event_type: POLICY_EVALUATED.to_owned(),
        event_version: "1".to_owned(),
        payload: canonical_json(&payload),
        metadata: EntryMetadata { actor: caller.subject.to_string(), request_id: Some(caller.request_id.clone()), ..Default::default() },
    };
    // No durable record, no decision: the caller gets 503, never an unrecorded answer.
    let appended = state.bus.record(vec![entry]).await?;
    let response = EvaluateResponse {
        decision_id,
        policy_id,
        policy_version: version,
        engine: state.runtime.engine().kind(),
        defined: result.is_some(),
        result: result.unwrap_or(serde_json::Value::Null),
        allowed,
        latency_ms,
        warnings,
        ledger_seq: appended.first().map(|a| a.seq).unwrap_or(0),
    };
    Ok(Json(response).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecisionParams {
    /// Only decisions of this policy.
    #[param(value_type = Option<uuid::Uuid>)]
    pub policy_id: Option<String>,
    /// Decided at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Decided at or before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// From 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// From 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// Wait (up to the read-your-writes bound) until the read model has applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// Lists the tenant's decision records, newest first.
#[utoipa::path(get, path = "/decisions", tag = "evaluation", params(DecisionParams), responses((status = 200, description = "One page", body = Page<DecisionView>)))]
pub async fn list_decisions(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<DecisionParams>,
) -> Result<Response, ApiError> {
    caller.require(DECISION_READERS)?;
    let (page, page_size) = paging(p.page, p.page_size)?;
    let policy_id = match p.policy_id.as_deref() {
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| ApiError::invalid("policy_id must be a UUID"))?),
        None => None,
    };
    if let (Some(from), Some(to)) = (p.from, p.to) {
        if from > to {
            return Err(ApiError::invalid("from must not be after to"));
        }
    }
    wait_min_seq(&state, p.min_seq).await;
    let mut tx = state.tenant_tx(&caller).await?;
    let filter = DecisionFilter { policy_id, from: p.from, to: p.to };
    Ok(Json(read::list(&mut tx, &filter, page, page_size).await?).into_response())
}

/// Reads one decision record.
#[utoipa::path(get, path = "/decisions/{id}", tag = "evaluation",
    params(("id" = uuid::Uuid, Path, description = "The decision id"), ReadParams), responses((status = 200, description = "The decision record", body = DecisionView)))]
pub async fn get_decision(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    caller.require(DECISION_READERS)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("decision"))?;
    wait_min_seq(&state, p.min_seq).await;
    let mut tx = state.tenant_tx(&caller).await?;
    let d = read::get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("decision"))?;
    Ok(Json(d).into_response())
}

#[cfg(test)]
mod tests {
    use super::valid_rule;

    #[test]
    fn rule_paths_are_dot_separated_identifiers() {
        for ok in ["allow", "deny_reasons", "limits.max.tokens", "_x"] {
            assert!(valid_rule(ok), "{ok}");
        }
        for bad in ["", "a..b", "1a", "a/b", "a[0]", ".a", "a.", "allow; drop"] {
            assert!(!valid_rule(bad), "{bad}");
        }
    }
}
