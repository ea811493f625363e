//! The shared ledger tail: what a process's readers take from its appender's memory
//! (`RecentEntries`) is exactly what the audit database holds, and a range holding another
//! process's entries is read from the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use governance_engine::adapters::ledger::{Appender, LedgerReader, NewEntry, DEFAULT_BATCH_MAX_BYTES};
use sqlx::postgres::PgPoolOptions;

async fn pool(var: &str) -> sqlx::PgPool {
    PgPoolOptions::new().max_connections(4).connect(&std::env::var(var).unwrap()).await.unwrap()
}

fn entry(tenant: uuid::Uuid, aggregate_id: &str, payload: &str, with_ids: bool) -> NewEntry {
    NewEntry {
        tenant_id: tenant,
        // Kinds no projector or relay topic knows: the shared test ledger's readers pass
        // over them.
        aggregate_type: if with_ids { "TailTestA".into() } else { "TailTestB".into() },
        aggregate_id: aggregate_id.into(),
        aggregate_seq: 1,
        event_type: "TailTested".into(),
        event_version: "1".into(),
        payload: payload.into(),
        metadata: ledger::EntryMetadata {
            actor: "tail-test".into(),
            request_id: with_ids.then(|| "req-1".into()),
            trace_id: None,
            causation_id: with_ids.then(|| "cause".into()),
            correlation_id: None,
        },
    }
}

#[tokio::test]
async fn entries_read_from_the_appenders_memory_equal_those_read_back_from_the_database() {
    let tenant = uuid::Uuid::new_v4();
    let (mine, mine_handle) = Appender::start(pool("AUMOS_GOVERNANCE_AUDIT_DB_URL").await, DEFAULT_BATCH_MAX_BYTES);
    let (other, other_handle) = Appender::start(pool("AUMOS_GOVERNANCE_AUDIT_DB_URL").await, DEFAULT_BATCH_MAX_BYTES);
    let database = LedgerReader::new(pool("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await);
    let memory = database.clone().with_recent(mine_handle.recent());
    // Payloads whose text a JSON column keeps as written: key order, spacing, big and exact
    // numbers, escapes and non-ASCII text.
    let payloads = [
        r#"{"b":1,"a":[1.50,2e3,-0.0],"big":123456789012345678901234567890}"#,
        r#"{"text":"caf\u00e9 \"quoted\" \\ naïve ✓","nested":{"z":null,"y":true}}"#,
        r#"{"max":1.7976931348623157e308}"#,
    ];
    let mut first = None;
    let mut last = 0;
    let mut my_seqs = Vec::new();
    for round in 0..3 {
        for (i, p) in payloads.iter().enumerate() {
            let appended =
                mine_handle.append(vec![entry(tenant, &format!("{}-{round}-{i}", uuid::Uuid::new_v4()), p, i % 2 == 0)]).await.unwrap();
            first.get_or_insert(appended[0].seq);
            last = appended[0].seq;
            my_seqs.push(appended[0].seq);
        }
        // Another process appends between this one's appends: a gap in its memory.
        let theirs = other_handle.append(vec![entry(tenant, &uuid::Uuid::new_v4().to_string(), "{}", false)]).await.unwrap();
        last = last.max(theirs[0].seq);
    }
    let first = first.unwrap();
    let types: &[&str] = &["TailTestA", "TailTestB"];
    for after in first - 1..last {
        for upto in after + 1..=last {
            let from_db = database.events_of_types_between(types, after, upto).await.unwrap();
            let through_memory = memory.events_of_types_between(types, after, upto).await.unwrap();
            assert_eq!(through_memory, from_db, "range ({after}, {upto}]");
            let one_kind = memory.events_of_types_between(&["TailTestA"], after, upto).await.unwrap();
            assert_eq!(one_kind, database.events_of_types_between(&["TailTestA"], after, upto).await.unwrap());
            assert!(one_kind.iter().all(|e| e.aggregate_type == "TailTestA"));
        }
        let from_db = database.entries_after(after, 1000).await.unwrap();
        let through_memory = memory.entries_after(after, 1000).await.unwrap();
        assert!(!through_memory.is_empty(), "entries after {after}");
        assert_eq!(through_memory[..], from_db[..through_memory.len()], "a prefix of what the database holds after {after}");
    }
    // The memory did answer: a run of this process's consecutive seqs is held, and a range
    // reaching another process's entry is not (that one went to the database above).
    let run_end = my_seqs.windows(2).take_while(|w| w[1] == w[0] + 1).count();
    let held = mine_handle.recent().between(None, first - 1, my_seqs[run_end]).expect("this process's own consecutive entries are held");
    assert_eq!(held.len(), run_end + 1);
    let theirs_next = my_seqs[run_end] + 1;
    assert!(!my_seqs.contains(&theirs_next));
    assert!(mine_handle.recent().between(None, first - 1, theirs_next).is_none(), "another process's entry is not held here");
    // What memory answers is what was hashed: every entry's hash is its canonical hash.
    for e in memory.entries_after(first - 1, 1000).await.unwrap() {
        assert_eq!(e.hash, e.computed_hash(), "seq {}", e.seq);
    }
    drop((mine_handle, other_handle));
    mine.join().await;
    other.join().await;
}
