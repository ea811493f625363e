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

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use super::source::{forbidden_references, test_rules, unsupported_calls, SHARED_LIBRARIES};
use super::{CompileError, EngineError, ModuleInfo, PolicyEngine, PolicyModule, PreparedPolicy};

static PACKAGE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?m)^([ \t]*)package[ \t]+([^\s#]+)").ok());

#[derive(Debug, Clone)]
pub struct OpaEngine {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    /// Sent as `Authorization: Bearer` on every request (redacted in Debug).
    token: Option<crate::config::Secret>,
    /// For all tests of one activation together.
    test_budget: Duration,
}

/// The id prefix of every module the service uploads for an active version.
pub const MODULE_PREFIX: &str = "aumos/";

/// The package a source declares (without `data.`).
pub fn declared_package(rego: &str) -> Option<String> {
    PACKAGE
        .as_ref()?
        .captures(&super::source::code_only(rego))
        .and_then(|c| c.get(2))
        .map(|m| m.as_str().trim_start_matches("data.").to_owned())
}

/// Moves the module's package under `prefix` (the line keeps its number, so error
/// locations stay true).
fn namespaced(rego: &str, prefix: &str) -> Option<String> {
    let re = PACKAGE.as_ref()?;
    let code = super::source::code_only(rego);
    let caps = re.captures(&code)?;
    let whole = caps.get(0)?;
    let package = caps.get(2)?.as_str().trim_start_matches("data.");
    Some(format!("{}{}package {prefix}.{package}{}", &rego[..whole.start()], caps.get(1)?.as_str(), &rego[whole.end()..]))
}

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
        Self { http, base: base.trim_end_matches('/').to_owned(), timeout, token: None, test_budget: TEST_BUDGET }
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
        resp.json().await.map_err(|_| EngineError::BadResponse(format!("OPA's answer to {what} is not JSON")))
    }

    /// Parses the source with OPA's parser and refuses what a tenant may not reference.
    /// `Ok(false)`: OPA's parser could not read it (the upload then locates the error).
    async fn refuse_forbidden_references(&self, rego: &str) -> Result<bool, EngineError> {
        let query = serde_json::json!({"query": "ast := rego.parse_module(\"policy.rego\", input.src)", "input": {"src": rego}});
        let request = self.request(reqwest::Method::POST, "/v1/query").json(&query).timeout(self.timeout.max(Duration::from_secs(5)));
        let body = Self::json_answer(request, "a parse").await?;
        let Some(ast) = body["result"].get(0).map(|r| &r["ast"]) else {
            return Ok(false);
        };
        let errors = forbidden_references(ast, rego, SHARED_LIBRARIES);
        if errors.is_empty() {
            Ok(true)
        } else {
            Err(EngineError::Compile(errors))
        }
    }

    /// Removes a version's module from OPA (a version that is no longer active).
    pub async fn unload(&self, module_id: &str) -> Result<(), EngineError> {
        let resp = self
            .request(reqwest::Method::DELETE, &format!("/v1/policies/{module_id}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match resp.status() {
            s if s.is_success() || s == reqwest::StatusCode::NOT_FOUND => Ok(()),
            s => Err(EngineError::BadResponse(format!("OPA answered {s} to a policy removal"))),
        }
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

    /// Uploads a module; 400 from OPA is a compile error.
    async fn put(&self, id: &str, rego: &str) -> Result<(), EngineError> {
        let resp = self
            .request(reqwest::Method::PUT, &format!("/v1/policies/{id}"))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(rego.to_owned())
            .timeout(self.timeout.max(Duration::from_secs(5)))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(EngineError::Compile(compile_errors(&body)));
        }
        Err(EngineError::BadResponse(format!("OPA answered {status} to a policy upload")))
    }

    async fn delete(&self, id: &str) {
        if let Err(e) = self.unload(id).await {
            tracing::warn!(module = id, error = %e, "could not remove a scratch module from OPA");
        }
    }

    /// Uploads a throwaway copy under a random namespace, runs `f`, removes it.
    async fn with_scratch<T>(&self, rego: &str, f: impl AsyncFnOnce(&str) -> Result<T, EngineError>) -> Result<T, EngineError> {
        let scratch = PolicyModule { policy_id: uuid::Uuid::new_v4(), version: 0, package: String::new(), rego: String::new() };
        let id = format!("{SCRATCH_PREFIX}{}", scratch.policy_id.simple());
        let prefix = Self::prefix(&scratch).replacen("aumos_policies", "aumos_scratch", 1);
        let body = namespaced(rego, &prefix)
            .ok_or_else(|| EngineError::Compile(vec![CompileError { message: "no package declaration".into(), row: None, col: None }]))?;
        self.put(&id, &body).await?;
        let package = declared_package(rego).unwrap_or_default();
        let result = f(&format!("{prefix}.{package}")).await;
        self.delete(&id).await;
        result
    }
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

/// Queries `POST /v1/data/<path>`, insisting on a JSON object as the answer.
async fn query(engine: &OpaEngine, path: &str, input: &Value, timeout: Duration) -> Result<Option<Value>, EngineError> {
    let resp = engine
        .request(reqwest::Method::POST, &format!("/v1/data/{path}"))
        .json(&serde_json::json!({ "input": input }))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| unavailable(&e))?;
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

    async fn check(&self, rego: &str) -> Result<ModuleInfo, EngineError> {
        let errors = unsupported_calls(rego, None);
        if !errors.is_empty() {
            return Err(EngineError::Compile(errors));
        }
        let analysed = self.refuse_forbidden_references(rego).await?;
        self.with_scratch(rego, async |_| Ok(())).await?;
        if !analysed {
            // It compiles, yet OPA's parser builtin could not read it: refuse rather than
            // run what was not checked.
            let message = "the policy could not be analysed for forbidden references".to_owned();
            return Err(EngineError::Compile(vec![CompileError { message, row: None, col: None }]));
        }
        let package = declared_package(rego).unwrap_or_default();
        Ok(ModuleInfo { package, tests: test_rules(rego) })
    }

    async fn run_tests(&self, rego: &str, info: &ModuleInfo) -> Result<(), EngineError> {
        if info.tests.is_empty() {
            return Ok(());
        }
        let tests = info.tests.clone();
        // One budget for all the tests of an activation together; past it OPA is told to
        // stop (the request is dropped, which cancels its evaluation) and the answer is 503.
        let budget = self.timeout.max(self.test_budget);
        let failed = self
            .with_scratch(rego, async |package| {
                let run = async {
                    let mut failed = Vec::new();
                    for test in &tests {
                        match query(self, &data_path(package, Some(test)), &Value::Null, budget).await {
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
        let prefix = Self::prefix(module);
        let body = namespaced(&module.rego, &prefix)
            .ok_or_else(|| EngineError::Compile(vec![CompileError { message: "no package declaration".into(), row: None, col: None }]))?;
        // A marker rule tells "undefined" apart from "OPA lost the module" (a restart).
        let body = format!("{body}\n{LOADED_MARKER} := true\n");
        let id = Self::module_id(module);
        self.put(&id, &body).await?;
        let package = declared_package(&module.rego).unwrap_or_default();
        Ok(Arc::new(OpaPolicy { engine: self.clone(), id, body, package: format!("{prefix}.{package}") }))
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

/// A module uploaded to OPA.
#[derive(Debug)]
pub struct OpaPolicy {
    engine: OpaEngine,
    id: String,
    body: String,
    package: String,
}

impl OpaPolicy {
    async fn query(&self, rule: Option<&str>, input: &Value) -> Result<Option<Value>, EngineError> {
        query(&self.engine, &data_path(&self.package, rule), input, self.engine.timeout).await
    }
}

#[async_trait::async_trait]
impl PreparedPolicy for OpaPolicy {
    async fn evaluate(&self, rule: Option<&str>, input: &Value) -> Result<Option<Value>, EngineError> {
        let result = self.query(rule, input).await?;
        if result.is_some() && rule.is_some() {
            return Ok(result);
        }
        // Undefined (or a package document without its marker): is the module still there?
        let loaded = match (&result, rule) {
            (Some(doc), None) => doc.get(LOADED_MARKER).is_some(),
            _ => self.query(Some(LOADED_MARKER), &Value::Null).await? == Some(Value::Bool(true)),
        };
        if loaded {
            return Ok(result.map(|mut doc| {
                if let Some(map) = doc.as_object_mut() {
                    map.remove(LOADED_MARKER);
                }
                doc
            }));
        }
        tracing::warn!(module = %self.id, "OPA lost the policy module (restart?); uploading it again");
        self.engine.put(&self.id, &self.body).await?;
        let retried = self.query(rule, input).await?;
        Ok(retried.map(|mut doc| {
            if rule.is_none() {
                if let Some(map) = doc.as_object_mut() {
                    map.remove(LOADED_MARKER);
                }
            }
            doc
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_moves_under_the_namespace_and_keeps_its_line() {
        let src = "# gate\npackage model.gate\n\nallow if true\n";
        let out = namespaced(src, "aumos_policies.pabc_v2").unwrap();
        assert_eq!(out, "# gate\npackage aumos_policies.pabc_v2.model.gate\n\nallow if true\n");
        assert_eq!(declared_package(src).as_deref(), Some("model.gate"));
    }

    #[test]
    fn a_package_word_in_a_comment_or_string_is_not_the_declaration() {
        let src = "# package fake\npackage real\nmsg := \"package nope\"\n";
        assert_eq!(declared_package(src).as_deref(), Some("real"));
    }

    #[test]
    fn opa_compile_errors_keep_their_locations() {
        let body = serde_json::json!({"code": "invalid_parameter", "message": "error(s) occurred", "errors": [
            {"code": "rego_parse_error", "message": "unexpected eof", "location": {"file": "x", "row": 5, "col": 1}}]});
        assert_eq!(compile_errors(&body), vec![CompileError { message: "unexpected eof".into(), row: Some(5), col: Some(1) }]);
    }
}
