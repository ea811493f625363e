//! Leadership by PostgreSQL advisory lock, and the one loop that runs a task only on the
//! leader: with several service processes, exactly one runs each projector and the Kafka
//! relay. The lock is held by a dedicated connection for as long as it lives; when the
//! leader dies its connection closes, the lock is released, and a standby takes over within
//! its retry interval. A standby retries on the same dedicated connection: it opens one
//! connection, not one per attempt.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

/// How often a leader checks that its lock connection still answers.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long to wait after the lock itself could not be tried (database unreachable).
const RETRY_AFTER: Duration = Duration::from_millis(500);

fn key(name: &str) -> i64 {
    // Stable across processes and releases: FNV-1a of the name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// What [`Contender::contend`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This process just took the lock.
    Elected,
    /// This process held the lock already.
    Leader,
    /// Another process holds the lock.
    Standby,
}

/// One process's claim on one lock.
#[derive(Debug)]
pub struct Contender {
    key: i64,
    /// The dedicated connection the lock lives on; kept between attempts while standing by.
    conn: Option<PgConnection>,
    /// Whether `conn` holds the lock, and when that was last confirmed.
    held: Option<Instant>,
}

impl Contender {
    pub fn new(name: &str) -> Self {
        Self { key: key(name), conn: None, held: None }
    }

    /// Keeps the lock if this process holds it (its connection is checked at most every two
    /// seconds, so the hot loop stays cheap), or tries once to take it.
    pub async fn contend(&mut self, pool: &PgPool) -> Result<Role, sqlx::Error> {
        if let Some(checked) = self.held {
            if checked.elapsed() < CHECK_EVERY {
                return Ok(Role::Leader);
            }
            if let Some(conn) = self.conn.as_mut() {
                if sqlx::query("SELECT 1").execute(conn).await.is_ok() {
                    self.held = Some(Instant::now());
                    return Ok(Role::Leader);
                }
            }
            // The connection died, and the lock with it.
            self.held = None;
            self.conn = None;
        }
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.conn.insert(pool.acquire().await?.detach()),
        };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(self.key).fetch_one(conn).await {
            Ok(true) => {
                self.held = Some(Instant::now());
                Ok(Role::Elected)
            }
            Ok(false) => Ok(Role::Standby),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// The least time between two batches of a leader that keeps up with the head (a
/// projector, the relay). Under load, the entries appended meanwhile go in one batch
/// instead of one each: at a thousand decisions a second, every decision cost each
/// projector that records decisions a transaction of five statements. Idle, it adds
/// nothing (the last batch is older); a backlog is worked off without pause. It bounds
/// the added lag.
pub const COALESCE: Duration = Duration::from_millis(5);

/// When a leader's last batch brought it up to the head (see [`COALESCE`]).
#[derive(Debug, Default)]
pub struct Coalescer {
    caught_up_at: Option<Instant>,
}

impl Coalescer {
    /// The pause before the next batch, while the last one that reached the head is
    /// younger than [`COALESCE`].
    pub fn pause(&self) -> Option<Pace> {
        self.pause_at(Instant::now())
    }

    /// [`Self::pause`] at `now` (tests give the instants, so no test depends on the clock).
    fn pause_at(&self, now: Instant) -> Option<Pace> {
        let since = now.saturating_duration_since(self.caught_up_at?);
        (since < COALESCE).then(|| Pace::Retry(COALESCE - since))
    }

    /// Records a batch just done: whether it held entries and reached the head.
    pub fn done(&mut self, reached_head: bool) {
        self.done_at(reached_head, Instant::now());
    }

    fn done_at(&mut self, reached_head: bool, now: Instant) {
        self.caught_up_at = reached_head.then_some(now);
    }
}

/// What a leader-only task wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Run again at once (there is more to do).
    Again,
    /// Wait for a local append (the wake channel) or this long.
    Idle(Duration),
    /// Wait this long, ignoring wakes (after a failure).
    Retry(Duration),
}

/// A task that runs only on the leader (a projector, the relay).
#[async_trait::async_trait]
pub trait LeaderTask: Send {
    /// The advisory lock's name.
    fn lock_name(&self) -> String;
    /// This process just became the leader (log it, reset positions read as a standby).
    async fn elected(&mut self);
    /// One step as the leader.
    async fn lead(&mut self) -> Pace;
    /// One step as a standby (follow the leader's progress).
    async fn follow(&mut self) -> Pace;
}

/// Runs `task` until `shutdown`: [`LeaderTask::lead`] while this process holds the task's
/// lock, [`LeaderTask::follow`] while another does.
pub async fn run<T: LeaderTask>(mut task: T, pool: PgPool, mut wake: watch::Receiver<i64>, mut shutdown: watch::Receiver<bool>) {
    let mut contender = Contender::new(&task.lock_name());
    while !*shutdown.borrow() {
        let (pace, standby) = match contender.contend(&pool).await {
            Ok(Role::Elected) => {
                task.elected().await;
                (task.lead().await, false)
            }
            Ok(Role::Leader) => (task.lead().await, false),
            Ok(Role::Standby) => (task.follow().await, true),
            Err(e) => {
                tracing::warn!(lock = %task.lock_name(), error = %e, "cannot try the leader lock; retrying");
                (Pace::Retry(RETRY_AFTER), false)
            }
        };
        match pace {
            Pace::Again => {}
            // A standby is not woken by this process's appends: it has nothing to apply,
            // and each wake cost it a lock attempt and a read of the leader's progress, for
            // every task, at every append. It follows at its own pace.
            Pace::Idle(d) if standby => pause(&mut shutdown, d).await,
            Pace::Idle(d) => {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(d) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Pace::Retry(d) => pause(&mut shutdown, d).await,
        }
    }
}

/// Waits `d` or until shutdown.
pub async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leader_pauses_only_after_a_batch_that_reached_the_head_and_not_longer_than_coalesce() {
        let (mut c, t0) = (super::Coalescer::default(), std::time::Instant::now());
        let ms = std::time::Duration::from_millis;
        assert_eq!(c.pause_at(t0), None, "nothing done yet: no pause");
        c.done_at(false, t0);
        assert_eq!(c.pause_at(t0), None, "a backlog is worked off without pause");
        c.done_at(true, t0);
        assert_eq!(c.pause_at(t0), Some(super::Pace::Retry(super::COALESCE)), "a caught-up leader pauses");
        assert_eq!(c.pause_at(t0 + ms(2)), Some(super::Pace::Retry(super::COALESCE - ms(2))), "for what is left of COALESCE");
        assert_eq!(c.pause_at(t0 + super::COALESCE), None, "the pause is over once COALESCE has passed");
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(super::key("policies"), super::key("policies"));
        assert_ne!(super::key("policies"), super::key("decisions"));
    }
}
