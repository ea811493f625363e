//! Static checks on Rego source that the embedded engine would otherwise only discover
//! at run time: calls to functions it does not have (which regorus reports only when the
//! call is reached) and `http.send` (which it would silently leave undefined).

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::CompileError;

static CALL: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\(").ok());
static DEFINITION: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)\s*\(").ok());
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

fn location(src: &str, offset: usize) -> (u32, u32) {
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
    let defined: HashSet<&str> = definition.captures_iter(&code).filter_map(|c| c.get(1).map(|m| m.as_str())).collect();
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
        } else if builtins.is_some_and(|b| !b.contains(name)) {
            errors.push(CompileError { message: format!("unknown or unsupported function {name}"), row: Some(row), col: Some(col) });
        }
    }
    errors
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
        let src = "package a\n\nf(x) := x\n\n# crypto.x509.parse(x) in a comment\nallow if {\n  count(input.xs) > f(1)\n  object.get(input, \"k\", 0) == 0\n  msg := \"io.jwt.decode(t)\"\n  io.jwt.decode(input.t)\n}\n";
        let errs = unsupported_calls(src, Some(&builtins()));
        assert!(unsupported_calls(src, None).is_empty(), "without a builtin list only http.send counts");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("io.jwt.decode"));
        assert_eq!(errs[0].row, Some(10));
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
