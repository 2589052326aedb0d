//! Confirmation queries allowed per asker: a token bucket each, on a
//! clock the edge passes in.
//!
//! ```text
//!  check(asker, now) ─► refill the asker's bucket (rate × elapsed, up to burst)
//!                       ─► a token left? take it: Allowed
//!                          none: Limited { retry_after: until one is back }
//! ```
//!
//! The map is bounded ([`Limiter::new`]'s `max_askers`): when it is full,
//! buckets that have refilled completely are dropped (a full bucket is
//! what a new asker gets anyway, so forgetting it changes nothing); if
//! none has, a new asker is refused until one does. So a flood of asker
//! ids can neither grow memory nor reset a limited asker's bucket.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the limiter says about one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the rate: try again after this long.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Clone)]
pub struct Limiter {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    max_askers: usize,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    /// `per_minute` queries per asker on average, at most `burst` at once
    /// (each at least 1), for at most `max_askers` askers tracked at once.
    pub fn new(per_minute: u32, burst: u32, max_askers: usize) -> Self {
        Self {
            rate: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            max_askers: max_askers.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one query of `asker` at `now`, if its bucket allows.
    pub fn check(&mut self, asker: &str, now: Instant) -> Decision {
        let (rate, burst) = (self.rate, self.burst);
        let refill = |bucket: &mut Bucket| {
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
            bucket.at = now.max(bucket.at);
        };
        if !self.buckets.contains_key(asker) && self.buckets.len() >= self.max_askers {
            self.buckets.retain(|_, bucket| {
                refill(bucket);
                bucket.tokens < burst
            });
            if self.buckets.len() >= self.max_askers {
                let soonest = (self.buckets.values())
                    .map(|b| (burst - b.tokens) / rate)
                    .fold(f64::INFINITY, f64::min);
                return Decision::Limited {
                    retry_after: Duration::from_secs_f64(soonest.clamp(0.001, 3_600.0)),
                };
            }
        }
        let bucket = (self.buckets.entry(asker.to_owned())).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        refill(bucket);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Decision::Allowed;
        }
        let wait = (1.0 - bucket.tokens) / rate;
        Decision::Limited {
            retry_after: Duration::from_secs_f64(wait.max(0.001)),
        }
    }

    /// Askers tracked now.
    pub fn askers(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asker_gets_its_burst_then_one_query_per_interval() {
        let start = Instant::now();
        let mut limiter = Limiter::new(60, 3, 100);
        for _ in 0..3 {
            assert_eq!(limiter.check("b", start), Decision::Allowed);
        }
        let Decision::Limited { retry_after } = limiter.check("b", start) else {
            panic!("the burst is spent");
        };
        assert_eq!(retry_after.as_millis(), 1_000);
        // Another asker has its own bucket.
        assert_eq!(limiter.check("c", start), Decision::Allowed);
        // One token back per second at 60 a minute.
        let later = start + Duration::from_millis(1_000);
        assert_eq!(limiter.check("b", later), Decision::Allowed);
        assert!(matches!(
            limiter.check("b", later),
            Decision::Limited { .. }
        ));
        // Never more than the burst, however long it rested.
        let rested = start + Duration::from_secs(3_600);
        for _ in 0..3 {
            assert_eq!(limiter.check("b", rested), Decision::Allowed);
        }
        assert!(matches!(
            limiter.check("b", rested),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn a_flood_of_askers_neither_grows_the_map_nor_resets_a_limited_asker() {
        let start = Instant::now();
        let mut limiter = Limiter::new(6, 1, 10);
        assert_eq!(limiter.check("victim", start), Decision::Allowed);
        for n in 0..10_000 {
            let _ = limiter.check(&format!("flood-{n}"), start);
            assert!(limiter.askers() <= 10);
        }
        // Still limited: its spent bucket was never dropped.
        assert!(matches!(
            limiter.check("victim", start),
            Decision::Limited { .. }
        ));
        // Once buckets have refilled (10 s at 6 a minute), new askers fit.
        let later = start + Duration::from_secs(10);
        assert_eq!(limiter.check("newcomer", later), Decision::Allowed);
        assert!(limiter.askers() <= 10);
    }

    #[test]
    fn a_refused_newcomer_is_told_when_a_place_frees() {
        let start = Instant::now();
        let mut limiter = Limiter::new(60, 1, 1);
        assert_eq!(limiter.check("a", start), Decision::Allowed);
        assert_eq!(
            limiter.check("b", start),
            Decision::Limited {
                retry_after: Duration::from_secs(1)
            }
        );
    }
}
