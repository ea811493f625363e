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

use aggregates::compliance::Sha256 as Digest256;
use aggregates::facts::decision::allowed;
use aggregates::facts::{DecisionEvent, JsonText, PolicyEvaluated, RulePath};
use aggregates::{DecisionId, PolicyId};
use ledger::format::canonical_json;
use ledger::EntryMetadata;
use projections::decisions::{self as read, DecisionCursor, DecisionFilter, DecisionPage, DecisionView};
use projections::SortOrder;

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ReadParams};
use super::paging::{Listed, PageParams};
use super::policies::wait_min_seq;
use super::SharedState;
use crate::adapters::auth::Role;
use crate::adapters::ledger::NewEntry;
use crate::error::{ApiError, ErrorCode};

const EVALUATORS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::PolicyEvaluator];
const DECISION_READERS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::ComplianceOfficer, Role::Auditor];
/// The original SLA: an evaluation slower than this carries a warning.
const BUDGET_MS: f64 = 200.0;

/// What the decision record keeps of the input: nothing (`hash_only`), or the input with
/// the policy's masked fields removed or hashed. Its `input_sha256` is always of the full
/// input, so a caller holding the input can still prove it was the one decided on.
/// `text` is the full input's canonical text, recorded as it is when nothing is masked.
fn recorded_input(
    policy: &crate::application::runtime::RuntimePolicy,
    input: Option<serde_json::Value>,
    text: Option<JsonText>,
) -> Result<Option<JsonText>, serde_json::Error> {
    if policy.hash_only_input {
        return Ok(None);
    }
    if policy.input_mask.is_empty() {
        return Ok(text);
    }
    let Some(mut input) = input else { return Ok(None) };
    policy.input_mask.apply(&mut input, |v| hex::encode(Sha256::digest(canonical_json(v).as_bytes())));
    JsonText::of(&input).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Any JSON value; the policy sees it as `input`. Absent: the policy's `input` is
    /// undefined (as in OPA's API; `null` is an input of `null`), and the record's
    /// `input_sha256` is the SHA-256 of zero bytes.
    #[serde(default, deserialize_with = "crate::adapters::engine::given_input")]
    pub input: Option<serde_json::Value>,
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
    /// Always present: the rule's boolean answer, and `false` whenever the result is
    /// undefined or not a boolean decision, so a caller reading only `allowed` fails closed.
    pub allowed: bool,
    pub latency_ms: f64,
    pub warnings: Vec<String>,
    /// Where the decision record sits in the ledger (prove it with the ledger's proofs).
    pub ledger_seq: i64,
}

/// Evaluates the active version of a policy and records the decision in the ledger.
/// Fails closed: when the engine is down or slower than the timeout, 503, never a decision.
#[utoipa::path(post, path = "/policies/{id}/evaluate", tag = "evaluation", operation_id = "evaluate_policy",
    params(("id" = uuid::Uuid, Path, description = "The policy id")), request_body = EvaluateRequest,
    responses((status = 200, description = "The decision", body = EvaluateResponse)))]
pub async fn evaluate(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    caller.require(EVALUATORS)?;
    rate_limit(&state, &caller)?;
    let policy_id = aggregates::PolicyId::parse(&id).map_err(|_| ApiError::not_found("policy"))?.as_uuid();
    decide(&state, &caller, policy_id, req).await
}

/// Evaluates the active version of the tenant's policy of this name (names are unique per
/// tenant), exactly as evaluating it by id does.
#[utoipa::path(post, path = "/policies/by-name/{name}/evaluate", tag = "evaluation", operation_id = "evaluate_policy_by_name",
    params(("name" = String, Path, description = "The policy's name (URL-encoded)")), request_body = EvaluateRequest,
    responses((status = 200, description = "The decision", body = EvaluateResponse)))]
pub async fn evaluate_by_name(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<EvaluateRequest>,
) -> Result<Response, ApiError> {
    caller.require(EVALUATORS)?;
    rate_limit(&state, &caller)?;
    let name = aggregates::PolicyName::parse(&name).map_err(|_| ApiError::not_found("policy"))?;
    let policy_id = policy_named(&state, &caller, &name).await?;
    decide(&state, &caller, policy_id, req).await
}

/// The policy holding a name: the ledger's name claim decides. Policies created before
/// names were claimed have none; for them the read model's only policy of that name
/// answers (several: 409, evaluate them by id).
async fn policy_named(state: &SharedState, caller: &Caller, name: &aggregates::PolicyName) -> Result<Uuid, ApiError> {
    use aggregates::policy::name::{claim_id, NameClaimEvent, NAME_CLAIM_AGGREGATE};
    let claim = state.ledger.aggregate_events(NAME_CLAIM_AGGREGATE, &claim_id(caller.tenant_id, name)).await?;
    if let Some(entry) = claim.first() {
        return match aggregates::Recorded::decode_text(&entry.aggregate_type, &entry.event_type, &entry.payload) {
            Ok(aggregates::Recorded::PolicyNameClaim(NameClaimEvent::PolicyNameClaimed { policy_id, .. })) => Ok(policy_id.as_uuid()),
            _ => Err(ApiError::new(ErrorCode::Internal, format!("ledger entry {} is not a name claim", entry.seq))),
        };
    }
    let mut tx = state.tenant_tx(caller).await?;
    match projections::policies::ids_named(&mut tx, name.as_str()).await?.as_slice() {
        [] => Err(ApiError::not_found("policy")),
        [id] => Ok(*id),
        ids => {
            Err(ApiError::new(ErrorCode::Conflict, "several policies, created before names were unique, have this name; evaluate by id")
                .with_details(serde_json::json!({ "policy_ids": ids })))
        }
    }
}

/// Refuses with 429 when the tenant's evaluation rate is spent.
fn rate_limit(state: &SharedState, caller: &Caller) -> Result<(), ApiError> {
    if let Err(wait) = state.evaluate_limiter.check(caller.tenant_id.as_uuid()) {
        crate::adapters::metrics::get().refused_by_rate_limit("evaluate");
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError::new(ErrorCode::RateLimited, "this tenant's evaluation rate limit is reached; retry later")
            .retry_after(seconds.max(1))
            .with_details(serde_json::json!({ "limit_per_second": state.config.evaluate_rate_per_tenant })));
    }
    Ok(())
}

/// The one evaluation path of both routes: evaluates the policy's active version and
/// records the decision in the ledger before answering.
async fn decide(state: &SharedState, caller: &Caller, policy_id: Uuid, req: EvaluateRequest) -> Result<Response, ApiError> {
    let rule = match req.rule.as_deref() {
        Some(raw) => Some(
            RulePath::parse(raw)
                .map_err(|_| ApiError::invalid("rule must be a dot-separated path of identifiers, e.g. allow or limits.max"))?,
        ),
        None => None,
    };
    let tenant = caller.tenant_id.as_uuid();
    let policy = state.runtime.get(tenant, policy_id).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    let (Some(prepared), Some(version)) = (policy.prepared.clone(), policy.version) else {
        return Err(ApiError::new(ErrorCode::PolicyInactive, format!("the policy is {}, not active", policy.status))
            .with_details(serde_json::json!({ "status": policy.status })));
    };
    // The input's canonical text, written once: the engine is sent it, the record hashes
    // it and keeps it as it is, unless the policy masks part of it or keeps only its hash
    // (no input: the hash of zero bytes).
    let unencodable = |e: serde_json::Error| ApiError::new(ErrorCode::Internal, format!("the input cannot be encoded: {e}"));
    let input_text = req.input.as_ref().map(JsonText::of).transpose().map_err(unencodable)?;
    let input_sha256 = Digest256::from_digest(Sha256::digest(input_text.as_ref().map_or("", JsonText::get).as_bytes()).into());
    let started = Instant::now();
    // The engine enforces the evaluation's own deadline (the embedded sandbox kills its
    // worker); this bounds the wait for a free worker on top of it.
    let limit = state.config.eval_timeout + state.config.sandbox.queue_timeout;
    let evaluation = tokio::time::timeout(
        limit,
        crate::adapters::engine::on_behalf_of(tenant, prepared.evaluate(rule.as_ref().map(RulePath::as_str), input_text.as_ref())),
    )
    .await;
    let engine = state.runtime.engine().kind();
    let result = match evaluation {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            crate::adapters::metrics::get().evaluation(engine.as_str(), "error", started.elapsed());
            return Err(e.into());
        }
        Err(_) => {
            crate::adapters::metrics::get().evaluation(engine.as_str(), "timeout", started.elapsed());
            return Err(ApiError::new(
                ErrorCode::PolicyEngineUnavailable,
                format!("evaluation exceeded {} ms", state.config.eval_timeout.as_millis()),
            ));
        }
    };
    let elapsed = started.elapsed();
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    let mut warnings = Vec::new();
    if latency_ms > BUDGET_MS {
        tracing::warn!(policy_id = %policy_id, latency_ms, "evaluation exceeded the 200 ms budget");
        warnings.push(format!("evaluation took {latency_ms:.1} ms, over the {BUDGET_MS} ms budget"));
    }
    let decision_id = DecisionId::generate();
    let allowed = allowed(result.as_ref());
    let outcome = match allowed {
        Some(true) => "allowed",
        Some(false) => "denied",
        None => "undefined",
    };
    crate::adapters::metrics::get().evaluation(engine.as_str(), outcome, elapsed);
    let record = PolicyEvaluated {
        decision_id,
        policy_id: PolicyId::from_uuid(policy_id),
        policy_version: version,
        engine,
        rule,
        input_sha256,
        input: recorded_input(&policy, req.input, input_text).map_err(unencodable)?,
        result: result.clone(),
        defined: result.is_some(),
        allowed,
        latency_ms,
    };
    let metadata = EntryMetadata { actor: caller.subject.to_string(), request_id: Some(caller.request_id.clone()), ..Default::default() };
    let entry = NewEntry::fact(tenant, record.aggregate_id(), &DecisionEvent::PolicyEvaluated(record), metadata)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    // No durable record, no decision: the caller gets 503, never an unrecorded answer.
    let appended = state.bus.record(vec![entry]).await?;
    let response = EvaluateResponse {
        decision_id: decision_id.as_uuid(),
        policy_id,
        policy_version: version,
        engine: engine.as_str(),
        defined: result.is_some(),
        result: result.unwrap_or(serde_json::Value::Null),
        allowed: allowed.unwrap_or(false),
        latency_ms,
        warnings,
        ledger_seq: appended.first().map(|a| a.seq).unwrap_or(0),
    };
    Ok(Json(response).into_response())
}

/// The only sort key of decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSort {
    /// The order decisions were recorded in the ledger (their `decided_at` order).
    LedgerSeq,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecisionParams {
    /// `ledger_seq` (the only key); default order `desc` (newest first).
    pub sort_by: Option<DecisionSort>,
    /// Only decisions of this policy.
    #[param(value_type = Option<uuid::Uuid>)]
    pub policy_id: Option<String>,
    /// Only decisions made by this version of the policy.
    #[param(minimum = 1)]
    pub version: Option<i32>,
    /// Only decisions whose `allowed` is this (`true` or `false`).
    pub allowed: Option<bool>,
    /// Decided at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Decided at or before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Keyset paging: the records after this `ledger_seq` in the sort order (the previous
    /// page's `next_after`). Fast however deep; use instead of `page` (which must then be 1).
    #[param(minimum = 1)]
    pub after: Option<i64>,
    /// Wait (up to the read-your-writes bound) until the read model has applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// Lists the tenant's decision records, newest first; page by `page` or, over a growing
/// table, by the keyset cursor `after`.
#[utoipa::path(get, path = "/decisions", tag = "evaluation", operation_id = "list_decisions", params(PageParams, DecisionParams),
    responses((status = 200, description = "One page", body = DecisionPage)))]
pub async fn list_decisions(
    State(state): State<SharedState>,
    caller: Caller,
    Listed { page, filter: p }: Listed<DecisionParams>,
) -> Result<Response, ApiError> {
    caller.require(DECISION_READERS)?;
    let policy_id = match p.policy_id.as_deref() {
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| ApiError::invalid("policy_id must be a UUID"))?),
        None => None,
    };
    if let (Some(from), Some(to)) = (p.from, p.to) {
        if from > to {
            return Err(ApiError::invalid("from must not be after to"));
        }
    }
    let cursor = match p.after {
        Some(_) if page.page != 1 => return Err(ApiError::invalid("after is a keyset cursor; it cannot be combined with page")),
        Some(seq) if seq < 1 => return Err(ApiError::invalid("after must be a ledger seq (from 1)")),
        Some(seq) => DecisionCursor::After(seq),
        None => DecisionCursor::Page(page.page),
    };
    if p.version.is_some_and(|v| v < 1) {
        return Err(ApiError::invalid("version starts at 1"));
    }
    wait_min_seq(&state, p.min_seq).await;
    let mut tx = state.tenant_tx(&caller).await?;
    let filter = DecisionFilter { policy_id, policy_version: p.version, allowed: p.allowed, from: p.from, to: p.to };
    let ascending = page.order_or(SortOrder::Desc) == SortOrder::Asc;
    Ok(Json(read::list(&mut tx, &filter, cursor, page.page_size, ascending).await?).into_response())
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
