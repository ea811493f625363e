//! Per-policy masking of decision inputs (as OPA's `system.log.mask`): the listed fields
//! of the input are removed, or replaced by their SHA-256, before the decision record is
//! made, so they never reach the ledger, the read models or Kafka. The policy itself
//! still evaluates the full input. `input_logging: hash_only` keeps no input at all.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::IdError;

/// At most this many paths per policy.
pub const MAX_MASK_PATHS: usize = 64;
const MAX_PATH_LEN: usize = 512;

/// A JSON Pointer (RFC 6901) into the input, e.g. `/user/email` or `/items/0/card`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^/")]
pub struct MaskPath(String);

impl MaskPath {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let field = "input_mask path";
        if raw.is_empty() {
            return Err(IdError::Empty { field });
        }
        if raw.len() > MAX_PATH_LEN {
            return Err(IdError::TooLong { field, max: MAX_PATH_LEN });
        }
        if raw.chars().any(char::is_control) {
            return Err(IdError::ControlCharacters { field });
        }
        // A pointer starts with '/', and '~' only escapes '0' or '1'.
        let bad_escape = raw.match_indices('~').any(|(i, _)| !matches!(raw.as_bytes().get(i + 1), Some(b'0' | b'1')));
        if !raw.starts_with('/') || bad_escape {
            return Err(IdError::Malformed { field, message: "must be a JSON Pointer such as /user/email".to_owned() });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MaskPath {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MaskPath> for String {
    fn from(p: MaskPath) -> Self {
        p.0
    }
}

/// Which input fields a decision record keeps out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputMask {
    /// Removed from the recorded input.
    #[serde(default)]
    pub remove: Vec<MaskPath>,
    /// Replaced by `"sha256:<hex>"` of the value's canonical JSON (still linkable: equal
    /// values give equal hashes).
    #[serde(default)]
    pub hash: Vec<MaskPath>,
}

impl InputMask {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.hash.is_empty()
    }

    /// Refuses more than [`MAX_MASK_PATHS`] paths.
    pub fn validate(self) -> Result<Self, IdError> {
        if self.remove.len() + self.hash.len() > MAX_MASK_PATHS {
            return Err(IdError::Malformed { field: "input_mask", message: format!("may list at most {MAX_MASK_PATHS} paths") });
        }
        Ok(self)
    }

    /// Masks `input` in place; `digest` gives the hex SHA-256 of a value's canonical JSON.
    /// Paths that are not in the input are ignored.
    pub fn apply(&self, input: &mut Value, digest: impl Fn(&Value) -> String) {
        for p in &self.hash {
            if let Some(v) = input.pointer_mut(p.as_str()) {
                *v = Value::String(format!("sha256:{}", digest(v)));
            }
        }
        for p in &self.remove {
            remove(input, p.as_str());
        }
    }
}

fn remove(input: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else { return };
    let key = last.replace("~1", "/").replace("~0", "~");
    match input.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mask(remove: &[&str], hash: &[&str]) -> InputMask {
        InputMask {
            remove: remove.iter().map(|p| MaskPath::parse(p).unwrap()).collect(),
            hash: hash.iter().map(|p| MaskPath::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn given_a_mask_when_applied_then_listed_fields_are_removed_or_hashed_and_the_rest_kept() {
        let mut input = json!({"user": {"email": "a@b.c", "ssn": "123", "role": "x"}, "a/b": 1, "items": [{"card": "4111"}]});
        mask(&["/user/ssn", "/a~1b", "/items/0/card"], &["/user/email"]).apply(&mut input, |v| format!("h({v})"));
        assert_eq!(input, json!({"user": {"email": "sha256:h(\"a@b.c\")", "role": "x"}, "items": [{}]}));
    }

    #[test]
    fn paths_absent_from_the_input_change_nothing() {
        let mut input = json!({"user": "plain", "n": [1]});
        mask(&["/user/email", "/n/5", "/missing"], &["/nope/x"]).apply(&mut input, |_| unreachable!());
        assert_eq!(input, json!({"user": "plain", "n": [1]}));
    }

    #[test]
    fn mask_paths_are_json_pointers() {
        for ok in ["/a", "/a/0", "/a~0b", "/a~1b", "/"] {
            assert!(MaskPath::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a/b", "/a~2", "/a~", "/a\u{0}"] {
            assert!(MaskPath::parse(bad).is_err(), "{bad}");
        }
        let too_many = InputMask { remove: vec![MaskPath::parse("/a").unwrap(); MAX_MASK_PATHS + 1], hash: vec![] };
        assert!(too_many.validate().is_err());
    }
}
