//! The embedded engine: regorus, in sandboxed worker processes ([`super::sandbox`]).
//!
//! [`EmbeddedEngine::sandboxed`] is what the service runs: every check, activation test
//! run and evaluation goes to a worker process, queued per tenant. [`EmbeddedEngine::new`]
//! runs the same [`Session`] in this process on the blocking thread pool: only for
//! trusted Rego (tests, conformance runs), never for tenants' policies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::facts::JsonText;
use serde_json::Value;

use super::sandbox::pool::{Pool, WorkerCommand};
use super::sandbox::worker::Session;
use super::sandbox::{module_key, Item, Reply, Request};
use super::{current_tenant, unsendable, version_tests, EngineError, ModuleInfo, PolicyEngine, PolicyModule, PolicySource, PreparedPolicy};

/// Where requests run.
#[derive(Debug, Clone)]
enum Backend {
    /// Worker processes: the sandbox.
    Pool(Pool),
    /// This process (trusted Rego only).
    InProcess(Arc<Mutex<Session>>),
}

impl Backend {
    async fn call(&self, request: Request, source: Option<Arc<PolicySource>>, budget: Duration) -> Result<Reply, EngineError> {
        match self {
            Backend::Pool(pool) => pool.call(current_tenant(), request, source, budget).await,
            Backend::InProcess(session) => {
                let session = session.clone();
                tokio::task::spawn_blocking(move || {
                    let mut s = session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let undecodable = |e: serde_json::Error| EngineError::Fault(format!("an input does not decode: {e}"));
                    Ok(match s.handle(request.clone().decoded().map_err(undecodable)?) {
                        Reply::NeedSource => match (request, source) {
                            (Request::Evaluate { key, rule, input, budget_ms, .. }, Some(source)) => s.handle(
                                Request::Evaluate { key, source: Some(PolicySource::clone(&source)), rule, input, budget_ms }
                                    .decoded()
                                    .map_err(undecodable)?,
                            ),
                            (Request::EvaluateMany { key, items, budget_ms, .. }, Some(source)) => s.handle(
                                Request::EvaluateMany { key, source: Some(PolicySource::clone(&source)), items, budget_ms }
                                    .decoded()
                                    .map_err(undecodable)?,
                            ),
                            _ => Reply::NeedSource,
                        },
                        reply => reply,
                    })
                })
                .await
                .map_err(|e| EngineError::Fault(e.to_string()))?
            }
        }
    }
}

#[derive(Debug)]
pub struct EmbeddedEngine {
    backend: Backend,
    /// Each evaluation's deadline.
    timeout: Duration,
    /// One deadline for a source's validation, and one for all of its tests together.
    test_timeout: Duration,
}

/// A reply that is not the one expected becomes the error it carries.
fn unexpected(reply: Reply) -> EngineError {
    match reply {
        Reply::Compile(errors) => EngineError::Compile(errors),
        Reply::Evaluation(m) => EngineError::Evaluation(m),
        Reply::Timeout(m) => EngineError::Timeout(m),
        Reply::Panic(m) => EngineError::Fault(format!("the engine panicked: {m}")),
        Reply::TestsFailed(tests) => EngineError::TestsFailed(tests),
        other => EngineError::BadResponse(format!("unexpected reply from the engine worker: {other:?}")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl EmbeddedEngine {
    /// In this process, for trusted Rego only (see the module documentation).
    pub fn new(timeout: Duration) -> Self {
        let session = Arc::new(Mutex::new(Session::new(64)));
        Self { backend: Backend::InProcess(session), timeout, test_timeout: timeout.max(Duration::from_secs(2)) }
    }

    /// The sandbox: worker processes of this executable (`engine-worker`).
    pub fn sandboxed(config: &crate::config::Config) -> Self {
        let program = std::env::current_exe().unwrap_or_else(|_| "governance-engine".into());
        Self::with_workers(config, program)
    }

    /// The sandbox with workers started from `program` (which must be this service's binary).
    pub fn with_workers(config: &crate::config::Config, program: std::path::PathBuf) -> Self {
        let sandbox = config.sandbox.clone();
        let command = WorkerCommand { program, memory_mb: sandbox.worker_memory_mb, cache_entries: sandbox.worker_cache_entries };
        let test_timeout = sandbox.test_timeout;
        Self { backend: Backend::Pool(Pool::start(sandbox, command)), timeout: config.eval_timeout, test_timeout }
    }
}

#[async_trait::async_trait]
impl PolicyEngine for EmbeddedEngine {
    fn kind(&self) -> aggregates::facts::EngineKind {
        aggregates::facts::EngineKind::Embedded
    }

    async fn check(&self, source: &PolicySource) -> Result<ModuleInfo, EngineError> {
        match self.backend.call(Request::Check { source: source.clone() }, None, self.test_timeout).await? {
            Reply::Checked { package } => Ok(ModuleInfo { package, tests: version_tests(source) }),
            other => Err(unexpected(other)),
        }
    }

    async fn run_tests(&self, source: &PolicySource, info: &ModuleInfo) -> Result<(), EngineError> {
        if info.tests.is_empty() {
            return Ok(());
        }
        let request = Request::Test { source: source.clone(), tests: info.tests.clone(), budget_ms: millis(self.test_timeout) };
        match self.backend.call(request, None, self.test_timeout).await? {
            Reply::TestsPassed => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Cheap: the source was validated before it could be activated, and each worker
    /// prepares it when it first evaluates it.
    async fn prepare(&self, module: &PolicyModule) -> Result<Arc<dyn PreparedPolicy>, EngineError> {
        Ok(Arc::new(EmbeddedPolicy {
            backend: self.backend.clone(),
            key: module_key(&module.source),
            source: Arc::new(module.source.clone()),
            timeout: self.timeout,
        }))
    }

    async fn is_loaded(&self, _module: &PolicyModule) -> Result<bool, EngineError> {
        Ok(true)
    }
}

/// An active module: evaluated by whichever worker is free, which prepares it once.
#[derive(Debug)]
pub struct EmbeddedPolicy {
    backend: Backend,
    key: String,
    source: Arc<PolicySource>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl PreparedPolicy for EmbeddedPolicy {
    async fn evaluate(&self, rule: Option<&str>, input: Option<&JsonText>) -> Result<Option<Value>, EngineError> {
        let request = Request::Evaluate {
            key: self.key.clone(),
            source: None,
            rule: rule.map(str::to_owned),
            input: input.cloned(),
            budget_ms: millis(self.timeout),
        };
        match self.backend.call(request, Some(self.source.clone()), self.timeout).await? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// One worker round trip per batch; each item keeps its own deadline, and the batch's
    /// hard deadline is their sum (capped), so a slow item cannot hold a worker for longer.
    async fn evaluate_many(
        &self,
        items: Vec<(Option<String>, Option<Value>)>,
    ) -> Result<Vec<Result<Option<Value>, EngineError>>, EngineError> {
        let n = items.len();
        if n == 0 {
            return Ok(vec![]);
        }
        let budget = self.timeout.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)).min(MAX_BATCH_BUDGET);
        let items = items
            .into_iter()
            .map(|(rule, input)| Ok(Item { rule, input: input.as_ref().map(JsonText::of).transpose()? }))
            .collect::<Result<_, serde_json::Error>>()
            .map_err(unsendable)?;
        let request = Request::EvaluateMany { key: self.key.clone(), source: None, items, budget_ms: millis(self.timeout) };
        match self.backend.call(request, Some(self.source.clone()), budget).await? {
            Reply::Values(replies) if replies.len() == n => Ok(replies
                .into_iter()
                .map(|r| match r {
                    Reply::Value(v) => Ok(v),
                    other => Err(unexpected(other)),
                })
                .collect()),
            Reply::Values(replies) => Err(EngineError::BadResponse(format!("{} replies to {n} items", replies.len()))),
            other => Err(unexpected(other)),
        }
    }
}

/// The longest a batch of evaluations may hold a worker.
const MAX_BATCH_BUDGET: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine() -> EmbeddedEngine {
        EmbeddedEngine::new(Duration::from_millis(200))
    }

    async fn prepared(rego: &str) -> Arc<dyn PreparedPolicy> {
        let module = PolicyModule { policy_id: uuid::Uuid::nil(), version: 1, package: String::new(), source: PolicySource::single(rego) };
        engine().prepare(&module).await.unwrap()
    }

    #[tokio::test]
    async fn evaluates_a_rule_the_whole_package_and_nested_paths() {
        let p = prepared("package gate.v1\n\nallow if input.score > 0.5\nlimits := {\"max\": {\"tokens\": 10}}\n").await;
        assert_eq!(p.evaluate(Some("allow"), Some(&JsonText::of(&json!({"score": 0.7})).unwrap())).await.unwrap(), Some(json!(true)));
        assert_eq!(
            p.evaluate(Some("allow"), Some(&JsonText::of(&json!({"score": 0.1})).unwrap())).await.unwrap(),
            None,
            "undefined, not false"
        );
        assert_eq!(p.evaluate(Some("limits.max.tokens"), Some(&JsonText::of(&json!({})).unwrap())).await.unwrap(), Some(json!(10)));
        assert_eq!(
            p.evaluate(None, Some(&JsonText::of(&json!({"score": 0.7})).unwrap())).await.unwrap(),
            Some(json!({"allow": true, "limits": {"max": {"tokens": 10}}}))
        );
    }

    #[tokio::test]
    async fn without_an_input_the_policy_s_input_is_undefined_and_a_null_input_is_null() {
        let p = prepared("package i\n\nseen := input\ngiven if { _ = input }\n").await;
        assert_eq!(p.evaluate(Some("seen"), None).await.unwrap(), None);
        assert_eq!(p.evaluate(Some("given"), None).await.unwrap(), None);
        assert_eq!(p.evaluate(Some("seen"), Some(&JsonText::of(&Value::Null).unwrap())).await.unwrap(), Some(Value::Null));
        assert_eq!(p.evaluate(Some("given"), Some(&JsonText::of(&Value::Null).unwrap())).await.unwrap(), Some(json!(true)));
        let many = p.evaluate_many(vec![(Some("seen".into()), None), (Some("seen".into()), Some(Value::Null))]).await.unwrap();
        assert_eq!(many, vec![Ok(None), Ok(Some(Value::Null))]);
    }

    #[tokio::test]
    async fn check_rejects_parse_errors_unsafe_variables_unknown_functions_and_http_send_with_locations() {
        for (src, row) in [
            ("package a\n\nallow if {\n  input.x >\n}\n", 5),
            ("package a\n\nallow if x > 1\n", 3),
            ("package a\n\nallow if crypto.x509.parse_certificates(input.c)\n", 3),
            ("package a\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n", 3),
        ] {
            match engine().check(&PolicySource::single(src)).await {
                Err(EngineError::Compile(errors)) => assert_eq!(errors[0].row, Some(row), "{src}: {errors:?}"),
                other => panic!("{src}: expected a compile error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn check_reports_the_package_and_tests() {
        let info = engine()
            .check(&PolicySource::single("package gate.v1\n\nallow if input.ok\ntest_allow if allow with input as {\"ok\": true}\n"))
            .await
            .unwrap();
        assert_eq!(info, ModuleInfo { package: "gate.v1".into(), tests: vec!["test_allow".into()] });
    }

    #[tokio::test]
    async fn run_tests_lists_every_failing_test() {
        let src = "package t\n\nallow if input.ok\ntest_ok if allow with input as {\"ok\": true}\ntest_wrong if allow with input as {\"ok\": false}\ntest_also_wrong if false\n";
        let e = engine();
        let src = PolicySource::single(src);
        let info = e.check(&src).await.unwrap();
        match e.run_tests(&src, &info).await {
            Err(EngineError::TestsFailed(f)) => assert_eq!(f, vec!["test_wrong", "test_also_wrong"]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failing_builtin_is_undefined_as_in_opa_not_an_error() {
        let p = prepared("package b\n\nn := to_number(input.s)\n").await;
        assert_eq!(p.evaluate(Some("n"), Some(&JsonText::of(&json!({"s": "not a number"})).unwrap())).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_batch_answers_each_item_on_its_own_input_and_a_panic_answers_only_for_its_item() {
        let p = prepared("package b\n\nallow if input.score > 0.5\nn := object.subset(input.s, [])\nlevel := input.score * 10\n").await;
        let item = |rule: &str, input: Value| (Some(rule.to_owned()), Some(input));
        let out = p
            .evaluate_many(vec![
                item("allow", json!({"score": 0.9})),
                item("level", json!({"score": 0.9})),
                item("n", json!({"s": [1]})),
                item("allow", json!({"score": 0.1})),
                item("level", json!({"score": 0.2})),
            ])
            .await
            .unwrap();
        assert_eq!(out[0], Ok(Some(json!(true))));
        assert_eq!(out[1], Ok(Some(json!(9))));
        assert!(matches!(&out[2], Err(EngineError::Fault(m)) if m.contains("panicked")), "{:?}", out[2]);
        assert_eq!(out[3], Ok(None), "no value of an earlier item's input is kept");
        assert_eq!(out[4], Ok(Some(json!(2))));
    }

    #[tokio::test]
    async fn a_panicking_builtin_is_contained_and_the_session_keeps_answering() {
        // regorus panics on `object.subset` of an empty array (a slice window of 0).
        let p = prepared("package p\n\nn := object.subset(input.s, [])\nok := true\n").await;
        match p.evaluate(Some("n"), Some(&JsonText::of(&json!({"s": [1]})).unwrap())).await {
            Err(EngineError::Fault(m)) => assert!(m.contains("panicked"), "{m}"),
            other => panic!("expected a contained panic, got {other:?}"),
        }
        assert_eq!(p.evaluate(Some("ok"), Some(&JsonText::of(&json!({})).unwrap())).await.unwrap(), Some(json!(true)));
    }
}
