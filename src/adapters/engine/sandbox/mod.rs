//! The embedded engine's sandbox: tenants' Rego runs in evaluation worker processes.
//!
//! A builtin that allocates without bound aborts its process, and one that loops inside a
//! single call cannot be interrupted in-process; so no tenant's Rego runs in the service.
//! - [`worker`]: `governance-engine engine-worker` (hidden), a single-threaded loop over
//!   length-prefixed JSON frames on stdin/stdout. It caps its own address space
//!   (RLIMIT_AS), runs regorus with its execution timer, turns panics into replies, and
//!   keeps prepared modules in a bounded LRU (asking for a source it does not have).
//! - [`child`]: the service's handle on one worker process: start, framed exchange with a
//!   deadline, kill.
//! - [`pool`]: the service side. N workers, a bounded queue per tenant, round-robin across
//!   tenants, at most `workers_per_tenant` busy for one tenant, and a hard deadline per
//!   request: past it, or when the worker dies (memory cap, stack), the worker is killed
//!   with SIGKILL and replaced, and the caller gets its own error code.
//! - [`conflicts`]: rules where the version's data document holds a value, refused as
//!   OPA's server refuses them.
//!
//! Limits and their variables: docs/policy-engines.md ("The sandbox").

mod child;
mod conflicts;
pub mod pool;
pub mod worker;

use std::io::{self, Read, Write};

use aggregates::facts::JsonText;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CompileError, PolicySource};

/// The largest frame either side accepts (a request carries at most a source and an input).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// What the service asks a worker. The service sends inputs as their canonical JSON text
/// ([`JsonText`], written into the frame as it is); a worker decodes them straight into
/// regorus's values (`Request<regorus::Value>`, [`WorkerRequest`]), through the same
/// deserializer regorus's own conversion uses, without a copy in between.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(deserialize = "I: Deserialize<'de>"))]
pub enum Request<I = JsonText> {
    /// Compile and analyse a version; answers [`Reply::Checked`].
    Check { source: PolicySource },
    /// Compile a version and run these `test_` rules, all within `budget_ms` together.
    Test { source: PolicySource, tests: Vec<String>, budget_ms: u64 },
    /// Evaluate a rule of a version known by `key` ([`module_key`]). Without `source` a
    /// worker that has not prepared the version answers [`Reply::NeedSource`].
    /// Without `input` the policy's `input` is undefined (an input of `null` is `null`).
    Evaluate {
        key: String,
        source: Option<PolicySource>,
        rule: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "super::given_input")]
        input: Option<I>,
        budget_ms: u64,
    },
    /// Evaluate many (rule, input) pairs of one module, each within `budget_ms`; answers
    /// [`Reply::Values`], one reply per item in order (a batch amortises the round trip:
    /// replays evaluate thousands of recorded decisions).
    EvaluateMany { key: String, source: Option<PolicySource>, items: Vec<Item<I>>, budget_ms: u64 },
}

/// A request as a worker decodes it.
pub type WorkerRequest = Request<regorus::Value>;

impl Request {
    /// The request as a worker decodes it (for a session in this process): each input's
    /// text through the deserializer a worker's frame goes through.
    pub fn decoded(self) -> Result<WorkerRequest, serde_json::Error> {
        let decode = |input: Option<JsonText>| input.map(|t| serde_json::from_str::<regorus::Value>(t.get())).transpose();
        Ok(match self {
            Request::Check { source } => Request::Check { source },
            Request::Test { source, tests, budget_ms } => Request::Test { source, tests, budget_ms },
            Request::Evaluate { key, source, rule, input, budget_ms } => {
                Request::Evaluate { key, source, rule, input: decode(input)?, budget_ms }
            }
            Request::EvaluateMany { key, source, items, budget_ms } => Request::EvaluateMany {
                key,
                source,
                items: items.into_iter().map(|Item { rule, input }| Ok(Item { rule, input: decode(input)? })).collect::<Result<_, _>>()?,
                budget_ms,
            },
        })
    }
}

/// One item of a [`Request::EvaluateMany`]: a rule and an input, which may be absent (a
/// `null` input stays `null`: absence is the field's absence, not a `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "I: Deserialize<'de>"))]
pub struct Item<I = JsonText> {
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "super::given_input")]
    pub input: Option<I>,
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Sent once at start, after the memory cap is in place: deadlines exclude start-up.
    Ready,
    Checked {
        package: String,
    },
    TestsPassed,
    TestsFailed(Vec<String>),
    /// The result; `None` when undefined.
    Value(Option<Value>),
    /// One reply per item of an [`Request::EvaluateMany`], in order.
    Values(Vec<Reply>),
    NeedSource,
    Compile(Vec<CompileError>),
    Evaluation(String),
    Timeout(String),
    Panic(String),
}

/// Writes one frame: a little-endian u32 length, then that many bytes of JSON.
pub fn write_frame<T: Serialize>(out: &mut impl Write, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).ok().filter(|n| (*n as usize) <= MAX_FRAME).ok_or_else(|| io::Error::other("frame too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// Reads one frame's bytes; `Ok(None)` at a clean end of stream.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::other("frame too large"));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The key a worker caches a prepared version under: the SHA-256 of its JSON encoding
/// (its modules in order and its data document).
pub fn module_key(source: &PolicySource) -> String {
    use sha2::Digest;
    let encoded = serde_json::to_vec(source).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&encoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_absent_input_and_a_null_input_stay_apart_on_the_wire() {
        for input in [None, Some(Value::Null), Some(json!({"a": 1}))] {
            let text = input.as_ref().map(|v| JsonText::of(v).unwrap());
            let item = Item { rule: Some("allow".into()), input: text.clone() };
            let back: Item<Value> = serde_json::from_slice(&serde_json::to_vec(&item).unwrap()).unwrap();
            assert_eq!(back.input, input, "{input:?}");
            let request = Request::Evaluate { key: "k".into(), source: None, rule: None, input: text, budget_ms: 1 };
            match serde_json::from_slice::<Request<Value>>(&serde_json::to_vec(&request).unwrap()).unwrap() {
                Request::Evaluate { input: back, .. } => assert_eq!(back, input),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_worker_decodes_each_input_into_the_value_regorus_would_convert_it_to() {
        let inputs = [
            None,
            Some(Value::Null),
            Some(json!({"a": [1, 2.5, -3, 1e300, 18446744073709551615u64, "x\u{e9}"], "b": {"c": true, "": null}})),
        ];
        for input in inputs {
            let expected = input.clone().map(regorus::Value::from);
            let item = Item { rule: Some("allow".into()), input: input.as_ref().map(|v| JsonText::of(v).unwrap()) };
            let request = Request::EvaluateMany { key: "k".into(), source: None, items: vec![item], budget_ms: 1 };
            let wire: WorkerRequest = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
            for decoded in [wire, request.decoded().unwrap()] {
                match decoded {
                    Request::EvaluateMany { items, .. } => assert_eq!(items[0].input, expected, "{input:?}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}
