//! `/api/v1/regulations` and `/api/v1/controls`: the catalog, merged with the tenant's own
//! requirement → control mappings (which are recorded in the ledger).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use aggregates::compliance::{ControlId, RegulationCode, Relation, RequirementId};
use aggregates::facts::{ControlMappingEvent, LinkMark, MappingSet};
use aggregates::Reason;
use ledger::EntryMetadata;
use projections::compliance as read;
use projections::compliance_review::exclusions;
use projections::{Page, SortOrder};

use super::extract::{ApiJson, ApiPath, Caller};
use super::paging::{Listed, PageParams};
use super::SharedState;
use crate::adapters::auth::Role;
use crate::adapters::ledger::NewEntry;
use crate::application::catalog::{merged_controls, Catalog, ControlLink, CsfNode, Regulation, TenantLink};
use crate::error::ApiError;

/// Everyone with a role may read the catalog; the evaluator service accounts may not.
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::PolicyAuthor, Role::ComplianceOfficer, Role::Auditor];
pub(crate) const OFFICERS: &[Role] = &[Role::Admin, Role::ComplianceOfficer];

pub(crate) fn regulation(code: &str) -> Result<&'static Regulation, ApiError> {
    let code = RegulationCode::parse(code)?;
    Catalog::get().regulation(code).ok_or_else(|| ApiError::validation(format!("regulation {code} is not in the catalog")))
}

/// A requirement of `reg`: 422 unless the catalog has it.
pub(crate) fn requirement_of(reg: &Regulation, raw: &str) -> Result<RequirementId, ApiError> {
    let id = RequirementId::parse(raw)?;
    match reg.requirement(id.as_str()) {
        Some(_) => Ok(id),
        None => Err(ApiError::validation(format!("{id} is not a requirement of {}", reg.code))),
    }
}

/// A CSF 2.0 subcategory that exists: 422 otherwise.
pub(crate) fn csf_control(raw: &str) -> Result<(ControlId, &'static CsfNode), ApiError> {
    let id = ControlId::parse(raw)?;
    match Catalog::get().control(&id) {
        Some(node) => Ok((id, node)),
        None => Err(ApiError::validation(format!("{id} is not a CSF 2.0 subcategory"))),
    }
}

/// The tenant's own mappings and not-applicable marks on links (of one regulation, or
/// all), read in the caller's transaction.
pub(crate) async fn tenant_links(conn: &mut sqlx::PgConnection, code: Option<RegulationCode>) -> Result<Vec<TenantLink>, ApiError> {
    let code = code.map(|c| c.as_str());
    let mut links: Vec<TenantLink> = read::tenant_mappings(&mut *conn, code).await?.into_iter().map(TenantLink::from).collect();
    links.extend(exclusions(conn, code, None).await?.into_iter().map(TenantLink::from));
    Ok(links)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegulationSummary {
    /// `soc2`, `iso27001`, `hipaa`, `iso42001`, `eu_ai_act` or `fedramp`.
    pub code: String,
    pub name: String,
    pub version: String,
    pub requirements: usize,
    /// Requirements with at least one CSF 2.0 subcategory in the baseline.
    pub mapped_requirements: usize,
    /// Baseline requirements by `mapping_source` kind: published/derived sources by name, `analyst`, `none`.
    pub by_mapping_source: std::collections::BTreeMap<String, usize>,
    pub source: String,
    pub license: String,
}

/// Sort keys of the regulations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegulationSort {
    /// The catalog's own order (soc2, iso27001, hipaa, iso42001, eu_ai_act, fedramp).
    CatalogOrder,
    Code,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RegulationParams {
    /// `catalog_order` (default) or `code`; default order `asc`.
    pub sort_by: Option<RegulationSort>,
}

/// The six regulations of the catalog, with their counts.
#[utoipa::path(get, path = "/regulations", tag = "compliance", operation_id = "list_regulations", params(PageParams, RegulationParams),
    responses((status = 200, description = "One page", body = Page<RegulationSummary>)))]
pub async fn list(caller: Caller, Listed { page, filter }: Listed<RegulationParams>) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let mut items: Vec<RegulationSummary> = Catalog::get()
        .regulations
        .iter()
        .map(|r| {
            let mut by = std::collections::BTreeMap::new();
            for q in &r.requirements {
                *by.entry(q.mapping_source.clone()).or_insert(0) += 1;
            }
            RegulationSummary {
                code: r.code.as_str().to_owned(),
                name: r.meta.name.clone(),
                version: r.meta.version.clone(),
                requirements: r.requirements.len(),
                mapped_requirements: r.requirements.iter().filter(|q| !q.csf.is_empty()).count(),
                by_mapping_source: by,
                source: r.meta.source.clone(),
                license: r.meta.license.clone(),
            }
        })
        .collect();
    if filter.sort_by == Some(RegulationSort::Code) {
        items.sort_by(|a, b| a.code.cmp(&b.code));
    }
    if page.order_or(SortOrder::Asc) == SortOrder::Desc {
        items.reverse();
    }
    Ok(Json(page.slice(items)).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequirementView {
    pub regulation: String,
    pub requirement_id: String,
    pub title: String,
    /// Baseline and tenant links, merged (a tenant link to the same control overrides).
    pub controls: Vec<ControlLink>,
    /// Category-level links the baseline publishes without a subcategory.
    pub csf_categories: Vec<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequirementParams {
    /// `catalog_order` (the only key); default order `asc`.
    pub sort_by: Option<super::workflows::CatalogSort>,
    /// Only requirements mapped to this CSF function (`GV`, `ID`, `PR`, `DE`, `RS`, `RC`).
    pub function: Option<String>,
    /// Only requirements mapped to this CSF category, e.g. `PR.AA`.
    pub category: Option<String>,
}

/// A regulation's requirements with their CSF 2.0 controls, a page at a time.
#[utoipa::path(get, path = "/regulations/{code}/requirements", tag = "compliance", operation_id = "list_regulation_requirements",
    params(("code" = String, Path, pattern = "^(soc2|iso27001|hipaa|iso42001|eu_ai_act|fedramp)$", description = "The regulation code"), PageParams, RequirementParams),
    responses((status = 200, description = "One page", body = Page<RequirementView>)))]
pub async fn requirements(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
    Listed { page, filter: p }: Listed<RequirementParams>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let reg = regulation(&code)?;
    let catalog = Catalog::get();
    if let Some(f) = &p.function {
        if !catalog.functions.iter().any(|x| &x.id == f) {
            return Err(ApiError::validation(format!("unknown CSF function {f:?}")));
        }
    }
    if let Some(c) = &p.category {
        if !catalog.categories.iter().any(|x| &x.id == c) {
            return Err(ApiError::validation(format!("unknown CSF category {c:?}")));
        }
    }
    let links = tenant_links(&mut *state.tenant_tx(&caller).await?, Some(reg.code)).await?;
    let mut matching: Vec<RequirementView> = reg
        .requirements
        .iter()
        .map(|q| RequirementView {
            regulation: reg.code.as_str().to_owned(),
            requirement_id: q.id.clone(),
            title: q.title.clone(),
            controls: merged_controls(q, &links),
            csf_categories: q.csf_categories.clone(),
            notes: q.notes.clone(),
        })
        .filter(|v| {
            let ids = || v.controls.iter().map(|l| l.control_id.as_str()).chain(v.csf_categories.iter().map(String::as_str));
            p.function.as_ref().is_none_or(|f| ids().any(|c| c.starts_with(f.as_str())))
                && p.category.as_ref().is_none_or(|k| ids().any(|c| c.starts_with(k.as_str())))
        })
        .collect();
    if page.order_or(SortOrder::Asc) == SortOrder::Desc {
        matching.reverse();
    }
    Ok(Json(page.slice(matching)).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlRequirement {
    pub regulation: String,
    pub requirement_id: String,
    pub title: String,
    pub link: ControlLink,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlView {
    pub control: CsfNode,
    pub category: Option<CsfNode>,
    pub function: Option<CsfNode>,
    /// Every requirement, across the six regulations, that maps to this control.
    pub requirements: Vec<ControlRequirement>,
}

/// A CSF 2.0 subcategory and every requirement of every regulation mapped to it.
#[utoipa::path(get, path = "/controls/{csf_id}", tag = "compliance",
    params(("csf_id" = String, Path, pattern = "^(GV|ID|PR|DE|RS|RC)\\.[A-Z]{2}-[0-9]{2}$", description = "A CSF 2.0 subcategory id, e.g. PR.AA-01")),
    responses((status = 200, description = "The control", body = ControlView)))]
pub async fn control(State(state): State<SharedState>, caller: Caller, ApiPath(csf_id): ApiPath<String>) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let (id, node) = csf_control(&csf_id)?;
    let catalog = Catalog::get();
    let mut tenant_by_reg: std::collections::HashMap<RegulationCode, Vec<TenantLink>> = Default::default();
    let mut tx = state.tenant_tx(&caller).await?;
    let mappings = read::tenant_mappings_to(&mut tx, id.as_str()).await?.into_iter().map(TenantLink::from);
    let marks = exclusions(&mut tx, None, Some(id.as_str())).await?.into_iter().map(TenantLink::from);
    for link in mappings.chain(marks) {
        if let Ok(code) = RegulationCode::parse(&link.regulation) {
            tenant_by_reg.entry(code).or_default().push(link);
        }
    }
    drop(tx);
    let mut requirements = Vec::new();
    for reg in &catalog.regulations {
        let tenant = tenant_by_reg.get(&reg.code).map(Vec::as_slice).unwrap_or(&[]);
        for q in &reg.requirements {
            if let Some(link) = merged_controls(q, tenant).into_iter().find(|l| l.control_id == id.as_str()) {
                requirements.push(ControlRequirement {
                    regulation: reg.code.as_str().to_owned(),
                    requirement_id: q.id.clone(),
                    title: q.title.clone(),
                    link,
                });
            }
        }
    }
    let category = catalog.categories.iter().find(|c| c.id == id.category()).cloned();
    let function = catalog.functions.iter().find(|f| f.id == id.function()).cloned();
    Ok(Json(ControlView { control: node.clone(), category, function, requirements }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingInput {
    #[schema(min_length = 1, max_length = 64)]
    pub requirement_id: String,
    /// A CSF 2.0 subcategory id.
    #[schema(pattern = "^(GV|ID|PR|DE|RS|RC)\\.[A-Z]{2}-[0-9]{2}$")]
    pub control_id: String,
    pub relation: Relation,
    /// Why the requirement maps to the control; auditors read it.
    #[schema(min_length = 1, max_length = 2000)]
    pub rationale: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMappings {
    /// At most 100 per request.
    #[schema(min_items = 1, max_items = 100)]
    pub mappings: Vec<MappingInput>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MappingsRecorded {
    pub regulation: String,
    pub recorded: usize,
    pub ledger_seqs: Vec<i64>,
}

/// Adds or overrides requirement → control mappings for the tenant; each is recorded in the ledger.
#[utoipa::path(post, path = "/regulations/{code}/mappings", tag = "compliance",
    params(("code" = String, Path, pattern = "^(soc2|iso27001|hipaa|iso42001|eu_ai_act|fedramp)$", description = "The regulation code")), request_body = SetMappings,
    responses((status = 201, description = "Recorded", body = MappingsRecorded)))]
pub async fn set_mappings(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
    ApiJson(body): ApiJson<SetMappings>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let reg = regulation(&code)?;
    if body.mappings.is_empty() || body.mappings.len() > 100 {
        return Err(ApiError::validation("mappings must hold from 1 to 100 entries"));
    }
    let mut entries = Vec::with_capacity(body.mappings.len());
    for m in &body.mappings {
        let requirement = requirement_of(reg, &m.requirement_id)?;
        let (control, _) = csf_control(&m.control_id)?;
        let rationale = Reason::parse(&m.rationale)?;
        let set = MappingSet {
            regulation: reg.code,
            requirement_id: requirement,
            control_id: control,
            relation: m.relation,
            rationale,
            actor: caller.subject.clone(),
        };
        entries.push(link_fact(&caller, &ControlMappingEvent::ControlMappingSet(set))?);
    }
    record(&state, reg, entries).await
}

/// The entry of a fact about a requirement → control link (no aggregate decides it), under
/// a fresh id.
fn link_fact(caller: &Caller, fact: &ControlMappingEvent) -> Result<NewEntry, ApiError> {
    let metadata = EntryMetadata { actor: caller.subject.to_string(), request_id: Some(caller.request_id.clone()), ..Default::default() };
    NewEntry::fact(caller.tenant_id.as_uuid(), uuid::Uuid::now_v7().to_string(), fact, metadata)
        .map_err(|e| ApiError::new(crate::error::ErrorCode::Internal, e.to_string()))
}

/// Appends link facts and answers 201 once the read models have them (or the bound passed).
async fn record(state: &SharedState, reg: &Regulation, entries: Vec<NewEntry>) -> Result<Response, ApiError> {
    let appended = state.bus.record(entries).await?;
    let seqs: Vec<i64> = appended.iter().map(|a| a.seq).collect();
    if let Some(last) = seqs.last() {
        state.projections.wait_for(*last, state.config.read_your_writes_timeout).await;
    }
    let body = MappingsRecorded { regulation: reg.code.as_str().to_owned(), recorded: seqs.len(), ledger_seqs: seqs };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkExclusion {
    #[schema(min_length = 1, max_length = 64)]
    pub requirement_id: String,
    #[schema(pattern = "^(GV|ID|PR|DE|RS|RC)\\.[A-Z]{2}-[0-9]{2}$")]
    pub control_id: String,
    /// Why the link does not apply to this tenant (for the mark) or applies again (for its withdrawal); auditors read it.
    #[schema(min_length = 1, max_length = 2000)]
    pub rationale: String,
}

/// The link named, checked against the catalog and the tenant's links; `marked` says
/// whether it must carry a not-applicable mark (withdrawal) or must not (marking).
async fn named_link(
    state: &SharedState,
    caller: &Caller,
    reg: &Regulation,
    body: &LinkExclusion,
    marked: bool,
) -> Result<LinkMark, ApiError> {
    let requirement = requirement_of(reg, &body.requirement_id)?;
    let (control, _) = csf_control(&body.control_id)?;
    let rationale = Reason::parse(&body.rationale)?;
    let links = tenant_links(&mut *state.tenant_tx(caller).await?, Some(reg.code)).await?;
    let merged = reg.requirement(requirement.as_str()).map(|q| merged_controls(q, &links)).unwrap_or_default();
    let Some(link) = merged.into_iter().find(|l| l.control_id == control.as_str()) else {
        return Err(ApiError::validation(format!("{requirement} has no link to {control}")));
    };
    if link.not_applicable.is_some() != marked {
        let state = if marked { "is not marked not applicable" } else { "is already marked not applicable" };
        return Err(ApiError::new(crate::error::ErrorCode::Conflict, format!("the link {requirement} → {control} {state}")));
    }
    Ok(LinkMark { regulation: reg.code, requirement_id: requirement, control_id: control, rationale, actor: caller.subject.clone() })
}

/// Marks a requirement → control link (e.g. a baseline analyst mapping) not applicable to
/// the tenant, with a rationale recorded in the ledger: evidence for the control then no
/// longer counts for the requirement.
#[utoipa::path(post, path = "/regulations/{code}/link-exclusions", tag = "compliance",
    params(("code" = String, Path, pattern = "^(soc2|iso27001|hipaa|iso42001|eu_ai_act|fedramp)$", description = "The regulation code")), request_body = LinkExclusion,
    responses((status = 201, description = "Recorded", body = MappingsRecorded)))]
pub async fn exclude_link(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
    ApiJson(body): ApiJson<LinkExclusion>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let reg = regulation(&code)?;
    let mark = named_link(&state, &caller, reg, &body, false).await?;
    record(&state, reg, vec![link_fact(&caller, &ControlMappingEvent::ControlMappingNotApplicable(mark))?]).await
}

/// Withdraws a not-applicable mark on a link, with a rationale recorded in the ledger.
#[utoipa::path(post, path = "/regulations/{code}/link-exclusions/withdrawals", tag = "compliance",
    params(("code" = String, Path, pattern = "^(soc2|iso27001|hipaa|iso42001|eu_ai_act|fedramp)$", description = "The regulation code")), request_body = LinkExclusion,
    responses((status = 201, description = "Recorded", body = MappingsRecorded)))]
pub async fn withdraw_link_exclusion(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
    ApiJson(body): ApiJson<LinkExclusion>,
) -> Result<Response, ApiError> {
    caller.require(OFFICERS)?;
    let reg = regulation(&code)?;
    let mark = named_link(&state, &caller, reg, &body, true).await?;
    record(&state, reg, vec![link_fact(&caller, &ControlMappingEvent::ControlMappingNotApplicableWithdrawn(mark))?]).await
}
