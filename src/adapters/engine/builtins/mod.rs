//! OPA builtins regorus lacks, or answers differently from OPA (`strings.count`,
//! `numbers.range_step`: an extension is looked up before a builtin), added as regorus
//! extensions: pure functions with a clear OPA specification, each backed by a well-kept
//! crate (RustCrypto hashes, HMAC, keys and signatures, ipnet, base64) or ported from the
//! Go code OPA runs (`regex.globs_match` from glob-intersection, `uri.parse` from
//! `net/url`). One file per family: `array` (`array.flatten`), `crypto` (digests, HMAC),
//! `globs` (`regex.globs_match`), `keys` (`crypto.x509.parse_rsa_private_key`,
//! `crypto.parse_private_keys`), `jwt`, `jwt_verify`, `jose` and `signatures`
//! (`io.jwt.*`), `net`, `numbers` (`numbers.range_step`), `providers`
//! (`providers.aws.sign_req`), `strings`, `uri`; `logic`, `syntax`, `template` and `walk`
//! hold source rewrites. As in OPA with strict builtin errors off (its REST API's
//! default), a builtin that fails makes its expression undefined rather than failing the
//! query.

mod array;
mod crypto;
mod globs;
mod jose;
mod jwt;
mod jwt_verify;
mod keys;
mod logic;
mod net;
mod numbers;
mod providers;
mod signatures;
mod strings;
mod syntax;
mod template;
mod uri;
mod walk;

use regorus::Value;

/// A builtin: its OPA name, its number of arguments, and the function.
type Builtin = (&'static str, u8, fn(&[Value]) -> Option<Value>);

/// A builtin that may also fail the query, where OPA's implementation fails hard.
type Fallible = (&'static str, u8, fn(&[Value]) -> Result<Option<Value>, String>);

const ALL: &[&[Builtin]] = &[
    array::BUILTINS,
    crypto::BUILTINS,
    globs::BUILTINS,
    keys::BUILTINS,
    net::BUILTINS,
    numbers::BUILTINS,
    providers::BUILTINS,
    jwt::BUILTINS,
    strings::BUILTINS,
    uri::BUILTINS,
];

/// The names this module adds (so validation does not take them for missing builtins).
pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().flat_map(|group| group.iter().map(|(name, _, _)| *name)).chain(jwt::FALLIBLE.iter().map(|(name, _, _)| *name))
}

/// Every builtin's name and number of arguments.
fn arities() -> impl Iterator<Item = (&'static str, u8)> {
    ALL.iter().flat_map(|group| group.iter().map(|(name, n, _)| (*name, *n))).chain(jwt::FALLIBLE.iter().map(|(name, n, _)| (*name, *n)))
}

/// The widest line a module may have: OPA has no such limit, and its own cases hold keys,
/// certificates and tokens as single string literals of several thousand columns. (The
/// module's size stays bounded by regorus's limit on file bytes, which this keeps.)
const MAX_COLUMNS: u32 = 1 << 20;

/// Registers every extension on a freshly built engine, and lets its lines be as long as
/// OPA allows.
pub fn register(engine: &mut regorus::Engine) -> Result<(), String> {
    let max_col = std::num::NonZeroU32::new(MAX_COLUMNS).ok_or("no column limit")?;
    engine.set_policy_length_config(regorus::utils::limits::PolicyLengthConfig { max_col, ..Default::default() });
    for (name, nargs, f) in ALL.iter().flat_map(|group| group.iter()) {
        let f = *f;
        engine
            .add_extension((*name).to_owned(), *nargs, Box::new(move |args: Vec<Value>| Ok(f(&args).unwrap_or(Value::Undefined))))
            .map_err(|e| format!("cannot register builtin {name}: {e}"))?;
    }
    for (name, nargs, f) in jwt::FALLIBLE {
        let f = *f;
        engine
            .add_extension(
                (*name).to_owned(),
                *nargs,
                Box::new(move |args: Vec<Value>| Ok(f(&args).map_err(BuiltinError)?.unwrap_or(Value::Undefined))),
            )
            .map_err(|e| format!("cannot register builtin {name}: {e}"))?;
    }
    // What template strings are rewritten into (not a name a policy may call): its error
    // (several values) fails the query, as in OPA.
    engine
        .add_extension(
            "internal.template_string".to_owned(),
            1,
            Box::new(|args: Vec<Value>| Ok(template::template_string(&args).map_err(BuiltinError)?)),
        )
        .map_err(|e| format!("cannot register template strings: {e}"))?;
    Ok(())
}

/// Where a rewritten module still holds a one-argument `walk` call ([`walk::values_left`]).
pub fn walk_values_left(rewritten: &str) -> Vec<usize> {
    walk::values_left(rewritten)
}

/// An error a builtin reports (failing the query rather than leaving it undefined).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BuiltinError(String);

/// The source rewrites that run before regorus parses a module, none of which moves a row:
/// template strings (`$"…{x}…"`) become calls ([`template`]), negated bodies (`not {…}`)
/// become tests that the body has no solution ([`syntax`]), `[path, value] := walk(x)`
/// becomes the relation `walk(x, [path, value])` ([`walk`]), then calls in OPA's
/// out-parameter form, `f(a, b, out)`, become `f(a, b) = out` for these builtins (regorus
/// accepts that form only for its own).
pub fn out_params_assigned(src: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    /// Applies `f` to what the previous rewrites produced.
    fn then<'a>(prev: Cow<'a, str>, f: fn(&str) -> Cow<'_, str>) -> Cow<'a, str> {
        match prev {
            Cow::Borrowed(s) => f(s),
            Cow::Owned(s) => Cow::Owned(f(&s).into_owned()),
        }
    }
    then(then(then(then(template::rewrite(src), syntax::not_bodies), logic::rewrite), walk::rewrite), out_params)
}

/// `f(a, b, out)` as `f(a, b) = out`; the call keeps its row and column.
fn out_params(src: &str) -> std::borrow::Cow<'_, str> {
    let code = super::source::code_only(src);
    let mut pairs = None;
    // (from the last comma, to after the `)`): replaced by `) = out`.
    let mut edits: Vec<(usize, usize)> = Vec::new();
    for (name, nargs) in arities() {
        let pattern = format!("{name}(");
        for (start, _) in code.match_indices(&pattern) {
            if code[..start].chars().next_back().is_some_and(|c| c == '.' || c.is_alphanumeric() || c == '_') {
                continue;
            }
            let open = start + pattern.len() - 1;
            let pairs = pairs.get_or_insert_with(|| syntax::brackets(&code));
            let Some((close, commas)) = pairs.get(&open) else { continue };
            let close = *close;
            // A trailing comma (`f(a, out,)`) separates nothing.
            let trailing = commas.last().is_some_and(|&c| code[c + 1..close].trim().is_empty());
            let commas = &commas[..commas.len() - usize::from(trailing)];
            if commas.len() == usize::from(nargs) {
                if let Some(&last) = commas.last() {
                    edits.push((last, close + 1));
                }
            }
        }
    }
    if edits.is_empty() {
        return std::borrow::Cow::Borrowed(src);
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out_src = src.to_owned();
    // A call whose out-parameter holds another such call overlaps it: the inner one is
    // rewritten, the outer one left for regorus to refuse.
    let mut before = usize::MAX;
    for (from, to) in edits {
        if to <= before {
            let out = src[from + 1..to - 1].trim().trim_end_matches(',').trim_end();
            // The line breaks the call spanned stay, so later rows keep their numbers.
            let breaks = "\n".repeat(src[from..to].matches('\n').count());
            out_src.replace_range(from..to, &format!(") = {out}{breaks}"));
            before = from;
        }
    }
    std::borrow::Cow::Owned(out_src)
}

/// The string argument, or `None` (a type error: the expression is undefined).
fn string(v: &Value) -> Option<&str> {
    v.as_string().ok().map(|s| s.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_extension_registers_once_and_answers_from_a_policy() {
        let mut e = regorus::Engine::new();
        register(&mut e).unwrap();
        e.add_policy("p.rego".into(), "package p\nh := crypto.sha256(\"abc\")\nbad := crypto.sha256(1)\n".into()).unwrap();
        let h = e.eval_rule("data.p.h".into()).unwrap();
        assert_eq!(h, Value::from("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_eq!(e.eval_rule("data.p.bad".into()).unwrap(), Value::Undefined, "a failing builtin is undefined");
        assert!(names().any(|n| n == "net.cidr_merge"));
    }

    #[test]
    fn a_module_may_hold_a_string_literal_wider_than_regorus_allows_by_default() {
        let mut e = regorus::Engine::new();
        register(&mut e).unwrap();
        let long = "k".repeat(5000);
        e.add_policy("p.rego".into(), format!("package p\ns := \"{long}\"\n")).unwrap();
        assert_eq!(e.eval_rule("data.p.s".into()).unwrap(), Value::from(long));
    }

    #[test]
    fn out_parameter_calls_become_assignments_in_place() {
        let src = "package p\nx if {\n\tcrypto.md5(\"a,(b)\", y)\n\ty == 1\n}\nz := crypto.md5(\"c\")\n";
        assert_eq!(out_params_assigned(src), "package p\nx if {\n\tcrypto.md5(\"a,(b)\") = y\n\ty == 1\n}\nz := crypto.md5(\"c\")\n");
        let nested = "package p\nx := crypto.md5(\"a\", crypto.md5(\"b\", y))\n";
        assert_eq!(out_params_assigned(nested), "package p\nx := crypto.md5(\"a\", crypto.md5(\"b\") = y)\n");
        let deep = format!("package p\nx := {}1{}\n", "crypto.md5(".repeat(20_000), ", y)".repeat(20_000));
        let deeper = format!("package p\nx := {}y{}\n", "crypto.md5(\"a\", ".repeat(20_000), ")".repeat(20_000));
        let started = std::time::Instant::now();
        let _ = (out_params_assigned(&deep), out_params_assigned(&deeper));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "linear in the module's size");
        let mut e = regorus::Engine::new();
        register(&mut e).unwrap();
        let src = "package p\nf(x) := y if {\n\tcrypto.md5(\n\t\tx,\n\t\ty,\n\t)\n}\nz := 1\n";
        assert_eq!(out_params_assigned(src), "package p\nf(x) := y if {\n\tcrypto.md5(\n\t\tx) = y\n\n\n}\nz := 1\n", "rows stay");
        let src = "package p\nh contains y if crypto.md5(\"\", y)\n";
        e.add_policy("p.rego".into(), out_params_assigned(src).into_owned()).unwrap();
        assert_eq!(
            e.eval_rule("data.p.h".into()).unwrap(),
            Value::from(vec![Value::from("d41d8cd98f00b204e9800998ecf8427e")].into_iter().collect::<std::collections::BTreeSet<_>>())
        );
    }
}
