//! `numbers.range_step`, as OPA v1.20 defines it (`topdown/numbers.go`): integers from `a`
//! towards `b` by a positive integer `step`, with integers of any size where regorus's own
//! builtin takes only 64-bit steps (and panics on a negative one). Operands beyond 128
//! bits are undefined here.

use regorus::Value;

use super::Builtin;

pub const BUILTINS: &[Builtin] = &[("numbers.range_step", 3, range_step)];

/// An integer operand (a float holding an integer counts, as in OPA).
fn integer(v: &Value) -> Option<i128> {
    let n = v.as_number().ok()?;
    if !n.is_integer() {
        return None;
    }
    n.as_i128()
}

fn range_step(a: &[Value]) -> Option<Value> {
    let (from, to, step) = (integer(&a[0])?, integer(&a[1])?, integer(&a[2])?);
    // OPA: "step must be a positive integer", an error (undefined with strict errors off).
    if step <= 0 {
        return None;
    }
    let span = to.abs_diff(from);
    let len = usize::try_from(span / step.unsigned_abs()).ok()?.checked_add(1)?;
    // As large as the range asks for, as in OPA; the worker's memory cap bounds it.
    let mut out = Vec::with_capacity(len.min(1 << 20));
    let mut i = from;
    for _ in 0..len {
        out.push(Value::from(i));
        i = if to >= from { i.checked_add(step)? } else { i.checked_sub(step)? };
    }
    Some(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: Value, b: Value, step: Value) -> Option<Value> {
        range_step(&[a, b, step])
    }

    fn ints(v: &[i64]) -> Option<Value> {
        Some(Value::from(v.iter().map(|i| Value::from(*i)).collect::<Vec<_>>()))
    }

    #[test]
    fn range_step_counts_towards_the_end_by_a_positive_step_as_opa_does() {
        assert_eq!(range(0.into(), 10.into(), 3.into()), ints(&[0, 3, 6, 9]));
        assert_eq!(range(10.into(), 0.into(), 3.into()), ints(&[10, 7, 4, 1]));
        assert_eq!(range(2.into(), 2.into(), 1.into()), ints(&[2]));
        assert_eq!(range(0.into(), 10.into(), Value::from_json_str("99999999999999999999").unwrap()), ints(&[0]));
        assert_eq!(range(0.into(), 10.into(), (-1).into()), None, "a negative step is an error, not a panic");
        assert_eq!(range(0.into(), 10.into(), 0.into()), None);
        assert_eq!(range(0.into(), 10.into(), Value::from(1.5)), None, "the step must be an integer");
        assert_eq!(range(Value::from(0.5), 10.into(), 1.into()), None);
        assert_eq!(range(Value::from(1.0), 3.into(), 1.into()), ints(&[1, 2, 3]));
    }
}
