//! `walk(x)` as a value, `[path, value] := walk(x)`, which OPA reads as the relation
//! `walk(x, [path, value])` and regorus 0.14 leaves undefined. A statement of a body that
//! assigns or unifies a one-argument `walk` call is rewritten to the relational form before
//! parsing (no row moves); [`values_left`] finds any other one-argument call, which
//! validation refuses rather than answer differently from OPA.

use std::borrow::Cow;

use super::super::source::code_only;
use super::syntax::brackets;

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The one-argument `walk(` calls of `code`: (start, open paren, close paren).
fn calls(code: &str) -> Vec<(usize, usize, usize)> {
    let bytes = code.as_bytes();
    let mut pairs = None;
    let mut out = Vec::new();
    for (at, _) in code.match_indices("walk(") {
        if at > 0 && (ident(bytes[at - 1]) || bytes[at - 1] == b'.') {
            continue;
        }
        let open = at + 4;
        let pairs = pairs.get_or_insert_with(|| brackets(code));
        let Some((close, commas)) = pairs.get(&open) else { continue };
        let trailing = commas.last().is_some_and(|&c| code[c + 1..*close].trim().is_empty());
        if commas.len() == usize::from(trailing) {
            out.push((at, open, *close));
        }
    }
    out
}

/// The offset after the last byte of `code[..end]` that is not a space or a tab.
fn skip_back(bytes: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    end
}

/// Where the term that ends at `end` starts: a bracketed term or an identifier.
fn term_start(code: &str, end: usize, opens: &std::collections::HashMap<usize, usize>) -> Option<usize> {
    let bytes = code.as_bytes();
    let last = *bytes.get(end.checked_sub(1)?)?;
    if matches!(last, b')' | b']' | b'}') {
        return opens.get(&(end - 1)).copied();
    }
    let mut start = end;
    while start > 0 && ident(bytes[start - 1]) {
        start -= 1;
    }
    (start < end && !bytes[start].is_ascii_digit()).then_some(start)
}

/// Rewrites `term := walk(x)` and `term = walk(x)`, as a whole statement of a body, into
/// `walk(x, term)`.
pub fn rewrite(src: &str) -> Cow<'_, str> {
    if !src.contains("walk(") {
        return Cow::Borrowed(src);
    }
    let code = code_only(src);
    let bytes = code.as_bytes();
    let found = calls(&code);
    if found.is_empty() {
        return Cow::Borrowed(src);
    }
    let pairs = brackets(&code);
    let opens: std::collections::HashMap<usize, usize> = pairs.iter().map(|(open, (close, _))| (*close, *open)).collect();
    // How many brackets are open at each offset: a statement of a body or a comprehension
    // is inside one, a rule's head is not (one pass, so hostile modules stay linear).
    let depth: Vec<u32> = bytes
        .iter()
        .scan(0u32, |d, c| {
            let here = *d;
            match c {
                b'(' | b'[' | b'{' => *d = d.saturating_add(1),
                b')' | b']' | b'}' => *d = d.saturating_sub(1),
                _ => {}
            }
            Some(here)
        })
        .collect();
    let inside = |at: usize| depth.get(at).is_some_and(|d| *d > 0);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (at, open, close) in found {
        let op_end = skip_back(bytes, at);
        let op_start = if code[..op_end].ends_with(":=") {
            op_end - 2
        } else if code[..op_end].ends_with('=') && !code[..op_end - 1].ends_with(['=', '!', '<', '>', ':']) {
            op_end - 1
        } else {
            continue;
        };
        let lhs_end = skip_back(bytes, op_start);
        let Some(lhs_start) = term_start(&code, lhs_end, &opens) else { continue };
        let before = skip_back(bytes, lhs_start);
        let starts_statement = before == 0 || matches!(bytes[before - 1], b'\n' | b';' | b'{' | b'|') || code[..before].ends_with(" if");
        let after = close + 1 + code[close + 1..].len() - code[close + 1..].trim_start_matches([' ', '\t']).len();
        let ends_statement = matches!(bytes.get(after), None | Some(b'\n' | b';' | b'}' | b']' | b'\r'));
        if starts_statement && ends_statement && inside(at) {
            edits.push((lhs_start, close + 1, format!("walk({}, {})", &src[open + 1..close], &src[lhs_start..lhs_end])));
        }
    }
    if edits.is_empty() {
        return Cow::Borrowed(src);
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = src.to_owned();
    let mut before = usize::MAX;
    for (from, to, text) in edits {
        // A walk of a walk: the inner one is rewritten, the outer one refused.
        if to <= before {
            out.replace_range(from..to, &text);
            before = from;
        }
    }
    Cow::Owned(out)
}

/// The offsets of one-argument `walk` calls left after [`rewrite`]: regorus would leave
/// them undefined where OPA answers.
pub fn values_left(src: &str) -> Vec<usize> {
    if !src.contains("walk(") {
        return Vec::new();
    }
    calls(&code_only(src)).into_iter().map(|(at, ..)| at).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_assigned_in_a_body_becomes_the_relation_and_other_forms_are_left() {
        let src = "package g\n\np := {path: value |\n\t[path, value] := walk(x)\n\tcount(value) == 2\n}\nq if { pv = walk(input); pv[1] == 1 }\nr := walk(x)\ns if { count(walk(x)) > 0 }\n";
        let out = rewrite(src);
        assert_eq!(
            out,
            "package g\n\np := {path: value |\n\twalk(x, [path, value])\n\tcount(value) == 2\n}\nq if { walk(input, pv); pv[1] == 1 }\nr := walk(x)\ns if { count(walk(x)) > 0 }\n"
        );
        assert_eq!(values_left(&out).len(), 2, "a head's value and a call inside an expression are left: {out}");
        assert_eq!(rewrite("x if walk(a, [p, v])\ny := \"walk(z)\"\n"), "x if walk(a, [p, v])\ny := \"walk(z)\"\n");
        assert!(values_left("x if walk(a, [p, v])\n# walk(z)\ny := my_walk(1)\n").is_empty());
    }

    #[test]
    fn the_rewritten_walk_answers_as_opa_does() {
        let src = "package g\n\nx := {\"a\": [{\"b\": 1}, {\"c\": \"AA\"}]}\n\np := {path: value |\n\t[path, value] := walk(x)\n\tvalue == \"AA\"\n}\n";
        let mut e = regorus::Engine::new();
        e.add_policy("g.rego".into(), rewrite(src).into_owned()).unwrap();
        let got = e.eval_rule("data.g.p".into()).unwrap();
        assert_eq!(got.to_json_str().unwrap().replace([' ', '\n'], ""), r#"{"[\"a\",1,\"c\"]":"AA"}"#.replace(' ', ""));
    }
}
