//! `strings.split_n`: the first `n` parts of a string split by a separator (the last `-n`
//! when `n` is negative), as OPA v1.20 defines it. `strings.count` as OPA counts (Go's
//! `strings.Count`: occurrences that do not overlap, and the number of characters plus one
//! for an empty needle), where regorus's own builtin counts overlapping windows and panics
//! on an empty needle.

use regorus::Value;

use super::{string, Builtin};

pub const BUILTINS: &[Builtin] = &[("strings.split_n", 3, split_n), ("strings.count", 2, count)];

fn count(a: &[Value]) -> Option<Value> {
    let (s, needle) = (string(&a[0])?, string(&a[1])?);
    let n = if needle.is_empty() { s.chars().count() + 1 } else { s.matches(needle).count() };
    Some(Value::from(u64::try_from(n).ok()?))
}

fn split_n(a: &[Value]) -> Option<Value> {
    let (s, sep) = (string(&a[0])?, string(&a[1])?);
    let n = a[2].as_i64().ok()?;
    // Go's strings.Split: an empty separator splits into characters.
    let parts: Vec<&str> =
        if sep.is_empty() { s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect() } else { s.split(sep).collect() };
    let count = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX).min(parts.len());
    let chosen = if n >= 0 { &parts[..count] } else { &parts[parts.len() - count..] };
    Some(Value::from(chosen.iter().map(|p| Value::from(*p)).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str, sep: &str, n: i64) -> Vec<String> {
        let v = split_n(&[s.into(), sep.into(), n.into()]).unwrap();
        v.as_array().unwrap().iter().map(|x| x.as_string().unwrap().to_string()).collect()
    }

    #[test]
    fn count_counts_occurrences_that_do_not_overlap_as_go_does() {
        let count = |s: &str, n: &str| count(&[s.into(), n.into()]).and_then(|v| v.as_u64().ok());
        assert_eq!(count("cheese", "e"), Some(3));
        assert_eq!(count("aaaa", "aa"), Some(2), "not the 3 overlapping windows");
        assert_eq!(count("five", ""), Some(5), "characters plus one");
        assert_eq!(count("héllo", ""), Some(6), "characters, not bytes");
        assert_eq!(count("", ""), Some(1));
        assert_eq!(super::count(&[Value::from(1), "a".into()]), None);
    }

    #[test]
    fn split_n_keeps_the_first_or_last_parts() {
        assert_eq!(split("a.b.c.d", ".", 2), ["a", "b"]);
        assert_eq!(split("a.b.c.d", ".", -2), ["c", "d"]);
        assert_eq!(split("a.b.c.d", ".", 10), ["a", "b", "c", "d"]);
        assert!(split("a.b.c.d", ".", 0).is_empty());
        assert_eq!(split("abc", "", -2), ["b", "c"]);
        assert_eq!(split("", ".", 2), [""]);
        assert_eq!(split_n(&["a.b".into(), ".".into(), Value::from(1.5)]), None, "n must be an integer");
    }
}
