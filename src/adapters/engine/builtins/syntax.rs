//! Explicit negated bodies, `not { … }`, which regorus 0.14 reads as `not` of a set
//! literal: rewritten before parsing as the test OPA makes of them, that the body has no
//! solution (`[1 | …] == []`; the body's variables stay its own, as in OPA). Rows do not
//! move.

use std::borrow::Cow;
use std::collections::HashMap;

/// For every bracket of `code` (strings and comments already blanked), the offset of the
/// bracket that closes it and of the commas directly inside it; found in one pass, so that
/// rewriting stays linear in the module's size however its brackets nest.
pub fn brackets(code: &str) -> HashMap<usize, (usize, Vec<usize>)> {
    let mut open: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut out = HashMap::new();
    for (i, c) in code.bytes().enumerate() {
        match c {
            b'(' | b'[' | b'{' => open.push((i, Vec::new())),
            b')' | b']' | b'}' => {
                if let Some((at, commas)) = open.pop() {
                    out.insert(at, (i, commas));
                }
            }
            b',' => {
                if let Some((_, commas)) = open.last_mut() {
                    commas.push(i);
                }
            }
            _ => {}
        }
    }
    out
}

/// Rewrites every `not {body}` into `[1 | body] == []`.
pub fn not_bodies(src: &str) -> Cow<'_, str> {
    if !src.contains("not") {
        return Cow::Borrowed(src);
    }
    let code = super::super::source::code_only(src);
    let bytes = code.as_bytes();
    let mut pairs = None;
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    for (at, _) in code.match_indices("not") {
        let glued_before = code[..at].chars().next_back().is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric());
        let after = &code[at + 3..];
        let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
        if glued_before || gap == 0 || bytes.get(at + 3 + gap) != Some(&b'{') {
            continue;
        }
        let open = at + 3 + gap;
        let pairs = pairs.get_or_insert_with(|| brackets(&code));
        let Some(&(close, _)) = pairs.get(&open).filter(|(close, _)| bytes[*close] == b'}') else { return Cow::Borrowed(src) };
        edits.push((at, open + 1 - at, "[1 |"));
        edits.push((close, 1, "] == []"));
    }
    if edits.is_empty() {
        return Cow::Borrowed(src);
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = src.to_owned();
    for (at, len, text) in edits {
        out.replace_range(at..at + len, text);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negated_bodies_become_tests_that_the_body_has_no_solution() {
        assert_eq!(not_bodies("p if not {\n  false\n}\n"), "p if [1 |\n  false\n] == []\n");
        assert_eq!(not_bodies("p if {\n not { not { x } } with input as 1\n}"), "p if {\n [1 | [1 | x ] == [] ] == [] with input as 1\n}");
        assert_eq!(not_bodies("p if { not x; s := \"not {\"; y.not {1} }"), "p if { not x; s := \"not {\"; y.not {1} }");
        let mut e = regorus::Engine::new();
        let src = "package t\np if {\n  a = 2\n  not {\n    a := 1\n    a == 3\n  }\n  a == 2\n}\nq if not { some x in [1]; x == 1 }\n";
        e.add_policy("p.rego".into(), not_bodies(src).into_owned()).unwrap();
        assert_eq!(e.eval_rule("data.t.p".into()).unwrap(), regorus::Value::from(true));
        assert_eq!(e.eval_rule("data.t.q".into()).unwrap(), regorus::Value::Undefined);
    }
}
