//! The evaluation worker: `governance-engine engine-worker` (hidden). It reads
//! [`Request`] frames on stdin and answers each with a [`Reply`] frame on stdout, one at a
//! time, until stdin closes. [`Session`] is the whole engine: the only place a
//! `regorus::Engine` is configured ([`Session::engine`]).
//!
//! Closing the gap with OPA (docs/policy-engines.md): regorus only parses when a policy is
//! added, so validation also prepares the module (which surfaces unsafe variables and
//! other analysis errors) and rejects calls to functions regorus lacks (which it would
//! report only when the call is reached) and `http.send`. Builtin errors are not strict,
//! as in OPA: a failing builtin makes its expression undefined.

use std::collections::{HashSet, VecDeque};
use std::io::{self, BufReader, BufWriter};
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::Value;

use super::{read_frame, write_frame, Reply, WorkerRequest as Request};
use crate::adapters::engine::source::{parse_regorus_error, unsupported_calls};
use crate::adapters::engine::{CompileError, PolicySource};

/// Prepared modules kept by one worker: at most `entries`, and at most this many bytes of
/// source together (a prepared module costs a multiple of its source).
const CACHE_SOURCE_BYTES: usize = 32 * 1024 * 1024;

/// One worker's engine state: the builtins regorus has and the prepared modules.
#[derive(Debug)]
pub struct Session {
    builtins: HashSet<&'static str>,
    /// (key, package, prepared engine, source length), most recently used last.
    cache: VecDeque<(String, String, regorus::Engine, usize)>,
    entries: usize,
}

fn compile_error(e: &dyn std::fmt::Display) -> Reply {
    Reply::Compile(vec![parse_regorus_error(&e.to_string())])
}

fn evaluation_error(e: &dyn std::fmt::Display) -> Reply {
    let text = e.to_string();
    let message = parse_regorus_error(&text).message;
    if text.contains("time limit") || text.contains("execution exceeded") || text.contains("timer") {
        Reply::Timeout(format!("evaluation exceeded its time budget: {message}"))
    } else {
        Reply::Evaluation(message)
    }
}

/// How many of regorus's work units (a statement, a loop step, a rule) pass between two
/// reads of the clock. Reading it at every unit cost about a tenth of an evaluation of the
/// model-promotion gate (one thread: 9.6k–11.9k against 11.6k–13.0k evaluations/s at 16);
/// a unit is small, so the budget is overrun by microseconds, and the pool's deadline
/// kill stays the backstop.
const TIMER_CHECK_INTERVAL: NonZeroU32 = match NonZeroU32::new(16) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

fn timer(budget: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig { limit: budget.max(Duration::from_millis(1)), check_interval: TIMER_CHECK_INTERVAL }
}

fn to_json(v: regorus::Value) -> Reply {
    if v == regorus::Value::Undefined {
        return Reply::Value(None);
    }
    match serde_json::to_value(&v) {
        Ok(v) => Reply::Value(Some(v)),
        Err(e) => Reply::Evaluation(e.to_string()),
    }
}

/// The policy's `input`: undefined when the caller gave none.
fn input_value(input: Option<regorus::Value>) -> regorus::Value {
    input.unwrap_or(regorus::Value::Undefined)
}

/// The most errors of one kind a refused module reports one by one.
const MAX_REPORTED: usize = 10;

/// Evaluates on a clone of a prepared engine (a clone is cheap; re-preparing is not).
fn eval(prepared: &regorus::Engine, package: &str, rule: Option<&str>, input: regorus::Value, budget: Duration) -> Reply {
    eval_on(&mut prepared.clone(), package, rule, input, budget)
}

/// Evaluates on an engine of the prepared module, which may have evaluated before: regorus
/// cleans its evaluation state at every query, and the input and the timer are set anew.
fn eval_on(e: &mut regorus::Engine, package: &str, rule: Option<&str>, input: regorus::Value, budget: Duration) -> Reply {
    e.set_execution_timer_config(timer(budget));
    e.set_input(input);
    match rule {
        // A rule by name: the fast path (not for a path that only rules with reference
        // heads define, e.g. `p[k] := v`: regorus answers those through a query).
        Some(rule) if !rule.contains('.') => match e.eval_rule(format!("data.{package}.{rule}")) {
            Ok(v) => to_json(v),
            Err(err) if err.to_string().contains("not a valid rule path") => query_path(e, format!("data.{package}.{rule}")),
            Err(err) => evaluation_error(&err),
        },
        // The package document, or a value nested inside a rule.
        _ => {
            let path = rule.map(|r| format!("data.{package}.{r}")).unwrap_or_else(|| format!("data.{package}"));
            query_path(e, path)
        }
    }
}

/// Evaluates a path as a query: its value, or undefined.
fn query_path(e: &mut regorus::Engine, path: String) -> Reply {
    match e.eval_query(path, false) {
        Ok(results) => match results.result.into_iter().next().and_then(|r| r.expressions.into_iter().next()) {
            Some(expr) => to_json(expr.value),
            None => Reply::Value(None),
        },
        Err(err) => evaluation_error(&err),
    }
}

/// The names a module's `import data.…` lines bind (`import data.a.b` binds `b`,
/// `import data.a.b as c` binds `c`).
fn imported_aliases(rego: &str) -> Vec<String> {
    let code = crate::adapters::engine::source::code_only(rego);
    code.lines()
        .filter_map(|l| l.trim().strip_prefix("import "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let path = words.next()?.strip_prefix("data.")?;
            match (words.next(), words.next()) {
                (Some("as"), Some(alias)) => Some(alias.to_owned()),
                _ => path.rsplit('.').next().map(str::to_owned),
            }
        })
        .collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl Session {
    pub fn new(entries: usize) -> Self {
        Self { builtins: regorus::unstable::BUILTINS.keys().copied().collect(), cache: VecDeque::new(), entries: entries.max(1) }
    }

    /// The one place a `regorus::Engine` is built and configured.
    pub fn engine(budget: Duration) -> regorus::Engine {
        let mut e = regorus::Engine::new();
        e.set_strict_builtin_errors(false);
        if let Err(err) = crate::adapters::engine::builtins::register(&mut e) {
            tracing::error!(error = %err, "extension builtins are unavailable");
        }
        e.set_execution_timer_config(timer(budget));
        e
    }

    /// Adds and prepares a version's modules and data; returns the engine and the main
    /// module's package (without `data.`). An error in a further module names it.
    fn load(&self, source: &PolicySource, budget: Duration) -> Result<(regorus::Engine, String), Reply> {
        let mut e = Self::engine(budget);
        let in_module = |i: usize, errors: Vec<CompileError>| Reply::Compile(PolicySource::errors_in(i, errors));
        let mut package = String::new();
        for (i, rego) in source.modules.iter().enumerate() {
            let rewritten = crate::adapters::engine::builtins::out_params_assigned(rego).into_owned();
            // The first few are enough to locate the problem (a hostile module may hold
            // tens of thousands).
            let left = crate::adapters::engine::builtins::walk_values_left(&rewritten);
            let walks: Vec<CompileError> = left
                .iter()
                .take(MAX_REPORTED)
                .map(|&at| {
                    let (row, col) = crate::adapters::engine::source::location(&rewritten, at);
                    CompileError {
                        message: "walk(x) used as a value is supported by the embedded engine only as a statement of its own, \
                                  `[path, value] := walk(x)`, or as walk(x, [path, value]); the OPA engine \
                                  (AUMOS_GOVERNANCE_POLICY_ENGINE=opa) supports every form"
                            .into(),
                        row: Some(row),
                        col: Some(col),
                    }
                })
                .chain((left.len() > MAX_REPORTED).then(|| CompileError {
                    message: format!("and {} more such calls", left.len() - MAX_REPORTED),
                    row: None,
                    col: None,
                }))
                .collect();
            if !walks.is_empty() {
                return Err(in_module(i, walks));
            }
            let declared = e
                .add_policy(format!("module{i}.rego"), rewritten)
                .map_err(|err| in_module(i, vec![parse_regorus_error(&err.to_string())]))?;
            // A call through an import (`import data.lib` then `lib.f(x)`) is to a module's
            // own function, which regorus resolves when the call is reached.
            let aliases = imported_aliases(rego);
            let errors: Vec<CompileError> = unsupported_calls(rego, Some(&self.builtins))
                .into_iter()
                .filter(|e| {
                    !aliases.iter().any(|a| {
                        e.message.strip_prefix("unknown or unsupported function ").is_some_and(|f| f.starts_with(&format!("{a}.")))
                    })
                })
                .collect();
            if !errors.is_empty() {
                return Err(in_module(i, errors));
            }
            if i == 0 {
                package = declared.strip_prefix("data.").unwrap_or(&declared).to_owned();
            }
        }
        if package.is_empty() {
            return Err(Reply::Compile(vec![CompileError { message: "a policy version needs a module".into(), row: None, col: None }]));
        }
        if let Some(data) = &source.data {
            let conflicts = super::conflicts::data_conflicts(&mut e, data);
            if let Some(&(first, _)) = conflicts.first() {
                return Err(in_module(first, conflicts.into_iter().filter(|(m, _)| *m == first).map(|(_, e)| e).collect()));
            }
            e.add_data(regorus::Value::from(data.clone()))
                .map_err(|err| Reply::Compile(vec![CompileError { message: format!("data: {err}"), row: None, col: None }]))?;
        }
        // Preparing analyses every rule: unsafe variables, recursion, bad references.
        e.eval_query("true".into(), false).map_err(|err| compile_error(&err))?;
        Ok((e, package))
    }

    /// Answers one request; a panic anywhere inside becomes [`Reply::Panic`].
    pub fn handle(&mut self, request: Request) -> Reply {
        match catch_unwind(AssertUnwindSafe(|| self.dispatch(request))) {
            Ok(reply) => reply,
            Err(payload) => {
                // Whatever the panic interrupted is not trusted again.
                self.cache.clear();
                Reply::Panic(panic_message(payload.as_ref()))
            }
        }
    }

    fn dispatch(&mut self, request: Request) -> Reply {
        match request {
            Request::Check { source } => match self.load(&source, Duration::from_secs(3600)) {
                Ok((_, package)) => Reply::Checked { package },
                Err(reply) => reply,
            },
            Request::Test { source, tests, budget_ms } => {
                let deadline = Instant::now() + Duration::from_millis(budget_ms);
                let (engine, package) = match self.load(&source, Duration::from_millis(budget_ms)) {
                    Ok(loaded) => loaded,
                    Err(reply) => return reply,
                };
                let mut failed = Vec::new();
                for test in &tests {
                    // One budget for all tests together: each gets what is left of it.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Reply::Timeout(format!("the policy's tests exceeded their {budget_ms} ms budget"));
                    }
                    // A test of another module is named by its whole path (`data.<package>.<name>`).
                    let (package, name) = match test.strip_prefix("data.").and_then(|p| p.rsplit_once('.')) {
                        Some((other, name)) => (other, name),
                        None => (package.as_str(), test.as_str()),
                    };
                    match eval(&engine, package, Some(name), regorus::Value::Undefined, left) {
                        Reply::Value(Some(Value::Bool(true))) => {}
                        Reply::Value(_) => failed.push(test.clone()),
                        Reply::Timeout(_) => {
                            return Reply::Timeout(format!("the policy's tests exceeded their {budget_ms} ms budget (at {test})"))
                        }
                        Reply::Evaluation(e) => failed.push(format!("{test} ({})", crate::adapters::engine::EngineError::Evaluation(e))),
                        other => return other,
                    }
                }
                if failed.is_empty() {
                    Reply::TestsPassed
                } else {
                    Reply::TestsFailed(failed)
                }
            }
            Request::Evaluate { key, source, rule, input, budget_ms } => {
                let budget = Duration::from_millis(budget_ms);
                match self.prepared(key, source, budget) {
                    Ok((engine, package)) => eval(engine, package, rule.as_deref(), input_value(input), budget),
                    Err(reply) => reply,
                }
            }
            Request::EvaluateMany { key, source, items, budget_ms } => {
                let budget = Duration::from_millis(budget_ms);
                let (engine, package) = match self.prepared(key, source, budget) {
                    Ok(found) => found,
                    Err(reply) => return reply,
                };
                // One clone for the batch, each item on its own budget; a panic answers for
                // its item only, and the clone it may have left half-changed is replaced.
                let mut e = engine.clone();
                let mut replies = Vec::with_capacity(items.len());
                for super::Item { rule, input } in items {
                    let input = input_value(input);
                    match catch_unwind(AssertUnwindSafe(|| eval_on(&mut e, package, rule.as_deref(), input, budget))) {
                        Ok(reply) => replies.push(reply),
                        Err(payload) => {
                            replies.push(Reply::Panic(panic_message(payload.as_ref())));
                            e = engine.clone();
                        }
                    }
                }
                Reply::Values(replies)
            }
        }
    }

    /// The prepared version of `key`: from the cache, or compiled from `source` (and
    /// cached); [`Reply::NeedSource`] when neither has it.
    fn prepared(&mut self, key: String, source: Option<PolicySource>, budget: Duration) -> Result<(&regorus::Engine, &String), Reply> {
        match self.cache.iter().position(|(k, ..)| *k == key) {
            Some(i) => {
                let entry = self.cache.remove(i).ok_or(Reply::NeedSource)?;
                self.cache.push_back(entry);
            }
            None => {
                let source = source.ok_or(Reply::NeedSource)?;
                let (engine, package) = self.load(&source, budget)?;
                self.remember(key, package, engine, source.size());
            }
        }
        self.cache.back().map(|(_, package, engine, _)| (engine, package)).ok_or(Reply::NeedSource)
    }

    fn remember(&mut self, key: String, package: String, engine: regorus::Engine, len: usize) {
        self.cache.push_back((key, package, engine, len));
        while self.cache.len() > self.entries
            || (self.cache.len() > 1 && self.cache.iter().map(|e| e.3).sum::<usize>() > CACHE_SOURCE_BYTES)
        {
            self.cache.pop_front();
        }
    }
}

/// The worker's main loop. `memory_mb` caps the address space before any request is read.
pub fn run(memory_mb: u64, cache_entries: usize) -> ExitCode {
    let bytes = memory_mb.saturating_mul(1024 * 1024);
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes) {
        eprintln!("engine-worker: cannot cap memory: {e}");
        return ExitCode::FAILURE;
    }
    // Panics are answered as replies; the default hook would only add noise to the log.
    std::panic::set_hook(Box::new(|_| {}));
    let mut session = Session::new(cache_entries);
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    if let Err(e) = write_frame(&mut output, &Reply::Ready) {
        eprintln!("engine-worker: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        let frame = match read_frame(&mut input) {
            Ok(Some(frame)) => frame,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("engine-worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        let reply = match serde_json::from_slice::<Request>(&frame) {
            Ok(request) => session.handle(request),
            Err(e) => Reply::Evaluation(format!("malformed request: {e}")),
        };
        if let Err(e) = write_frame(&mut output, &reply) {
            eprintln!("engine-worker: {e}");
            return ExitCode::FAILURE;
        }
    }
}
