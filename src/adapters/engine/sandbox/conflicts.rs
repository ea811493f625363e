//! Rules where the data document already holds a value. OPA's server refuses to load them
//! ("conflicting rule for data path … found", `ast.CheckPathConflicts` over
//! `storage.NonEmpty`); regorus would let one silently shadow the other. The same check,
//! on a version's modules and its data document, so the embedded engine refuses what OPA
//! refuses.

use regorus::unstable::{Expr, Rule, RuleHead};
use serde_json::Value;

use super::super::CompileError;

/// The leading string keys of a reference (`a.b["c"][x].d` gives `a, b, c`): where OPA's
/// rule tree keeps a rule.
fn ground_path(refr: &Expr) -> Vec<String> {
    let mut parts = Vec::new();
    let mut at = refr;
    loop {
        match at {
            Expr::RefDot { refr, field, .. } => {
                parts.push(field.0.text().to_owned());
                at = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                match index.as_ref() {
                    Expr::String { value, .. } => parts.push(value.as_string().map(|s| s.to_string()).unwrap_or_default()),
                    // A computed key: the ground path ends before it.
                    _ => parts.clear(),
                }
                at = refr;
            }
            Expr::Var { span, .. } => {
                parts.push(span.text().to_owned());
                break;
            }
            _ => return Vec::new(),
        }
    }
    parts.reverse();
    parts
}

/// Whether OPA's `storage.NonEmpty` holds for `path`: the data has a value there, or a
/// prefix of it is a value that is not an object.
fn non_empty(data: &Value, path: &[String]) -> bool {
    let mut at = data;
    for (i, key) in path.iter().enumerate() {
        match at {
            Value::Object(map) => match map.get(key) {
                Some(next) => at = next,
                None => return false,
            },
            _ => return i > 0,
        }
    }
    true
}

/// Every rule of the loaded modules whose path the data document already holds: (module
/// index, error at the rule).
pub fn data_conflicts(engine: &mut regorus::Engine, data: &Value) -> Vec<(usize, CompileError)> {
    let mut out = Vec::new();
    for (i, module) in engine.get_modules().iter().enumerate() {
        let mut package = ground_path(&module.package.refr);
        if package.first().is_some_and(|head| head == "data") {
            package.remove(0);
        }
        for rule in &module.policy {
            let (span, refr) = match rule.as_ref() {
                Rule::Spec { span, head, .. } => match head {
                    RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } | RuleHead::Func { refr, .. } => (span, refr),
                },
                Rule::Default { span, refr, .. } => (span, refr),
            };
            let path: Vec<String> = package.iter().cloned().chain(ground_path(refr)).collect();
            if path.len() > package.len() && non_empty(data, &path) {
                out.push((
                    i,
                    CompileError {
                        message: format!("conflicting rule for data path {} found", path.join("/")),
                        row: Some(span.line),
                        col: Some(span.col),
                    },
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conflicts(rego: &str, data: Value) -> Vec<String> {
        let mut e = regorus::Engine::new();
        e.add_policy("m.rego".into(), rego.into()).unwrap();
        data_conflicts(&mut e, &data).into_iter().map(|(_, e)| e.message).collect()
    }

    #[test]
    fn a_rule_where_the_data_holds_a_value_conflicts_as_in_opa() {
        let rego = "package a.b\n\nk := \"bar\"\nf(x) := x\nset contains 1\nq[x] := 1 if x := \"y\"\nr.s := 2\n";
        assert_eq!(conflicts(rego, json!({"a": {"b": {"k": "foo"}}})), ["conflicting rule for data path a/b/k found"]);
        assert_eq!(
            conflicts(rego, json!({"a": {"b": {"k": {}}}})),
            ["conflicting rule for data path a/b/k found"],
            "an empty object is a value"
        );
        assert_eq!(conflicts(rego, json!({"a": "scalar"})).len(), 5, "a value above every rule");
        assert!(conflicts(rego, json!({"a": {"b": {"r": {"t": 1}}}})).is_empty(), "r.t is not r.s");
        assert_eq!(
            conflicts(rego, json!({"a": {"b": {"q": 1, "f": 2}}})).len(),
            2,
            "a rule with a computed key sits at its ground path; functions are rules"
        );
        assert!(conflicts(rego, json!({"a": {"b": {"other": 1}}, "c": 1})).is_empty());
    }
}
