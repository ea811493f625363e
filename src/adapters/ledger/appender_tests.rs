//! Unit tests of the appender's batching and planning (no database).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

fn entry(aggregate_id: &str, aggregate_seq: i64) -> NewEntry {
    NewEntry {
        tenant_id: uuid::Uuid::nil(),
        aggregate_type: "Policy".into(),
        aggregate_id: aggregate_id.into(),
        aggregate_seq,
        event_type: "PolicyCreated".into(),
        event_version: "1".into(),
        payload: "{}".into(),
        metadata: ledger::EntryMetadata { actor: "alice".into(), ..Default::default() },
    }
}

fn request(entries: Vec<NewEntry>) -> Request {
    let bytes = entries.iter().map(crate::application::limits::entry_message_bytes).sum();
    Request { entries, bytes, reply: oneshot::channel().0 }
}

fn sized(aggregate_id: &str, payload_bytes: usize) -> Request {
    let mut e = entry(aggregate_id, 1);
    e.payload = format!("\"{}\"", "x".repeat(payload_bytes - 2));
    request(vec![e])
}

#[test]
fn a_batch_ends_before_the_request_that_would_take_it_over_its_byte_bound_and_that_request_opens_the_next() {
    let (tx, mut rx) = mpsc::channel(8);
    let quarter = DEFAULT_BATCH_MAX_BYTES / 4;
    for id in ["b", "c", "d", "e"] {
        tx.try_send(sized(id, quarter)).unwrap();
    }
    let mut batch = Batch::of(sized("a", quarter), DEFAULT_BATCH_MAX_BYTES);
    let carried = batch.gather(&mut rx).expect("the fourth queued request does not fit");
    let ids: Vec<&str> = batch.requests.iter().map(|r| r.entries[0].aggregate_id.as_str()).collect();
    assert_eq!(ids, vec!["a", "b", "c"], "three quarters and their ids and metadata fit; a fourth does not");
    assert!(batch.bytes <= DEFAULT_BATCH_MAX_BYTES && batch.bytes > 3 * quarter);
    assert_eq!(carried.entries[0].aggregate_id, "d");
    let mut next = Batch::of(carried, DEFAULT_BATCH_MAX_BYTES);
    assert!(next.gather(&mut rx).is_none());
    assert_eq!(next.requests.len(), 2, "the carried request opens the next batch, which takes the rest");
}

#[test]
fn a_request_larger_than_the_byte_bound_is_a_batch_of_its_own() {
    let (tx, mut rx) = mpsc::channel(8);
    tx.try_send(sized("b", 16)).unwrap();
    let mut batch = Batch::of(sized("a", DEFAULT_BATCH_MAX_BYTES + 1), DEFAULT_BATCH_MAX_BYTES);
    assert!(batch.gather(&mut rx).is_some(), "nothing joins it");
    assert_eq!(batch.requests.len(), 1);
    let mut small = Batch::of(sized("c", 16), DEFAULT_BATCH_MAX_BYTES);
    tx.try_send(sized("d", DEFAULT_BATCH_MAX_BYTES + 1)).unwrap();
    assert!(small.gather(&mut rx).is_some(), "nor does it join a batch");
    assert_eq!(small.requests.len(), 1);
}

#[test]
fn a_batch_takes_small_requests_up_to_its_entry_bound() {
    let (tx, mut rx) = mpsc::channel(4096);
    for i in 0..MAX_BATCH_ENTRIES + 10 {
        tx.try_send(request(vec![entry(&format!("x{i}"), 1)])).unwrap();
    }
    let mut batch = Batch::of(request(vec![entry("a", 1)]), DEFAULT_BATCH_MAX_BYTES);
    assert!(batch.gather(&mut rx).is_none());
    assert_eq!(batch.entries, MAX_BATCH_ENTRIES);
    assert_eq!(rx.len(), 11, "the rest wait for the next batch");
}

#[test]
fn a_request_with_an_entry_already_stored_loses_and_the_others_keep_their_places() {
    let batch = vec![request(vec![entry("a", 1)]), request(vec![entry("b", 1), entry("b", 2)]), request(vec![entry("c", 1)])];
    // The 1-based index 3 is b's second entry.
    assert_eq!(claimed_twice(&batch, &[3]), vec![false, true, false]);
}

#[test]
fn of_two_requests_claiming_one_aggregate_position_the_earlier_wins() {
    let batch = vec![request(vec![entry("a", 1)]), request(vec![entry("a", 1)])];
    assert_eq!(claimed_twice(&batch, &[]), vec![false, true]);
}

#[test]
fn a_rejected_request_claims_nothing_so_a_later_one_may_take_its_position() {
    // The first request loses (its entry is stored already); its other entry (x, 1) is
    // not claimed, so the third request's (x, 1) is kept.
    let batch = vec![request(vec![entry("a", 1), entry("x", 1)]), request(vec![entry("b", 1)]), request(vec![entry("x", 1)])];
    assert_eq!(claimed_twice(&batch, &[1]), vec![true, false, false]);
}

#[test]
fn the_plan_numbers_from_the_head_chains_each_hash_to_the_previous_and_skips_losers() {
    let batch = vec![request(vec![entry("a", 1), entry("a", 2)]), request(vec![entry("b", 1)]), request(vec![entry("c", 1)])];
    let head = (41, [9u8; 32]);
    let (entries, outcomes, new_head) = plan(&batch, head, &[false, true, false]);
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![42, 43, 44], "the loser takes no seq");
    assert_eq!(entries[0].prev_hash, [9u8; 32], "the first entry links to the head");
    assert_eq!(entries[1].prev_hash, entries[0].hash);
    assert_eq!(entries[2].prev_hash, entries[1].hash);
    assert_eq!(new_head, (44, entries[2].hash));
    assert!(matches!(&outcomes[1], Err(LedgerError::Conflict { aggregate_id, .. }) if aggregate_id == "b"));
    let first: Vec<i64> = outcomes[0].as_ref().unwrap().iter().map(|a| a.seq).collect();
    assert_eq!(first, vec![42, 43]);
    assert_eq!(outcomes[2].as_ref().unwrap()[0].seq, 44);
    assert!(entries.iter().all(|e| e.recorded_at == entries[0].recorded_at), "one timestamp per batch");
}

#[test]
fn every_planned_hash_is_the_entry_s_canonical_hash() {
    let batch = vec![request(vec![entry("a", 1)])];
    let (entries, outcomes, _) = plan(&batch, (0, ledger::format::GENESIS_HASH), &[false]);
    let stored = LedgerEntry {
        seq: 1,
        tenant_id: uuid::Uuid::nil(),
        aggregate_type: "Policy".into(),
        aggregate_id: "a".into(),
        aggregate_seq: 1,
        event_type: "PolicyCreated".into(),
        event_version: "1".into(),
        payload: "{}".into(),
        metadata: ledger::EntryMetadata { actor: "alice".into(), ..Default::default() },
        recorded_at: entries[0].recorded_at,
        prev_hash: ledger::format::GENESIS_HASH,
        hash: [0; 32],
    };
    assert_eq!(entries[0].hash, stored.computed_hash());
    assert_eq!(entries[0], LedgerEntry { hash: stored.computed_hash(), ..stored.clone() }, "the entry kept is the one stored");
    assert_eq!(outcomes[0].as_ref().unwrap()[0].hash, stored.computed_hash());
}
