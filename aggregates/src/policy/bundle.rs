//! What one policy version holds, as an OPA bundle does: its main module (which declares
//! the policy's package; rule paths are read inside it), further modules of its own, and a
//! JSON data document (allow-lists, thresholds, mappings). Modules and data are visible to
//! that version only: the engines give each version its own `data` tree.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{IdError, RegoSource};

/// The further modules of a version, beside its main one (absent from events when none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<RegoSource>", into = "Vec<RegoSource>")]
pub struct ExtraModules(Vec<RegoSource>);

impl ExtraModules {
    /// A version holds at most 16 modules, its main one included.
    pub const MAX: usize = 15;

    pub fn parse(modules: Vec<RegoSource>) -> Result<Self, IdError> {
        if modules.len() > Self::MAX {
            return Err(IdError::Malformed {
                field: "modules",
                message: format!("may hold at most {} modules besides the main one", Self::MAX),
            });
        }
        Ok(Self(modules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegoSource> {
        self.0.iter()
    }
}

impl TryFrom<Vec<RegoSource>> for ExtraModules {
    type Error = IdError;
    fn try_from(modules: Vec<RegoSource>) -> Result<Self, Self::Error> {
        Self::parse(modules)
    }
}

impl From<ExtraModules> for Vec<RegoSource> {
    fn from(m: ExtraModules) -> Self {
        m.0
    }
}

/// A version's data document: a JSON object its modules read under `data` (absent from
/// events when empty). At most [`DataDocument::MAX_BYTES`] as compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
pub struct DataDocument(Map<String, Value>);

impl DataDocument {
    /// 1 MiB: room for large allow-lists, well inside a ledger entry.
    pub const MAX_BYTES: usize = 1024 * 1024;

    pub fn parse(doc: Map<String, Value>) -> Result<Self, IdError> {
        let bytes = serde_json::to_vec(&doc).map(|b| b.len()).unwrap_or(usize::MAX);
        if bytes > Self::MAX_BYTES {
            return Err(IdError::TooLong { field: "data", max: Self::MAX_BYTES });
        }
        Ok(Self(doc))
    }

    /// From any JSON value: only an object (or `null`, for none) is a data document.
    pub fn from_value(v: Value) -> Result<Self, IdError> {
        match v {
            Value::Null => Ok(Self::default()),
            Value::Object(map) => Self::parse(map),
            _ => Err(IdError::Malformed { field: "data", message: "must be a JSON object".into() }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The document as a JSON value (`None` when empty).
    pub fn to_value(&self) -> Option<Value> {
        (!self.0.is_empty()).then(|| Value::Object(self.0.clone()))
    }
}

impl TryFrom<Map<String, Value>> for DataDocument {
    type Error = IdError;
    fn try_from(doc: Map<String, Value>) -> Result<Self, Self::Error> {
        Self::parse(doc)
    }
}

impl From<DataDocument> for Map<String, Value> {
    fn from(d: DataDocument) -> Self {
        d.0
    }
}

/// Everything of one version an engine needs: what activation checks and evaluation runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSource {
    pub rego: RegoSource,
    #[serde(default, skip_serializing_if = "ExtraModules::is_empty")]
    pub modules: ExtraModules,
    #[serde(default, skip_serializing_if = "DataDocument::is_empty")]
    pub data: DataDocument,
}

impl VersionSource {
    /// A version of one module and no data.
    pub fn single(rego: RegoSource) -> Self {
        Self { rego, modules: ExtraModules::default(), data: DataDocument::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn module(n: usize) -> RegoSource {
        RegoSource::parse(&format!("package m{n}\nx := {n}\n")).unwrap()
    }

    #[test]
    fn a_version_holds_at_most_sixteen_modules() {
        assert!(ExtraModules::parse((0..15).map(module).collect()).is_ok());
        assert!(matches!(ExtraModules::parse((0..16).map(module).collect()), Err(IdError::Malformed { field: "modules", .. })));
        let decoded: Result<ExtraModules, _> = serde_json::from_value(json!((0..16).map(|n| format!("package m{n}")).collect::<Vec<_>>()));
        assert!(decoded.is_err(), "decoding checks the count too");
    }

    #[test]
    fn a_data_document_is_an_object_of_bounded_size() {
        assert!(DataDocument::from_value(json!({"allowed": ["a", "b"]})).is_ok());
        assert!(DataDocument::from_value(Value::Null).unwrap().is_empty());
        assert!(matches!(DataDocument::from_value(json!([1, 2])), Err(IdError::Malformed { field: "data", .. })));
        assert!(matches!(DataDocument::from_value(json!("x")), Err(IdError::Malformed { .. })));
        let big = json!({"blob": "x".repeat(DataDocument::MAX_BYTES)});
        assert_eq!(DataDocument::from_value(big), Err(IdError::TooLong { field: "data", max: DataDocument::MAX_BYTES }));
    }

    #[test]
    fn a_version_without_modules_or_data_encodes_as_its_source_alone() {
        let v = VersionSource::single(module(1));
        assert_eq!(serde_json::to_value(&v).unwrap(), json!({"rego": "package m1\nx := 1\n"}));
    }
}
