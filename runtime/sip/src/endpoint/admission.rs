//! Admission (C7), sans-IO: a new call starts at once when its tenant's
//! limits (concurrent calls, calls per second) and the runtime's capacity
//! (`[admission]`) allow; otherwise it waits in its tenant's queue
//! (bounded, at most `queue_wait`) or is refused with 503 + Retry-After,
//! before any guest runs.
//!
//! Fairness: when capacity frees (a call ends, a token arrives), waiting
//! calls are taken round-robin between the tenants that have any, FIFO
//! within a tenant, so one tenant's flood cannot starve another.
//!
//! ```text
//!   admit(now, tenant, limits, key) ─► Admitted · Queued · Refused
//!   ended(now, tenant)                 (frees a place, releases waiters)
//!   withdraw(tenant, key)              (a CANCEL of a waiting call)
//!   handle_timeout(now)                (tokens arrived, waits expired)
//!   poll() ◄─ Admitted(key) · Expired(key)
//!   poll_timeout() ◄─ next wait expiry or token a waiter needs
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::directory::{Limits, TenantIdx};
use crate::message;
use crate::transaction::TxKey;

use super::Endpoint;
use super::call::NewCall;

/// The runtime's capacity across tenants (`[admission]`); `None` is
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub max_calls: Option<u32>,
    pub calls_per_second: Option<u32>,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// At a concurrent-calls limit, and no room in the queue.
    Full,
    /// At a calls-per-second limit, and no room in the queue.
    Rate,
    /// Waited `queue_wait` without a place freeing.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    /// Waiting: [`Outcome`]s say what became of it.
    Queued,
    Refused {
        reason: Reason,
        retry_after: u32,
    },
}

/// What became of a waiting call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<K> {
    /// It holds a place now: start it.
    Admitted(K),
    /// Its wait ran out: refuse it (503, Retry-After 1).
    Expired(K),
}

/// Admission figures for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Calls refused since start, by reason.
    pub refused_full: u64,
    pub refused_rate: u64,
    pub refused_timeout: u64,
    /// Calls that waited and were then admitted, since start.
    pub admitted_after_wait: u64,
    /// Calls waiting now, by tenant id (every tenant, zeros included).
    pub waiting: Vec<(String, u64)>,
}

/// Within this of a whole token, a bucket counts as holding one (float
/// refills computed at the instant a token is due may fall a hair short).
const EPSILON: f64 = 1e-6;

#[derive(Debug)]
pub struct Admission<K> {
    global: Gate,
    tenants: HashMap<TenantIdx, Tenant<K>>,
    /// Tenants with waiting calls, in turn order.
    ring: VecDeque<TenantIdx>,
    out: VecDeque<Outcome<K>>,
    refused: [u64; 3],
    admitted_after_wait: u64,
}

#[derive(Debug)]
struct Tenant<K> {
    gate: Gate,
    limits: Limits,
    queue: VecDeque<Waiting<K>>,
}

#[derive(Debug)]
struct Waiting<K> {
    key: K,
    deadline: Instant,
}

/// Concurrent calls and a token bucket of `rate` tokens per second, as
/// deep as the rate, refilled continuously.
#[derive(Debug, Default)]
struct Gate {
    max: Option<u32>,
    active: u32,
    bucket: Option<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Gate {
    fn configure(&mut self, now: Instant, max: Option<u32>, rate: Option<u32>) {
        self.max = max;
        match rate.filter(|r| *r > 0).map(f64::from) {
            None => self.bucket = None,
            Some(rate) => {
                let bucket = self.bucket.get_or_insert(Bucket {
                    rate,
                    tokens: rate,
                    at: now,
                });
                bucket.rate = rate;
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(b) = &mut self.bucket {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * b.rate).min(b.rate);
            b.at = b.at.max(now);
        }
    }

    /// What stops a call now (concurrency before rate).
    fn blocked(&self) -> Option<Reason> {
        if self.max.is_some_and(|max| self.active >= max) {
            return Some(Reason::Full);
        }
        match &self.bucket {
            Some(b) if b.tokens + EPSILON < 1.0 => Some(Reason::Rate),
            _ => None,
        }
    }

    fn take(&mut self) {
        self.active += 1;
        if let Some(b) = &mut self.bucket {
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
    }

    fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// When the bucket holds a token again (`at` if it does now).
    fn token_at(&self) -> Option<Instant> {
        let b = self.bucket.as_ref()?;
        let missing = (1.0 - b.tokens).max(0.0);
        // Rounded up, so the refill at that instant reaches the token.
        let nanos = (missing / b.rate * 1e9).ceil() as u64 + 1_000;
        Some(b.at + Duration::from_nanos(nanos))
    }

    fn at_max(&self) -> bool {
        self.max.is_some_and(|max| self.active >= max)
    }
}

impl<K: PartialEq> Admission<K> {
    pub fn new(now: Instant, capacity: Capacity) -> Self {
        let mut global = Gate::default();
        global.configure(now, capacity.max_calls, capacity.calls_per_second);
        Self {
            global,
            tenants: HashMap::new(),
            ring: VecDeque::new(),
            out: VecDeque::new(),
            refused: [0; 3],
            admitted_after_wait: 0,
        }
    }

    /// A new call `key` of `tenant`: it starts now, waits, or is refused.
    pub fn admit(&mut self, now: Instant, tenant: TenantIdx, limits: Limits, key: K) -> Decision {
        self.decide(now, tenant, limits, Some(key))
    }

    /// A new call that cannot wait (an outbound call: nobody holds on
    /// the line): it starts now or is refused, never queued.
    pub fn try_admit(&mut self, now: Instant, tenant: TenantIdx, limits: Limits) -> Decision {
        self.decide(now, tenant, limits, None)
    }

    fn decide(
        &mut self,
        now: Instant,
        tenant: TenantIdx,
        limits: Limits,
        key: Option<K>,
    ) -> Decision {
        // Tokens that arrived since the last timer go to those waiting first.
        self.release(now);
        self.global.refill(now);
        let t = self.tenants.entry(tenant).or_insert_with(|| Tenant {
            gate: Gate::default(),
            limits,
            queue: VecDeque::new(),
        });
        t.limits = limits;
        t.gate
            .configure(now, limits.max_calls, limits.calls_per_second);
        t.gate.refill(now);
        let blocked = t.gate.blocked().or(self.global.blocked());
        // Behind others of its tenant even if a place is free: FIFO.
        if blocked.is_none() && t.queue.is_empty() {
            t.gate.take();
            self.global.take();
            return Decision::Admitted;
        }
        let reason = blocked.unwrap_or(Reason::Full);
        if let Some(key) = key
            && t.queue.len() < limits.queue as usize
            && !limits.queue_wait.is_zero()
        {
            if t.queue.is_empty() {
                self.ring.push_back(tenant);
            }
            t.queue.push_back(Waiting {
                key,
                deadline: now + limits.queue_wait,
            });
            return Decision::Queued;
        }
        let retry_after = match reason {
            Reason::Rate => {
                let at = [t.gate.token_at(), self.global.token_at()]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(now);
                let secs = at.saturating_duration_since(now).as_secs_f64();
                secs.ceil().max(1.0) as u32
            }
            Reason::Full | Reason::Timeout => 1,
        };
        self.count(reason);
        Decision::Refused {
            reason,
            retry_after,
        }
    }

    /// A call admitted for `tenant` ended: its place goes to a waiter.
    pub fn ended(&mut self, now: Instant, tenant: TenantIdx) {
        if let Some(t) = self.tenants.get_mut(&tenant) {
            t.gate.release();
            self.global.release();
        }
        self.release(now);
    }

    /// A waiting call given up (CANCEL); `false` when it was not waiting.
    pub fn withdraw(&mut self, tenant: TenantIdx, key: &K) -> bool {
        let Some(t) = self.tenants.get_mut(&tenant) else {
            return false;
        };
        let Some(at) = t.queue.iter().position(|w| w.key == *key) else {
            return false;
        };
        t.queue.remove(at);
        if t.queue.is_empty() {
            self.ring.retain(|i| *i != tenant);
        }
        true
    }

    /// Admits waiters whose tokens arrived, then expires waits that ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release(now);
        let mut expired = 0;
        for idx in &self.ring {
            let Some(t) = self.tenants.get_mut(idx) else {
                continue;
            };
            // One wait per tenant, so its deadlines are in queue order.
            while t.queue.front().is_some_and(|w| w.deadline <= now) {
                if let Some(w) = t.queue.pop_front() {
                    self.out.push_back(Outcome::Expired(w.key));
                    expired += 1;
                }
            }
        }
        self.refused[2] += expired;
        let tenants = &self.tenants;
        self.ring
            .retain(|i| tenants.get(i).is_some_and(|t| !t.queue.is_empty()));
    }

    /// The earliest wait expiry, or token some waiter needs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        for t in self.ring.iter().filter_map(|i| self.tenants.get(i)) {
            let Some(front) = t.queue.front() else {
                continue;
            };
            let mut at = front.deadline;
            // Only an ending call frees a place at a concurrency limit.
            if !t.gate.at_max() && !self.global.at_max() {
                let token = [t.gate.token_at(), self.global.token_at()]
                    .into_iter()
                    .flatten()
                    .max();
                if let Some(token) = token {
                    at = at.min(token);
                }
            }
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        earliest
    }

    pub fn poll(&mut self) -> Option<Outcome<K>> {
        self.out.pop_front()
    }

    /// Calls of `tenant` waiting now.
    pub fn waiting(&self, tenant: TenantIdx) -> usize {
        self.tenants.get(&tenant).map_or(0, |t| t.queue.len())
    }

    /// The counters, with `tenants` (index, id) for the waiting gauge.
    pub fn stats<'a>(&self, tenants: impl Iterator<Item = (TenantIdx, &'a str)>) -> AdmissionStats {
        AdmissionStats {
            refused_full: self.refused[0],
            refused_rate: self.refused[1],
            refused_timeout: self.refused[2],
            admitted_after_wait: self.admitted_after_wait,
            waiting: tenants
                .map(|(idx, id)| (id.to_string(), self.waiting(idx) as u64))
                .collect(),
        }
    }

    fn count(&mut self, reason: Reason) {
        let slot = match reason {
            Reason::Full => 0,
            Reason::Rate => 1,
            Reason::Timeout => 2,
        };
        self.refused[slot] += 1;
    }

    /// Hands free places to waiters: one per tenant per round, in ring
    /// order; a tenant served goes behind those that were not.
    fn release(&mut self, now: Instant) {
        if self.ring.is_empty() {
            return;
        }
        self.global.refill(now);
        loop {
            let mut kept = VecDeque::with_capacity(self.ring.len());
            let mut served = VecDeque::new();
            while let Some(idx) = self.ring.pop_front() {
                let Some(t) = self.tenants.get_mut(&idx) else {
                    continue;
                };
                if self.global.blocked().is_some() {
                    kept.push_back(idx);
                    continue;
                }
                t.gate.refill(now);
                if t.gate.blocked().is_some() {
                    kept.push_back(idx);
                    continue;
                }
                let Some(w) = t.queue.pop_front() else {
                    continue;
                };
                t.gate.take();
                self.global.take();
                self.admitted_after_wait += 1;
                self.out.push_back(Outcome::Admitted(w.key));
                if !t.queue.is_empty() {
                    served.push_back(idx);
                }
            }
            // Those kept stay blocked (places only got scarcer this
            // round): another round only for tenants just served.
            let again = !served.is_empty();
            kept.extend(served);
            self.ring = kept;
            if !again {
                break;
            }
        }
    }
}

// ------------------------------------------------------------ the endpoint's side

impl Endpoint {
    /// A routed INVITE through admission: started, parked, or refused.
    pub(super) fn admit(&mut self, now: Instant, new: NewCall) {
        let tenant = new.route.tenant;
        let limits = self.directory.tenant(tenant).limits;
        match self.admission.admit(now, tenant, limits, new.key.clone()) {
            Decision::Admitted => self.begin_call(now, new),
            // The transaction layer sends 100 Trying after 200 ms, which
            // stops the caller's retransmissions while it waits.
            Decision::Queued => {
                self.waiting.insert(new.key.clone(), new);
            }
            Decision::Refused {
                reason,
                retry_after,
            } => self.refuse(now, &new, reason, retry_after),
        }
        self.drain_admission(now);
    }

    /// Starts the calls admission let in, refuses those whose wait ran out.
    pub(super) fn drain_admission(&mut self, now: Instant) {
        if self.admitting {
            return;
        }
        self.admitting = true;
        while let Some(outcome) = self.admission.poll() {
            match outcome {
                Outcome::Admitted(key) => match self.waiting.remove(&key) {
                    Some(new) => self.begin_call(now, new),
                    // Waiting calls leave the queue and this map together.
                    None => tracing::error!("an admitted call was not waiting"),
                },
                Outcome::Expired(key) => {
                    if let Some(new) = self.waiting.remove(&key) {
                        self.refuse(now, &new, Reason::Timeout, 1);
                    }
                }
            }
        }
        self.admitting = false;
    }

    /// A CANCEL of a waiting INVITE: 200 to it, 487 to the INVITE. `false`
    /// when the INVITE it cancels is not waiting.
    pub(super) fn cancel_waiting(
        &mut self,
        now: Instant,
        key: &TxKey,
        req: &rsip::Request,
    ) -> bool {
        let Some(invite) = self.tx.find_invite(key) else {
            return false;
        };
        let Some(new) = self
            .drop_waiting(&invite)
            .or_else(|| self.drop_verifying(now, &invite))
        else {
            return false;
        };
        self.reply(now, key, req, 200, "OK");
        self.reply(now, &invite, &new.req, 487, "Request Terminated");
        true
    }

    /// Takes a waiting INVITE out of the queue.
    pub(super) fn drop_waiting(&mut self, key: &TxKey) -> Option<NewCall> {
        let new = self.waiting.remove(key)?;
        self.admission.withdraw(new.route.tenant, key);
        Some(new)
    }

    /// Forgets an admitted INVITE whose Identity is being checked; its
    /// place goes back.
    pub(super) fn drop_verifying(&mut self, now: Instant, key: &TxKey) -> Option<NewCall> {
        let new = self.verifying.remove(key)?;
        self.admission.ended(now, new.route.tenant);
        Some(new)
    }

    fn refuse(&mut self, now: Instant, new: &NewCall, reason: Reason, retry_after: u32) {
        let phrase = match reason {
            Reason::Full => "Service Unavailable (call limit)",
            Reason::Rate => "Service Unavailable (call rate limit)",
            Reason::Timeout => "Service Unavailable (admission wait expired)",
        };
        let mut busy = message::response(&new.req, 503, phrase, Some(&self.ids.token()));
        busy.headers.push(rsip::Header::Other(
            "Retry-After".into(),
            retry_after.to_string(),
        ));
        self.respond(now, &new.key, busy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits(max_calls: Option<u32>, rate: Option<u32>, queue: u32) -> Limits {
        Limits {
            max_calls,
            calls_per_second: rate,
            queue,
            queue_wait: ms(2_000),
        }
    }

    fn drain(a: &mut Admission<u32>) -> Vec<Outcome<u32>> {
        std::iter::from_fn(|| a.poll()).collect()
    }

    #[test]
    fn concurrent_calls_are_capped_per_tenant_and_other_tenants_are_untouched() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(Some(2), None, 0);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Admitted);
        assert_eq!(
            a.admit(now, 0, l, 3),
            Decision::Refused {
                reason: Reason::Full,
                retry_after: 1
            }
        );
        assert_eq!(a.admit(now, 1, l, 4), Decision::Admitted);
        a.ended(now, 0);
        assert_eq!(a.admit(now, 0, l, 5), Decision::Admitted);
        assert_eq!(a.stats(std::iter::empty()).refused_full, 1);
    }

    #[test]
    fn the_call_rate_is_a_token_bucket_per_tenant() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(None, Some(2), 0);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Admitted);
        assert_eq!(
            a.admit(now, 0, l, 3),
            Decision::Refused {
                reason: Reason::Rate,
                retry_after: 1
            }
        );
        assert!(matches!(
            a.admit(now + ms(499), 0, l, 4),
            Decision::Refused { .. }
        ));
        assert_eq!(a.admit(now + ms(500), 0, l, 5), Decision::Admitted);
        assert_eq!(
            a.admit(now, 1, Limits::default(), 6),
            Decision::Admitted,
            "no limits, no refusal"
        );
    }

    #[test]
    fn waiting_calls_of_a_tenant_are_admitted_in_order_as_places_free() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(Some(1), None, 5);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        for key in 2..=4 {
            assert_eq!(a.admit(now + ms(key.into()), 0, l, key), Decision::Queued);
        }
        assert_eq!(a.waiting(0), 3);
        assert_eq!(
            a.poll_timeout(),
            Some(now + ms(2_002)),
            "no token to wait for"
        );
        a.ended(now + ms(100), 0);
        assert_eq!(drain(&mut a), vec![Outcome::Admitted(2)]);
        a.ended(now + ms(200), 0);
        a.ended(now + ms(300), 0);
        assert_eq!(
            drain(&mut a),
            vec![Outcome::Admitted(3), Outcome::Admitted(4)]
        );
        assert_eq!(a.waiting(0), 0);
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(a.stats(std::iter::empty()).admitted_after_wait, 3);
    }

    #[test]
    fn a_new_call_waits_behind_its_tenants_waiters_even_when_a_place_is_free() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(None, Some(1), 5);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Queued);
        // The token of 2 arrives at 1 s; 3 comes after it and must not jump it.
        let token = a.poll_timeout().unwrap();
        assert!(
            token > now + ms(999) && token < now + ms(1_001),
            "{token:?}"
        );
        assert_eq!(a.admit(token, 0, l, 3), Decision::Queued);
        assert_eq!(drain(&mut a), vec![Outcome::Admitted(2)]);
        a.handle_timeout(a.poll_timeout().unwrap());
        assert_eq!(
            drain(&mut a),
            vec![Outcome::Admitted(3)],
            "rate refills release waiters"
        );
    }

    #[test]
    fn a_full_queue_refuses_with_retry_after() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(Some(1), None, 2);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Queued);
        assert_eq!(a.admit(now, 0, l, 3), Decision::Queued);
        assert_eq!(
            a.admit(now, 0, l, 4),
            Decision::Refused {
                reason: Reason::Full,
                retry_after: 1
            }
        );
        let rated = limits(None, Some(1), 1);
        assert_eq!(a.admit(now, 1, rated, 5), Decision::Admitted);
        assert_eq!(a.admit(now, 1, rated, 6), Decision::Queued);
        assert!(matches!(
            a.admit(now, 1, rated, 7),
            Decision::Refused {
                reason: Reason::Rate,
                ..
            }
        ));
        let stats = a.stats([(0, "a"), (1, "b")].into_iter());
        assert_eq!((stats.refused_full, stats.refused_rate), (1, 1));
        assert_eq!(stats.waiting, vec![("a".into(), 2), ("b".into(), 1)]);
    }

    #[test]
    fn a_wait_expires_after_queue_wait() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(Some(1), None, 5);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Queued);
        assert_eq!(a.admit(now + ms(500), 0, l, 3), Decision::Queued);
        a.handle_timeout(now + ms(1_999));
        assert!(drain(&mut a).is_empty());
        assert_eq!(a.poll_timeout(), Some(now + ms(2_000)));
        a.handle_timeout(now + ms(2_000));
        assert_eq!(drain(&mut a), vec![Outcome::Expired(2)]);
        assert_eq!(a.poll_timeout(), Some(now + ms(2_500)));
        a.ended(now + ms(2_100), 0);
        assert_eq!(drain(&mut a), vec![Outcome::Admitted(3)]);
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(a.stats(std::iter::empty()).refused_timeout, 1);
    }

    #[test]
    fn a_withdrawn_call_leaves_the_queue() {
        let now = Instant::now();
        let mut a = Admission::new(now, Capacity::default());
        let l = limits(Some(1), None, 5);
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Queued);
        assert_eq!(a.admit(now, 0, l, 3), Decision::Queued);
        assert!(a.withdraw(0, &2));
        assert!(!a.withdraw(0, &2), "only once");
        a.ended(now, 0);
        assert_eq!(drain(&mut a), vec![Outcome::Admitted(3)]);
        assert!(!a.withdraw(0, &99) && a.poll_timeout().is_none());
    }

    #[test]
    fn global_capacity_is_shared_round_robin_between_waiting_tenants() {
        let now = Instant::now();
        let capacity = Capacity {
            max_calls: Some(2),
            calls_per_second: None,
        };
        let mut a = Admission::new(now, capacity);
        let l = limits(None, None, 10);
        // Tenant 0 takes both places and floods; tenant 1 then 2 come later.
        assert_eq!(a.admit(now, 0, l, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, l, 2), Decision::Admitted);
        for key in 10..16 {
            assert_eq!(a.admit(now, 0, l, key), Decision::Queued);
        }
        assert_eq!(a.admit(now, 1, l, 20), Decision::Queued);
        assert_eq!(a.admit(now, 1, l, 21), Decision::Queued);
        assert_eq!(a.admit(now, 2, l, 30), Decision::Queued);
        let mut order = Vec::new();
        for _ in 0..9 {
            a.ended(now, 0);
            order.extend(drain(&mut a));
        }
        let keys: Vec<u32> = order
            .into_iter()
            .map(|o| match o {
                Outcome::Admitted(k) => k,
                Outcome::Expired(k) => panic!("{k} expired"),
            })
            .collect();
        assert_eq!(keys, vec![10, 20, 30, 11, 21, 12, 13, 14, 15]);
    }

    #[test]
    fn a_tenant_at_its_own_limit_does_not_hold_up_the_turn_of_others() {
        let now = Instant::now();
        let capacity = Capacity {
            max_calls: Some(3),
            calls_per_second: None,
        };
        let mut a = Admission::new(now, capacity);
        let small = limits(Some(1), None, 10);
        let free = limits(None, None, 10);
        assert_eq!(a.admit(now, 0, small, 1), Decision::Admitted);
        assert_eq!(a.admit(now, 0, small, 2), Decision::Queued);
        assert_eq!(a.admit(now, 1, free, 3), Decision::Admitted);
        assert_eq!(a.admit(now, 1, free, 4), Decision::Admitted);
        assert_eq!(a.admit(now, 1, free, 5), Decision::Queued);
        // A place frees globally: tenant 0 is first in turn but at its own
        // limit, so tenant 1's waiter takes it.
        a.ended(now, 1);
        assert_eq!(drain(&mut a), vec![Outcome::Admitted(5)]);
        a.ended(now, 0);
        assert_eq!(drain(&mut a), vec![Outcome::Admitted(2)]);
    }

    #[test]
    fn a_global_rate_releases_waiters_as_tokens_arrive() {
        let start = Instant::now();
        let capacity = Capacity {
            max_calls: None,
            calls_per_second: Some(10),
        };
        let mut a = Admission::new(start, capacity);
        let l = limits(None, None, 100);
        let mut admitted = 0;
        for key in 0..30 {
            match a.admit(start, (key % 2) as usize, l, key) {
                Decision::Admitted => admitted += 1,
                Decision::Queued => {}
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(admitted, 10, "the bucket's depth");
        let mut now = start;
        let mut released = Vec::new();
        while let Some(at) = a.poll_timeout() {
            assert!(at >= now, "timers never go back");
            now = at;
            a.handle_timeout(now);
            released.extend(drain(&mut a).into_iter().map(|o| (now, o)));
        }
        let admitted_waiters: Vec<_> = released
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Admitted(_)))
            .collect();
        // 2 s of wait at 10/s: about 20 more, the rest expire.
        assert!((19..=21).contains(&admitted_waiters.len()), "{released:?}");
        let last = admitted_waiters.last().unwrap().0;
        assert!(last <= start + ms(2_001), "{last:?}");
        // Alternating between the two tenants.
        let tenants: Vec<u32> = admitted_waiters
            .iter()
            .map(|(_, o)| match o {
                Outcome::Admitted(k) | Outcome::Expired(k) => k % 2,
            })
            .collect();
        assert!(tenants.windows(2).all(|w| w[0] != w[1]), "{tenants:?}");
    }
}
