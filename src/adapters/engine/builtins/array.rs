//! `array.flatten`: an array whose array elements are spliced in one level deep, as OPA
//! v1.20 defines it (`topdown/array.go`); any other operand is a type error.

use regorus::Value;

use super::Builtin;

pub const BUILTINS: &[Builtin] = &[("array.flatten", 1, flatten)];

fn flatten(a: &[Value]) -> Option<Value> {
    let items = a[0].as_array().ok()?;
    // The result holds exactly the operand's elements' elements: no larger than what the
    // policy already holds.
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Array(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Some(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        Value::from_json_str(s).unwrap()
    }

    #[test]
    fn array_flatten_flattens_one_level_of_nesting_as_opa_does() {
        assert_eq!(flatten(&[json("[]")]), Some(json("[]")));
        assert_eq!(flatten(&[json("[[1, 2], [3, 4], [5]]")]), Some(json("[1, 2, 3, 4, 5]")));
        assert_eq!(flatten(&[json("[[[1], [2, 3, []]], [[4, 5]]]")]), Some(json("[[1], [2, 3, []], [4, 5]]")));
        assert_eq!(
            flatten(&[json(r#"[[1, 2], "string", [3, {"a": "b"}], 4.5, [6, [7, 8]]]"#)]),
            Some(json(r#"[1, 2, "string", 3, {"a": "b"}, 4.5, 6, [7, 8]]"#))
        );
    }

    #[test]
    fn array_flatten_of_anything_but_an_array_is_undefined_as_opa_type_error() {
        assert_eq!(flatten(&[Value::from(42)]), None);
        assert_eq!(flatten(&[json(r#"{"a": [1]}"#)]), None);
        assert_eq!(flatten(&[Value::from("[1]")]), None);
    }
}
