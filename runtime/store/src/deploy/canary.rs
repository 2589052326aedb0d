//! Canary judgement: counts the finished calls a canary version handled
//! and how many of them failed (ran a fallback), and says when its failure
//! rate is over the number's threshold. Pure bookkeeping; the caller
//! stores the rollback and rebuilds the directory.

use std::collections::HashMap;

use super::Canary;

/// A canary to roll back, with the counts that condemned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub calls: u32,
    pub failures: u32,
}

/// Outcomes per (tenant, number, canary version).
#[derive(Debug, Default)]
pub struct CanaryWatch {
    counts: HashMap<(String, String, u32), Verdict>,
}

impl CanaryWatch {
    /// One finished call that ran `canary`'s version on `number`.
    /// `Some` once, when the canary should be rolled back.
    pub fn observe(
        &mut self,
        tenant: &str,
        number: &str,
        canary: &Canary,
        failed: bool,
    ) -> Option<Verdict> {
        let key = (tenant.to_owned(), number.to_owned(), canary.version);
        let seen = self.counts.entry(key.clone()).or_insert(Verdict {
            calls: 0,
            failures: 0,
        });
        seen.calls += 1;
        seen.failures += u32::from(failed);
        let seen = *seen;
        let rate = f64::from(seen.failures) / f64::from(seen.calls);
        if seen.calls >= canary.min_calls.max(1) && rate > canary.max_failure_rate {
            // Judged once: a new canary of the same version starts afresh.
            self.counts.remove(&key);
            return Some(seen);
        }
        None
    }

    /// Forgets the counts of a canary that ended (promoted, replaced).
    pub fn forget(&mut self, tenant: &str, number: &str) {
        self.counts
            .retain(|(t, n, _), _| !(t == tenant && n == number));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary() -> Canary {
        Canary {
            version: 2,
            percent: 50,
            max_failure_rate: 0.2,
            min_calls: 5,
        }
    }

    #[test]
    fn a_canary_is_judged_only_after_its_minimum_calls() {
        let mut watch = CanaryWatch::default();
        for _ in 0..4 {
            assert_eq!(watch.observe("acme", "100", &canary(), true), None);
        }
        assert_eq!(
            watch.observe("acme", "100", &canary(), true),
            Some(Verdict {
                calls: 5,
                failures: 5
            })
        );
        // Counted afresh after the verdict.
        assert_eq!(watch.observe("acme", "100", &canary(), true), None);
    }

    #[test]
    fn a_rate_at_the_threshold_is_kept() {
        let mut watch = CanaryWatch::default();
        for failed in [true, false, false, false, false] {
            assert_eq!(watch.observe("acme", "100", &canary(), failed), None);
        }
        // 2 of 6 is 33 %: over 20 %.
        assert!(watch.observe("acme", "100", &canary(), true).is_some());
    }

    #[test]
    fn numbers_and_tenants_are_counted_apart() {
        let mut watch = CanaryWatch::default();
        for _ in 0..4 {
            watch.observe("acme", "100", &canary(), true);
            watch.observe("acme", "200", &canary(), true);
            watch.observe("globex", "100", &canary(), true);
        }
        watch.forget("acme", "200");
        assert!(watch.observe("acme", "100", &canary(), true).is_some());
        assert!(watch.observe("acme", "200", &canary(), true).is_none());
    }
}
