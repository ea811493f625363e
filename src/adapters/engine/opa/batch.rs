//! Concurrent evaluations of one version, sent to OPA together as one query.
//!
//! Most of what OPA spends on a data query is the request, not the policy: HTTP, the API's
//! own authorisation policy (`opa/system/authz.rego`), decoding the body, setting up the
//! query. So every version OPA holds has a second module, `package aumos_batch.p<id>_v<n>`
//! ([`module`]), whose `results` evaluates each item's rule `with input as` its input, and
//! evaluations waiting for the same version leave together.
//!
//! - **Grouping** ([`Batcher`]): at most [`in_flight`] queries of one version at a time. An
//!   evaluation that finds one free goes at once, alone, as a plain data query, so a lone
//!   evaluation never waits; the others queue, and when a query comes back its lane takes
//!   the queue's oldest, up to [`MAX_ITEMS`] items and [`MAX_BYTES`] of input, and fewer
//!   when the version's items have been slow (no more than [`BATCH_TIME`] of them at the
//!   version's recent time per item, measured on batches; the first holds [`PROBE_ITEMS`]). An evaluation whose caller stopped waiting is
//!   dropped from the queue, not sent, and one whose deadline leaves less than that time
//!   is answered with a timeout at once; at most [`MAX_QUEUED`] wait per version, and past
//!   that an evaluation is refused at once (503, overloaded).
//! - **Fidelity**: an item's value is its rule's value under `with input as`, which is what
//!   a data query with that input answers. A data query of a name that is no document (a
//!   function's) is refused when OPA compiles it, while a batch would read it as
//!   undefined: so the first evaluation of each rule name goes alone, and the name joins
//!   batches once a query alone answered it without an error ([`Batcher::knows`]). The
//!   items of a batch share one query, so one instant (`time.now_ns`); versions naming
//!   `rand` or `uuid` (`rand.intn`, `uuid.rfc4122`: OPA answers those once per query for
//!   the same arguments) are never batched ([`batchable`]), nor are evaluations without an
//!   input (OPA's undefined input) or with an input of `null` (which OPA's API may read as
//!   no input), or of a rule path other than one name.
//! - **Errors**: when the batch query fails as a whole (one item's evaluation error fails
//!   the query, e.g. a conflict), each item is asked again alone, so each gets its own
//!   answer. A batch that OPA does not answer in time, or cannot be sent, answers each of
//!   its items with that error (items are not retried alone then: their deadlines are
//!   spent or OPA is gone). Without the batch module's `loaded` (OPA lost the
//!   version: a restart), the items go alone, which uploads the version again.
//! - **Tenants**: a version belongs to one tenant, so a batch holds one tenant's items; its
//!   lane runs on behalf of the caller that opened it ([`super::super::breaker`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use regex::Regex;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::oneshot;

use super::super::{EngineError, PolicySource};

/// Items in one batch query at most.
pub const MAX_ITEMS: usize = 16;
/// The OPA time a batch aims at: no more items than the version's recent time per item
/// fits in it. A batch then lasts about as long as one slow evaluation alone, so it cannot
/// time out where its items alone would not (unless OPA stalls), and queries stay short
/// for the breaker, which blames the query in flight longest when OPA dies.
pub const BATCH_TIME: Duration = Duration::from_millis(10);
/// Items in a version's first batch, before its time per item is known.
pub const PROBE_ITEMS: usize = 2;
/// Bytes of input in one batch query at most (an item larger than this goes alone).
pub const MAX_BYTES: usize = 1 << 20;
/// Evaluations of one version waiting at most; past it an evaluation is refused at once
/// (503 `policy_engine_overloaded`) rather than queued behind work OPA cannot keep up with.
pub const MAX_QUEUED: usize = 1024;

/// The OPA module id of a version's batch module, given its main module's id.
pub fn module_id(main: &str) -> String {
    format!("{main}/batch")
}

/// The batch module of the version whose main package is `package` (with its namespace).
pub fn module(batch_package: &str, package: &str, loaded_marker: &str) -> String {
    format!(
        "package {batch_package}\n\nimport rego.v1\n\nresults[i] := v if {{\n\tsome i, item in input.items\n\t\
         v := data.{package}[item.rule] with input as item.input\n}}\n\nloaded := data.{package}.{loaded_marker}\n"
    )
}

/// The word a call of a builtin OPA answers once per query for the same arguments starts
/// with (`rand.intn`, `uuid.rfc4122`), however the call is spelt (`rand["intn"]`, escapes
/// in the key): a reference's head is a plain name.
static PER_QUERY: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\b(rand|uuid)\b").ok());

/// Whether a version's evaluations may share a query: none of its modules names `rand` or
/// `uuid` (a textual check: a mention in a comment or a string also counts, which only
/// costs the batching).
pub fn batchable(source: &PolicySource) -> bool {
    let Some(per_query) = PER_QUERY.as_ref() else { return false };
    !source.modules.iter().any(|m| per_query.is_match(m))
}

/// Whether a version gets a batch module: its main package is written as plain names
/// (`a.b.c`), so the module can name it in Rego. A package with a quoted segment
/// (`a["b-c"]`) gets none, and its evaluations all go alone, as before batches.
pub fn plain_package(main: &str) -> bool {
    super::declared_package(main).is_some_and(|p| {
        p.split('.').all(|seg| {
            seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// Queries of one version in flight at once: the service's cores, at least 2.
pub fn in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(2)
}

/// One evaluation waiting for its batch.
#[derive(Debug)]
pub struct Item {
    pub rule: String,
    pub input: Box<RawValue>,
    pub reply: oneshot::Sender<Result<Option<Value>, EngineError>>,
    /// When its caller stops waiting.
    pub deadline: Instant,
}

/// The body of a batch query (items borrowed, inputs as the callers' JSON text).
#[derive(Serialize)]
pub struct Body<'a> {
    pub items: Vec<BodyItem<'a>>,
}

#[derive(Serialize)]
pub struct BodyItem<'a> {
    pub rule: &'a str,
    pub input: &'a RawValue,
}

impl<'a> Body<'a> {
    pub fn of(items: &'a [Item]) -> Self {
        Self { items: items.iter().map(|i| BodyItem { rule: &i.rule, input: &i.input }).collect() }
    }
}

/// The values of a batch's answer, one per item in order (`None`: undefined), or `None`
/// when the answer is not a batch module's (OPA lost the version, or an odd document).
pub fn values(answer: Option<Value>, n: usize) -> Option<Vec<Option<Value>>> {
    let Value::Object(mut doc) = answer? else { return None };
    if doc.get("loaded") != Some(&Value::Bool(true)) {
        return None;
    }
    let Some(Value::Object(mut results)) = doc.remove("results") else { return None };
    let values: Vec<Option<Value>> = (0..n).map(|i| results.remove(&i.to_string())).collect();
    // Anything left is not an index of this batch: not the module's answer.
    results.is_empty().then_some(values)
}

/// The queue and the lanes of one version (shared by its clones and its lanes' tasks).
#[derive(Debug)]
pub struct Batcher {
    state: Mutex<State>,
    lanes: usize,
    /// Rule names a query alone has answered without an error ([`Batcher::knows`]).
    known: Mutex<HashSet<String>>,
}

/// Rule names a version remembers as known; evaluations of other names go alone.
pub const MAX_KNOWN_NAMES: usize = 256;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    /// Lanes running (each sends one query at a time).
    busy: usize,
    /// The version's recent OPA time per item, measured on queries of several items (a
    /// query alone is mostly the request's own cost): it rises with a slower batch at once
    /// and falls slowly (an average that forgets); a faster query alone also lowers it.
    /// `None` until a batch has been timed: the first holds [`PROBE_ITEMS`].
    per_item: Option<Duration>,
}

/// What an evaluation entering the batcher does: go now, on a lane of its own, wait, or
/// nothing (the queue is full).
pub enum Entry {
    Lane(Vec<Item>),
    Queued,
    Full,
}

impl Batcher {
    pub fn new(lanes: usize) -> Self {
        Self { state: Mutex::new(State::default()), lanes: lanes.max(1), known: Mutex::default() }
    }

    /// Whether a query alone has answered `rule` without an error. OPA refuses a query of a
    /// name that is not a document (a function's) when it compiles the query, whatever the
    /// input, while a batch reads that name as undefined: so a name joins batches only once
    /// a query alone has shown it compiles.
    pub fn knows(&self, rule: &str) -> bool {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(rule)
    }

    /// Remembers that a query alone answered `rule` (up to [`MAX_KNOWN_NAMES`] names).
    pub fn learned(&self, rule: &str) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() < MAX_KNOWN_NAMES && !known.contains(rule) {
            known.insert(rule.to_owned());
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: the queue is still whole.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item`, or opens a lane for it when one is free (the caller then runs it).
    pub fn enter(&self, item: Item) -> Entry {
        let mut s = self.state();
        if s.busy < self.lanes && s.queue.is_empty() {
            s.busy += 1;
            return Entry::Lane(vec![item]);
        }
        if s.queue.len() >= MAX_QUEUED {
            // Callers that stopped waiting still hold places until their items reach the front.
            s.queue.retain(|item| !item.reply.is_closed());
            if s.queue.len() >= MAX_QUEUED {
                return Entry::Full;
            }
        }
        s.queue.push_back(item);
        if s.busy < self.lanes {
            s.busy += 1;
            let next = self.take(&mut s);
            Entry::Lane(next)
        } else {
            Entry::Queued
        }
    }

    /// After a lane's query: records its time per item, then gives the lane the next batch,
    /// or closes it (`None`) when nothing waits.
    pub fn next(&self, items: usize, took: Duration) -> Option<Vec<Item>> {
        let mut s = self.state();
        let sample = took / u32::try_from(items.max(1)).unwrap_or(u32::MAX);
        s.per_item = match s.per_item {
            Some(known) if sample < known => Some((known * 3 + sample) / 4),
            _ if items > 1 => Some(sample),
            known => known,
        };
        let next = self.take(&mut s);
        if next.is_empty() {
            s.busy = s.busy.saturating_sub(1);
            None
        } else {
            Some(next)
        }
    }

    /// Closes a lane that ended without [`Batcher::next`] (its task was dropped).
    pub fn close(&self) {
        let mut s = self.state();
        s.busy = s.busy.saturating_sub(1);
    }

    /// The queue's oldest items for one query: at least one, at most [`MAX_ITEMS`] and
    /// [`MAX_BYTES`] of input, and no more than [`BATCH_TIME`] holds at the version's recent
    /// time per item. Items whose callers stopped waiting are dropped, not sent, and those
    /// whose deadline leaves less than that time per item are answered with a timeout at
    /// once. Empty only when nobody who can still be answered waits.
    fn take(&self, s: &mut State) -> Vec<Item> {
        let now = Instant::now();
        let per_item = s.per_item.unwrap_or_default();
        let fit = match s.per_item {
            None => PROBE_ITEMS,
            Some(known) => usize::try_from(BATCH_TIME.as_nanos() / known.as_nanos().max(1)).unwrap_or(MAX_ITEMS),
        };
        let limit = fit.clamp(1, MAX_ITEMS);
        let mut out = Vec::new();
        let mut bytes = 0;
        // Only the front is looked at: items behind it are judged when they reach it.
        while let Some(front) = s.queue.front() {
            let size = front.input.get().len();
            if !out.is_empty() && (out.len() >= limit || bytes + size > MAX_BYTES) {
                break;
            }
            let Some(item) = s.queue.pop_front() else { break };
            if item.reply.is_closed() {
                continue;
            }
            if item.deadline.saturating_duration_since(now) < per_item {
                let _ = item.reply.send(Err(EngineError::Timeout("OPA could not answer within the evaluation budget".into())));
                continue;
            }
            bytes += size;
            out.push(item);
        }
        out
    }
}

/// Keeps a lane's count right if its task is dropped before it closes the lane itself.
pub struct LaneGuard {
    pub batcher: Arc<Batcher>,
    pub open: bool,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if self.open {
            self.batcher.close();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    type Answer = oneshot::Receiver<Result<Option<Value>, EngineError>>;

    /// An item whose caller waits (its receiver is kept in `keep`).
    fn waiting(bytes: usize, keep: &mut Vec<Answer>) -> Item {
        let (item, rx) = item(bytes);
        keep.push(rx);
        item
    }

    fn item(bytes: usize) -> (Item, Answer) {
        let (reply, rx) = oneshot::channel();
        let input = RawValue::from_string(format!("\"{}\"", "x".repeat(bytes.saturating_sub(2)))).unwrap();
        (Item { rule: "allow".into(), input, reply, deadline: Instant::now() + Duration::from_secs(60) }, rx)
    }

    #[test]
    fn an_evaluation_that_finds_a_free_lane_goes_alone_at_once_and_the_rest_wait() {
        let b = Batcher::new(2);
        let mut keep = Vec::new();
        for expected_lane in [true, true, false, false] {
            let (i, rx) = item(10);
            keep.push(rx);
            match b.enter(i) {
                Entry::Lane(items) => assert!(expected_lane && items.len() == 1),
                Entry::Queued => assert!(!expected_lane),
                Entry::Full => panic!("not full"),
            }
        }
        let next = b.next(1, Duration::from_micros(100)).expect("the queue goes next");
        assert_eq!(next.len(), 2, "both waiting evaluations leave together");
        assert!(b.next(2, Duration::from_micros(200)).is_none(), "an empty queue closes the lane");
        assert!(b.next(1, Duration::from_micros(100)).is_none());
        // Both lanes closed: the next evaluation goes alone again.
        assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Lane(items) if items.len() == 1));
    }

    #[test]
    fn a_batch_holds_at_most_max_items_and_max_bytes_and_one_item_larger_than_that_goes_alone() {
        let mut keep = Vec::new();
        let b = Batcher::new(1);
        let _lane = b.enter(waiting(10, &mut keep));
        for _ in 0..MAX_ITEMS + 3 {
            assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Queued));
        }
        assert_eq!(b.next(1, Duration::ZERO).unwrap().len(), PROBE_ITEMS, "before any batch was timed");
        assert_eq!(b.next(PROBE_ITEMS, Duration::ZERO).unwrap().len(), MAX_ITEMS);
        assert_eq!(b.next(MAX_ITEMS, Duration::ZERO).unwrap().len(), 1);
        assert!(b.next(1, Duration::ZERO).is_none());

        let _lane = b.enter(waiting(10, &mut keep));
        for size in [MAX_BYTES / 2, MAX_BYTES / 2 + 1, MAX_BYTES + 10, 10] {
            assert!(matches!(b.enter(waiting(size, &mut keep)), Entry::Queued));
        }
        let sizes = |v: Vec<Item>| v.iter().map(|i| i.input.get().len()).collect::<Vec<_>>();
        assert_eq!(sizes(b.next(1, Duration::ZERO).unwrap()), vec![MAX_BYTES / 2], "the second would pass MAX_BYTES");
        assert_eq!(sizes(b.next(1, Duration::ZERO).unwrap()), vec![MAX_BYTES / 2 + 1]);
        assert_eq!(sizes(b.next(1, Duration::ZERO).unwrap()), vec![MAX_BYTES + 10], "alone, though larger than MAX_BYTES");
        assert_eq!(sizes(b.next(1, Duration::ZERO).unwrap()), vec![10]);
    }

    #[test]
    fn a_version_whose_items_were_slow_gets_smaller_batches_at_once_and_larger_ones_slowly() {
        let mut keep = Vec::new();
        let b = Batcher::new(1);
        let _lane = b.enter(waiting(10, &mut keep));
        for _ in 0..3 * MAX_ITEMS {
            assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Queued));
        }
        // A query alone says little of an item's time (it is mostly the request's own):
        // the first batch holds PROBE_ITEMS whatever the query alone took.
        assert_eq!(b.next(1, Duration::from_millis(30)).unwrap().len(), PROBE_ITEMS);
        // Two items took 4 ms: BATCH_TIME (10 ms) holds 5 such items, from this batch on.
        assert_eq!(b.next(2, Duration::from_millis(4)).unwrap().len(), 5);
        // Faster items afterwards: the estimate falls by a quarter of the gap per batch.
        assert_eq!(b.next(5, Duration::ZERO).unwrap().len(), 6, "10 ms / 1.5 ms");
        assert_eq!(b.next(6, Duration::ZERO).unwrap().len(), 8, "10 ms / 1.125 ms");
        // A slower batch shrinks the next at once; a slow query alone does not.
        assert_eq!(b.next(8, Duration::from_millis(40)).unwrap().len(), 2, "10 ms / 5 ms");
        assert_eq!(b.next(1, Duration::from_millis(100)).unwrap().len(), 2);
    }

    #[test]
    fn an_evaluation_whose_deadline_leaves_less_than_one_item_s_time_is_answered_with_a_timeout_at_once() {
        let mut keep = Vec::new();
        let b = Batcher::new(1);
        let _lane = b.enter(waiting(10, &mut keep));
        let (mut late, mut answer) = item(10);
        late.deadline = Instant::now() + Duration::from_millis(1);
        assert!(matches!(b.enter(late), Entry::Queued));
        assert!(matches!(b.enter(waiting(12, &mut keep)), Entry::Queued));
        // Items take 5 ms each now: the late one cannot be answered in its last millisecond.
        let next = b.next(2, Duration::from_millis(10)).unwrap();
        assert_eq!(next.iter().map(|i| i.input.get().len()).collect::<Vec<_>>(), vec![12]);
        assert!(matches!(answer.try_recv(), Ok(Err(EngineError::Timeout(_)))));
    }

    #[test]
    fn evaluations_whose_callers_stopped_waiting_are_not_sent_and_a_full_queue_refuses_at_once() {
        let mut keep = Vec::new();
        let b = Batcher::new(1);
        let _lane = b.enter(waiting(10, &mut keep));
        let (gone, rx) = item(10);
        assert!(matches!(b.enter(gone), Entry::Queued));
        drop(rx);
        let (kept, _rx) = item(11);
        assert!(matches!(b.enter(kept), Entry::Queued));
        let next = b.next(1, Duration::ZERO).unwrap();
        assert_eq!(next.iter().map(|i| i.input.get().len()).collect::<Vec<_>>(), vec![11], "the abandoned one is dropped");
        assert!(b.next(1, Duration::ZERO).is_none());

        let mut callers = Vec::new();
        let _lane = b.enter(waiting(10, &mut keep));
        for _ in 0..MAX_QUEUED {
            let (i, rx) = item(10);
            callers.push(rx);
            assert!(matches!(b.enter(i), Entry::Queued));
        }
        assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Full));
        // Callers that gave up free their places at the next batch.
        callers.clear();
        assert!(b.next(1, Duration::ZERO).is_none(), "nobody waits any more: the lane closes");
        assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Lane(_)));
    }

    #[test]
    fn a_rule_name_joins_batches_once_a_query_alone_answered_it_and_the_names_remembered_are_bounded() {
        let b = Batcher::new(1);
        assert!(!b.knows("allow"));
        b.learned("allow");
        assert!(b.knows("allow"));
        for i in 0..2 * MAX_KNOWN_NAMES {
            b.learned(&format!("r{i}"));
        }
        assert!(b.knows("r0") && !b.knows(&format!("r{}", 2 * MAX_KNOWN_NAMES - 1)), "at most MAX_KNOWN_NAMES");
    }

    #[test]
    fn only_a_package_written_as_plain_names_gets_a_batch_module() {
        assert!(plain_package("package a.b_2.c\n"));
        assert!(!plain_package("package a[\"b-c\"]\n"));
        assert!(!plain_package("allow := true\n"), "no package");
    }

    #[test]
    fn a_dropped_lane_is_closed_by_its_guard() {
        let mut keep = Vec::new();
        let b = Arc::new(Batcher::new(1));
        assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Lane(_)));
        assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Queued));
        drop(LaneGuard { batcher: b.clone(), open: true });
        // The lane is free again: the queued item leaves with the next arrival.
        assert!(matches!(b.enter(waiting(10, &mut keep)), Entry::Lane(items) if items.len() == 2));
    }

    #[test]
    fn the_answer_of_a_batch_is_read_per_item_and_anything_else_is_not_believed() {
        let answer = serde_json::json!({"loaded": true, "results": {"0": true, "2": {"a": 1}}});
        assert_eq!(values(Some(answer), 3), Some(vec![Some(Value::Bool(true)), None, Some(serde_json::json!({"a": 1}))]));
        assert_eq!(values(Some(serde_json::json!({"results": {"0": true}})), 1), None, "no loaded marker: OPA lost the version");
        assert_eq!(values(Some(serde_json::json!({"loaded": true, "results": {"5": true}})), 1), None, "an index not in the batch");
        assert_eq!(values(Some(serde_json::json!({"loaded": true, "results": [true]})), 1), None);
        assert_eq!(values(None, 1), None);
    }

    #[test]
    fn versions_calling_builtins_answered_once_per_query_are_not_batched_however_the_call_is_spelt() {
        assert!(batchable(&PolicySource::single("package a\nallow if input.x\n")));
        assert!(batchable(&PolicySource::single("package a\nallow if input.brand == \"operand\"\n")), "words that contain rand");
        assert!(!batchable(&PolicySource::single("package a\nr := rand.intn(\"k\", 10)\n")));
        assert!(!batchable(&PolicySource::single("package a\nr := rand[\"intn\"](\"k\", 10)\n")));
        assert!(!batchable(&PolicySource::single("package a\nr := uuid[\"rfc\\u0034122\"](\"k\")\n")));
        let mut two = PolicySource::single("package a\nallow := true\n");
        two.modules.push("package b\nid := uuid.rfc4122(\"k\")\n".into());
        assert!(!batchable(&two));
    }
}
