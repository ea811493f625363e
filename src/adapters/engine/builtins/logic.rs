//! The logical operators `and` and `or` (`import future.keywords.and`/`or`), which regorus
//! 0.14 does not parse, rewritten before parsing as OPA evaluates them: each operand is a
//! body tested for a solution, in its own scope, with no bindings leaving it; `and` binds
//! tighter than `or`; both short-circuit; `with` at the end of the statement applies to the
//! whole expression. A statement `E` becomes `D(E) != []`, where `D(x)` is a comprehension
//! that is non-empty when `x` holds:
//!
//! - an operand `x`: `[1 | x]`; an explicit body `{ … }`: `[1 | …]`;
//! - `a and b`: `[1 | D(a) != []; D(b) != []]`;
//! - `a or b`: `[1 | l := D(a); r := [1 | l == []; D(b) != []]; count(l) + count(r) > 0]`;
//! - `not (a)`: `[1 | D(a) == []]`.
//!
//! Anything this does not recognise (an operator inside a call or a literal, an assignment
//! in an implicit operand, …) is left as it is, for regorus to refuse. Rows do not move
//! past the statement.

use std::borrow::Cow;

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether the keyword `word` stands at `at` in `code` (not part of a name or reference).
fn keyword(code: &[u8], at: usize, word: &str) -> bool {
    code[at..].starts_with(word.as_bytes())
        && (at == 0 || !(ident(code[at - 1]) || code[at - 1] == b'.'))
        && code.get(at + word.len()).is_none_or(|c| !ident(*c))
}

enum Node {
    Simple(usize, usize),
    Body(usize, usize),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

/// Offsets of the keyword `word` at bracket depth 0 in `[s, e)`.
fn split(code: &[u8], s: usize, e: usize, word: &str) -> Vec<usize> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    let mut i = s;
    while i < e {
        match code[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 && keyword(code, i, word) => {
                out.push(i);
                i += word.len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn trim(code: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && code[s].is_ascii_whitespace() {
        s += 1;
    }
    while e > s && code[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    (s, e)
}

/// Where the bracket opening at `open` closes, within `e`.
fn close_of(code: &[u8], open: usize, e: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in code.iter().enumerate().take(e).skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Groups and negations nest at most this deep (as regorus's own expression depth).
const MAX_DEPTH: usize = 32;

fn parse(code: &[u8], s: usize, e: usize, word: &str, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (s, e) = trim(code, s, e);
    let (next, make): (&str, fn(Vec<Node>) -> Node) = if word == "or" { ("and", Node::Or) } else { ("", Node::And) };
    let cuts = split(code, s, e, word);
    // Each `or` nests the rewrite once more: a long chain would grow it quadratically.
    if cuts.len() >= MAX_DEPTH {
        return None;
    }
    if cuts.is_empty() {
        return if next.is_empty() { unary(code, s, e, depth) } else { parse(code, s, e, next, depth) };
    }
    let mut parts = Vec::new();
    let mut from = s;
    for cut in cuts.into_iter().chain(std::iter::once(e)) {
        let part = if next.is_empty() { unary(code, from, cut, depth)? } else { parse(code, from, cut, next, depth)? };
        parts.push(part);
        from = cut + word.len();
    }
    Some(make(parts))
}

fn unary(code: &[u8], s: usize, e: usize, depth: usize) -> Option<Node> {
    let (s, e) = trim(code, s, e);
    if s >= e {
        return None;
    }
    if keyword(code, s, "not") {
        let (gs, ge) = trim(code, s + 3, e);
        if code.get(gs) == Some(&b'(') && close_of(code, gs, e) == Some(ge - 1) {
            return Some(Node::Not(Box::new(parse(code, gs + 1, ge - 1, "or", depth + 1)?)));
        }
    }
    match code[s] {
        b'(' if close_of(code, s, e) == Some(e - 1) => parse(code, s + 1, e - 1, "or", depth + 1),
        // An explicit body spans the whole operand; braces that do not are a value, which
        // OPA refuses as an operand.
        b'{' if close_of(code, s, e) == Some(e - 1) => Some(Node::Body(s + 1, e - 1)),
        b'{' => None,
        _ => {
            let text = &code[s..e];
            // An assignment, a declaration, or a wildcard (which nothing outside binds): OPA
            // refuses these in an implicit operand, whose variables must be bound outside.
            let assigns = split(code, s, e, ":=").len()
                + split(code, s, e, "some").len()
                + split(code, s, e, "every").len()
                // (a wildcard inside a comprehension is the comprehension's own)
                + (s..e).filter(|&i| !text.contains(&b'|') && keyword(code, i, "_")).count();
            (assigns == 0 && !text.contains(&b'\n') || text.contains(&b'(') || text.contains(&b'[') || text.contains(&b'{'))
                .then_some(Node::Simple(s, e))
                .filter(|_| assigns == 0)
        }
    }
}

fn emit(src: &str, node: &Node, counter: &mut usize, depth: usize, ops: (bool, bool)) -> String {
    match node {
        Node::Simple(s, e) => format!("[1 | {}]", &src[*s..*e]),
        Node::Body(s, e) => format!("[1 | {}]", rewrite_at(&src[*s..*e], depth + 1, ops)),
        Node::Not(x) => format!("[1 | {} == []]", emit(src, x, counter, depth, ops)),
        Node::And(xs) => {
            format!("[1 | {}]", xs.iter().map(|x| format!("{} != []", emit(src, x, counter, depth, ops))).collect::<Vec<_>>().join("; "))
        }
        Node::Or(xs) => {
            let mut acc = emit(src, &xs[0], counter, depth, ops);
            for x in &xs[1..] {
                let n = *counter;
                *counter += 1;
                // Unique across nested bodies, each rewritten with its own counter.
                let (l, r) = (format!("__aumos_or_l{depth}_{n}"), format!("__aumos_or_r{depth}_{n}"));
                acc = format!(
                    "[1 | {l} := {acc}; {r} := [1 | {l} == []; {} != []]; count({l}) + count({r}) > 0]",
                    emit(src, x, counter, depth, ops)
                );
            }
            acc
        }
    }
}

/// The statement around the operator at `op`: `[start, end)`, and where its trailing
/// `with` modifiers begin (`end` when none).
fn statement(code: &[u8], op: usize) -> Option<(usize, usize, usize)> {
    let (mut start, mut depth, mut groups) = (op, 0i32, 0usize);
    while start > 0 {
        let c = code[start - 1];
        match c {
            b')' | b']' | b'}' => depth += 1,
            b'(' if depth == 0 => {
                // A group, not a call's arguments.
                let before = code[..start - 1].iter().rposition(|c| !c.is_ascii_whitespace());
                if before.is_some_and(|b| ident(code[b]) || matches!(code[b], b')' | b']' | b'"' | b'`' | b'.'))
                    && !before.is_some_and(|b| keyword_end(code, b))
                {
                    return None;
                }
                groups += 1;
            }
            b'(' | b'[' | b'{' if depth > 0 => depth -= 1,
            b'{' => break,
            b'[' => return None,
            // Outside the groups crossed, at the statement's own level.
            b';' | b'|' if depth == 0 => break,
            b'\n' if depth == 0 => break,
            _ if depth == 0 && start >= 2 && keyword(code, start - 2, "if") => break,
            _ => {}
        }
        start -= 1;
    }
    let (mut end, mut depth) = (op, 0i32);
    while end < code.len() {
        match code[end] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' if depth == 0 && groups > 0 => groups -= 1,
            b')' | b']' | b'}' if depth == 0 => break,
            b')' | b']' | b'}' => depth -= 1,
            b';' if depth == 0 => break,
            b'\n' if depth == 0 && groups == 0 => {
                // A `with` on the next line continues the statement.
                let rest = &code[end + 1..];
                let skip = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
                if !keyword(code, end + 1 + skip, "with") {
                    break;
                }
            }
            _ => {}
        }
        end += 1;
    }
    if groups != 0 {
        return None;
    }
    let withs = split(code, start, end, "with");
    Some((start, end, withs.first().copied().unwrap_or(end)))
}

/// Whether a keyword (`not`, `if`, …), rather than a name, ends at `b`.
fn keyword_end(code: &[u8], b: usize) -> bool {
    ["not", "if", "and", "or", "else"].iter().any(|w| b + 1 >= w.len() && keyword(code, b + 1 - w.len(), w))
}

/// Whether the module imports the operators (`future.keywords.and`/`or`, or all future
/// keywords); without the import they are not keywords.
fn imported(code: &str) -> (bool, bool) {
    let all = code.lines().any(|l| l.trim() == "import future.keywords");
    (all || code.contains("import future.keywords.and"), all || code.contains("import future.keywords.or"))
}

/// Rewrites every statement with `and` or `or` (see the module's documentation).
pub fn rewrite(src: &str) -> Cow<'_, str> {
    if !src.contains("and") && !src.contains("or") {
        return Cow::Borrowed(src);
    }
    let ops = imported(&super::super::source::code_only(src));
    rewrite_at(src, 0, ops)
}

/// `rewrite` inside `depth` explicit operand bodies (bounded, as groups are).
fn rewrite_at(src: &str, depth: usize, (and, or): (bool, bool)) -> Cow<'_, str> {
    if depth > MAX_DEPTH || (!src.contains("and") && !src.contains("or")) {
        return Cow::Borrowed(src);
    }
    let code_text = super::super::source::code_only(src);
    if !and && !or {
        return Cow::Borrowed(src);
    }
    let code = code_text.as_bytes();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut counter = 0usize;
    let mut i = 0;
    while i < code.len() {
        let word = if and && keyword(code, i, "and") {
            "and"
        } else if or && keyword(code, i, "or") {
            "or"
        } else {
            ""
        };
        if word.is_empty() || code[..i].ends_with(b"keywords.") {
            i += 1;
            continue;
        }
        let Some((start, end, withs)) = statement(code, i) else { return Cow::Borrowed(src) };
        let Some(tree) = parse(code, start, withs, "or", 0) else { return Cow::Borrowed(src) };
        let original = &src[start..end];
        let mut text = format!("{} != []", emit(src, &tree, &mut counter, depth, (and, or)));
        if withs < end {
            text.push(' ');
            text.push_str(src[withs..end].trim());
        }
        let missing = original.matches('\n').count().saturating_sub(text.matches('\n').count());
        text.push_str(&"\n".repeat(missing));
        // A statement found earlier inside one of this statement's explicit bodies is
        // rewritten with it.
        while edits.last().is_some_and(|e| e.0 >= start) {
            edits.pop();
        }
        edits.push((start, end, text));
        i = end.max(i + 1);
    }
    if edits.is_empty() {
        return Cow::Borrowed(src);
    }
    let mut out = src.to_owned();
    for (start, end, text) in edits.into_iter().rev() {
        out.replace_range(start..end, &text);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, input: serde_json::Value) -> regorus::Value {
        let mut e = regorus::Engine::new();
        e.add_policy("p.rego".into(), rewrite(src).into_owned()).unwrap();
        e.set_input(regorus::Value::from(input));
        e.eval_rule("data.t.p".into()).unwrap()
    }

    #[test]
    fn and_binds_tighter_than_or_and_operands_keep_their_own_scope() {
        let src = "package t\nimport future.keywords.and\nimport future.keywords.or\n\np if {\n  input.a and input.b or input.c\n}\n";
        assert_eq!(eval(src, serde_json::json!({"a": true, "c": true})), regorus::Value::from(true));
        assert_eq!(eval(src, serde_json::json!({"a": true})), regorus::Value::Undefined);
        let src = "package t\nimport future.keywords\n\np if not (input.a or input.b)\nq := 1\n";
        assert_eq!(eval(src, serde_json::json!({"a": true})), regorus::Value::Undefined);
        assert_eq!(eval(src, serde_json::json!({"a": false})), regorus::Value::from(true), "a false operand fails");
        assert_eq!(eval(src, serde_json::json!({})), regorus::Value::from(true));
        assert_eq!(rewrite(src).lines().count(), src.lines().count());
        let src = "package t\nimport future.keywords\n\np := x if {\n  x := 2\n  { x := 1; x > 0 } or input.y\n}\n";
        assert_eq!(eval(src, serde_json::json!({})), regorus::Value::from(2));
        let src = "package t\nimport future.keywords\np if {\n  { input.a or input.b } and { input.c or { input.d and input.a } }\n}\n";
        assert_eq!(eval(src, serde_json::json!({"b": true, "d": true, "a": true})), regorus::Value::from(true));
        assert_eq!(eval(src, serde_json::json!({"b": true, "d": true})), regorus::Value::Undefined);
        let src = "package t\nimport future.keywords\n\np if input.x > 0 or input.y > 0 with input as {\"x\": 0, \"y\": 1}\n";
        assert_eq!(eval(src, serde_json::json!({})), regorus::Value::from(true));
    }

    #[test]
    fn what_opa_refuses_or_this_does_not_read_is_left_alone() {
        for src in [
            "package t\nimport future.keywords\np if x := 1 and true\n",
            "package t\nimport future.keywords\np := [1, true or false]\n",
            "package t\nimport future.keywords\np if f(true or false)\n",
            "package t\nimport future.keywords\np if { input.xs[_] > 0 or false }\n",
            "package t\np if input.and or true\n",
        ] {
            assert_eq!(rewrite(src), src);
        }
        let deep = format!("package t\nimport future.keywords\np if {}a or b{}\n", "(".repeat(100_000), ")".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(rewrite(&deep), deep, "too deep: left for regorus to refuse");
        let long = format!("package t\nimport future.keywords\np if {}true\n", "false or ".repeat(50_000));
        assert_eq!(rewrite(&long), long, "too long a chain: left for regorus to refuse");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
