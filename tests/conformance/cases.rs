//! OPA's conformance cases (the YAML files of its topdown test suite), read from the Go
//! module cache where `scripts/services.sh` installed OPA, and turned into what the
//! service can express: a policy version (modules), an input, and a rule to evaluate.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

/// One case as OPA's YAML files write it.
#[derive(Debug, Clone, Deserialize)]
pub struct RawCase {
    pub note: String,
    pub query: String,
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub input_term: Option<String>,
    #[serde(default)]
    pub want_result: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    pub want_error: Option<String>,
    #[serde(default)]
    pub want_error_code: Option<String>,
    #[serde(default)]
    pub strict_error: bool,
    /// OPA's runner sorts the result's top-level array before comparing (a set's order).
    #[serde(default)]
    pub sort_bindings: bool,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    cases: Vec<RawCase>,
}

/// What OPA answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// The value of `x` (`None`: undefined, no binding).
    Value(Option<Value>),
    /// An error; `compile` when OPA's compiler reports it (a `rego_*` code).
    Error { compile: bool, code: String },
}

/// A case the service can express: a policy version, an input, a rule path.
#[derive(Debug, Clone)]
pub struct Case {
    pub note: String,
    pub modules: Vec<String>,
    pub data: Option<Value>,
    /// `None`: the case gives no input (OPA's `input` is undefined).
    pub input: Option<Value>,
    /// The rule path inside the package (`None`: the whole package document).
    pub rule: Option<String>,
    pub want: Want,
    /// Compare a top-level array without regard to order (OPA's `sort_bindings`).
    pub unordered: bool,
}

/// Deliberate exclusions: things the product refuses by design, or questions its API
/// cannot ask. One line per reason.
pub const EXCLUSIONS: &[(&str, &str)] = &[
    ("http.send", "http.send: policies make no network calls (refused on both engines)"),
    ("net.lookup_ip_addr", "net.lookup_ip_addr: DNS lookups are network calls (policies make none)"),
    ("strict", "strict builtin errors: the service evaluates as OPA's REST API does, with strict builtin errors off"),
    ("no-module", "no policy module: the case evaluates a bare query, and a policy version is Rego modules"),
    ("query", "query is not `data.<package>.<rule path> = x`: the evaluate API takes a rule path, not an ad-hoc query"),
    ("input-term", "input given as a Rego term that is not JSON: the evaluate API takes JSON input"),
    ("opa.runtime", "opa.runtime: refused on the OPA engine, where it would expose OPA's environment and API token"),
    ("test.sleep", "test.sleep: a builtin of OPA's own test binary, not of OPA"),
    (
        "data-conflict",
        "data where a rule is: OPA's server refuses to load such a version (\"conflicting rule for data path … found\"), and so do both \
         engines; the case's answer comes from OPA's evaluator, which the suite runs without the server's check",
    ),
];

/// Whether the case's data document holds a value where one of its modules defines a rule
/// (at `package.rule`, or a non-object above it), which OPA's server refuses to load.
fn data_conflict(modules: &[String], data: Option<&Value>) -> bool {
    let Some(data) = data else { return false };
    let Ok(head) = regex::Regex::new(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)\s*(:=|=|if\b|contains\b|\{|\[|\()") else { return false };
    modules.iter().any(|m| {
        let Some(package) = package_of(m) else { return false };
        head.captures_iter(m).filter_map(|c| c.get(1)).filter(|n| !matches!(n.as_str(), "package" | "import" | "default")).any(|name| {
            let path: Vec<&str> = package.split('.').chain(std::iter::once(name.as_str())).collect();
            let mut at = data;
            for (i, key) in path.iter().enumerate() {
                match at {
                    Value::Object(map) => match map.get(*key) {
                        Some(next) => at = next,
                        None => return false,
                    },
                    _ => return i > 0,
                }
            }
            true
        })
    })
}

/// Where the cases are: `<cache>/gopath/pkg/mod/github.com/open-policy-agent/opa@<v>/v1/test/cases/testdata/v1`.
pub fn cases_dir() -> PathBuf {
    let cache = std::env::var("AUMOS_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/aumos-governance"));
    let services = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh")).unwrap_or_default();
    let version = services
        .lines()
        .find_map(|l| l.strip_prefix("OPA_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| "v1.20.2".into());
    cache.join(format!("gopath/pkg/mod/github.com/open-policy-agent/opa@{version}/v1/test/cases/testdata/v1"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every case, in a stable order, with notes made unique (a few repeat across files).
pub fn load(dir: &Path) -> Vec<RawCase> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            match File::deserialize(doc) {
                Ok(f) => cases.extend(f.cases),
                Err(e) => panic!("{}: {e}", file.display()),
            }
        }
    }
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for case in &mut cases {
        let n = seen.entry(case.note.clone()).or_default();
        *n += 1;
        if *n > 1 {
            case.note = format!("{} ({})", case.note, n);
        }
    }
    cases
}

fn package_of(module: &str) -> Option<String> {
    governance_engine::adapters::engine::opa::declared_package(module)
}

/// The case as the service would run it, or the exclusion that applies.
pub fn express(raw: &RawCase) -> Result<Case, &'static str> {
    let source = raw.modules.join("\n");
    if source.contains("http.send") {
        return Err("http.send");
    }
    if source.contains("net.lookup_ip_addr") || raw.query.contains("net.lookup_ip_addr") {
        return Err("net.lookup_ip_addr");
    }
    if source.contains("opa.runtime") {
        return Err("opa.runtime");
    }
    if source.contains("test.sleep(") {
        return Err("test.sleep");
    }
    if raw.strict_error {
        return Err("strict");
    }
    if raw.modules.is_empty() {
        return Err("no-module");
    }
    if data_conflict(&raw.modules, raw.data.as_ref()) {
        return Err("data-conflict");
    }
    let path = raw
        .query
        .trim()
        .strip_suffix(" = x")
        .and_then(|q| q.strip_prefix("data."))
        .filter(|p| p.split('.').all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')))
        .ok_or("query")?;
    // The package the query reads: the longest declared package the path starts with.
    let package = raw
        .modules
        .iter()
        .filter_map(|m| package_of(m))
        .filter(|p| path == p || path.starts_with(&format!("{p}.")))
        .max_by_key(String::len)
        .ok_or("query")?;
    let rule = path.strip_prefix(&package).and_then(|r| r.strip_prefix('.')).map(str::to_owned);
    let input = match (&raw.input, &raw.input_term) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(term)) => Some(serde_json::from_str(term).map_err(|_| "input-term")?),
        (None, None) => None,
    };
    let want = match (&raw.want_result, &raw.want_error_code, &raw.want_error) {
        (Some(rows), _, _) => Want::Value(rows.first().and_then(|r| r.get("x").cloned())),
        (None, code, message) => {
            let code = code.clone().or_else(|| message.clone()).unwrap_or_default();
            Want::Error { compile: code.starts_with("rego_"), code }
        }
    };
    // The main module (the one declaring the queried package) goes first.
    let mut modules = raw.modules.clone();
    if let Some(i) = modules.iter().position(|m| package_of(m).as_deref() == Some(package.as_str())) {
        let main = modules.remove(i);
        modules.insert(0, main);
    }
    let data = raw.data.clone().filter(|d| d.as_object().is_none_or(|o| !o.is_empty()));
    Ok(Case { note: raw.note.clone(), modules, data, input, rule, want, unordered: raw.sort_bindings })
}

/// [`same`], and for an unordered case a top-level array compared as a multiset.
pub fn same_result(want: &Value, got: &Value, unordered: bool) -> bool {
    match (want, got, unordered) {
        (Value::Array(w), Value::Array(g), true) if w.len() == g.len() => {
            let mut left: Vec<&Value> = g.iter().collect();
            w.iter().all(|x| match left.iter().position(|y| same(x, y)) {
                Some(i) => {
                    left.swap_remove(i);
                    true
                }
                None => false,
            })
        }
        _ => same(want, got),
    }
}

/// JSON equality with numbers compared by value (OPA's `1` and `1.0` are one number).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(i), Some(j), _, _) => i == j,
            (_, _, Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}
