//! The entries this process's appender committed last, held in memory so that this
//! process's tailing readers (the projectors, the relay) need not read back from the audit
//! database what was just written there: one shared ledger tail instead of one read per
//! reader and append.
//!
//! Only committed entries are held, exactly as stored (the payload column is `json`, which
//! keeps its text; `recorded_at` is already at PostgreSQL's microsecond precision). A range
//! is answered from memory only when every seq in it is held; a gap (another process
//! appended in between) or an evicted seq sends the reader to the database. Memory is
//! bounded by [`MAX_ENTRIES`] and [`MAX_BYTES`], not by the ledger's length.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ledger::LedgerEntry;

/// At most this many entries are held.
pub const MAX_ENTRIES: usize = 8192;

/// At most about this many bytes of entries (payload and identifiers) are held. A batch
/// larger than this is held only in part (its newest entries); readers find the rest in
/// the database.
pub const MAX_BYTES: usize = 16 << 20;

/// The recent committed entries, in seq order, shared by the appender (who adds) and the
/// readers of this process (who copy out what they need). The lock is never held across
/// an await: every method is synchronous and short.
#[derive(Clone, Default)]
pub struct RecentEntries {
    inner: Arc<Mutex<Held>>,
}

impl std::fmt::Debug for RecentEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.inner.lock().map(|h| h.entries.len()).unwrap_or(0);
        f.debug_struct("RecentEntries").field("held", &held).finish()
    }
}

#[derive(Default)]
struct Held {
    entries: VecDeque<LedgerEntry>,
    bytes: usize,
}

fn size_of(e: &LedgerEntry) -> usize {
    // The strings' bytes plus a fixed share for the struct itself and the optional ids.
    e.payload.len() + e.aggregate_type.len() + e.aggregate_id.len() + e.event_type.len() + e.metadata.actor.len() + 256
}

impl RecentEntries {
    /// Adds entries just committed, in seq order. Entries not above the newest held one
    /// (they cannot come from a later commit) clear what is held first, so what is held
    /// is always ascending.
    pub fn committed(&self, entries: Vec<LedgerEntry>) {
        let Ok(mut held) = self.inner.lock() else { return };
        for e in entries {
            if held.entries.back().is_some_and(|last| last.seq >= e.seq) {
                held.entries.clear();
                held.bytes = 0;
            }
            held.bytes += size_of(&e);
            held.entries.push_back(e);
        }
        while held.entries.len() > MAX_ENTRIES || held.bytes > MAX_BYTES {
            match held.entries.pop_front() {
                Some(old) => held.bytes = held.bytes.saturating_sub(size_of(&old)),
                None => break,
            }
        }
    }

    /// The entries with seq in `(after, upto]` whose aggregate type is among `types`
    /// (every type with `None`), in seq order; `None` unless every seq of the range is
    /// held (then the caller reads the database).
    pub fn between(&self, types: Option<&[&str]>, after: i64, upto: i64) -> Option<Vec<LedgerEntry>> {
        if upto <= after {
            return Some(Vec::new());
        }
        let held = self.inner.lock().ok()?;
        let first = held.entries.front()?.seq;
        let last = held.entries.back()?.seq;
        if first > after.saturating_add(1) || last < upto {
            return None;
        }
        let start = held.entries.partition_point(|e| e.seq <= after);
        let mut expected = after.saturating_add(1);
        let mut out = Vec::new();
        for e in held.entries.range(start..) {
            if e.seq > upto {
                break;
            }
            if e.seq != expected {
                return None;
            }
            expected += 1;
            if types.is_none_or(|t| t.contains(&e.aggregate_type.as_str())) {
                out.push(e.clone());
            }
        }
        (expected == upto.saturating_add(1)).then_some(out)
    }

    /// Up to `limit` entries after `after`, in seq order, when the next seq is held: the
    /// run of consecutive held seqs from there (the database may hold more past it).
    pub fn after(&self, after: i64, limit: i64) -> Option<Vec<LedgerEntry>> {
        let held = self.inner.lock().ok()?;
        let start = held.entries.partition_point(|e| e.seq <= after);
        if held.entries.get(start)?.seq != after.saturating_add(1) {
            return None;
        }
        let run = (after.saturating_add(1)..).zip(held.entries.range(start..)).take_while(|(expected, e)| e.seq == *expected);
        Some(run.take(usize::try_from(limit).unwrap_or(0)).map(|(_, e)| e.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn entry(seq: i64, aggregate_type: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            tenant_id: uuid::Uuid::nil(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: format!("a{seq}"),
            aggregate_seq: 1,
            event_type: "E".into(),
            event_version: "1".into(),
            payload: "{}".into(),
            metadata: ledger::EntryMetadata::default(),
            recorded_at: chrono::Utc::now(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn seqs(v: Option<Vec<LedgerEntry>>) -> Option<Vec<i64>> {
        v.map(|v| v.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn a_range_wholly_held_is_answered_with_only_the_types_asked_for() {
        let recent = RecentEntries::default();
        recent.committed((1..=6).map(|s| entry(s, if s % 2 == 0 { "Decision" } else { "Policy" })).collect());
        assert_eq!(seqs(recent.between(Some(&["Decision"]), 1, 5)), Some(vec![2, 4]));
        assert_eq!(seqs(recent.between(None, 0, 3)), Some(vec![1, 2, 3]));
        assert_eq!(seqs(recent.between(Some(&["Other"]), 2, 6)), Some(vec![]), "held, and none of that type");
    }

    #[test]
    fn a_range_with_a_seq_not_held_goes_to_the_database() {
        let recent = RecentEntries::default();
        recent.committed(vec![entry(3, "P"), entry(4, "P")]);
        // Another process appended 5 and 6; this one then committed 7.
        recent.committed(vec![entry(7, "P")]);
        assert_eq!(seqs(recent.between(None, 1, 4)), None, "seq 2 was never held");
        assert_eq!(seqs(recent.between(None, 2, 4)), Some(vec![3, 4]));
        assert_eq!(seqs(recent.between(None, 3, 7)), None, "the gap 5..6 is not held");
        assert_eq!(seqs(recent.between(None, 6, 7)), Some(vec![7]));
        assert_eq!(seqs(recent.between(None, 6, 8)), None, "8 is not committed here");
        assert_eq!(seqs(recent.after(2, 10)), Some(vec![3, 4]), "the run stops at the gap");
        assert_eq!(seqs(recent.after(4, 10)), None);
        assert_eq!(seqs(recent.after(6, 10)), Some(vec![7]));
        assert_eq!(seqs(recent.after(2, 1)), Some(vec![3]), "the limit holds");
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_entries_go_first() {
        let recent = RecentEntries::default();
        let n = i64::try_from(MAX_ENTRIES).unwrap() + 10;
        recent.committed((1..=n).map(|s| entry(s, "P")).collect());
        assert_eq!(seqs(recent.between(None, 0, 10)), None, "the oldest were evicted");
        assert_eq!(seqs(recent.between(None, n - 2, n)), Some(vec![n - 1, n]));
        let mut big = entry(n + 1, "P");
        big.payload = "x".repeat(MAX_BYTES);
        recent.committed(vec![big]);
        assert_eq!(seqs(recent.between(None, n - 1, n)), None, "a large entry pushes the rest out");
    }

    #[test]
    fn seqs_going_backwards_clear_what_is_held() {
        let recent = RecentEntries::default();
        recent.committed(vec![entry(5, "P"), entry(6, "P")]);
        recent.committed(vec![entry(2, "P")]);
        assert_eq!(seqs(recent.between(None, 4, 6)), None);
        assert_eq!(seqs(recent.between(None, 1, 2)), Some(vec![2]));
    }
}
