//! The embedded engine: regorus, in process.
//!
//! Closing the gap with OPA (docs/policy-engines.md): regorus only parses when a policy is
//! added, so validation also prepares the module (which surfaces unsafe variables and
//! other analysis errors) and rejects calls to functions regorus lacks (which it would
//! report only when the call is reached) and `http.send`. Builtin errors are not strict,
//! as in OPA: a failing builtin makes its expression undefined.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::Value;

use super::source::{parse_regorus_error, test_rules, unsupported_calls};
use super::{EngineError, ModuleInfo, PolicyEngine, PolicyModule, PreparedPolicy};

#[derive(Debug)]
pub struct EmbeddedEngine {
    timeout: Duration,
    builtins: HashSet<&'static str>,
}

fn compile_error(e: &anyhow_like::Error) -> EngineError {
    EngineError::Compile(vec![parse_regorus_error(&e.to_string())])
}

/// regorus returns `anyhow::Error`; only its text is used.
mod anyhow_like {
    pub type Error = dyn std::fmt::Display;
}

impl EmbeddedEngine {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, builtins: regorus::unstable::BUILTINS.keys().copied().collect() }
    }

    fn engine(&self) -> regorus::Engine {
        let mut e = regorus::Engine::new();
        e.set_strict_builtin_errors(false);
        e.set_execution_timer_config(ExecutionTimerConfig { limit: self.timeout, check_interval: NonZeroU32::MIN });
        e
    }

    /// Adds and prepares a module; returns the engine and the package (without `data.`).
    fn load(&self, rego: &str) -> Result<(regorus::Engine, String), EngineError> {
        let mut e = self.engine();
        let package = e.add_policy("policy.rego".into(), rego.into()).map_err(|err| compile_error(&err))?;
        let errors = unsupported_calls(rego, Some(&self.builtins));
        if !errors.is_empty() {
            return Err(EngineError::Compile(errors));
        }
        // Preparing analyses every rule: unsafe variables, recursion, bad references.
        e.eval_query("true".into(), false).map_err(|err| compile_error(&err))?;
        Ok((e, package.strip_prefix("data.").unwrap_or(&package).to_owned()))
    }
}

fn to_json(v: regorus::Value) -> Result<Option<Value>, EngineError> {
    if v == regorus::Value::Undefined {
        return Ok(None);
    }
    serde_json::to_value(&v).map(Some).map_err(|e| EngineError::Evaluation(e.to_string()))
}

fn evaluation_error(e: &anyhow_like::Error) -> EngineError {
    let text = e.to_string();
    if text.contains("time limit") || text.contains("execution exceeded") || text.contains("timer") {
        EngineError::Unavailable(format!("evaluation exceeded its time budget: {}", parse_regorus_error(&text).message))
    } else {
        EngineError::Evaluation(parse_regorus_error(&text).message)
    }
}

/// Evaluates on a clone of a prepared engine (a clone is cheap; re-preparing is not).
fn eval(prepared: &regorus::Engine, package: &str, rule: Option<&str>, input: &Value) -> Result<Option<Value>, EngineError> {
    let mut e = prepared.clone();
    e.set_input(regorus::Value::from(input.clone()));
    match rule {
        // A rule by name: the fast path.
        Some(rule) if !rule.contains('.') => to_json(e.eval_rule(format!("data.{package}.{rule}")).map_err(|err| evaluation_error(&err))?),
        // The package document, or a value nested inside a rule.
        _ => {
            let path = rule.map(|r| format!("data.{package}.{r}")).unwrap_or_else(|| format!("data.{package}"));
            let results = e.eval_query(path, false).map_err(|err| evaluation_error(&err))?;
            match results.result.into_iter().next().and_then(|r| r.expressions.into_iter().next()) {
                Some(expr) => to_json(expr.value),
                None => Ok(None),
            }
        }
    }
}

#[async_trait::async_trait]
impl PolicyEngine for EmbeddedEngine {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn check(&self, rego: &str) -> Result<ModuleInfo, EngineError> {
        let (_, package) = self.load(rego)?;
        Ok(ModuleInfo { package, tests: test_rules(rego) })
    }

    async fn run_tests(&self, rego: &str, info: &ModuleInfo) -> Result<(), EngineError> {
        let (engine, package) = self.load(rego)?;
        let mut failed = Vec::new();
        for test in &info.tests {
            match eval(&engine, &package, Some(test), &Value::Null) {
                Ok(Some(Value::Bool(true))) => {}
                Ok(_) => failed.push(test.clone()),
                Err(e) => failed.push(format!("{test} ({e})")),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(EngineError::TestsFailed(failed))
        }
    }

    async fn prepare(&self, module: &PolicyModule) -> Result<Arc<dyn PreparedPolicy>, EngineError> {
        let (engine, package) = self.load(&module.rego)?;
        Ok(Arc::new(EmbeddedPolicy { engine, package }))
    }

    async fn is_loaded(&self, _module: &PolicyModule) -> Result<bool, EngineError> {
        Ok(true)
    }
}

/// A prepared regorus engine holding one policy module.
#[derive(Debug)]
pub struct EmbeddedPolicy {
    engine: regorus::Engine,
    package: String,
}

#[async_trait::async_trait]
impl PreparedPolicy for EmbeddedPolicy {
    async fn evaluate(&self, rule: Option<&str>, input: &Value) -> Result<Option<Value>, EngineError> {
        eval(&self.engine, &self.package, rule, input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine() -> EmbeddedEngine {
        EmbeddedEngine::new(Duration::from_millis(200))
    }

    async fn prepared(rego: &str) -> Arc<dyn PreparedPolicy> {
        let module = PolicyModule { policy_id: uuid::Uuid::nil(), version: 1, package: String::new(), rego: rego.into() };
        engine().prepare(&module).await.unwrap()
    }

    #[tokio::test]
    async fn evaluates_a_rule_the_whole_package_and_nested_paths() {
        let p = prepared("package gate.v1\n\nallow if input.score > 0.5\nlimits := {\"max\": {\"tokens\": 10}}\n").await;
        assert_eq!(p.evaluate(Some("allow"), &json!({"score": 0.7})).await.unwrap(), Some(json!(true)));
        assert_eq!(p.evaluate(Some("allow"), &json!({"score": 0.1})).await.unwrap(), None, "undefined, not false");
        assert_eq!(p.evaluate(Some("limits.max.tokens"), &json!({})).await.unwrap(), Some(json!(10)));
        assert_eq!(
            p.evaluate(None, &json!({"score": 0.7})).await.unwrap(),
            Some(json!({"allow": true, "limits": {"max": {"tokens": 10}}}))
        );
    }

    #[tokio::test]
    async fn check_rejects_parse_errors_unsafe_variables_unknown_functions_and_http_send_with_locations() {
        for (src, row) in [
            ("package a\n\nallow if {\n  input.x >\n}\n", 5),
            ("package a\n\nallow if x > 1\n", 3),
            ("package a\n\nallow if crypto.x509.parse_certificates(input.c)\n", 3),
            ("package a\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n", 3),
        ] {
            match engine().check(src).await {
                Err(EngineError::Compile(errors)) => assert_eq!(errors[0].row, Some(row), "{src}: {errors:?}"),
                other => panic!("{src}: expected a compile error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn check_reports_the_package_and_tests() {
        let info =
            engine().check("package gate.v1\n\nallow if input.ok\ntest_allow if allow with input as {\"ok\": true}\n").await.unwrap();
        assert_eq!(info, ModuleInfo { package: "gate.v1".into(), tests: vec!["test_allow".into()] });
    }

    #[tokio::test]
    async fn run_tests_lists_every_failing_test() {
        let src = "package t\n\nallow if input.ok\ntest_ok if allow with input as {\"ok\": true}\ntest_wrong if allow with input as {\"ok\": false}\ntest_also_wrong if false\n";
        let e = engine();
        let info = e.check(src).await.unwrap();
        match e.run_tests(src, &info).await {
            Err(EngineError::TestsFailed(f)) => assert_eq!(f, vec!["test_wrong", "test_also_wrong"]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failing_builtin_is_undefined_as_in_opa_not_an_error() {
        let p = prepared("package b\n\nn := to_number(input.s)\n").await;
        assert_eq!(p.evaluate(Some("n"), &json!({"s": "not a number"})).await.unwrap(), None);
    }
}
