//! Admission (C7): a tenant's new calls above its limits (concurrent
//! calls, calls per second) are refused at once with 503 + Retry-After,
//! before any guest runs, so a tenant at its limit costs the others next
//! to nothing.

use std::collections::HashMap;
use std::time::Instant;

use crate::sip::directory::{Limits, TenantIdx};

#[derive(Debug, Default)]
pub struct Admission {
    active: HashMap<TenantIdx, u32>,
    buckets: HashMap<TenantIdx, Bucket>,
    /// Calls refused since start.
    pub refused: u64,
}

/// A token bucket of `calls_per_second` tokens, refilled continuously.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Admission {
    /// Takes a call of `tenant` in, or says after how many seconds to try
    /// again.
    pub fn admit(&mut self, now: Instant, tenant: TenantIdx, limits: Limits) -> Result<(), u32> {
        let active = self.active.get(&tenant).copied().unwrap_or(0);
        if limits.max_calls.is_some_and(|max| active >= max) {
            self.refused += 1;
            return Err(1);
        }
        if let Some(rate) = limits.calls_per_second.filter(|r| *r > 0) {
            let rate = f64::from(rate);
            let bucket = self.buckets.entry(tenant).or_insert(Bucket {
                tokens: rate,
                at: now,
            });
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
            bucket.at = now;
            if bucket.tokens < 1.0 {
                self.refused += 1;
                let wait = (1.0 - bucket.tokens) / rate;
                return Err(wait.ceil().max(1.0) as u32);
            }
            bucket.tokens -= 1.0;
        }
        *self.active.entry(tenant).or_default() += 1;
        Ok(())
    }

    /// A call admitted for `tenant` ended.
    pub fn ended(&mut self, tenant: TenantIdx) {
        if let Some(n) = self.active.get_mut(&tenant) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn concurrent_calls_are_capped_per_tenant() {
        let now = Instant::now();
        let mut a = Admission::default();
        let limits = Limits {
            max_calls: Some(2),
            calls_per_second: None,
        };
        assert!(a.admit(now, 0, limits).is_ok());
        assert!(a.admit(now, 0, limits).is_ok());
        assert_eq!(a.admit(now, 0, limits), Err(1));
        assert!(
            a.admit(now, 1, limits).is_ok(),
            "another tenant is not affected"
        );
        a.ended(0);
        assert!(a.admit(now, 0, limits).is_ok());
        assert_eq!(a.refused, 1);
    }

    #[test]
    fn the_call_rate_is_a_token_bucket_per_tenant() {
        let now = Instant::now();
        let mut a = Admission::default();
        let limits = Limits {
            max_calls: None,
            calls_per_second: Some(2),
        };
        assert!(a.admit(now, 0, limits).is_ok());
        assert!(a.admit(now, 0, limits).is_ok());
        assert_eq!(a.admit(now, 0, limits), Err(1));
        assert!(
            a.admit(now + Duration::from_millis(499), 0, limits)
                .is_err()
        );
        assert!(a.admit(now + Duration::from_millis(500), 0, limits).is_ok());
        assert!(
            a.admit(now, 1, Limits::default()).is_ok(),
            "no limits, no refusal"
        );
    }
}
