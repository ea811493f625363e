//! Policy engines: the embedded `regorus` interpreter (the default) and an Open Policy
//! Agent sidecar over its REST API. Both sit behind [`PolicyEngine`], so the HTTP layer
//! neither knows nor cares which one runs, and both fail closed: every error is an
//! [`EngineError`], never an "allow".
//!
//! A version is a [`PolicySource`]: its modules (the main one first) and its data document.
//! - [`embedded`]: regorus in the [`sandbox`] worker processes, with the OPA builtins it
//!   lacks from [`builtins`]; [`source`]: static checks on Rego text and OPA's AST.
//! - [`opa`]: the OPA sidecar over REST (its `modules` part: uploads and removals of the
//!   service's modules and data documents; its `batch` part: concurrent evaluations of one
//!   version in one query; [`opa_builtins`]: the names of its builtins); [`confine`]: how each version gets a namespace of
//!   its own in OPA's shared data tree; [`breaker`]: a tenant whose queries kill OPA is
//!   quarantined.

pub mod breaker;
pub mod builtins;
pub mod confine;
pub mod embedded;
pub mod opa;
pub mod opa_builtins;
pub mod sandbox;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use aggregates::facts::JsonText;
use serde::Serialize;
use serde_json::Value;

/// One compile error, located in the Rego source when the engine says where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CompileError {
    pub message: String,
    pub row: Option<u32>,
    pub col: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("the policy does not compile ({} error(s))", .0.len())]
    Compile(Vec<CompileError>),
    #[error("policy tests failed: {}", .0.join(", "))]
    TestsFailed(Vec<String>),
    /// The engine could not answer in time or at all (OPA down, timeout).
    #[error("policy engine unavailable: {0}")]
    Unavailable(String),
    /// The engine answered with an error or something that is not a valid answer.
    #[error("policy engine error: {0}")]
    BadResponse(String),
    /// Evaluation itself failed (e.g. conflicting values for a complete rule).
    #[error("evaluation failed: {0}")]
    Evaluation(String),
    /// The evaluation (or an activation's tests together) ran past its deadline and was stopped.
    #[error("evaluation stopped at its deadline: {0}")]
    Timeout(String),
    /// The evaluation exceeded the sandbox's memory or stack limit; its worker was replaced.
    #[error("evaluation exceeded a resource limit: {0}")]
    ResourceLimit(String),
    /// No worker is free soon enough for this tenant (its queue is full or waited too long).
    #[error("policy engine overloaded: {0}")]
    Overloaded(String),
    /// The engine panicked; the panic was contained.
    #[error("policy engine fault: {0}")]
    Fault(String),
    /// The tenant's queries killed OPA repeatedly; they are refused for a while
    /// ([`breaker`]). The seconds left.
    #[error("policy engine refuses this tenant for now: {0}")]
    Quarantined(String, u64),
}

tokio::task_local! {
    /// The tenant on whose behalf engine calls in this task run: the embedded engine's
    /// sandbox queues and shares its workers per tenant (see [`on_behalf_of`]).
    static TENANT: uuid::Uuid;
}

/// Runs `f` with its engine calls queued under `tenant` (fair sharing between tenants).
pub async fn on_behalf_of<F: std::future::Future>(tenant: uuid::Uuid, f: F) -> F::Output {
    TENANT.scope(tenant, f).await
}

/// The tenant set by [`on_behalf_of`]; the nil id outside one (trusted callers, tests).
pub fn current_tenant() -> uuid::Uuid {
    TENANT.try_with(|t| *t).unwrap_or_default()
}

/// What validation learned about a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The package the main module declares, without `data.` (e.g. `gate.v1`).
    pub package: String,
    /// Its `test_` rules ([`version_tests`]).
    pub tests: Vec<String>,
}

/// What an engine runs for one policy version: its modules, the main one first (its
/// package is the policy's, and rule paths are read inside it), and its data document,
/// which only this version's modules see under `data`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct PolicySource {
    pub modules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl PolicySource {
    /// One module, no data.
    pub fn single(rego: impl Into<String>) -> Self {
        Self { modules: vec![rego.into()], data: None }
    }

    /// What a version recorded in the ledger holds.
    pub fn of(v: &aggregates::policy::VersionSource) -> Self {
        let mut modules = vec![v.rego.as_str().to_owned()];
        modules.extend(v.modules.iter().map(|m| m.as_str().to_owned()));
        Self { modules, data: v.data.to_value() }
    }

    /// The main module.
    pub fn main(&self) -> &str {
        self.modules.first().map_or("", String::as_str)
    }

    /// Bytes of source and data together (a worker's cache accounts for them).
    pub fn size(&self) -> usize {
        self.modules.iter().map(String::len).sum::<usize>() + self.data.as_ref().map_or(0, |d| d.to_string().len())
    }

    /// The name a module is known by in errors: `policy.rego` for the main one,
    /// `modules[i]` for the `i`-th further one (0-based, as the API lists them).
    pub fn module_name(index: usize) -> String {
        match index {
            0 => "policy.rego".to_owned(),
            i => format!("modules[{}]", i - 1),
        }
    }

    /// Compile errors of module `index`: those of a further module are prefixed with its
    /// name (the main module's keep their message, as with a single module).
    pub fn errors_in(index: usize, mut errors: Vec<CompileError>) -> Vec<CompileError> {
        if index > 0 {
            for err in &mut errors {
                err.message = format!("{}: {}", Self::module_name(index), err.message);
            }
        }
        errors
    }
}

/// One version of a policy, ready to be prepared.
#[derive(Debug, Clone)]
pub struct PolicyModule {
    pub policy_id: uuid::Uuid,
    pub version: u32,
    pub package: String,
    pub source: PolicySource,
}

/// Reads an optional `input` field (with `#[serde(default)]`): present, whatever its value
/// (`null` included), is `Some`; absent is `None`, OPA's undefined input.
pub fn given_input<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An input that cannot be written as JSON text (not expected of a parsed `Value`).
pub fn unsendable(e: serde_json::Error) -> EngineError {
    EngineError::BadResponse(format!("the input cannot be sent: {e}"))
}

/// Evaluations of one [`PreparedPolicy::evaluate_many`] batch in flight at once, when the
/// engine has no batch call of its own.
pub const MANY_IN_FLIGHT: usize = 8;

/// A policy compiled for evaluation: cheap to share, evaluated many times.
#[async_trait::async_trait]
pub trait PreparedPolicy: Send + Sync + std::fmt::Debug {
    /// Evaluates `rule` (a dot-separated path inside the package; `None` for the whole
    /// package document) on `input` (`None`: no input, so the policy's `input` is
    /// undefined, as in OPA's API when a query carries none). `Ok(None)` is an undefined
    /// result. The input comes as its canonical text, which the decision record hashes and
    /// keeps: engines send it on as it is.
    async fn evaluate(&self, rule: Option<&str>, input: Option<&JsonText>) -> Result<Option<Value>, EngineError>;

    /// Evaluates many (rule, input) pairs; one result per item, in order. `Err` when the
    /// batch as a whole could not run. The default evaluates them one by one, at most
    /// [`MANY_IN_FLIGHT`] at a time (for OPA: that many requests on its connection pool).
    async fn evaluate_many(
        &self,
        items: Vec<(Option<String>, Option<Value>)>,
    ) -> Result<Vec<Result<Option<Value>, EngineError>>, EngineError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(MANY_IN_FLIGHT) {
            let texts: Vec<Option<JsonText>> = chunk
                .iter()
                .map(|(_, input)| input.as_ref().map(JsonText::of).transpose())
                .collect::<Result<_, _>>()
                .map_err(unsendable)?;
            let calls: Vec<_> = chunk.iter().zip(&texts).map(|((rule, _), input)| self.evaluate(rule.as_deref(), input.as_ref())).collect();
            out.extend(futures::future::join_all(calls).await);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
pub trait PolicyEngine: Send + Sync + std::fmt::Debug {
    /// `embedded` or `opa` (recorded in every decision record).
    fn kind(&self) -> aggregates::facts::EngineKind;
    /// Compiles the version without keeping it; a compile error is located where possible.
    async fn check(&self, source: &PolicySource) -> Result<ModuleInfo, EngineError>;
    /// Runs the version's `test_` rules; fails listing every test that is not true.
    async fn run_tests(&self, source: &PolicySource, info: &ModuleInfo) -> Result<(), EngineError>;
    /// Prepares a module for evaluation (for OPA: uploads it).
    async fn prepare(&self, module: &PolicyModule) -> Result<Arc<dyn PreparedPolicy>, EngineError>;
    /// Whether a prepared module is still loaded (OPA may have restarted).
    async fn is_loaded(&self, module: &PolicyModule) -> Result<bool, EngineError>;
    /// Tenants whose queries this engine refuses for now ([`breaker`]; OPA only).
    fn quarantined(&self) -> Vec<uuid::Uuid> {
        Vec::new()
    }
}

/// Runs both checks an activation needs: the version compiles, and its tests pass.
pub async fn check_and_test(engine: &dyn PolicyEngine, source: &PolicySource) -> Result<ModuleInfo, EngineError> {
    let info = engine.check(source).await?;
    engine.run_tests(source, &info).await?;
    Ok(info)
}

/// The `test_` rules of every module of a version: by name for the main module's (as they
/// are evaluated inside the policy's package), as `data.<package>.<name>` for the others'.
pub fn version_tests(source: &PolicySource) -> Vec<String> {
    let mut tests = Vec::new();
    for (i, module) in source.modules.iter().enumerate() {
        let names = source::test_rules(module);
        if i == 0 {
            tests.extend(names);
        } else if let Some(package) = opa::declared_package(module) {
            tests.extend(names.into_iter().map(|n| format!("data.{package}.{n}")));
        }
    }
    tests
}

/// Builds the configured engine.
pub fn build(config: &crate::config::Config, http: reqwest::Client) -> Arc<dyn PolicyEngine> {
    match config.policy_engine {
        crate::config::PolicyEngineKind::Embedded => Arc::new(embedded::EmbeddedEngine::sandboxed(config)),
        crate::config::PolicyEngineKind::Opa => Arc::new(opa_engine(config, http)),
    }
}

/// The OPA engine the configuration describes (its URL, token and budget).
pub fn opa_engine(config: &crate::config::Config, http: reqwest::Client) -> opa::OpaEngine {
    opa::OpaEngine::new(http, &config.opa_url, config.eval_timeout)
        .with_token(config.opa_token.clone())
        .with_test_budget(config.sandbox.test_timeout)
}

/// The evaluation budget; past it the caller gets 503 rather than a late answer.
pub fn budget(timeout: Duration) -> Duration {
    timeout
}
