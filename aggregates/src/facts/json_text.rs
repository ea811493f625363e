//! [`JsonText`]: a JSON value a fact carries as the text the ledger stores, not as a tree.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value held as its text: the canonical form (`serde_json::to_string` of the
/// value: compact, object keys sorted, numbers as serde_json prints them), which is the
/// form the ledger stores (`ledger::format::canonical_json`).
///
/// Serializing writes the text as it is, and deserializing keeps the text as it was given
/// (checked to be one JSON value), so a fact carrying a large caller-given value (a
/// decision's input) is encoded and decoded without building a tree of it or copying it
/// more than once. Decoded from a ledger payload, the text is the payload's own bytes;
/// decoded from a [`serde_json::Value`], it is that value's canonical text.
#[derive(Clone)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// The canonical text of `value` (serialising a `Value` does not fail: its keys are
    /// strings; the error is passed on rather than assumed away).
    pub fn of(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The text as serde_json's raw value (to embed in a larger document).
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The value as a tree (for a reader that needs one; the record path never does).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

/// Texts compare as text: two canonical texts are equal exactly when their values are.
impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_text_of_a_value_is_its_canonical_json() {
        let v = json!({"b": [1, 2.5, "é\n"], "a": {"z": null, "y": true}, "big": 1e300});
        assert_eq!(JsonText::of(&v).unwrap().get(), serde_json::to_string(&v).unwrap());
        assert_eq!(JsonText::of(&v).unwrap().get(), r#"{"a":{"y":true,"z":null},"b":[1,2.5,"é\n"],"big":1e+300}"#);
        assert_eq!(JsonText::of(&v).unwrap().to_value().unwrap(), v);
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        inner: JsonText,
        outer: u8,
    }

    #[test]
    fn a_text_serializes_as_its_bytes_inside_a_document_and_decodes_back_to_them() {
        let held = Holder { inner: JsonText::of(&json!({"y": 1, "x": [true]})).unwrap(), outer: 1 };
        let text = serde_json::to_string(&held).unwrap();
        assert_eq!(text, r#"{"inner":{"x":[true],"y":1},"outer":1}"#);
        let back: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(back.inner.get(), r#"{"x":[true],"y":1}"#);
        // Through a tree, as a ledger payload decoded as a `Value` is.
        let tree = serde_json::to_value(&held).unwrap();
        assert_eq!(tree["inner"], json!({"x": [true], "y": 1}));
        let from_tree: Holder = serde_json::from_value(tree).unwrap();
        assert_eq!(from_tree.inner, held.inner, "decoded from a tree, the text is the tree's canonical text");
    }

    #[test]
    fn malformed_text_does_not_decode() {
        assert!(serde_json::from_str::<Holder>(r#"{"inner": {"a": }, "outer": 1}"#).is_err());
        assert!(serde_json::from_str::<Holder>(r#"{"inner": [1,], "outer": 1}"#).is_err());
    }
}
