//! Leadership by PostgreSQL advisory lock: with several service processes, exactly one
//! runs each projector (and the Kafka relay). The lock is held by a dedicated connection
//! for as long as it lives; when the leader dies its connection closes, the lock is
//! released, and a standby takes over within its retry interval.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

/// A held lock. Dropping it closes its connection, which releases the lock.
#[derive(Debug)]
pub struct Leadership {
    conn: PgConnection,
    checked: Instant,
}

fn key(name: &str) -> i64 {
    // Stable across processes and releases: FNV-1a of the name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

impl Leadership {
    /// Tries once to become the leader for `name`.
    pub async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Leadership>, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key(name)).fetch_one(&mut conn).await?;
        Ok(got.then(|| Leadership { conn, checked: Instant::now() }))
    }

    /// Whether the lock is still held: its connection still answers (checked at most every
    /// two seconds, so the hot loop stays cheap).
    pub async fn still_held(&mut self) -> bool {
        if self.checked.elapsed() < Duration::from_secs(2) {
            return true;
        }
        self.checked = Instant::now();
        sqlx::query("SELECT 1").execute(&mut self.conn).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(super::key("policies"), super::key("policies"));
        assert_ne!(super::key("policies"), super::key("decisions"));
    }
}
