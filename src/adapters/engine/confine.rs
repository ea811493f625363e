//! How a policy version is confined on OPA, where every tenant's modules share one data
//! tree: each version gets a namespace (`aumos_policies.p<policy>_v<n>`), its packages move
//! under it and its `data` references are rewritten into it ([`confined`]), and its data
//! document is put there. [`stub`] lets modules that call each other's functions be
//! uploaded one at a time, as OPA's REST API requires.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::opa::{MODULE_PREFIX, SCRATCH_PREFIX};
use super::{CompileError, EngineError, PolicySource};

static PACKAGE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?m)^([ \t]*)package[ \t]+([^\s#]+)").ok());

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
pub(super) fn namespaced(rego: &str, prefix: &str) -> Option<String> {
    let re = PACKAGE.as_ref()?;
    let code = super::source::code_only(rego);
    let caps = re.captures(&code)?;
    let whole = caps.get(0)?;
    let package = caps.get(2)?.as_str().trim_start_matches("data.");
    Some(format!("{}{}package {prefix}.{package}{}", &rego[..whole.start()], caps.get(1)?.as_str(), &rego[whole.end()..]))
}

/// Confines a module to its version's namespace: its package moves under `prefix` (as
/// [`namespaced`]) and every reference to `data` becomes one to `data.<prefix>`, so the
/// module reads its own version's modules and data document and nothing else. (A `data`
/// that this token scan cannot see, e.g. inside a template string, is caught by the check
/// on OPA's own parse of the result.) Rows stay; columns after a `data` on its line shift.
pub fn confined(rego: &str, prefix: &str) -> Option<String> {
    let body = namespaced(rego, prefix)?;
    let code = code_with_templates(&body, 0);
    let glued = |c: Option<char>| c.is_some_and(|c| c == '_' || c.is_alphanumeric());
    let mut out = String::with_capacity(body.len() + 64);
    let mut last = 0;
    for (at, _) in code.match_indices("data") {
        let before = code[..at].chars().next_back();
        if glued(before) || before == Some('.') || glued(code[at + 4..].chars().next()) {
            continue;
        }
        out.push_str(&body[last..at + 4]);
        out.push('.');
        out.push_str(prefix);
        last = at + 4;
    }
    out.push_str(&body[last..]);
    Some(metadata_paths_unconfined(out, prefix))
}

/// `rego.metadata.chain()` answers each annotation's path, which on OPA now starts with
/// the version's namespace: every call becomes `__aumos_unconfined(rego.metadata.chain())`
/// (the chain is still taken where the author called it), and the module gains that one
/// function, which drops the namespace's segments from each path. Rows stay; the module
/// grows by a line and a few bytes per call.
fn metadata_paths_unconfined(rego: String, prefix: &str) -> String {
    const CALL: &str = "rego.metadata.chain(";
    const WRAP: &str = "__aumos_unconfined(";
    if !rego.contains(CALL) {
        return rego;
    }
    let code = code_with_templates(&rego, 0);
    let mut out = String::with_capacity(rego.len() + 256);
    let mut last = 0;
    for (at, _) in code.match_indices(CALL) {
        let glued = code[..at].chars().next_back().is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric());
        let rest = &code[at + CALL.len()..];
        let gap = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if glued || !rest[gap..].starts_with(')') {
            continue;
        }
        let end = at + CALL.len() + gap + 1;
        out.push_str(&rego[last..at]);
        out.push_str(WRAP);
        out.push_str(&rego[at..end]);
        out.push(')');
        last = end;
    }
    if last == 0 {
        return rego;
    }
    out.push_str(&rego[last..]);
    let segments = prefix.split('.').count();
    out.push_str(&format!(
        "\n__aumos_unconfined(chain) := [entry | some link in chain; \
         entry := object.union(link, {{\"path\": array.slice(link.path, {segments}, count(link.path))}})]\n"
    ));
    out
}

/// How deep template strings nested in template expressions are scanned; a `data`
/// deeper down stays blanked here, and the check on OPA's parse refuses it.
const TEMPLATE_DEPTH: usize = 16;

/// `code_only(src)` (the same bytes, comments and strings blanked), except that the
/// expressions inside template strings are code too, at every nesting level down to
/// [`TEMPLATE_DEPTH`].
fn code_with_templates(src: &str, depth: usize) -> String {
    let mut code = super::source::code_only(src);
    if depth < TEMPLATE_DEPTH {
        for r in template_expressions(&code, src) {
            let expression = code_with_templates(&src[r.clone()], depth + 1);
            code.replace_range(r, &expression);
        }
    }
    code
}

/// Byte ranges of the expressions inside template strings (`$"… {expr} …"` and
/// `` $`… {expr} …` ``), which `code_only` blanks with the rest of the string. `code` is
/// `code_only(src)`: the same bytes, comments and strings blanked.
fn template_expressions(code: &str, src: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    // A `$` inside a template already scanned belongs to a nested one, which the caller
    // scans within that template's expression (scanning it here too would be exponential).
    let mut scanned_to = 0;
    for (at, _) in code.match_indices('$') {
        if at < scanned_to {
            continue;
        }
        let Some(&quote) = bytes.get(at + 1).filter(|q| **q == b'"' || **q == b'`') else { continue };
        let mut i = at + 2;
        while i < bytes.len() && bytes[i] != quote {
            match bytes[i] {
                b'\\' if quote == b'"' => i += 2,
                b'{' => {
                    let start = i + 1;
                    let (mut depth, mut in_string) = (1usize, false);
                    i += 1;
                    while i < bytes.len() && depth > 0 {
                        match bytes[i] {
                            b'\\' if in_string => i += 1,
                            b'"' => in_string = !in_string,
                            b'{' if !in_string => depth += 1,
                            b'}' if !in_string => depth -= 1,
                            _ => {}
                        }
                        i += 1;
                    }
                    if depth == 0 && src.is_char_boundary(start) && src.is_char_boundary(i - 1) {
                        out.push(start..i - 1);
                    }
                }
                _ => i += 1,
            }
        }
        scanned_to = i;
    }
    out
}

/// A compile error in a further module names it.
pub(super) fn in_module(index: usize, e: EngineError) -> EngineError {
    match e {
        EngineError::Compile(errors) => EngineError::Compile(PolicySource::errors_in(index, errors)),
        other => other,
    }
}

pub(super) fn no_package(index: usize) -> EngineError {
    in_module(index, EngineError::Compile(vec![CompileError { message: "no package declaration".into(), row: None, col: None }]))
}

/// A version as uploaded to OPA: each module confined to the version's namespace.
#[derive(Debug, Clone)]
pub(super) struct Confined {
    /// The namespace (`aumos_policies.p<id>_v<n>`, or a scratch one).
    pub(super) prefix: String,
    /// The main module's package, inside the namespace.
    pub(super) package: String,
    /// Module ids, in the order of the version's modules.
    pub(super) ids: Vec<String>,
    /// The modules' confined sources (the main one carries the loaded marker when prepared).
    pub(super) bodies: Vec<String>,
    pub(super) data: Option<Value>,
}

/// The most `rego.metadata.chain()` and `rego.metadata.rule()` calls a version may hold on
/// OPA: OPA's compile time grows faster than linearly in them (measured on OPA v1.20.2:
/// 100 calls 0.08 s, 300 calls 1.9 s, 1,000 calls over 60 s), and one compile holds every
/// tenant's uploads back, so the limit is checked before anything is sent.
pub(super) const MAX_METADATA_CALLS: usize = 8;

/// Refuses a version that calls `rego.metadata.*` more than [`MAX_METADATA_CALLS`] times,
/// locating the first call over the limit.
fn metadata_calls_within_limit(source: &PolicySource) -> Result<(), EngineError> {
    let mut seen = 0;
    for (i, rego) in source.modules.iter().enumerate() {
        if !rego.contains("rego.metadata.") {
            continue;
        }
        let code = super::source::code_only(rego);
        for (at, _) in code.match_indices("rego.metadata.") {
            let rest = &code[at + "rego.metadata.".len()..];
            if !(rest.starts_with("chain") || rest.starts_with("rule")) {
                continue;
            }
            seen += 1;
            if seen > MAX_METADATA_CALLS {
                let (row, col) = super::source::location(rego, at);
                let message = format!(
                    "more than {MAX_METADATA_CALLS} calls to rego.metadata.chain or rego.metadata.rule in one version: \
                     OPA's compile time grows faster than their number"
                );
                return Err(in_module(i, EngineError::Compile(vec![CompileError { message, row: Some(row), col: Some(col) }])));
            }
        }
    }
    Ok(())
}

impl Confined {
    pub(super) fn new(source: &PolicySource, prefix: String, ids: Vec<String>) -> Result<Self, EngineError> {
        metadata_calls_within_limit(source)?;
        let mut bodies = Vec::with_capacity(source.modules.len());
        for (i, rego) in source.modules.iter().enumerate() {
            bodies.push(confined(rego, &prefix).ok_or_else(|| no_package(i))?);
        }
        let package = declared_package(source.main()).ok_or_else(|| no_package(0))?;
        Ok(Self { prefix, package, ids, bodies, data: source.data.clone() })
    }
}

/// The data document that goes with a module id, when it is a version's main module:
/// `aumos/<id>/v<n>` → `aumos_policies/p<id>_v<n>`, `aumos/scratch/<id>` → `aumos_scratch/p<id>_v0`.
pub(super) fn data_document_of(module_id: &str) -> Option<String> {
    if let Some(id) = module_id.strip_prefix(SCRATCH_PREFIX) {
        return (!id.contains('/')).then(|| format!("aumos_scratch/p{id}_v0"));
    }
    let (id, version) = module_id.strip_prefix(MODULE_PREFIX)?.split_once('/')?;
    let n = version.strip_prefix('v')?;
    (n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty()).then(|| format!("aumos_policies/p{id}_v{n}"))
}

static FUNCTION_HEAD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?m)^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\(").ok());

/// A stand-in for a confined module: its package, and each function it defines (name and
/// arity) with a body that never holds and a value of any type. Uploaded in place of
/// modules that call each other's functions, it lets each real module compile against the
/// others' functions; each real module then replaces its stub. `None` when the module
/// defines no function (a stub would not help).
pub(super) fn stub(body: &str) -> Option<String> {
    let code = super::source::code_only(body);
    let package = PACKAGE.as_ref()?.captures(&code)?.get(0)?;
    let mut functions = BTreeSet::new();
    for caps in FUNCTION_HEAD.as_ref()?.captures_iter(&code) {
        let (Some(name), Some(whole)) = (caps.get(1), caps.get(0)) else { continue };
        if matches!(name.as_str(), "package" | "import" | "default" | "not" | "some" | "every") {
            continue;
        }
        if let Some(arity) = arity(&code[whole.end()..]) {
            functions.insert((name.as_str().to_owned(), arity));
        }
    }
    if functions.is_empty() {
        return None;
    }
    let mut out = format!("{}\n", body[package.start()..package.end()].trim());
    for (name, arity) in functions {
        let args = vec!["_"; arity].join(", ");
        out.push_str(&format!("{name}({args}) := x if {{\n\tx := input.aumos_stub\n\tfalse\n}}\n"));
    }
    Some(out)
}

/// The number of arguments of a call or head whose `(` was just read: top-level commas + 1
/// (0 for `()`); `None` when the parenthesis does not close.
fn arity(after_open: &str) -> Option<usize> {
    let (mut depth, mut commas, mut empty) = (0usize, 0usize, true);
    for c in after_open.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' if depth == 0 => return Some(if empty { 0 } else { commas + 1 }),
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => commas += 1,
            c if !c.is_whitespace() => {}
            _ => continue,
        }
        if !c.is_whitespace() {
            empty = false;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_chains_drop_the_namespace_from_their_paths() {
        let src = "package t\n\np := x if {\n\tx := rego.metadata.chain()\n}\nq := \"rego.metadata.chain()\"\n";
        let out = confined(src, "aumos_policies.pab_v1").unwrap();
        assert!(out.contains("x := __aumos_unconfined(rego.metadata.chain())\n"), "{out}");
        assert!(out.contains("array.slice(link.path, 2, count(link.path))"), "{out}");
        assert!(out.contains("q := \"rego.metadata.chain()\""), "a string stays: {out}");
        let row = |text: &str| text.lines().position(|l| l.contains("x := ")).unwrap();
        assert_eq!(row(&out), row(src), "rows stay: {out}");
        let many = format!("package t\n\np := [{}]\n", vec!["rego.metadata.chain()"; 1000].join(", "));
        assert!(
            confined(&many, "aumos_policies.pab_v1").unwrap().len() < 2 * many.len(),
            "a call grows by a few bytes, not a comprehension"
        );
        assert!(!confined("package t\n\np := my.rego.metadata.chain()\n", "aumos_policies.pab_v1").unwrap().contains("__aumos"));
    }

    #[test]
    fn the_package_moves_under_the_namespace_and_keeps_its_line() {
        let src = "# gate\npackage model.gate\n\nallow if true\n";
        let out = namespaced(src, "aumos_policies.pabc_v2").unwrap();
        assert_eq!(out, "# gate\npackage aumos_policies.pabc_v2.model.gate\n\nallow if true\n");
        assert_eq!(declared_package(src).as_deref(), Some("model.gate"));
    }

    #[test]
    fn every_data_reference_moves_into_the_version_s_namespace_but_fields_strings_and_comments_do_not() {
        let src = "package gate\nimport data.lib\n# data.x in a comment\nallow if data.allowed[input.m]\nall := data\nf := input.data.x\nmsg := \"data.y\"\nmetadata := 1\nd := data[k] with data.z as 1\n";
        let out = confined(src, "aumos_policies.pab_v1").unwrap();
        assert_eq!(
            out,
            "package aumos_policies.pab_v1.gate\nimport data.aumos_policies.pab_v1.lib\n# data.x in a comment\nallow if data.aumos_policies.pab_v1.allowed[input.m]\nall := data.aumos_policies.pab_v1\nf := input.data.x\nmsg := \"data.y\"\nmetadata := 1\nd := data.aumos_policies.pab_v1[k] with data.aumos_policies.pab_v1.z as 1\n"
        );
    }

    #[test]
    fn only_a_version_s_main_module_id_carries_its_data_document() {
        assert_eq!(data_document_of("aumos/abc/v3").as_deref(), Some("aumos_policies/pabc_v3"));
        assert_eq!(data_document_of("aumos/abc/v3/m1"), None);
        assert_eq!(data_document_of("aumos/scratch/abc").as_deref(), Some("aumos_scratch/pabc_v0"));
        assert_eq!(data_document_of("aumos/scratch/abc/m2"), None);
        assert_eq!(data_document_of("other/abc/v3"), None);
    }

    #[test]
    fn a_package_word_in_a_comment_or_string_is_not_the_declaration() {
        let src = "# package fake\npackage real\nmsg := \"package nope\"\n";
        assert_eq!(declared_package(src).as_deref(), Some("real"));
    }

    #[test]
    fn data_references_inside_template_strings_move_too_but_their_text_and_inner_strings_do_not() {
        let src = "package t\nmsg := $\"data {data.a} and {concat(\"data\", [data.b])} \\{data}\"\n";
        assert_eq!(
            confined(src, "ns").unwrap(),
            "package ns.t\nmsg := $\"data {data.ns.a} and {concat(\"data\", [data.ns.b])} \\{data}\"\n"
        );
    }

    #[test]
    fn data_references_in_template_strings_nested_in_template_expressions_move_too() {
        let src = "package t\np := $`{$\"{data.a}\"}\n{$`{$\"{data.b}\"}\nbaz`}`\n";
        assert_eq!(confined(src, "ns").unwrap(), "package ns.t\np := $`{$\"{data.ns.a}\"}\n{$`{$\"{data.ns.b}\"}\nbaz`}`\n");
    }

    #[test]
    fn thousands_of_nested_template_strings_are_confined_without_exponential_rescans_or_deep_recursion() {
        let deep = (0..5000).fold("data.a".to_owned(), |inner, _| format!("$\"{{{inner}}}\""));
        let out = confined(&format!("package t\np := {deep}\n"), "ns").unwrap();
        assert!(out.contains("{data.ns.a}") && !out.contains("{data.a}"), "{out}");
    }

    #[test]
    fn a_stub_defines_each_function_with_its_arity_and_a_body_that_never_holds() {
        let body = "package aumos_policies.pab_v1.ex\n\nfoo(x) := y if {\n  split(x, \"i\", y)\n}\n\nmulti(1, x) := x\nmulti(2, x) := x * 2\nobjects({\"a\": a, \"b\": b}) := [a, b]\np := data.aumos_policies.pab_v1.test.foo(1)\n";
        assert_eq!(
            stub(body).unwrap(),
            "package aumos_policies.pab_v1.ex\nfoo(_) := x if {\n\tx := input.aumos_stub\n\tfalse\n}\nmulti(_, _) := x if {\n\tx := input.aumos_stub\n\tfalse\n}\nobjects(_) := x if {\n\tx := input.aumos_stub\n\tfalse\n}\n"
        );
        assert_eq!(stub("package a\n\nallow if input.ok\n"), None, "no function, no stub");
    }
}
