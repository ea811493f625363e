//! The pool's scheduling: turns between tenants, the cap of busy workers per tenant,
//! and which waiting evaluations go to a worker together.

use super::*;

fn job(tenant: Uuid) -> Job {
    let (reply, _) = oneshot::channel();
    Job {
        tenant,
        request: Request::Check { source: PolicySource::default() },
        source: None,
        budget: Duration::ZERO,
        enqueued: Instant::now(),
        reply,
    }
}

fn queue(s: &mut Scheduler, tenant: Uuid, n: usize) {
    for _ in 0..n {
        let q = s.tenants.entry(tenant).or_default();
        if q.jobs.is_empty() {
            s.ring.push_back(tenant);
        }
        s.tenants.entry(tenant).or_default().jobs.push_back(job(tenant));
    }
}

#[test]
fn tenants_take_turns_and_none_exceeds_its_cap_of_busy_workers() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut s = Scheduler::default();
    queue(&mut s, a, 5);
    queue(&mut s, b, 1);
    assert_eq!(s.next(1).map(|j| j.tenant), Some(a));
    // a is at its cap of one: b goes next although a queued first.
    assert_eq!(s.next(1).map(|j| j.tenant), Some(b));
    assert!(s.next(1).is_none(), "a waits for its running request to finish");
    s.finished(a);
    assert_eq!(s.next(1).map(|j| j.tenant), Some(a));
    s.finished(b);
    assert!(!s.tenants.contains_key(&b), "an idle tenant leaves no state behind");
}

fn evaluation(tenant: Uuid, key: &str, budget_ms: u64) -> Job {
    let (reply, _) = oneshot::channel();
    Job {
        tenant,
        request: Request::Evaluate { key: key.into(), source: None, rule: Some("allow".into()), input: None, budget_ms },
        source: None,
        budget: Duration::from_millis(budget_ms),
        enqueued: Instant::now(),
        reply,
    }
}

fn push(s: &mut Scheduler, job: Job) {
    let q = s.tenants.entry(job.tenant).or_default();
    if q.jobs.is_empty() {
        s.ring.push_back(job.tenant);
    }
    q.jobs.push_back(job);
}

#[test]
fn a_worker_takes_the_following_evaluations_of_the_same_module_only_while_no_other_tenant_waits() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut s = Scheduler::default();
    for _ in 0..5 {
        push(&mut s, evaluation(a, "k1", 200));
    }
    push(&mut s, evaluation(a, "k2", 200));
    push(&mut s, evaluation(a, "k1", 200));
    let first = s.next(1).unwrap();
    // The next three of module k1 (at most `max`), not past the other module.
    assert_eq!(s.same_module(&first, 3).len(), 3);
    assert_eq!(s.same_module(&first, 3).len(), 1, "k2 ends the run of k1");
    let k2 = s.tenants[&a].jobs.front().map(|j| matches!(&j.request, Request::Evaluate { key, .. } if key == "k2"));
    assert_eq!(k2, Some(true));

    // Another tenant waiting: no more for a (it takes its turn first).
    push(&mut s, evaluation(b, "kb", 200));
    assert!(s.same_module(&first, 16).is_empty());
    // Nor evaluations with another budget, nor anything for a request that is not one.
    let mut s = Scheduler::default();
    push(&mut s, evaluation(a, "k1", 200));
    push(&mut s, evaluation(a, "k1", 300));
    let first = s.next(1).unwrap();
    assert!(s.same_module(&first, 16).is_empty());
    assert!(s.same_module(&job(a), 16).is_empty());
}

#[test]
fn jobs_given_back_by_a_lost_worker_are_first_in_their_tenants_queue_in_order() {
    let a = Uuid::new_v4();
    let mut s = Scheduler::default();
    push(&mut s, evaluation(a, "later", 200));
    s.requeue(a, vec![evaluation(a, "k1", 201), evaluation(a, "k1", 202)]);
    let order: Vec<u64> = s.tenants[&a]
        .jobs
        .iter()
        .map(|j| match &j.request {
            Request::Evaluate { budget_ms, .. } => *budget_ms,
            _ => 0,
        })
        .collect();
    assert_eq!(order, vec![201, 202, 200]);
    assert_eq!(s.ring.iter().filter(|t| **t == a).count(), 1, "the tenant is in the ring once");
    // A tenant with nothing queued is put back in the ring.
    let b = Uuid::new_v4();
    s.requeue(b, vec![evaluation(b, "k", 1)]);
    assert_eq!(s.next(1).map(|j| j.tenant), Some(a));
    assert_eq!(s.next(1).map(|j| j.tenant), Some(b));
}
