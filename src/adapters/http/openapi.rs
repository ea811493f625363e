//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes.
//!
//! Routes are registered only through `utoipa_axum::routes!`, which takes each route's
//! path and method from the same attribute that documents it, so a route cannot exist
//! without its entry in the document (`tests/openapi.rs` checks both directions).
//! What every operation shares is added here, once: the security schemes, the
//! `X-Request-ID` header, and the error responses with every code of the error table.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};

use crate::error::ErrorCode;

/// The document, serialised once at start-up.
#[derive(Debug, Clone)]
pub struct Document(pub Arc<String>);

/// Operations anyone may call: health probes and the API description itself.
const PUBLIC_TAGS: &[&str] = &["health", "meta"];

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "AumOS Governance Engine",
        description = "Policy-as-code, compliance and the Audit Wall. Every call except health and this document needs \
                       `Authorization: Bearer <JWT>` and an `X-Tenant-ID` header equal to the token's `tenant_id` claim. \
                       Errors are `{\"error\":{\"code\",\"message\",\"request_id\"}}`; the codes and their statuses are \
                       listed in the `ErrorCode` schema.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(
        projections::policies::PolicySort,
        projections::policies::PolicyStatusFilter,
        projections::policies::VersionSort,
        projections::compliance::WorkflowSort,
        projections::evidence::EvidenceSort,
        projections::SortOrder,
        super::evaluate::DecisionSort,
        super::workflows::CatalogSort,
        super::regulations::RegulationSort
    )),
    tags(
        (name = "policies", description = "Rego policies: versions, tests, activation"),
        (name = "evaluation", description = "Policy decisions, each recorded in the ledger"),
        (name = "ledger", description = "The Audit Wall: public key, signed checkpoints and proofs"),
        (name = "health", description = "Liveness and readiness probes (no authentication)"),
        (name = "meta", description = "This document and its HTML page (no authentication)")
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares.
pub fn finish(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    components.add_security_scheme(
        "tenant",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Tenant-ID",
            "The caller's tenant (a UUID); must equal the token's tenant_id claim",
        ))),
    );
    components.schemas.insert("ErrorCode".into(), RefOr::T(error_code_schema()));
    components.schemas.insert("ErrorBody".into(), RefOr::T(error_body_schema()));
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let public = op.tags.iter().flatten().any(|t| PUBLIC_TAGS.contains(&t.as_str()));
            if !public {
                op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new()).add("tenant", Vec::<String>::new())]);
            }
            op.parameters.get_or_insert_with(Vec::new).push(
                ParameterBuilder::new()
                    .name("X-Request-ID")
                    .parameter_in(ParameterIn::Header)
                    .description(Some("Echoed back; generated when absent or not 1-128 visible ASCII characters"))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build()
                    .into(),
            );
            add_error_responses(op, public);
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options, &mut item.trace]
        .into_iter()
        .filter_map(|o| o.as_mut())
}

/// Documents, for each status an operation can answer with, the error codes behind it.
/// Public operations take no token, ids or body, so only a server error applies to them.
fn add_error_responses(op: &mut Operation, public: bool) {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in ErrorCode::ALL.iter().filter(|c| !public || c.status().is_server_error()) {
        by_status.entry(code.status().as_u16()).or_default().push(code.as_str());
    }
    for (status, codes) in by_status {
        let key = status.to_string();
        if op.responses.responses.contains_key(&key) {
            continue;
        }
        let body = ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody")))).build();
        let mut response = ResponseBuilder::new().description(format!("Error: {}", codes.join(", "))).content("application/json", body);
        if status == 429 {
            let retry = utoipa::openapi::HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying"))
                .build();
            response = response.header("Retry-After", retry);
        }
        op.responses.responses.insert(key, RefOr::T(response.build()));
    }
}

fn error_code_schema() -> Schema {
    let mut b = ObjectBuilder::new().schema_type(Type::String).description(Some(
        ErrorCode::ALL.iter().map(|c| format!("`{}` → {}", c.as_str(), c.status().as_u16())).collect::<Vec<_>>().join("; "),
    ));
    b = b.enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())));
    Schema::Object(b.build())
}

fn error_body_schema() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let detail = ObjectBuilder::new()
        .property("code", RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorCode")))
        .required("code")
        .property("message", string())
        .required("message")
        .property("request_id", string())
        .required("request_id")
        .property("details", ObjectBuilder::new().description(Some("Machine-readable context, e.g. the allowed transitions")))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    Schema::Object(
        ObjectBuilder::new()
            .property("error", detail)
            .required("error")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build(),
    )
}

/// The OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn document(Extension(doc): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.as_ref().clone()).into_response()
}

/// The API's HTML page, rendered once at start-up from the document.
#[derive(Debug, Clone)]
pub struct DocsPage(pub Arc<String>);

/// No script may run on the page and nothing is loaded from anywhere: it is plain HTML
/// with one inline style sheet, served on the API's own origin.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A page listing every operation, with a link to the OpenAPI document. It runs no
/// script and loads nothing from another origin (no CDN).
#[utoipa::path(get, path = "/api/v1/docs", tag = "meta", responses((status = 200, description = "HTML page listing every operation; no scripts, nothing from another origin", content_type = "text/html", body = String)))]
pub async fn page(Extension(page): Extension<DocsPage>) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, PAGE_CSP)], page.0.as_ref().clone())
        .into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn named_operations(item: &utoipa::openapi::PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
        ("HEAD", &item.head),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, o)| o.as_ref().map(|o| (m, o)))
}

/// The page: the API's description, a link to the document, and every operation by tag
/// (method, path, summary, whether it needs a token).
pub fn render_page(doc: &OpenApi) -> String {
    let mut by_tag: BTreeMap<String, Vec<(&'static str, &str, &Operation)>> = BTreeMap::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in named_operations(item) {
            let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_else(|| "other".to_owned());
            by_tag.entry(tag).or_default().push((method, path, op));
        }
    }
    let tags: Vec<(String, String)> = doc
        .tags
        .iter()
        .flatten()
        .map(|t| (t.name.clone(), t.description.clone().unwrap_or_default()))
        .chain(by_tag.keys().map(|k| (k.clone(), String::new())))
        .collect();
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} API</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;vertical-align:top;padding:.3rem .6rem;border-bottom:1px solid #ddd}}\
         td.method{{font-family:monospace;font-weight:bold}}code{{font-size:.95em}}</style></head><body>\
         <h1>{title} <small>{version}</small></h1><p>{description}</p>\
         <p>The full description (schemas, parameters, every error code) is the OpenAPI 3.1 document \
         <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>: open it in any OpenAPI viewer or client generator.</p>",
        title = escape(&doc.info.title),
        version = escape(&doc.info.version),
        description = escape(doc.info.description.as_deref().unwrap_or_default()),
    );
    let mut done = std::collections::BTreeSet::new();
    for (tag, description) in tags {
        let Some(ops) = by_tag.get(&tag).filter(|_| done.insert(tag.clone())) else { continue };
        html.push_str(&format!(
            "<h2 id=\"tag-{t}\">{t}</h2><p>{d}</p><table><thead><tr><th>method</th><th>path</th><th>what</th><th>needs</th></tr></thead><tbody>",
            t = escape(&tag),
            d = escape(&description)
        ));
        for (method, path, op) in ops {
            let what = op.summary.as_deref().or(op.description.as_deref()).unwrap_or_default();
            let needs = if op.security.is_some() { "token and X-Tenant-ID" } else { "nothing" };
            html.push_str(&format!(
                "<tr id=\"op-{id}\"><td class=\"method\">{method}</td><td><code>{path}</code></td><td>{what}</td><td>{needs}</td></tr>",
                id = escape(op.operation_id.as_deref().unwrap_or_default()),
                path = escape(path),
                what = escape(what),
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</body></html>");
    html
}
