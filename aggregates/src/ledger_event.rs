//! How a domain event becomes a ledger payload and back.
//!
//! The ledger stores `event_type`, `event_version` and the event body separately, so the
//! body is the variant's fields alone, without serde's enum wrapper. Kafka consumers and
//! auditors then read `{"name": ..}` rather than `{"PolicyCreated": {"name": ..}}`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum LedgerEventError {
    #[error("event does not serialize as a single-variant object")]
    NotAVariant,
    #[error("cannot decode {event_type}: {source}")]
    Decode {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Implemented for every aggregate's event enum (externally tagged, one struct-like
/// variant per event type).
pub trait LedgerEvent: Serialize + DeserializeOwned + Sized {
    /// The body recorded in the ledger for this event.
    fn ledger_payload(&self) -> Result<Value, LedgerEventError> {
        match serde_json::to_value(self)? {
            Value::Object(map) if map.len() == 1 => map.into_iter().next().map(|(_, body)| body).ok_or(LedgerEventError::NotAVariant),
            _ => Err(LedgerEventError::NotAVariant),
        }
    }

    /// The body as the ledger stores it: the canonical JSON text of
    /// [`LedgerEvent::ledger_payload`] (`ledger::format::canonical_json`: compact, keys
    /// sorted). An event on a hot path may write the same bytes more directly.
    fn ledger_text(&self) -> Result<String, LedgerEventError> {
        Ok(serde_json::to_string(&self.ledger_payload()?)?)
    }

    /// Rebuilds the event from a ledger row.
    fn from_ledger(event_type: &str, payload: Value) -> Result<Self, LedgerEventError> {
        let mut map = serde_json::Map::with_capacity(1);
        map.insert(event_type.to_owned(), payload);
        serde_json::from_value(Value::Object(map)).map_err(|source| LedgerEventError::Decode { event_type: event_type.to_owned(), source })
    }

    /// Rebuilds the event from a ledger row's payload as stored (JSON text), in one pass:
    /// no [`Value`] of the whole payload is built and then taken apart again. The payload
    /// is read as the body of `{"<event_type>": <payload>}`, so anything but exactly one
    /// JSON value (say, a second variant after it) is an error, and so is a field given
    /// twice.
    fn from_ledger_text(event_type: &str, payload: &str) -> Result<Self, LedgerEventError> {
        let decode = |source| LedgerEventError::Decode { event_type: event_type.to_owned(), source };
        let tag = serde_json::to_string(event_type).map_err(decode)?;
        let mut text = String::with_capacity(tag.len() + payload.len() + 3);
        text.push('{');
        text.push_str(&tag);
        text.push(':');
        text.push_str(payload);
        text.push('}');
        serde_json::from_str(&text).map_err(decode)
    }
}
