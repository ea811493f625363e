//! The OPA engine: an Open Policy Agent server (a sidecar) through its REST API.
//!
//! Each policy version is uploaded as its own module (`PUT /v1/policies/aumos/<id>/v<n>`)
//! with its package moved under a per-policy namespace, so two tenants' `package gate`
//! never merge in OPA's data tree. Answers are checked before they are believed: anything
//! but a JSON object is a 502, and no answer in time is a 503. Nothing is ever "allow" by
//! default.
//!
//! A tenant's author is hostile. Every request carries the token OPA's API requires
//! (`--authentication=token`, `opa/system/authz.rego`). Before any upload, [`OpaEngine::check`]
//! parses the source with OPA's own parser (`rego.parse_module` through `POST /v1/query`)
//! and refuses every `data` reference outside the shared libraries and every network or
//! environment builtin in any spelling ([`super::source::forbidden_references`]), so a
//! module, and the tests it runs at activation, see only `input` and their own rules.
//! Versions that are no longer active are unloaded by [`crate::application::opa_sync`].
//!
//! - [`policy`]: a version OPA holds ([`OpaPolicy`]), evaluated alone or in a batch;
//! - [`batch`]: concurrent evaluations of one version sent as one query, through the
//!   version's batch module (`package aumos_batch.p<id>_v<n>`, uploaded with it);
//! - [`modules`]: uploads and removals of modules and data documents.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use super::confine::declared_package;
mod batch;
mod modules;
mod policy;

pub use policy::OpaPolicy;
use policy::Version;

use super::confine::{confined, in_module, no_package, Confined};
use super::source::{forbidden_references, unsupported_calls, SHARED_LIBRARIES};
use super::{version_tests, CompileError, EngineError, ModuleInfo, PolicyEngine, PolicyModule, PolicySource, PreparedPolicy};

#[derive(Debug, Clone)]
pub struct OpaEngine {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    /// Sent as `Authorization: Bearer` on every request (redacted in Debug).
    token: Option<crate::config::Secret>,
    /// For all tests of one activation together.
    test_budget: Duration,
    /// Quarantines a tenant whose queries kill OPA (shared by every clone).
    breaker: Arc<super::breaker::Breaker>,
}

/// The id prefix of every module the service uploads for an active version.
pub const MODULE_PREFIX: &str = "aumos/";

fn unavailable(e: &reqwest::Error) -> EngineError {
    if e.is_timeout() {
        // OPA drops the evaluation with the connection (its request context is cancelled).
        EngineError::Timeout("OPA did not answer within the evaluation budget".into())
    } else {
        EngineError::Unavailable(format!("cannot reach OPA: {e}"))
    }
}

/// OPA's error body: `{"code", "message", "errors": [{"message", "location": {"row", "col"}}]}`.
fn compile_errors(body: &Value) -> Vec<CompileError> {
    let mut out: Vec<CompileError> = body["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| CompileError {
                    message: e["message"].as_str().unwrap_or("compile error").to_owned(),
                    row: e["location"]["row"].as_u64().and_then(|r| u32::try_from(r).ok()),
                    col: e["location"]["col"].as_u64().and_then(|c| u32::try_from(c).ok()),
                })
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        out.push(CompileError { message: body["message"].as_str().unwrap_or("OPA rejected the policy").to_owned(), row: None, col: None });
    }
    out
}

impl OpaEngine {
    pub fn new(http: reqwest::Client, base: &str, timeout: Duration) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), timeout, token: None, test_budget: TEST_BUDGET, breaker: Arc::default() }
    }

    /// The time all tests of one activation get together (`AUMOS_GOVERNANCE_POLICY_TEST_TIMEOUT_MS`).
    pub fn with_test_budget(mut self, budget: Duration) -> Self {
        self.test_budget = budget;
        self
    }

    /// The token OPA's REST API requires (`AUMOS_GOVERNANCE_OPA_TOKEN`).
    pub fn with_token(mut self, token: Option<crate::config::Secret>) -> Self {
        self.token = token;
        self
    }

    /// A request to OPA's API, carrying the token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    /// The OPA module id of a policy version.
    pub fn module_id(module: &PolicyModule) -> String {
        format!("{MODULE_PREFIX}{}/v{}", module.policy_id.simple(), module.version)
    }

    /// Sends a request of the service's own (not an evaluation) and reads its JSON answer.
    async fn json_answer(request: reqwest::RequestBuilder, what: &str) -> Result<Value, EngineError> {
        let resp = request.send().await.map_err(|e| unavailable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(EngineError::BadResponse(format!("OPA answered {status} to {what}")));
        }
        let text = resp.text().await.map_err(|e| unavailable(&e))?;
        serde_json::from_str(&finite_numbers(&text)).map_err(|_| EngineError::BadResponse(format!("OPA's answer to {what} is not JSON")))
    }

    /// Parses a confined module with OPA's parser and refuses what a tenant may not
    /// reference: `data` outside the shared libraries and the version's own namespace
    /// `own`, and the forbidden builtins. `Ok(false)`: OPA's parser could not read it (the
    /// upload then locates the error).
    async fn refuse_forbidden_references(&self, rego: &str, own: &str) -> Result<bool, EngineError> {
        let query = serde_json::json!({"query": "ast := rego.parse_module(\"policy.rego\", input.src)", "input": {"src": rego}});
        let request = self.request(reqwest::Method::POST, "/v1/query").json(&query).timeout(self.timeout.max(Duration::from_secs(5)));
        let body = Self::json_answer(request, "a parse").await?;
        let Some(ast) = body["result"].get(0).map(|r| &r["ast"]) else {
            return Ok(false);
        };
        let allowed: Vec<&str> = SHARED_LIBRARIES.iter().copied().chain(std::iter::once(own)).collect();
        let errors = forbidden_references(ast, rego, &allowed);
        if errors.is_empty() {
            Ok(true)
        } else {
            Err(EngineError::Compile(errors))
        }
    }

    /// Whether OPA does not answer its health endpoint (at once).
    async fn is_down(&self) -> bool {
        let health = self.http.get(format!("{}/health", self.base)).timeout(Duration::from_millis(500)).send().await;
        !health.is_ok_and(|r| r.status().is_success())
    }

    /// The id OPA gave itself at start-up (`labels.id` in `GET /v1/config`, a random UUID
    /// unless configured): a new id means OPA restarted and holds no policy.
    pub async fn instance_id(&self) -> Result<String, EngineError> {
        let request = self.request(reqwest::Method::GET, "/v1/config").timeout(Duration::from_secs(5));
        let body = Self::json_answer(request, "a configuration read").await?;
        body["result"]["labels"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| EngineError::BadResponse("OPA's configuration has no labels.id".into()))
    }

    /// The ids of the service's modules OPA holds: policy versions, and scratch copies
    /// (ids under [`SCRATCH_PREFIX`]).
    pub async fn loaded_modules(&self) -> Result<Vec<String>, EngineError> {
        let request = self.request(reqwest::Method::GET, "/v1/policies").timeout(Duration::from_secs(10));
        let body = Self::json_answer(request, "a policy listing").await?;
        Ok(body["result"]
            .as_array()
            .map(|ms| ms.iter().filter_map(|m| m["id"].as_str()).filter(|id| id.starts_with(MODULE_PREFIX)).map(str::to_owned).collect())
            .unwrap_or_default())
    }

    fn prefix(module: &PolicyModule) -> String {
        format!("aumos_policies.p{}_v{}", module.policy_id.simple(), module.version)
    }

    /// The OPA module ids of every module of a version: the main one's is
    /// [`OpaEngine::module_id`], a further module's adds `/m<i>`.
    /// The last is the version's batch module ([`batch`]), when its package is written as
    /// plain names ([`batch::plain_package`]).
    pub fn module_ids(module: &PolicyModule) -> Vec<String> {
        let main = Self::module_id(module);
        let mut ids = version_ids(&main, module.source.modules.len());
        if batch::plain_package(module.source.main()) {
            ids.push(batch::module_id(&main));
        }
        ids
    }

    /// The package of a version's batch module: outside `aumos_policies`, so no tenant's
    /// package can be it and no tenant's module can reach it.
    fn batch_package(module: &PolicyModule) -> String {
        format!("aumos_batch.p{}_v{}", module.policy_id.simple(), module.version)
    }

    /// Uploads a throwaway copy under a random namespace, runs `f` with the main
    /// package's path there, removes it.
    async fn with_scratch<T>(&self, source: &PolicySource, f: impl AsyncFnOnce(&str) -> Result<T, EngineError>) -> Result<T, EngineError> {
        let id = uuid::Uuid::new_v4();
        let prefix = format!("aumos_scratch.p{}_v0", id.simple());
        let main = format!("{SCRATCH_PREFIX}{}", id.simple());
        let version = Confined::new(source, prefix, version_ids(&main, source.modules.len()))?;
        let uploaded = self.upload(&version).await;
        let result = match uploaded {
            Ok(()) => f(&format!("{}.{}", version.prefix, version.package)).await,
            Err(e) => Err(e),
        };
        self.delete(&version.ids).await;
        result
    }
}

/// The module ids of a version of `n` modules whose main module's id is `main`: further
/// modules add `/m<i>`.
fn version_ids(main: &str, n: usize) -> Vec<String> {
    (0..n.max(1)).map(|i| if i == 0 { main.to_owned() } else { format!("{main}/m{i}") }).collect()
}

/// The time all tests of one activation get together, unless configured.
const TEST_BUDGET: Duration = Duration::from_secs(2);

/// Where throwaway copies (compile checks, activation tests) are uploaded.
pub const SCRATCH_PREFIX: &str = "aumos/scratch/";

fn data_path(package: &str, rule: Option<&str>) -> String {
    let mut path = package.replace('.', "/");
    if let Some(rule) = rule {
        path.push('/');
        path.push_str(&rule.replace('.', "/"));
    }
    path
}

/// Queries `POST /v1/data/<path>`, insisting on a JSON object as the answer. The query is
/// the current tenant's: refused while it is quarantined, and blamed if OPA dies under it
/// ([`super::breaker`]).
/// Queries `path` on `input`; without one, the body carries no `input` and OPA's `input`
/// is undefined.
async fn query<I: serde::Serialize + ?Sized>(
    engine: &OpaEngine,
    path: &str,
    input: Option<&I>,
    timeout: Duration,
) -> Result<Option<Value>, EngineError> {
    let flight = engine.breaker.admit(super::current_tenant()).map_err(|left| {
        let message = format!("queries of this tenant killed OPA repeatedly; refused for {} s more", left.as_secs());
        EngineError::Quarantined(message, left.as_secs().max(1))
    })?;
    /// The body of a data query, borrowing the input (no copy of it is built).
    #[derive(serde::Serialize)]
    struct Body<'a, I: ?Sized> {
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<&'a I>,
    }
    let sent = engine.request(reqwest::Method::POST, &format!("/v1/data/{path}")).json(&Body { input }).timeout(timeout).send().await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            // Not a timeout (the service dropped it) nor a refused connection (OPA was
            // already down): the connection broke under this query. OPA died if it no
            // longer answers (a pooled connection OPA closed before is not a death).
            if !e.is_timeout() && !e.is_connect() && engine.is_down().await {
                engine.breaker.died(&flight);
            }
            return Err(unavailable(&e));
        }
    };
    let status = resp.status();
    let body: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) if e.is_timeout() => return Err(unavailable(&e)),
        Err(_) => return Err(EngineError::BadResponse(format!("OPA answered {status} with a body that is not JSON"))),
    };
    if !status.is_success() {
        let msg = body["message"].as_str().unwrap_or("no message");
        return Err(EngineError::BadResponse(format!("OPA answered {status}: {msg}")));
    }
    match body {
        Value::Object(mut map) => Ok(map.remove("result")),
        _ => Err(EngineError::BadResponse("OPA's answer is not a JSON object".into())),
    }
}

#[async_trait::async_trait]
impl PolicyEngine for OpaEngine {
    fn kind(&self) -> aggregates::facts::EngineKind {
        aggregates::facts::EngineKind::Opa
    }

    async fn check(&self, source: &PolicySource) -> Result<ModuleInfo, EngineError> {
        if source.modules.is_empty() {
            return Err(no_package(0));
        }
        // Every module is checked confined to a namespace of its own, as it will run.
        let own = "aumos_check.p0_v0";
        let mut analysed = true;
        for (i, rego) in source.modules.iter().enumerate() {
            let errors = unsupported_calls(rego, None);
            if !errors.is_empty() {
                return Err(in_module(i, EngineError::Compile(errors)));
            }
            let body = confined(rego, own).ok_or_else(|| no_package(i))?;
            analysed &= self.refuse_forbidden_references(&body, own).await.map_err(|e| in_module(i, e))?;
        }
        self.with_scratch(source, async |_| Ok(())).await?;
        if !analysed {
            // It compiles, yet OPA's parser builtin could not read it: refuse rather than
            // run what was not checked.
            let message = "the policy could not be analysed for forbidden references".to_owned();
            return Err(EngineError::Compile(vec![CompileError { message, row: None, col: None }]));
        }
        let package = declared_package(source.main()).unwrap_or_default();
        Ok(ModuleInfo { package, tests: version_tests(source) })
    }

    async fn run_tests(&self, source: &PolicySource, info: &ModuleInfo) -> Result<(), EngineError> {
        if info.tests.is_empty() {
            return Ok(());
        }
        let tests = info.tests.clone();
        // One budget for all the tests of an activation together; past it OPA is told to
        // stop (the request is dropped, which cancels its evaluation) and the answer is 503.
        let budget = self.timeout.max(self.test_budget);
        let failed = self
            .with_scratch(source, async |package| {
                let namespace = package.strip_suffix(&format!(".{}", info.package)).unwrap_or(package);
                let run = async {
                    let mut failed = Vec::new();
                    for test in &tests {
                        // A further module's test is named `data.<package>.<name>`.
                        let path = match test.strip_prefix("data.") {
                            Some(path) => data_path(&format!("{namespace}.{path}"), None),
                            None => data_path(package, Some(test)),
                        };
                        match query(self, &path, None::<&Value>, budget).await {
                            Ok(Some(Value::Bool(true))) => {}
                            Ok(_) => failed.push(test.clone()),
                            Err(e @ (EngineError::Unavailable(_) | EngineError::Timeout(_))) => return Err(e),
                            Err(e) => failed.push(format!("{test} ({e})")),
                        }
                    }
                    Ok(failed)
                };
                tokio::time::timeout(budget, run)
                    .await
                    .map_err(|_| EngineError::Timeout(format!("the policy's tests did not finish within {} ms", budget.as_millis())))?
            })
            .await?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(EngineError::TestsFailed(failed))
        }
    }

    async fn prepare(&self, module: &PolicyModule) -> Result<Arc<dyn PreparedPolicy>, EngineError> {
        let mut ids = Self::module_ids(module);
        let batch_id = if batch::plain_package(module.source.main()) { ids.pop() } else { None };
        let mut version = Confined::new(&module.source, Self::prefix(module), ids)?;
        // A marker rule tells "undefined" apart from "OPA lost the module" (a restart).
        if let Some(main) = version.bodies.first_mut() {
            main.push_str(&format!("\n{LOADED_MARKER} := true\n"));
        }
        let package = format!("{}.{}", version.prefix, version.package);
        let batch_package = Self::batch_package(module);
        let batched = batch_id.is_some() && batch::batchable(&module.source);
        if let Some(id) = batch_id {
            version.ids.push(id);
            version.bodies.push(batch::module(&batch_package, &package, LOADED_MARKER));
        }
        if let Err(e) = self.upload(&version).await {
            // What was uploaded of a version OPA refused must not stay.
            self.delete(&version.ids).await;
            return Err(e);
        }
        let batcher = batched.then(|| (data_path(&batch_package, None), Arc::new(batch::Batcher::new(batch::in_flight()))));
        Ok(Arc::new(OpaPolicy { inner: Arc::new(Version { engine: self.clone(), version, package, batcher }) }))
    }

    /// Tenants quarantined for killing OPA ([`super::breaker`]).
    fn quarantined(&self) -> Vec<uuid::Uuid> {
        self.breaker.quarantined()
    }

    async fn is_loaded(&self, module: &PolicyModule) -> Result<bool, EngineError> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/v1/policies/{}", Self::module_id(module)))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(resp.status().is_success())
    }
}

/// The rule every uploaded module carries, so a missing module is detectable.
const LOADED_MARKER: &str = "aumos_module_loaded";

/// OPA's JSON may hold a number no 64-bit float holds (a policy's literal `2e308`, in a
/// parsed module), which serde_json refuses. The service reads such answers for their
/// structure (a module's references), never for those numbers: each is read as `0`.
fn finite_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let (mut out, mut copied, mut i, mut in_string) = (None::<String>, 0, 0, false);
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') => i += 2,
            (true, b'"') | (false, b'"') => {
                in_string = !in_string;
                i += 1;
            }
            (false, b'-' | b'0'..=b'9') => {
                let start = i;
                i += 1;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                if !text[start..i].parse::<f64>().is_ok_and(f64::is_finite) {
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    o.push_str(&text[copied..start]);
                    o.push('0');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_no_float_holds_are_read_as_zero_and_nothing_else_changes() {
        let text = r#"{"a": 2e308, "b": [-1e999, 1.5, 99999999999999999999], "c": "2e308 \" 1e999", "d": -0.5e-3}"#;
        let v: Value = serde_json::from_str(&finite_numbers(text)).unwrap();
        assert_eq!(v, serde_json::json!({"a": 0, "b": [0, 1.5, 1e20], "c": "2e308 \" 1e999", "d": -0.0005}));
        assert!(matches!(finite_numbers(r#"{"a": [1, 2.5e10, "x"]}"#), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn opa_compile_errors_keep_their_locations() {
        let body = serde_json::json!({"code": "invalid_parameter", "message": "error(s) occurred", "errors": [
            {"code": "rego_parse_error", "message": "unexpected eof", "location": {"file": "x", "row": 5, "col": 1}}]});
        assert_eq!(compile_errors(&body), vec![CompileError { message: "unexpected eof".into(), row: Some(5), col: Some(1) }]);
    }
}
