//! `/api/v1/policies`: the Policy aggregate's commands and its read model.
//!
//! Rego is validated before anything is stored (422 with every error's row and column),
//! and activation runs the policy's `test_` rules and loads it into the engine before the
//! activation is recorded, so an active policy is always one the engine can evaluate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use aggregates::facts::{ReplayEvent, RulePath, REPLAY_AGGREGATE};
use aggregates::policy::mask::InputMask;
use aggregates::policy::name::{claim_id, ClaimName, NameClaimError, PolicyNameClaim, NAME_CLAIM_AGGREGATE};
use aggregates::policy::{
    ActivationCheck, InputLogging, Policy, PolicyCommand, PolicyError, PolicyServices, ReplaySubject, VersionRejected,
};
use aggregates::policy::{ControlCheck, ControlChecks, DataDocument, ExtraModules, PassWhen, VersionSource};
use aggregates::{Description, PolicyId, PolicyName, Reason, RegoSource, ReplayId, TenantId};
use projections::policies::{self as read, PolicyListQuery, PolicySort, PolicyStatusFilter, VersionSort};
use projections::policies::{PolicyVersionView, PolicyView};
use projections::{Page, SortOrder};

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ReadParams};
use super::paging::{Listed, PageParams};
use super::SharedState;
use crate::adapters::auth::Role;
use crate::adapters::engine::{PolicyModule, PolicySource};
use crate::adapters::ledger::{Appended, LedgerError};
use crate::error::{ApiError, ErrorCode};

const WRITERS: &[Role] = &[Role::Admin, Role::PolicyAuthor];
/// Who may read policies. Not `policy:evaluator`: those service accounts may only evaluate.
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::ComplianceOfficer, Role::Auditor];

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match &e {
            PolicyError::NotFound => ApiError::not_found("policy"),
            PolicyError::AlreadyExists => ApiError::new(ErrorCode::Conflict, e.to_string()),
            PolicyError::InvalidTransition { from, allowed, .. } => ApiError::new(ErrorCode::InvalidTransition, e.to_string())
                .with_details(serde_json::json!({ "status": from.as_str(), "allowed_transitions": allowed })),
            PolicyError::UnknownVersion { .. } => ApiError::validation(e.to_string()),
            PolicyError::AlreadyActive(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            PolicyError::ReplayMismatch { .. } => ApiError::validation(e.to_string()),
            // The engine's own error, with its own code (failed tests 422, engine down 503).
            PolicyError::VersionRejected { reason, .. } => match reason.0.downcast_ref::<crate::adapters::engine::EngineError>() {
                Some(engine) => engine.clone().into(),
                None => ApiError::validation(e.to_string()),
            },
        }
    }
}

/// The Policy aggregate's activation check on the service's engine: the version compiles,
/// its `test_` rules pass, and the engine has loaded it (queued under the tenant). A replay
/// the activation names is read from the ledger (its `PolicyReplayed` fact).
struct EngineActivationCheck {
    engine: std::sync::Arc<dyn crate::adapters::engine::PolicyEngine>,
    ledger: crate::adapters::ledger::LedgerReader,
}

/// The ledger could not say what a replay was of.
#[derive(Debug, thiserror::Error)]
#[error("the replay record could not be read: {0}")]
struct ReplayUnreadable(String);

#[async_trait::async_trait]
impl ActivationCheck for EngineActivationCheck {
    async fn check_version(&self, tenant: TenantId, policy: PolicyId, version: u32, source: &VersionSource) -> Result<(), VersionRejected> {
        let engine = self.engine.as_ref();
        let source = PolicySource::of(source);
        let check = async {
            crate::adapters::engine::check_and_test(engine, &source).await?;
            let module = PolicyModule { policy_id: policy.as_uuid(), version, package: String::new(), source: source.clone() };
            engine.prepare(&module).await.map(|_| ())
        };
        crate::adapters::engine::on_behalf_of(tenant.as_uuid(), check).await.map_err(|e| VersionRejected(std::sync::Arc::new(e)))
    }

    async fn replay_subject(&self, tenant: TenantId, replay: ReplayId) -> Result<Option<ReplaySubject>, VersionRejected> {
        let unreadable = |m: String| VersionRejected(std::sync::Arc::new(ReplayUnreadable(m)));
        let entries = self.ledger.aggregate_events(REPLAY_AGGREGATE, &replay.to_string()).await.map_err(|e| unreadable(e.to_string()))?;
        // Another tenant's replay is answered as none, like an unknown one.
        let Some(entry) = entries.into_iter().find(|e| e.tenant_id == tenant.as_uuid()) else { return Ok(None) };
        match aggregates::Recorded::decode_text(&entry.aggregate_type, &entry.event_type, &entry.payload) {
            Ok(aggregates::Recorded::Replay(ReplayEvent::PolicyReplayed(r))) => {
                Ok(Some(ReplaySubject { policy_id: r.policy_id, version: r.version }))
            }
            Ok(other) => Err(unreadable(format!("ledger entry {} is {:?}, not a replay", entry.seq, other.kind()))),
            Err(e) => Err(unreadable(e.to_string())),
        }
    }
}

fn policy_services(state: &SharedState) -> PolicyServices {
    PolicyServices::new(std::sync::Arc::new(EngineActivationCheck { engine: state.runtime.engine().clone(), ledger: state.ledger.clone() }))
}

/// One control a version checks, as a request names it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlCheckBody {
    /// A NIST CSF 2.0 subcategory of the catalog, e.g. `PR.AA-01`.
    pub control_id: String,
    /// Only decisions of this rule count (default: every decision of the version).
    #[serde(default)]
    pub rule: Option<String>,
    /// When a day passes: `no_deny` (default: fails on any deny), `all_allowed` (every
    /// decision allowed) or `decided` (a decision exists).
    #[serde(default)]
    pub pass_when: Option<PassWhen>,
}

/// The checks a request names, each control validated against the CSF 2.0 catalog.
fn control_checks(body: Vec<ControlCheckBody>) -> Result<ControlChecks, ApiError> {
    let checks = body
        .into_iter()
        .map(|c| {
            let (control_id, _) = super::regulations::csf_control(&c.control_id)?;
            let rule = c.rule.as_deref().map(RulePath::parse).transpose()?;
            Ok(ControlCheck { control_id, rule, pass_when: c.pass_when.unwrap_or_default() })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(ControlChecks::new(checks)?)
}

fn optional_reason(r: Option<String>) -> Result<Option<Reason>, ApiError> {
    match r {
        Some(r) if !r.trim().is_empty() => Ok(Some(Reason::parse(&r)?)),
        _ => Ok(None),
    }
}

/// A command was recorded in the ledger, but the read model had not applied it within the
/// read-your-writes bound; read it again with `min_seq`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub policy_id: Uuid,
    pub ledger_seq: i64,
    /// Always `accepted`.
    pub status: String,
}

/// Reads a policy once its projection has caught up with `seq`, or answers 202 with the
/// seq when that takes longer than the read-your-writes bound.
async fn read_after(state: &SharedState, caller: &Caller, policy_id: Uuid, seq: i64, status: StatusCode) -> Result<Response, ApiError> {
    let accepted = Accepted { policy_id, ledger_seq: seq, status: "accepted".to_owned() };
    let read = async {
        let mut tx = state.tenant_tx(caller).await?;
        read::get(&mut tx, policy_id).await?.ok_or_else(|| ApiError::not_found("policy"))
    };
    state.answer_after(seq, status, accepted, read).await
}

/// Runs a command, invalidates the evaluation cache, and answers with the read model.
async fn run(state: &SharedState, caller: &Caller, id: PolicyId, command: PolicyCommand, status: StatusCode) -> Result<Response, ApiError> {
    let appended = state.bus.execute::<Policy>(&id.to_string(), command, &policy_services(state), &caller.context()).await?;
    answer(state, caller, id, &appended, status).await
}

/// Invalidates the evaluation cache and answers with the read model once it has applied
/// the appended entries.
async fn answer(
    state: &SharedState,
    caller: &Caller,
    id: PolicyId,
    appended: &[Appended],
    status: StatusCode,
) -> Result<Response, ApiError> {
    state.runtime.invalidate(caller.tenant_id.as_uuid(), id.as_uuid()).await;
    let seq = appended.last().map(|a| a.seq).unwrap_or(0);
    read_after(state, caller, id.as_uuid(), seq, status).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Rego source (at most 256 KiB), e.g. `package aumos.x\n\ndefault allow := false`:
    /// the main module, whose package is the policy's.
    pub rego: String,
    /// Further modules of version 1 (at most 15, each at most 256 KiB), in any packages;
    /// only this version sees them, under `data.<package>`.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Version 1's data document: a JSON object (at most 1 MiB) its modules read under `data`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// `full` (default) or `hash_only`: what decision records keep of the input.
    #[serde(default)]
    pub input_logging: InputLogging,
    /// Input fields decision records keep out: JSON Pointers to remove, or to replace by
    /// `"sha256:<hex>"` (at most 64 paths), e.g. `{"remove": ["/user/ssn"], "hash": ["/user/email"]}`.
    #[serde(default)]
    pub input_mask: InputMask,
    /// The CSF 2.0 controls version 1 checks: its decisions become system evidence for them.
    #[serde(default)]
    pub control_checks: Vec<ControlCheckBody>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Creates a policy from Rego that compiles (version 1, status `draft`).
#[utoipa::path(post, path = "/policies", tag = "policies", operation_id = "create_policy", request_body = CreatePolicy,
    responses((status = 201, description = "Created", body = PolicyView), (status = 202, description = "Recorded; the read model has not caught up yet", body = Accepted)))]
pub async fn create(State(state): State<SharedState>, caller: Caller, ApiJson(body): ApiJson<CreatePolicy>) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let source = version_source(&body.rego, &body.modules, body.data)?;
    let id = PolicyId::generate();
    let name = PolicyName::parse(&body.name)?;
    let claim = ClaimName { tenant_id: caller.tenant_id, name: name.clone(), policy_id: id };
    let command = PolicyCommand::Create {
        policy_id: id,
        tenant_id: caller.tenant_id,
        name: name.clone(),
        description: Description::parse(&body.description)?,
        input_logging: body.input_logging,
        input_mask: body.input_mask.validate()?,
        control_checks: control_checks(body.control_checks)?,
        actor: caller.subject.clone(),
        reason: optional_reason(body.reason)?,
        rego: source.rego.clone(),
        modules: source.modules.clone(),
        data: source.data.clone(),
    };
    crate::adapters::engine::on_behalf_of(caller.tenant_id.as_uuid(), state.runtime.engine().check(&PolicySource::of(&source))).await?;
    // The name claim and the policy are appended together: both, or neither. The claim
    // aggregate refuses a taken name; a racing claim of the same name loses at the append.
    let ctx = caller.context();
    let mut entries = state.bus.decide::<PolicyNameClaim>(&claim_id(caller.tenant_id, &name), claim, &(), &ctx).await?;
    entries.extend(state.bus.decide::<Policy>(&id.to_string(), command, &policy_services(&state), &ctx).await?);
    let appended = state.bus.record(entries).await.map_err(|e| match e {
        // Another create claimed the name between our read of the claim and our append.
        LedgerError::Conflict { aggregate_type, .. } if aggregate_type == NAME_CLAIM_AGGREGATE => {
            ApiError::new(ErrorCode::PolicyNameTaken, format!("the tenant already has a policy named {:?}", name.as_str()))
        }
        other => other.into(),
    })?;
    answer(&state, &caller, id, &appended, StatusCode::CREATED).await
}

impl From<NameClaimError> for ApiError {
    fn from(e: NameClaimError) -> Self {
        match &e {
            NameClaimError::Taken { policy_id, .. } => ApiError::new(ErrorCode::PolicyNameTaken, e.to_string())
                .with_details(serde_json::json!({ "policy_id": policy_id.as_uuid() })),
        }
    }
}

/// A version's main module, further modules and data document, each checked.
fn version_source(rego: &str, modules: &[String], data: Option<serde_json::Value>) -> Result<VersionSource, ApiError> {
    let modules = modules.iter().map(|m| RegoSource::parse(m)).collect::<Result<Vec<_>, _>>()?;
    Ok(VersionSource {
        rego: RegoSource::parse(rego)?,
        modules: ExtraModules::parse(modules)?,
        data: DataDocument::from_value(data.unwrap_or_default())?,
    })
}

fn parse_id(raw: &str) -> Result<PolicyId, ApiError> {
    // A malformed id cannot name any policy: 404, like an id of another tenant.
    PolicyId::parse(raw).map_err(|_| ApiError::not_found("policy"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddVersion {
    /// The main module (its package is the policy's).
    pub rego: String,
    /// Further modules of the version (at most 15), as for create.
    #[serde(default)]
    pub modules: Vec<String>,
    /// The version's data document (a JSON object, at most 1 MiB), as for create.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// The CSF 2.0 controls this version checks: its decisions become system evidence for them.
    #[serde(default)]
    pub control_checks: Vec<ControlCheckBody>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Adds a new version of the Rego; the active version does not change.
#[utoipa::path(post, path = "/policies/{id}/versions", tag = "policies", operation_id = "add_policy_version", params(("id" = uuid::Uuid, Path, description = "The policy id")), request_body = AddVersion,
    responses((status = 201, description = "Version added", body = PolicyView), (status = 202, description = "Recorded; the read model has not caught up yet", body = Accepted)))]
pub async fn add_version(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddVersion>,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let id = parse_id(&id)?;
    let VersionSource { rego, modules, data } = version_source(&body.rego, &body.modules, body.data)?;
    let reason = optional_reason(body.reason)?;
    let control_checks = control_checks(body.control_checks)?;
    let source = PolicySource::of(&VersionSource { rego: rego.clone(), modules: modules.clone(), data: data.clone() });
    crate::adapters::engine::on_behalf_of(caller.tenant_id.as_uuid(), state.runtime.engine().check(&source)).await?;
    let command = PolicyCommand::AddVersion {
        tenant_id: caller.tenant_id,
        rego,
        modules,
        data,
        control_checks,
        actor: caller.subject.clone(),
        reason,
    };
    run(&state, &caller, id, command, StatusCode::CREATED).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// Only for activate: the version (default: the newest).
    #[serde(default)]
    pub version: Option<u32>,
    /// Only for activate: a replay of recorded decisions against that version
    /// (`POST /policies/{id}/versions/{v}/replay`); the activation records it.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub replay_id: Option<ReplayId>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// An optional JSON body: none, or an empty one, means the defaults.
async fn transition_body(body: axum::body::Bytes) -> Result<Transition, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Transition::default());
    }
    super::extract::check_body_text(&body)?;
    serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { ErrorCode::MalformedJson } else { ErrorCode::InvalidRequest };
        ApiError::new(code, e.to_string())
    })
}

/// Runs the version's `test_` rules, loads it into the engine, and activates it.
#[utoipa::path(post, path = "/policies/{id}/activate", tag = "policies", params(("id" = uuid::Uuid, Path, description = "The policy id")),
    request_body(content = Option<Transition>, description = "Optional; an empty body means the defaults"),
    responses((status = 200, description = "Done", body = PolicyView), (status = 202, description = "Recorded; the read model has not caught up yet", body = Accepted)))]
pub async fn activate(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let id = parse_id(&id)?;
    let t = transition_body(body).await?;
    let reason = optional_reason(t.reason)?;
    // The aggregate picks the version from the ledger (the newest when none is named) and
    // has the engine check and test exactly that version before it is activated.
    let command = PolicyCommand::Activate {
        tenant_id: caller.tenant_id,
        version: t.version,
        replay_id: t.replay_id,
        actor: caller.subject.clone(),
        reason,
    };
    run(&state, &caller, id, command, StatusCode::OK).await
}

/// Deactivates the policy: evaluate answers 409 until it is activated again.
#[utoipa::path(post, path = "/policies/{id}/deactivate", tag = "policies", params(("id" = uuid::Uuid, Path, description = "The policy id")),
    request_body(content = Option<Transition>, description = "Optional; an empty body means the defaults"),
    responses((status = 200, description = "Done", body = PolicyView), (status = 202, description = "Recorded; the read model has not caught up yet", body = Accepted)))]
pub async fn deactivate(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    simple_transition(state, caller, id, body, |tenant_id, actor, reason| PolicyCommand::Deactivate { tenant_id, actor, reason }).await
}

/// Archives the policy for good.
#[utoipa::path(post, path = "/policies/{id}/archive", tag = "policies", params(("id" = uuid::Uuid, Path, description = "The policy id")),
    request_body(content = Option<Transition>, description = "Optional; an empty body means the defaults"),
    responses((status = 200, description = "Done", body = PolicyView), (status = 202, description = "Recorded; the read model has not caught up yet", body = Accepted)))]
pub async fn archive(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    simple_transition(state, caller, id, body, |tenant_id, actor, reason| PolicyCommand::Archive { tenant_id, actor, reason }).await
}

/// A transition that needs nothing but an optional reason (deactivate, archive).
async fn simple_transition(
    state: SharedState,
    caller: Caller,
    id: String,
    body: axum::body::Bytes,
    command: impl FnOnce(aggregates::TenantId, aggregates::Actor, Option<Reason>) -> PolicyCommand,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let id = parse_id(&id)?;
    let reason = optional_reason(transition_body(body).await?.reason)?;
    let command = command(caller.tenant_id, caller.subject.clone(), reason);
    run(&state, &caller, id, command, StatusCode::OK).await
}

/// Reads one policy.
#[utoipa::path(get, path = "/policies/{id}", tag = "policies", operation_id = "get_policy", params(("id" = uuid::Uuid, Path, description = "The policy id"), ReadParams), responses((status = 200, description = "The policy", body = PolicyView)))]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = parse_id(&id)?;
    wait_min_seq(&state, p.min_seq).await;
    let mut tx = state.tenant_tx(&caller).await?;
    let view = read::get(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VersionFilter {
    /// `version` (the only key); default order `asc` (oldest first).
    pub sort_by: Option<VersionSort>,
}

/// Lists the versions of a policy, a page at a time.
#[utoipa::path(get, path = "/policies/{id}/versions", tag = "policies", operation_id = "list_policy_versions",
    params(("id" = uuid::Uuid, Path, description = "The policy id"), PageParams, VersionFilter),
    responses((status = 200, description = "One page", body = Page<PolicyVersionView>)))]
pub async fn versions(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    Listed { page, filter: _ }: Listed<VersionFilter>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let id = parse_id(&id)?;
    let mut tx = state.tenant_tx(&caller).await?;
    read::get(&mut tx, id.as_uuid()).await?.ok_or_else(|| ApiError::not_found("policy"))?;
    let items = read::versions_page(&mut tx, id.as_uuid(), page.page, page.page_size, page.order_or(SortOrder::Asc)).await?;
    Ok(Json(items).into_response())
}

/// Waits, within the read-your-writes bound, until the read models reach `min_seq`.
pub(crate) async fn wait_min_seq(state: &SharedState, min_seq: Option<i64>) {
    if let Some(seq) = min_seq {
        state.projections.wait_for(seq, state.config.read_your_writes_timeout).await;
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyFilter {
    /// `created_at` (default), `updated_at` or `name`; default order `desc`.
    pub sort_by: Option<PolicySort>,
    /// Only policies whose name contains this text (case-insensitive).
    pub name: Option<String>,
    /// Only policies in this status.
    pub status: Option<PolicyStatusFilter>,
    /// Wait (up to the read-your-writes bound) until the read model has applied this ledger seq.
    pub min_seq: Option<i64>,
}

/// Lists the tenant's policies, a page at a time.
#[utoipa::path(get, path = "/policies", tag = "policies", operation_id = "list_policies", params(PageParams, PolicyFilter),
    responses((status = 200, description = "One page", body = Page<PolicyView>)))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    Listed { page, filter }: Listed<PolicyFilter>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    wait_min_seq(&state, filter.min_seq).await;
    let q = PolicyListQuery {
        page: page.page,
        page_size: page.page_size,
        sort: filter.sort_by.unwrap_or(PolicySort::CreatedAt),
        order: page.order_or(SortOrder::Desc),
        name: filter.name,
        status: filter.status,
    };
    let mut tx = state.tenant_tx(&caller).await?;
    let result = read::list(&mut tx, &q).await?;
    Ok(Json(result).into_response())
}
