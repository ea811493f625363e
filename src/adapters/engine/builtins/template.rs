//! Template strings (`$"…{expr}…"` and `` $`…{expr}…` ``), which regorus 0.14 does not
//! parse, rewritten before parsing as OPA's compiler rewrites them: a call of
//! `internal.template_string` on the literal parts and, for each expression, the set of its
//! values (`{v | v = expr}`, empty when it is undefined). The builtin joins them as OPA's
//! does: strings as they are, other values in Rego syntax, `<undefined>` for an undefined
//! expression, an error for one with several values. Rows do not move.

use std::borrow::Cow;

use regorus::Value;

/// The builtin: `internal.template_string(parts)`.
pub fn template_string(args: &[Value]) -> Result<Value, String> {
    let Some(Value::Array(parts)) = args.first() else { return Err("template-string: not an array".into()) };
    let mut out = String::new();
    for part in parts.iter() {
        match part {
            Value::String(s) => out.push_str(s),
            Value::Number(_) | Value::Bool(_) | Value::Null => out.push_str(&rego(part)),
            Value::Set(values) => match values.len() {
                0 => out.push_str("<undefined>"),
                1 => match values.iter().next() {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v) => out.push_str(&rego(v)),
                    None => {}
                },
                _ => return Err("template-strings must not produce multiple outputs".into()),
            },
            _ => return Err("template-string: illegal argument type".into()),
        }
    }
    Ok(Value::from(out))
}

/// A value as OPA's `ast.Value.String()` writes it.
fn rego(v: &Value) -> String {
    fn join<'a>(items: impl Iterator<Item = String> + 'a) -> String {
        items.collect::<Vec<_>>().join(", ")
    }
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.format_decimal(),
        Value::String(s) => quote(s),
        Value::Array(items) => format!("[{}]", join(items.iter().map(rego))),
        Value::Set(items) if items.is_empty() => "set()".into(),
        Value::Set(items) => format!("{{{}}}", join(items.iter().map(rego))),
        Value::Object(map) => format!("{{{}}}", join(map.iter().map(|(k, v)| format!("{}: {}", rego(k), rego(v))))),
        Value::Undefined => "undefined".into(),
    }
}

/// Go's `strconv.Quote`.
fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Template strings nest at most this deep.
const MAX_DEPTH: usize = 16;

/// Rewrites every template string of `src` (see the module's documentation). A template
/// string this cannot read is left as it is, for regorus to refuse.
pub fn rewrite(src: &str) -> Cow<'_, str> {
    if !src.contains("$\"") && !src.contains("$`") {
        return Cow::Borrowed(src);
    }
    let mut counter = 0usize;
    match rewrite_code(src, 0, &mut counter, None) {
        Some((out, _)) => Cow::Owned(out),
        None => Cow::Borrowed(src),
    }
}

/// Copies code from `at`, rewriting template strings, up to the end of `src` or (with
/// `until_brace`) the `}` that closes an expression; returns the copy and where it stopped.
fn rewrite_code(src: &str, mut at: usize, counter: &mut usize, until_brace: Option<usize>) -> Option<(String, usize)> {
    let bytes = src.as_bytes();
    let mut out = String::new();
    let mut depth = 0usize;
    // The brackets open at the top level: a template string inside parentheses outside any
    // braces is in a rule's head (`f($"…") := …`), which is not rewritten.
    let mut open: Vec<u8> = Vec::new();
    while at < bytes.len() {
        let c = bytes[at];
        match c {
            b'#' => {
                let end = src[at..].find('\n').map_or(src.len(), |e| at + e);
                out.push_str(&src[at..end]);
                at = end;
            }
            b'"' => {
                let end = string_end(src, at)?;
                out.push_str(&src[at..end]);
                at = end;
            }
            b'`' => {
                let end = src[at + 1..].find('`').map(|e| at + 1 + e + 1)?;
                out.push_str(&src[at..end]);
                at = end;
            }
            b'$' if matches!(bytes.get(at + 1), Some(b'"' | b'`')) => {
                if until_brace.is_none() && open.contains(&b'(') && !open.contains(&b'{') {
                    return None;
                }
                let level = until_brace.map_or(0, |d| d + 1);
                if level >= MAX_DEPTH {
                    return None;
                }
                let (call, end) = template(src, at, counter, level)?;
                out.push_str(&call);
                at = end;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                open.push(c);
                out.push(c as char);
                at += 1;
            }
            b'}' if until_brace.is_some() && depth == 0 => return Some((out, at)),
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                open.pop();
                out.push(c as char);
                at += 1;
            }
            _ => {
                let len = src[at..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&src[at..at + len]);
                at += len;
            }
        }
    }
    until_brace.is_none().then_some((out, at))
}

/// Where the `"…"` string starting at `at` ends (after its closing quote).
fn string_end(src: &str, at: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// The template string whose `$` is at `at`, as a call; and where it ends.
fn template(src: &str, at: usize, counter: &mut usize, level: usize) -> Option<(String, usize)> {
    let bytes = src.as_bytes();
    let quote = bytes[at + 1];
    let mut parts: Vec<String> = Vec::new();
    let mut literal = String::new();
    let mut i = at + 2;
    let flush = |literal: &mut String, parts: &mut Vec<String>| {
        if !literal.is_empty() {
            let q = quote as char;
            parts.push(format!("{q}{literal}{q}"));
            literal.clear();
        }
    };
    loop {
        let c = *bytes.get(i)?;
        match c {
            b'\\' if bytes.get(i + 1) == Some(&b'{') => {
                literal.push('{');
                i += 2;
            }
            b'\\' if quote == b'"' => {
                let next = src[i + 1..].chars().next()?;
                literal.push('\\');
                literal.push(next);
                i += 1 + next.len_utf8();
            }
            b'\n' if quote == b'"' => return None,
            _ if c == quote => break,
            b'{' => {
                flush(&mut literal, &mut parts);
                let (expr, close) = rewrite_code(src, i + 1, counter, Some(level))?;
                if expr.trim().is_empty() {
                    return None;
                }
                let var = format!("__aumos_template_{}", *counter);
                *counter += 1;
                parts.push(format!("{{{var} | {var} = {expr}}}"));
                i = close + 1;
            }
            _ => {
                let len = src[i..].chars().next().map_or(1, char::len_utf8);
                literal.push_str(&src[i..i + len]);
                i += len;
            }
        }
    }
    flush(&mut literal, &mut parts);
    Some((format!("internal.template_string([{}])", parts.join(", ")), i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_strings_become_calls_on_their_parts_and_rows_stay() {
        assert_eq!(rewrite("p := 1 # $\"{x}\"\n"), "p := 1 # $\"{x}\"\n");
        assert_eq!(rewrite("p := $\"a\\{b} {x} \\\"{ {1} }\"\n"), "p := internal.template_string([\"a{b} \", {__aumos_template_0 | __aumos_template_0 = x}, \" \\\"\", {__aumos_template_1 | __aumos_template_1 =  {1} }])\n");
        assert_eq!(
            rewrite("p := $`a\n{x}`\nq := 1\n"),
            "p := internal.template_string([`a\n`, {__aumos_template_0 | __aumos_template_0 = x}])\nq := 1\n"
        );
        assert_eq!(rewrite("p := $\"{$\"{a}\"}\""), "p := internal.template_string([{__aumos_template_1 | __aumos_template_1 = internal.template_string([{__aumos_template_0 | __aumos_template_0 = a}])}])");
        assert_eq!(rewrite("p := $\"{\"}\"}\""), "p := internal.template_string([{__aumos_template_0 | __aumos_template_0 = \"}\"}])");
        assert_eq!(rewrite("p := $\"{x\n\""), "p := $\"{x\n\"", "unreadable: left for regorus to refuse");
        assert_eq!(rewrite("f($\"{x}\") := 1\n"), "f($\"{x}\") := 1\n", "in a head: left for regorus to refuse");
        assert_ne!(rewrite("p if { f($\"{x}\") }\n"), "p if { f($\"{x}\") }\n");
    }

    #[test]
    fn parts_join_as_opa_prints_them() {
        let set = |v: Vec<Value>| Value::from(v.into_iter().collect::<std::collections::BTreeSet<_>>());
        let parts = Value::from(vec![
            Value::from("a "),
            set(vec![Value::from("s")]),
            set(vec![]),
            set(vec![Value::from(serde_json::json!({"k": [1, "x\n", null], "e": {}}))]),
            set(vec![set(vec![])]),
        ]);
        assert_eq!(template_string(&[parts]), Ok(Value::from("a s<undefined>{\"e\": {}, \"k\": [1, \"x\\n\", null]}set()")));
        assert!(template_string(&[Value::from(vec![set(vec![Value::from(1), Value::from(2)])])]).is_err());
    }
}
