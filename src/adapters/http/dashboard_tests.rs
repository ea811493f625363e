use super::*;
use aggregates::compliance::Outcome;
use projections::compliance::WorkflowView;
use std::sync::atomic::AtomicBool;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn workflow(n: u128, regulation: &str) -> WorkflowView {
    WorkflowView {
        workflow_id: Uuid::from_u128(n),
        regulation: regulation.into(),
        name: format!("w{n}"),
        scope_all: true,
        scope_requirements: vec![],
        owner: "o".into(),
        audit_period_start: day(1),
        audit_period_end: day(28),
        due_date: day(30),
        state: "draft".into(),
        created_by: "o".into(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        last_seq: 1,
        certification: None,
        certified_until: None,
    }
}

fn record(n: u128, workflow: u128, controls: &[&str], until: NaiveDate, outcome: Outcome) -> EvidenceFacts {
    EvidenceFacts {
        evidence_id: Uuid::from_u128(1000 + n),
        workflow_id: Uuid::from_u128(workflow),
        kind: EvidenceKind::ALL[(n % 6) as usize],
        requirement_ids: vec![],
        control_ids: controls.iter().map(|c| (*c).to_owned()).collect(),
        valid_from: day(1),
        valid_until: until,
        outcome,
        review_verdict: None,
    }
}

/// The batches `records` are sent in, with batches of at least `size`.
fn batches(records: Vec<EvidenceFacts>, size: usize) -> Vec<Vec<EvidenceFacts>> {
    let (to, mut received) = tokio::sync::mpsc::channel(records.len() + 1);
    let sent: Result<(), String> = futures::executor::block_on(send_in_batches(
        futures::stream::iter(records.into_iter().map(Ok)),
        size,
        std::slice::from_ref(&to),
        &AtomicBool::new(false),
    ));
    sent.unwrap();
    drop(to);
    std::iter::from_fn(|| received.blocking_recv()).collect()
}

#[test]
fn evidence_is_sent_in_batches_that_end_where_a_workflow_does_and_hold_every_record_in_order() {
    let workflows = [1, 1, 1, 2, 3, 3, 3, 3, 4, 4];
    let records: Vec<EvidenceFacts> =
        workflows.iter().enumerate().map(|(i, w)| record(i as u128, *w, &["PR.AA-01"], day(29), Outcome::Pass)).collect();
    let sent = batches(records.clone(), 2);
    let ids = |b: &[EvidenceFacts]| b.iter().map(|e| e.workflow_id.as_u128()).collect::<Vec<_>>();
    assert_eq!(sent.iter().map(|b| ids(b)).collect::<Vec<_>>(), vec![vec![1, 1, 1], vec![2, 3, 3, 3, 3], vec![4, 4]]);
    assert_eq!(sent.concat(), records, "every record, once, in order");
    // One batch when the size is never reached; none when there is nothing.
    assert_eq!(batches(records.clone(), 100), vec![records]);
    assert!(batches(vec![], 2).is_empty());
}

#[test]
fn a_failing_stream_of_evidence_is_an_error_not_a_shorter_dashboard() {
    let (to, _received) = tokio::sync::mpsc::channel(4);
    let rows = vec![Ok(record(1, 1, &[], day(29), Outcome::Pass)), Err("connection lost"), Ok(record(2, 1, &[], day(29), Outcome::Pass))];
    let sent = futures::executor::block_on(send_in_batches(futures::stream::iter(rows), 1, &[to], &AtomicBool::new(false)));
    assert_eq!(sent, Err("connection lost"));
}

#[test]
fn a_dashboard_judged_as_its_evidence_streams_counts_what_judging_each_workflow_alone_counts() {
    let workflows = vec![workflow(1, "soc2"), workflow(2, "soc2"), workflow(3, "hipaa"), workflow(4, "soc2")];
    // Workflow 4 has no evidence; workflow 9 is not shown (another regulation's filter).
    let mut records = vec![
        record(1, 1, &["PR.AA-01", "DE.CM-01"], day(29), Outcome::Pass),
        record(2, 1, &["PR.AA-05"], day(20), Outcome::Pass),
        record(3, 2, &["GV.OC-01"], day(29), Outcome::Fail),
        record(4, 2, &["PR.AA-01"], day(28), Outcome::Pass),
        record(5, 3, &["PR.AA-01", "ID.AM-01"], day(29), Outcome::Pass),
        record(6, 9, &["PR.AA-01"], day(29), Outcome::Pass),
    ];
    records.sort_by_key(|e| e.workflow_id);
    let (as_of, window) = (day(27), 30);
    let expected = {
        let mut counts = [0usize; RequirementStatus::ALL.len()];
        for wf in &workflows {
            let code = RegulationCode::parse(&wf.regulation).unwrap();
            let index = RegulationIndex::new(code, &[]);
            let own: Vec<EvidenceFacts> = records.iter().filter(|e| e.workflow_id == wf.workflow_id).cloned().collect();
            let na = HashMap::new();
            let j = Judging { workflow: wf, index: &index, evidence: &own, system: &[], not_applicable: &na, as_of, expiring_days: window };
            for (total, n) in counts.iter_mut().zip(count_statuses(j)) {
                *total += n;
            }
        }
        counts
    };
    for size in [1, 2, 100] {
        let read = Read { workflows: workflows.clone(), system: vec![], na_rows: vec![], decisions: vec![], links: vec![] };
        let (to, received) = tokio::sync::mpsc::channel(16);
        for batch in batches(records.clone(), size) {
            to.try_send(batch).unwrap();
        }
        drop(to);
        let d = summarize(read, vec![received], None, None, as_of, window).unwrap();
        let counted: Vec<usize> =
            RequirementStatus::ALL.iter().map(|s| d.requirements_by_status.get(s.as_str()).copied().unwrap_or(0)).collect();
        assert_eq!(counted, expected.to_vec(), "batches of {size}");
        assert!(expected[RequirementStatus::ALL.iter().position(|s| *s == RequirementStatus::Missing).unwrap()] > 0);
        assert_eq!(d.workflows, 4);
        // The shown workflows' records only: five, each of its kind.
        assert_eq!(d.evidence_by_kind.values().sum::<usize>(), 5, "{:?}", d.evidence_by_kind);
        let soon: Vec<u128> = d.expiring_soon.iter().map(|e| e.evidence_id.as_u128() - 1000).collect();
        assert_eq!(soon, vec![4, 1, 3, 5], "in the window, soonest first (then by id), not workflow 9's");
    }
}

#[test]
fn at_most_a_hundred_records_are_listed_as_expiring_the_soonest_first() {
    let workflows = vec![workflow(1, "soc2")];
    let records: Vec<EvidenceFacts> =
        (0..450u128).map(|n| record(n, 1, &["PR.AA-01"], day(28) + chrono::Days::new((449 - n) as u64 % 20), Outcome::Pass)).collect();
    let read = Read { workflows, system: vec![], na_rows: vec![], decisions: vec![], links: vec![] };
    let (to, received) = tokio::sync::mpsc::channel(1);
    to.try_send(records.clone()).unwrap();
    drop(to);
    let d = summarize(read, vec![received], None, None, day(27), 30).unwrap();
    let mut expected: Vec<(NaiveDate, Uuid)> = records.iter().map(|e| (e.valid_until, e.evidence_id)).collect();
    expected.sort();
    expected.truncate(100);
    assert_eq!(d.expiring_soon.iter().map(|e| (e.valid_until, e.evidence_id)).collect::<Vec<_>>(), expected);
}

#[test]
fn batches_go_to_each_judging_thread_in_turn_and_their_tallies_add_up_to_one_threads() {
    let workflows: Vec<WorkflowView> = (1..=6).map(|n| workflow(n, if n % 2 == 0 { "soc2" } else { "iso27001" })).collect();
    let records: Vec<EvidenceFacts> = (0..30u128)
        .map(|n| {
            record(
                n,
                1 + n / 5,
                &[["PR.AA-01", "DE.CM-01", "GV.OC-01"][(n % 3) as usize]],
                day(20) + chrono::Days::new((n % 15) as u64),
                Outcome::Pass,
            )
        })
        .collect();
    let judged = |threads: usize| {
        let read = Read { workflows: workflows.clone(), system: vec![], na_rows: vec![], decisions: vec![], links: vec![] };
        let (to, received): (Vec<_>, Vec<_>) = (0..threads).map(|_| tokio::sync::mpsc::channel(16)).unzip();
        let sent: Result<(), String> = futures::executor::block_on(send_in_batches(
            futures::stream::iter(records.clone().into_iter().map(Ok)),
            4,
            &to,
            &AtomicBool::new(false),
        ));
        sent.unwrap();
        assert!(to.iter().all(|t| t.capacity() < 16), "every thread is sent batches");
        drop(to);
        let d = summarize(read, received, None, None, day(21), 30).unwrap();
        (d.requirements_by_status, d.evidence_by_kind, d.expiring_soon.iter().map(|e| e.evidence_id).collect::<Vec<_>>())
    };
    let one = judged(1);
    assert!(one.0.len() >= 2, "{:?}", one.0);
    assert_eq!(judged(2), one);
    assert_eq!(judged(3), one);
}

#[test]
fn the_split_between_two_streams_leaves_their_share_of_the_workflows_below_it_and_the_rest_at_or_above() {
    for n in [1u128, 2, 3, 520, 521] {
        // Ids out of order, as the read model lists them (by creation, not by id).
        let workflows: Vec<WorkflowView> = (0..n).map(|i| workflow((i * 7919) % 1_000_003 + 1, "soc2")).collect();
        for (low, judges) in [(1, 2), (1, 3), (2, 4)] {
            let split = pivot(&workflows, low, judges);
            let below = workflows.iter().filter(|w| w.workflow_id < split).count();
            assert_eq!(below, workflows.len() * low / judges, "{n} workflows, {low} of {judges} judging threads");
            assert!(workflows.iter().any(|w| w.workflow_id == split), "the split is a workflow's id, read by the upper stream");
        }
    }
    assert_eq!(pivot(&[], 1, 2), Uuid::nil());
}

#[test]
fn a_stream_stops_once_the_other_stream_failed_and_a_failing_stream_stops_the_other() {
    let records: Vec<EvidenceFacts> = (0..6u128).map(|n| record(n, n, &["PR.AA-01"], day(29), Outcome::Pass)).collect();
    // The other stream failed: nothing more is sent.
    let (to, mut received) = tokio::sync::mpsc::channel(16);
    let stop = AtomicBool::new(true);
    let sent =
        futures::executor::block_on(send_in_batches(futures::stream::iter(records.clone().into_iter().map(Ok::<_, ()>)), 1, &[to], &stop));
    assert_eq!(sent, Ok(()));
    assert!(received.try_recv().is_err(), "a stopped stream sends nothing");
    // This stream fails after two records: it says so and stops the other.
    let (to, _received) = tokio::sync::mpsc::channel(16);
    let stop = AtomicBool::new(false);
    let failing = records.into_iter().take(2).map(Ok).chain([Err("lost")]);
    let sent = futures::executor::block_on(send_in_batches(futures::stream::iter(failing), 1, &[to], &stop));
    assert_eq!(sent, Err("lost"));
    assert!(stop.load(std::sync::atomic::Ordering::Relaxed), "the other stream is told to stop");
}
