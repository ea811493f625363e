//! The OPA engine's breaker against a tenant whose policies kill OPA.
//!
//! One builtin call can make OPA allocate past its memory cap and abort before any
//! cancellation reaches it (docs/SECURITY.md); OPA restarts within seconds, but meanwhile
//! every tenant's evaluation fails closed. The breaker bounds how often one tenant can do
//! that: when OPA drops the connections of the queries in flight (it died), the query that
//! had been in flight longest is blamed (a bomb dies within its evaluation budget, so the
//! queries that started after it are the bystanders), and a tenant blamed [`THRESHOLD`]
//! times within [`WINDOW`] is quarantined for [`QUARANTINE`]: its queries to OPA are
//! refused at once with 503 `policy_engine_quarantined`, before they are sent.
//!
//! State is bounded: queries in flight, deaths within the window, quarantines not yet over.
//! The nil tenant (the service's own calls) is never blamed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Deaths a tenant may be blamed for within [`WINDOW`] before it is quarantined.
pub const THRESHOLD: usize = 2;
/// How far back deaths count.
pub const WINDOW: Duration = Duration::from_secs(600);
/// How long a quarantine lasts.
pub const QUARANTINE: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct State {
    /// Increases with each admitted query, so the smallest key in flight is the oldest.
    next: u64,
    /// Queries in flight: their tenant.
    inflight: BTreeMap<u64, Uuid>,
    /// `next` when OPA last died: the queries admitted up to it were in flight then, and
    /// their connection losses are that same death.
    death_mark: u64,
    /// When each tenant was blamed, within the window.
    deaths: HashMap<Uuid, Vec<Instant>>,
    /// Quarantined tenants: until when.
    quarantined: HashMap<Uuid, Instant>,
}

#[derive(Debug, Default)]
pub struct Breaker {
    /// Held only for a few map operations, never across an await.
    state: Mutex<State>,
}

/// A query in flight; dropping it (the query ended, however) forgets it.
#[derive(Debug)]
pub struct InFlight<'a> {
    breaker: &'a Breaker,
    id: u64,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a query of `tenant`, or says how long its quarantine has left.
    pub fn admit(&self, tenant: Uuid) -> Result<InFlight<'_>, Duration> {
        let now = Instant::now();
        let mut s = self.state();
        s.quarantined.retain(|_, until| *until > now);
        if let Some(until) = s.quarantined.get(&tenant) {
            return Err(until.saturating_duration_since(now));
        }
        s.next += 1;
        let id = s.next;
        s.inflight.insert(id, tenant);
        Ok(InFlight { breaker: self, id })
    }

    /// OPA dropped this query's connection mid-request: OPA died. The first report of a
    /// death blames the oldest query then in flight; the reports of the other queries that
    /// were in flight then are the same death. Returns the tenant quarantined by it, if any.
    pub fn died(&self, query: &InFlight<'_>) -> Option<Uuid> {
        let now = Instant::now();
        let mut s = self.state();
        if query.id <= s.death_mark {
            return None;
        }
        s.death_mark = s.next;
        let blamed = s.inflight.values().next().copied().filter(|t| !t.is_nil())?;
        s.deaths.retain(|_, times| {
            times.retain(|t| now.saturating_duration_since(*t) < WINDOW);
            !times.is_empty()
        });
        let times = s.deaths.entry(blamed).or_default();
        times.push(now);
        if times.len() < THRESHOLD {
            tracing::warn!(tenant = %blamed, "OPA died while this tenant's query was the oldest in flight");
            return None;
        }
        s.deaths.remove(&blamed);
        s.quarantined.insert(blamed, now + QUARANTINE);
        tracing::error!(tenant = %blamed, seconds = QUARANTINE.as_secs(), "OPA died during this tenant's queries again: quarantined");
        Some(blamed)
    }

    /// Tenants quarantined now (for `/health/ready`).
    pub fn quarantined(&self) -> Vec<Uuid> {
        let now = Instant::now();
        let s = self.state();
        s.quarantined.iter().filter(|(_, until)| **until > now).map(|(t, _)| *t).collect()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.breaker.state().inflight.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_query_in_flight_is_blamed_and_its_tenant_is_quarantined_at_the_second_death() {
        let b = Breaker::default();
        let (bomber, bystander) = (Uuid::new_v4(), Uuid::new_v4());
        for death in 0..THRESHOLD {
            let bomb = b.admit(bomber).unwrap();
            let other = b.admit(bystander).unwrap();
            assert_eq!(b.died(&other), if death + 1 == THRESHOLD { Some(bomber) } else { None });
            assert_eq!(b.died(&bomb), None, "one death is blamed once");
            drop((bomb, other));
        }
        assert!(b.admit(bomber).is_err_and(|left| left > QUARANTINE - Duration::from_secs(5)), "the bomber waits out its quarantine");
        assert!(b.admit(bystander).is_ok(), "the bystander, never the oldest, is served");
        assert_eq!(b.quarantined(), vec![bomber]);
        assert!(b.state().inflight.is_empty(), "every ended query is forgotten");
    }

    #[test]
    fn a_query_admitted_after_a_death_reports_a_new_one_however_soon() {
        let b = Breaker::default();
        let t = Uuid::new_v4();
        let first = b.admit(t).unwrap();
        let late = b.admit(t).unwrap();
        assert_eq!(b.died(&first), None);
        assert_eq!(b.died(&late), None, "in flight at the first death: the same death");
        drop((first, late));
        let again = b.admit(t).unwrap();
        assert_eq!(b.died(&again), Some(t), "admitted after it: a second death, at once");
    }

    #[test]
    fn the_service_s_own_queries_are_never_blamed() {
        let b = Breaker::default();
        for _ in 0..THRESHOLD + 1 {
            let own = b.admit(Uuid::nil()).unwrap();
            assert_eq!(b.died(&own), None);
        }
        assert!(b.admit(Uuid::nil()).is_ok());
    }
}
