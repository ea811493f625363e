//! Per-tenant limits on evaluate: a token bucket per tenant, so one tenant's burst cannot
//! take the engine (and the ledger) from the others. Over the limit the caller gets 429
//! with `Retry-After`, the time until its bucket holds a token again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by tenant; idle tenants' buckets are dropped after ten minutes.
#[derive(Debug, Clone)]
pub struct TenantRateLimiter {
    per_second: f64,
    burst: f64,
    buckets: moka::sync::Cache<Uuid, Arc<Mutex<Bucket>>>,
}

impl TenantRateLimiter {
    /// `per_second` tokens refill each second, up to `burst`. `per_second == 0` disables the limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let buckets = moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(600)).build();
        Self { per_second: f64::from(per_second), burst: f64::from(burst.max(1)), buckets }
    }

    /// Takes a token for `tenant`, or says how long until one is available.
    pub fn check(&self, tenant: Uuid) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let bucket = self.buckets.get_with(tenant, || Arc::new(Mutex::new(Bucket { tokens: self.burst, at: Instant::now() })));
        let Ok(mut b) = bucket.lock() else { return Ok(()) };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_burst_then_waits_while_another_tenant_is_unaffected() {
        let limiter = TenantRateLimiter::new(2, 3);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).err();
        assert!(wait.is_some_and(|w| w > Duration::from_millis(300) && w <= Duration::from_millis(500)), "{wait:?}");
        assert!(limiter.check(b).is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = TenantRateLimiter::new(0, 0);
        let a = Uuid::new_v4();
        assert!((0..10_000).all(|_| limiter.check(a).is_ok()));
    }
}
