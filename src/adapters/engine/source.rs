//! Static checks on Rego source that the embedded engine would otherwise only discover
//! at run time: calls to functions it does not have (which regorus reports only when the
//! call is reached) and `http.send` (which it would silently leave undefined).
//!
//! [`forbidden_references`] is the hostile-author check on a parsed module (OPA's own
//! `rego.parse_module` AST): every reference to `data` outside the allowed shared
//! libraries, and every reference to a network or environment builtin in any spelling
//! (call, `with … as`, assignment, import), is refused.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::CompileError;

static CALL: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\(").ok());
/// A function's head at the start of a line, `default` or not, its name a reference
/// (`f`, `p.q.f`, `foo["bar"]`).
static DEFINITION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?m)^(?:default[ \t]+)?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\["[^"\n]*"\])*)[ \t]*\("#).ok()
});
static BRACKETED_KEY: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r#"\["([A-Za-z_][A-Za-z0-9_]*)"\]"#).ok());
static TEST_RULE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?m)^(test_[A-Za-z0-9_]*)\b").ok());

/// Keywords that may be followed by a parenthesis without being calls.
const KEYWORDS: &[&str] =
    &["if", "not", "some", "every", "in", "contains", "with", "as", "else", "default", "import", "package", "or", "and"];

/// Functions regorus evaluates without registering them as builtins.
/// (`set()` is the empty-set literal, not a call.)
const INTRINSICS: &[&str] = &["print", "walk", "trace", "set"];

/// What a character inside a comment or string becomes: ASCII turns into a space (keeping
/// byte offsets), newlines stay (keeping rows), other characters stay (keeping their width).
fn blank(c: char) -> char {
    if c == '\n' || !c.is_ascii() {
        c
    } else {
        ' '
    }
}

/// Blanks out comments and string literals (keeping offsets), so calls inside them are
/// not mistaken for code.
pub fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                out.push(' ');
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    out.push(blank(n));
                    chars.next();
                }
            }
            '"' => {
                out.push('"');
                while let Some(n) = chars.next() {
                    if n == '\\' {
                        out.push(' ');
                        if let Some(e) = chars.next() {
                            out.push(blank(e));
                        }
                        continue;
                    }
                    if n == '"' {
                        out.push('"');
                        break;
                    }
                    out.push(blank(n));
                }
            }
            '`' => {
                out.push('`');
                for n in chars.by_ref() {
                    if n == '`' {
                        out.push('`');
                        break;
                    }
                    out.push(blank(n));
                }
            }
            other => out.push(other),
        }
    }
    out
}

pub fn location(src: &str, offset: usize) -> (u32, u32) {
    let before = &src[..offset];
    let row = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (u32::try_from(row).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
}

/// Every call to a function that is neither a builtin the engine has, nor defined in the
/// module, nor a `data.` reference; and every `http.send`.
/// With `builtins: None` (OPA knows its own builtins) only `http.send` is flagged.
pub fn unsupported_calls(src: &str, builtins: Option<&HashSet<&str>>) -> Vec<CompileError> {
    let (Some(call), Some(definition)) = (CALL.as_ref(), DEFINITION.as_ref()) else { return Vec::new() };
    let code = code_only(src);
    // Names as written in the source (string keys are blank in `code`), `["k"]` read as `.k`.
    let defined: HashSet<String> = definition
        .captures_iter(&code)
        .filter_map(|c| c.get(1).and_then(|m| src.get(m.range())))
        .map(|name| BRACKETED_KEY.as_ref().map_or_else(|| name.to_owned(), |re| re.replace_all(name, ".$1").into_owned()))
        .collect();
    let mut errors = Vec::new();
    for caps in call.captures_iter(&code) {
        let Some(m) = caps.get(1) else { continue };
        let name = m.as_str();
        // A name glued to a preceding `.` or identifier is part of a longer reference.
        if code[..m.start()].chars().next_back().is_some_and(|c| c == '.' || c.is_alphanumeric() || c == '_') {
            continue;
        }
        if KEYWORDS.contains(&name) || defined.contains(name) || name.starts_with("data.") || INTRINSICS.contains(&name) {
            continue;
        }
        let (row, col) = location(src, m.start());
        if name == "http.send" {
            errors.push(CompileError {
                message: "http.send is not allowed: policies must not make network calls (the embedded engine cannot, and would leave the rule undefined)".into(),
                row: Some(row),
                col: Some(col),
            });
        } else if builtins.is_some_and(|b| !b.contains(name)) && !super::builtins::names().any(|n| n == name) {
            let message = if super::opa_builtins::OPA_BUILTINS.contains(&name) {
                format!(
                    "unknown or unsupported function {name}: an OPA builtin the embedded engine does not have; \
                     the OPA engine (AUMOS_GOVERNANCE_POLICY_ENGINE=opa) runs it"
                )
            } else {
                format!("unknown or unsupported function {name}")
            };
            errors.push(CompileError { message, row: Some(row), col: Some(col) });
        }
    }
    errors
}

/// Builtins a tenant's policy may not reference in any form: they reach the network or the
/// OPA process's environment. (OPA's capabilities mark these, with harmless clocks and
/// random numbers, as non-deterministic; a test keeps this list complete against them.)
pub const FORBIDDEN_BUILTINS: &[&str] = &["http.send", "net.lookup_ip_addr", "opa.runtime"];

/// Non-deterministic builtins (per OPA's capabilities) that stay allowed: they read a
/// clock, draw random numbers or sign/verify with keys the policy itself holds.
pub const ALLOWED_NONDETERMINISTIC: &[&str] =
    &["time.now_ns", "rand.intn", "uuid.rfc4122", "io.jwt.decode_verify", "io.jwt.encode_sign", "io.jwt.encode_sign_raw"];

/// Shared Rego libraries every tenant's policy may reference under `data.` (none yet: a
/// library added here must be documented in docs/policy-engines.md).
pub const SHARED_LIBRARIES: &[&str] = &[];

/// The dotted name a reference starts with: its head variable and the string keys that
/// follow it (`http.send` for `http.send(x)`, `data.a` for `data.a[x].b`), and whether
/// a computed key (`data[x]`) follows.
fn ref_name(parts: &[serde_json::Value]) -> (String, bool) {
    let mut name = parts.first().and_then(|h| h["value"].as_str()).unwrap_or_default().to_owned();
    for p in &parts[1.min(parts.len())..] {
        match (p["type"].as_str(), p["value"].as_str()) {
            (Some("string"), Some(key)) => {
                name.push('.');
                name.push_str(key);
            }
            _ => return (name, true),
        }
    }
    (name, false)
}

fn refused(src: &str, needle: &str, message: String) -> CompileError {
    let code = code_only(src);
    let glued = |at: usize| code[..at].chars().next_back().is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric());
    let at = code.match_indices(needle).map(|(at, _)| at).find(|&at| !glued(at));
    let (row, col) = at.map(|at| location(src, at)).map_or((None, None), |(r, c)| (Some(r), Some(c)));
    CompileError { message, row, col }
}

/// Every reference in a parsed module (the JSON of OPA's `rego.parse_module`) that a
/// tenant may not make: `data` except under `shared` libraries (another tenant's module,
/// the service's own), and [`FORBIDDEN_BUILTINS`] however they are spelt. `src` only
/// serves to locate the refusals.
pub fn forbidden_references(ast: &serde_json::Value, src: &str, shared: &[&str]) -> Vec<CompileError> {
    fn walk(v: &serde_json::Value, src: &str, shared: &[&str], out: &mut Vec<CompileError>) {
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, src, shared, out)),
            serde_json::Value::Object(map) => {
                let parts = map.get("value").and_then(|p| p.as_array());
                match (map.get("type").and_then(|t| t.as_str()), parts) {
                    (Some("ref"), Some(parts)) if parts.first().is_some_and(|h| h["type"] == "var") => {
                        let (name, computed) = ref_name(parts);
                        check_name(&name, computed, src, shared, out);
                        parts.iter().skip(1).for_each(|p| walk(p, src, shared, out));
                    }
                    (Some("var"), _) if map.get("value").and_then(|n| n.as_str()) == Some("data") => {
                        check_name("data", true, src, shared, out);
                    }
                    _ => map.iter().filter(|(k, _)| k.as_str() != "package").for_each(|(_, v)| walk(v, src, shared, out)),
                }
            }
            _ => {}
        }
    }
    fn check_name(name: &str, computed: bool, src: &str, shared: &[&str], out: &mut Vec<CompileError>) {
        if let Some(b) = FORBIDDEN_BUILTINS.iter().find(|b| name == **b || name.starts_with(&format!("{b}."))) {
            let message = format!("{b} is not allowed: policies must not reach the network or the engine's environment");
            out.push(refused(src, b, message));
        } else if name == "data" || name.starts_with("data.") {
            let allowed = shared.iter().any(|lib| name == format!("data.{lib}") || name.starts_with(&format!("data.{lib}.")));
            if !allowed {
                let message = format!(
                    "{name}{} is not allowed: a policy may reference only input, its own rules (by name) and shared libraries",
                    if computed { "[…]" } else { "" }
                );
                out.push(refused(src, "data", message));
            }
        }
    }
    let mut out = Vec::new();
    walk(ast, src, shared, &mut out);
    out.dedup();
    out
}

/// Names of the module's `test_` rules (rule heads start at the beginning of a line).
pub fn test_rules(src: &str) -> Vec<String> {
    let Some(re) = TEST_RULE.as_ref() else { return Vec::new() };
    let code = code_only(src);
    let mut names: Vec<String> = re.captures_iter(&code).filter_map(|c| c.get(1).map(|m| m.as_str().to_owned())).collect();
    names.dedup();
    names
}

/// Reads `--> file:row:col` and `error: message` out of a regorus error report.
pub fn parse_regorus_error(text: &str) -> CompileError {
    let mut row = None;
    let mut col = None;
    let mut message = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(loc) = line.strip_prefix("--> ") {
            let mut parts = loc.rsplitn(3, ':');
            col = parts.next().and_then(|c| c.parse().ok());
            row = parts.next().and_then(|r| r.parse().ok());
        } else if let Some(m) = line.strip_prefix("error: ") {
            message = Some(m.to_owned());
        }
    }
    CompileError { message: message.unwrap_or_else(|| text.trim().to_owned()), row, col }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtins() -> HashSet<&'static str> {
        ["count", "startswith", "object.get"].into_iter().collect()
    }

    #[test]
    fn http_send_is_rejected_with_its_location() {
        let errs = unsupported_calls("package a\n\nallow if http.send({}).status == 200\n", Some(&builtins()));
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].row, errs[0].col), (Some(3), Some(10)));
        assert!(errs[0].message.contains("http.send"));
    }

    #[test]
    fn unknown_functions_are_rejected_but_builtins_user_functions_and_strings_are_not() {
        let src = "package a\n\nf(x) := x\n\n# crypto.x509.parse(x) in a comment\nallow if {\n  count(input.xs) > f(1)\n  object.get(input, \"k\", 0) == 0\n  msg := \"io.jwt.decode(t)\"\n  graphql.parse(input.t, {})\n}\n";
        let errs = unsupported_calls(src, Some(&builtins()));
        assert!(unsupported_calls(src, None).is_empty(), "without a builtin list only http.send counts");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("graphql.parse"));
        assert_eq!(errs[0].row, Some(10));
    }

    #[test]
    fn a_missing_function_that_opa_has_is_said_to_run_on_the_opa_engine() {
        let errs = unsupported_calls("package a\n\nx := graphql.is_valid(input.q, input.s)\ny := no.such.fn(1)\n", Some(&builtins()));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("graphql.is_valid") && errs[0].message.contains("the OPA engine"), "{errs:?}");
        assert_eq!(errs[1].message, "unknown or unsupported function no.such.fn");
    }

    fn var(v: &str) -> serde_json::Value {
        serde_json::json!({"type": "var", "value": v})
    }
    fn key(v: &str) -> serde_json::Value {
        serde_json::json!({"type": "string", "value": v})
    }
    fn reference(parts: &[serde_json::Value]) -> serde_json::Value {
        serde_json::json!({"type": "ref", "value": parts})
    }

    #[test]
    fn functions_defined_by_default_or_under_a_reference_head_are_the_module_s_own() {
        let src = "package a\n\ndefault f(_) := 1\ndefault p.q.r.g(x) := 100\np.q.r.g(x) := x if x == 2\nfoo[\"bar\"](x) := x + 1\ncontains.k(x) := x\n\nallow if {\n  f(1) == p.q.r.g(3)\n  foo.bar(2) == contains.k(3)\n  foo.baz(1)\n}\n";
        let errs = unsupported_calls(src, Some(&builtins()));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.ends_with("function foo.baz"), "{errs:?}");
    }

    #[test]
    fn network_builtins_are_refused_as_calls_with_targets_and_values() {
        let src = "package a\nf(x) := x\nallow if f(1) with f as http.send\n";
        let send = reference(&[var("http"), key("send")]);
        let ast = serde_json::json!({"package": {"path": [var("data"), key("a")]}, "rules": [
            {"body": [{"terms": [reference(&[var("f")]), {"type": "number", "value": 1}], "with": [{"target": var("f"), "value": send}]}]},
            {"body": [{"terms": [reference(&[var("assign")]), var("g"), reference(&[var("opa"), key("runtime")])]}]}]});
        let errs = forbidden_references(&ast, src, &[]);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.starts_with("http.send is not allowed"), "{errs:?}");
        assert_eq!((errs[0].row, errs[0].col), (Some(3), Some(25)));
        assert!(errs[1].message.starts_with("opa.runtime is not allowed"));
    }

    #[test]
    fn data_is_refused_whole_computed_or_imported_but_shared_libraries_and_the_package_line_are_not() {
        let src = "package a\nimport data.aumos_policies\n";
        let ast = |r: serde_json::Value| serde_json::json!({"package": {"path": [var("data"), key("a")]}, "imports": [{"path": r}]});
        let refused = |r: serde_json::Value| forbidden_references(&ast(r), src, &["lib.std"]);
        assert!(refused(reference(&[var("data"), key("aumos_policies")]))[0].message.contains("data.aumos_policies is not allowed"));
        assert!(refused(reference(&[var("data"), var("x")]))[0].message.contains("data[…]"));
        assert_eq!(refused(var("data")).len(), 1);
        assert_eq!(refused(reference(&[var("data"), key("lib"), var("x")])).len(), 1, "a computed key before the library is whole");
        assert_eq!(refused(reference(&[var("data"), key("lib.stdx")])).len(), 1);
        assert!(refused(reference(&[var("data"), key("lib"), key("std"), var("x")])).is_empty());
        assert!(refused(reference(&[var("input"), key("x")])).is_empty());
        assert_eq!(refused(reference(&[var("data"), key("a")]))[0].row, Some(2), "located at the first data reference in code");
    }

    #[test]
    fn test_rules_are_found_at_the_start_of_lines() {
        let src = "package a\nallow if true\ntest_allow if allow\ntest_deny if { not allow }\n# test_commented if true\n";
        assert_eq!(test_rules(src), vec!["test_allow", "test_deny"]);
    }

    #[test]
    fn regorus_errors_yield_row_column_and_message() {
        let e = parse_regorus_error(
            "\n--> policy.rego:3:10\n  |\n3 | allow if x > 1\n  |          ^\nerror: use of undefined variable `x` is unsafe",
        );
        assert_eq!((e.row, e.col), (Some(3), Some(10)));
        assert_eq!(e.message, "use of undefined variable `x` is unsafe");
    }
}
