use std::sync::{Arc, Mutex};

use aggregates::Stream;
use chrono::Utc;
use ledger::{EntryMetadata, LedgerEntry};

use super::Told;
use crate::application::runtime::AppliedListener;

struct Listener {
    types: &'static [&'static str],
    seen: Mutex<Vec<i64>>,
}

#[async_trait::async_trait]
impl AppliedListener for Listener {
    fn aggregate_types(&self) -> &'static [&'static str] {
        self.types
    }

    async fn applied(&self, entry: &LedgerEntry) {
        self.seen.lock().unwrap().push(entry.seq);
    }
}

fn entry(seq: i64, stream: Stream) -> LedgerEntry {
    LedgerEntry {
        seq,
        tenant_id: uuid::Uuid::nil(),
        aggregate_type: stream.aggregate_type().to_owned(),
        aggregate_id: seq.to_string(),
        aggregate_seq: 1,
        event_type: "E".into(),
        event_version: "1".into(),
        payload: "{}".into(),
        metadata: EntryMetadata::default(),
        recorded_at: Utc::now(),
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

const POLICY: &[&str] = &[Stream::Policy.aggregate_type()];
const EVIDENCE: &[&str] = &[Stream::Evidence.aggregate_type()];
const BOTH: &[&str] = &[Stream::Policy.aggregate_type(), Stream::Evidence.aggregate_type()];

#[tokio::test]
async fn a_runner_tells_each_listener_only_of_entries_of_its_types_that_the_projector_handles() {
    let policies = Arc::new(Listener { types: POLICY, seen: Mutex::default() });
    let evidence = Arc::new(Listener { types: EVIDENCE, seen: Mutex::default() });
    let both = Arc::new(Listener { types: BOTH, seen: Mutex::default() });
    let listeners: Vec<Arc<dyn AppliedListener>> = vec![policies.clone(), evidence.clone(), both.clone()];
    let stream = [entry(1, Stream::Policy), entry(2, Stream::PolicyDecision), entry(3, Stream::Evidence)];

    let decisions = Told::of(&projections::decisions::DecisionProjector, &listeners);
    assert!(decisions.types.is_empty(), "no listener acts on decisions: a standby reads none for them");
    assert!(decisions.listeners.is_empty());

    // The system-evidence projector handles policies and decisions: told of policies only.
    let system = Told::of(&projections::system_evidence::SystemEvidenceProjector::default(), &listeners);
    assert_eq!(system.types, POLICY);
    for e in &stream {
        system.applied(e).await;
        decisions.applied(e).await;
    }
    assert_eq!(*policies.seen.lock().unwrap(), vec![1]);
    assert!(evidence.seen.lock().unwrap().is_empty(), "the evidence listener hears of no entry its projector does not handle");
    assert_eq!(*both.seen.lock().unwrap(), vec![1], "a listener of several types hears only of those the projector handles");

    let of_evidence = Told::of(&projections::evidence::EvidenceProjector, &listeners);
    assert_eq!(of_evidence.types, EVIDENCE);
    for e in &stream {
        of_evidence.applied(e).await;
    }
    assert_eq!(*evidence.seen.lock().unwrap(), vec![3]);
    assert_eq!(*policies.seen.lock().unwrap(), vec![1], "nor does the policy listener");
    assert_eq!(*both.seen.lock().unwrap(), vec![1, 3]);
}
