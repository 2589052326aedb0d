//! Sizing the media worker pool to the load: a sans-IO core.
//!
//! The engine samples every worker on an interval — open streams, the
//! fraction of the tick loop spent handling rather than sleeping, the
//! fraction of slots that started late — and hands one [`Load`] per worker
//! to [`Allocator::handle_load`]; then it drains
//! [`Allocator::poll_decision`] and applies each [`Decision`] in order.
//!
//! ```text
//!   hot  (active workers' mean busy ≥ high, or late ticks with real work)
//!        for `rise`  ─► Reinstate a retiring worker, else Start one (≤ max)
//!   cold (their load fits in one worker fewer at ≤ low, or no streams)
//!        for `hold`  ─► Retire the emptiest active worker (≥ min)
//!   a retiring worker sampled with no streams ─► Stop
//! ```
//!
//! Calls never move between workers: a retiring worker keeps its streams
//! (and the new legs of its calls) but gets no new calls, and stops once a
//! sample finds it empty. Shrinking asks that the load fit on one worker
//! fewer below `low`, growing that it be above `high` on the workers there
//! are: with `low < high`, neither undoes the other for the same load, and
//! each change restarts its timer, so the pool does not flap.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Worker ids are small integers the allocator hands out (the lowest free).
pub type WorkerId = usize;

/// When the pool grows and shrinks. [`Policy::default`] is elastic from one
/// worker up to the machine's cores.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Workers always running (at least 1).
    pub min: usize,
    /// Workers at most, retiring ones included.
    pub max: usize,
    /// High-water mark: grow when the active workers' mean busy fraction
    /// reaches it (default 0.7; one worker holds ~1,750 calls at 75 %).
    pub high: f64,
    /// Low-water mark: shrink when the active workers' load would fit on
    /// one worker fewer at or below it (default 0.3).
    pub low: f64,
    /// Fraction of slots starting late that counts as overload when the
    /// workers also carry real work (≥ `low`), default 0.05 (50/s): a
    /// machine starved by other processes is not helped by more threads.
    pub late: f64,
    /// Overload must last this long before the pool grows (default 2 s).
    pub rise: Duration,
    /// Low load must last this long before the pool shrinks by one
    /// worker (default 30 s).
    pub hold: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min: 1,
            max: cores(),
            high: 0.7,
            low: 0.3,
            late: 0.05,
            rise: Duration::from_secs(2),
            hold: Duration::from_secs(30),
        }
    }
}

/// Cores available to this process (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `min` is 0.
    #[error("at least one media worker is needed (min_workers ≥ 1)")]
    NoWorkers,
    /// `max < min`.
    #[error("max_workers ({max}) is below min_workers ({min})")]
    MaxBelowMin { min: usize, max: usize },
    /// The marks are not `0 ≤ low < high ≤ 1`.
    #[error("the pool's marks need 0 ≤ low ({low}) < high ({high}) ≤ 1")]
    Marks { low: f64, high: f64 },
}

impl Policy {
    /// Exactly `workers`, never resized.
    pub fn fixed(workers: usize) -> Policy {
        Policy {
            min: workers,
            max: workers,
            ..Policy::default()
        }
    }

    pub fn check(&self) -> Result<(), PolicyError> {
        if self.min == 0 {
            return Err(PolicyError::NoWorkers);
        }
        if self.max < self.min {
            return Err(PolicyError::MaxBelowMin {
                min: self.min,
                max: self.max,
            });
        }
        let (low, high) = (self.low, self.high);
        if !(0.0 <= low && low < high && high <= 1.0) {
            return Err(PolicyError::Marks { low, high });
        }
        Ok(())
    }
}

/// One worker's sample over the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub worker: WorkerId,
    /// Open streams.
    pub streams: usize,
    /// Fraction of the interval spent handling (0 idle, 1 never sleeping).
    pub busy: f64,
    /// Fraction of the interval's slots that started late.
    pub late: f64,
}

/// What the engine does to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a worker with this id; it takes new calls.
    Start(WorkerId),
    /// A retiring worker takes new calls again (cheaper than a thread).
    Reinstate(WorkerId),
    /// No new calls for this worker; it keeps the ones it has.
    Retire(WorkerId),
    /// This retiring worker is empty: end its thread.
    Stop(WorkerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Retiring,
}

pub struct Allocator {
    policy: Policy,
    workers: BTreeMap<WorkerId, State>,
    hot_since: Option<Instant>,
    cold_since: Option<Instant>,
    decisions: VecDeque<Decision>,
}

impl Allocator {
    /// A pool of `policy.min` workers, whose [`Decision::Start`]s are the
    /// first decisions polled. `policy` should have passed
    /// [`Policy::check`]; a `min` of 0 still starts one worker.
    pub fn new(policy: Policy) -> Allocator {
        let mut allocator = Allocator {
            policy,
            workers: BTreeMap::new(),
            hot_since: None,
            cold_since: None,
            decisions: VecDeque::new(),
        };
        while allocator.active() < allocator.policy.min.max(1) {
            allocator.start();
        }
        allocator
    }

    pub fn state(&self, worker: WorkerId) -> Option<State> {
        self.workers.get(&worker).copied()
    }

    /// Workers taking new calls.
    pub fn active(&self) -> usize {
        self.count(State::Active)
    }

    pub fn retiring(&self) -> usize {
        self.count(State::Retiring)
    }

    fn count(&self, state: State) -> usize {
        self.workers.values().filter(|&&s| s == state).count()
    }

    /// Takes one sample of every running worker, taken at `now`.
    ///
    /// The samples say which workers exist: one missing is gone (its
    /// thread could not start or ended), an unknown one is taken as
    /// retiring, so it stops once empty.
    pub fn handle_load(&mut self, now: Instant, loads: &[Load]) {
        self.workers
            .retain(|id, _| loads.iter().any(|l| l.worker == *id));
        for load in loads {
            let state = *self.workers.entry(load.worker).or_insert(State::Retiring);
            if state == State::Retiring && load.streams == 0 {
                self.workers.remove(&load.worker);
                self.decisions.push_back(Decision::Stop(load.worker));
            }
        }
        while self.active() < self.policy.min.max(1) && self.grow() {}

        let active: Vec<&Load> = loads
            .iter()
            .filter(|l| self.state(l.worker) == Some(State::Active))
            .collect();
        let n = active.len();
        if n == 0 {
            (self.hot_since, self.cold_since) = (None, None);
            return;
        }
        let busy: f64 = active.iter().map(|l| fraction(l.busy)).sum();
        let late = active.iter().map(|l| fraction(l.late)).sum::<f64>() / n as f64;
        let streams: usize = active.iter().map(|l| l.streams).sum();
        let p = &self.policy;
        let mean = busy / n as f64;
        let hot = streams > 0 && (mean >= p.high || (late >= p.late && mean >= p.low));
        let cold = !hot && n > p.min && (streams == 0 || busy / (n - 1) as f64 <= p.low);
        self.hot_since = hot.then(|| self.hot_since.unwrap_or(now));
        self.cold_since = cold.then(|| self.cold_since.unwrap_or(now));

        let lasted = |since: Option<Instant>, d: Duration| {
            since.is_some_and(|t| now.saturating_duration_since(t) >= d)
        };
        if lasted(self.hot_since, p.rise) {
            self.grow();
            self.hot_since = None;
        } else if lasted(self.cold_since, p.hold) {
            // The emptiest drains soonest; among equals the youngest.
            if let Some(l) = active
                .iter()
                .min_by_key(|l| (l.streams, usize::MAX - l.worker))
            {
                self.workers.insert(l.worker, State::Retiring);
                self.decisions.push_back(Decision::Retire(l.worker));
            }
            self.cold_since = None;
        }
    }

    /// The next change to make to the pool.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.decisions.pop_front()
    }

    /// One more active worker, if `max` allows: a retiring one back, else
    /// a new one.
    fn grow(&mut self) -> bool {
        if self.active() >= self.policy.max.max(1) {
            return false;
        }
        let retiring = self
            .workers
            .iter()
            .find(|(_, s)| **s == State::Retiring)
            .map(|(&id, _)| id);
        match retiring {
            Some(id) => {
                self.workers.insert(id, State::Active);
                self.decisions.push_back(Decision::Reinstate(id));
            }
            None => self.start(),
        }
        true
    }

    fn start(&mut self) {
        let id = (0..).find(|id| !self.workers.contains_key(id)).unwrap_or(0);
        self.workers.insert(id, State::Active);
        self.decisions.push_back(Decision::Start(id));
    }
}

/// A sampled fraction, whatever the arithmetic upstream made of it.
fn fraction(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy(min: usize, max: usize) -> Policy {
        Policy {
            min,
            max,
            ..Policy::default()
        }
    }

    /// An allocator on a virtual clock, sampled once a second.
    struct Rig {
        a: Allocator,
        now: Instant,
        /// Streams of each running worker.
        streams: BTreeMap<WorkerId, usize>,
    }

    impl Rig {
        fn new(policy: Policy) -> Rig {
            let mut rig = Rig {
                a: Allocator::new(policy),
                now: Instant::now(),
                streams: BTreeMap::new(),
            };
            rig.apply();
            rig
        }

        /// Applies decisions as the engine does; returns those made now.
        fn apply(&mut self) -> Vec<Decision> {
            let mut made = Vec::new();
            while let Some(d) = self.a.poll_decision() {
                match d {
                    Decision::Start(id) => {
                        assert!(self.streams.insert(id, 0).is_none(), "{id} runs");
                    }
                    Decision::Stop(id) => {
                        let left = self.streams.remove(&id);
                        assert_eq!(left, Some(0), "worker {id} stopped with streams");
                    }
                    Decision::Retire(_) | Decision::Reinstate(_) => {}
                }
                made.push(d);
            }
            made
        }

        /// `seconds` samples, a second apart, where a worker with streams
        /// is `busy(worker)` and one without is idle.
        fn run(&mut self, seconds: u64, busy: impl Fn(WorkerId) -> f64) -> Vec<Decision> {
            let mut made = Vec::new();
            for _ in 0..seconds {
                self.now += SECOND;
                let loads: Vec<Load> = self
                    .streams
                    .iter()
                    .map(|(&worker, &streams)| Load {
                        worker,
                        streams,
                        busy: if streams > 0 { busy(worker) } else { 0.001 },
                        late: 0.0,
                    })
                    .collect();
                self.a.handle_load(self.now, &loads);
                made.extend(self.apply());
            }
            made
        }

        /// Opens `n` streams on the least-loaded active worker each.
        fn open(&mut self, n: usize) {
            for _ in 0..n {
                let id = *self
                    .streams
                    .iter()
                    .filter(|(id, _)| self.a.state(**id) == Some(State::Active))
                    .min_by_key(|(_, s)| **s)
                    .unwrap()
                    .0;
                *self.streams.get_mut(&id).unwrap() += 1;
            }
        }
    }

    #[test]
    fn the_pool_starts_at_min_workers() {
        let rig = Rig::new(policy(2, 4));
        assert_eq!(rig.streams.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!((rig.a.active(), rig.a.retiring()), (2, 0));
    }

    #[test]
    fn sustained_load_grows_the_pool_up_to_max() {
        let mut rig = Rig::new(policy(1, 3));
        rig.open(100);
        // Samples at 1, 2, 3 s: overloaded for `rise` (2 s) at the third.
        assert_eq!(rig.run(2, |_| 0.9), []);
        assert_eq!(rig.run(1, |_| 0.9), [Decision::Start(1)]);
        // New calls fill the new worker until both are overloaded.
        rig.open(100);
        assert_eq!(rig.streams[&1], 100);
        assert_eq!(rig.run(3, |_| 0.9), [Decision::Start(2)]);
        rig.open(100);
        assert!(rig.run(60, |_| 1.0).is_empty(), "no further than max");
        assert_eq!(rig.a.active(), 3);
    }

    #[test]
    fn a_spike_shorter_than_rise_does_not_grow() {
        let mut rig = Rig::new(policy(1, 4));
        rig.open(10);
        for _ in 0..20 {
            assert!(rig.run(2, |_| 0.95).is_empty());
            assert!(rig.run(1, |_| 0.2).is_empty());
        }
        assert_eq!(rig.a.active(), 1);
    }

    #[test]
    fn load_between_the_marks_does_not_flap() {
        let mut rig = Rig::new(policy(1, 4));
        rig.open(100);
        // Overload: a second worker; new calls then fill it.
        assert_eq!(rig.run(3, |_| 0.8), [Decision::Start(1)]);
        rig.open(100);
        // Both between the marks, wobbling across neither, for ten minutes.
        let made = rig.run(600, |w| if w == 0 { 0.6 } else { 0.35 });
        assert!(made.is_empty(), "{made:?}");
        // Load that one worker fewer could carry at 0.3 is still too much
        // to shrink: 0.25 + 0.2 = 0.45 on one.
        assert!(rig.run(600, |w| if w == 0 { 0.25 } else { 0.2 }).is_empty());
        assert_eq!(rig.a.active(), 2);
    }

    #[test]
    fn the_pool_shrinks_after_the_hold_time_one_worker_at_a_time() {
        let mut rig = Rig::new(policy(1, 4));
        for _ in 0..2 {
            rig.open(30);
            rig.run(3, |_| 0.9);
        }
        rig.open(30);
        assert_eq!(rig.a.active(), 3);
        // All calls end: idle from the first sample on.
        for s in rig.streams.values_mut() {
            *s = 0;
        }
        let made = rig.run(30, |_| 0.0);
        assert!(made.is_empty(), "not before 30 s: {made:?}");
        // The youngest of the (equally empty) workers; it stops at the
        // next sample, which finds it empty.
        assert_eq!(rig.run(1, |_| 0.0), [Decision::Retire(2)]);
        assert_eq!(rig.a.state(2), Some(State::Retiring));
        assert_eq!(rig.run(1, |_| 0.0), [Decision::Stop(2)]);
        let made = rig.run(120, |_| 0.0);
        assert_eq!(made, [Decision::Retire(1), Decision::Stop(1)]);
        assert_eq!((rig.a.active(), rig.a.retiring()), (1, 0), "down to min");
        assert_eq!(rig.streams.keys().copied().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn light_load_shrinks_without_being_idle() {
        let mut rig = Rig::new(policy(1, 2));
        rig.open(10);
        rig.run(3, |_| 0.9);
        rig.open(10);
        // 0.1 + 0.1 fits in one worker at ≤ 0.3: retire one (both hold
        // 10 streams: the youngest).
        let made = rig.run(31, |_| 0.1);
        assert_eq!(made, [Decision::Retire(1)]);
    }

    #[test]
    fn the_emptiest_worker_retires() {
        let mut rig = Rig::new(policy(1, 2));
        rig.open(4);
        rig.run(3, |_| 0.9);
        rig.open(4);
        assert_eq!(rig.streams[&1], 4);
        *rig.streams.get_mut(&0).unwrap() = 0;
        assert_eq!(rig.run(31, |_| 0.05), [Decision::Retire(0)]);
        assert_eq!(rig.run(1, |_| 0.05), [Decision::Stop(0)]);
        assert_eq!(rig.a.state(1), Some(State::Active));
    }

    #[test]
    fn a_retiring_worker_stops_only_when_its_last_stream_closes() {
        let mut rig = Rig::new(policy(1, 2));
        rig.open(6);
        rig.run(3, |_| 0.9);
        rig.open(2);
        assert_eq!(rig.streams[&1], 2);
        assert_eq!(rig.run(31, |_| 0.1), [Decision::Retire(1)]);
        rig.open(3);
        assert_eq!(rig.streams[&1], 2, "no new calls while retiring");
        for left in [2, 1] {
            *rig.streams.get_mut(&1).unwrap() = left;
            assert!(rig.run(60, |_| 0.1).is_empty(), "{left} streams left");
            assert_eq!(rig.a.state(1), Some(State::Retiring));
        }
        *rig.streams.get_mut(&1).unwrap() = 0;
        assert_eq!(rig.run(1, |_| 0.1), [Decision::Stop(1)]);
        assert_eq!(rig.a.state(1), None);
    }

    #[test]
    fn load_returning_while_a_worker_retires_reinstates_it() {
        let mut rig = Rig::new(policy(1, 2));
        rig.open(4);
        rig.run(3, |_| 0.9);
        rig.open(4);
        assert_eq!(rig.run(31, |_| 0.1), [Decision::Retire(1)]);
        assert_eq!(rig.run(3, |_| 0.95), [Decision::Reinstate(1)]);
        assert_eq!((rig.a.active(), rig.a.retiring()), (2, 0));
    }

    #[test]
    fn late_ticks_count_only_with_real_work() {
        let mut rig = Rig::new(policy(1, 2));
        rig.open(10);
        let sample = |busy: f64| Load {
            worker: 0,
            streams: 10,
            busy,
            late: 0.2,
        };
        for s in 1..=5 {
            rig.a.handle_load(rig.now + SECOND * s, &[sample(0.1)]);
        }
        assert_eq!(rig.apply(), [], "starved, not loaded");
        for s in 6..=8 {
            rig.a.handle_load(rig.now + SECOND * s, &[sample(0.4)]);
        }
        assert_eq!(rig.apply(), [Decision::Start(1)]);
    }

    #[test]
    fn an_idle_pool_neither_grows_on_noise_nor_stays_large() {
        let mut rig = Rig::new(policy(2, 4));
        // Empty workers whose busy readings are noise (a preempted tick).
        let start = rig.now;
        for s in 1..=100 {
            let noise = Load {
                worker: 0,
                streams: 0,
                busy: 0.95,
                late: 0.5,
            };
            let idle = Load { worker: 1, ..noise };
            rig.a.handle_load(start + SECOND * s, &[noise, idle]);
        }
        assert_eq!(rig.apply(), [], "min is 2");
        assert_eq!(rig.a.active(), 2);
    }

    #[test]
    fn a_fixed_pool_never_changes() {
        let mut rig = Rig::new(Policy::fixed(2));
        rig.open(500);
        assert!(rig.run(300, |_| 1.0).is_empty());
        for s in rig.streams.values_mut() {
            *s = 0;
        }
        assert!(rig.run(300, |_| 0.0).is_empty());
    }

    #[test]
    fn workers_the_samples_do_not_name_are_forgotten_and_strangers_retire() {
        let mut rig = Rig::new(policy(1, 3));
        rig.open(10);
        rig.run(3, |_| 0.9);
        assert_eq!(rig.a.active(), 2);
        // Worker 1 failed to start: its samples never come; 7 appears.
        let at = rig.now + SECOND;
        let loads = [
            Load {
                worker: 0,
                streams: 10,
                busy: 0.5,
                late: 0.0,
            },
            Load {
                worker: 7,
                streams: 1,
                busy: 0.0,
                late: 0.0,
            },
        ];
        rig.a.handle_load(at, &loads);
        assert_eq!(rig.a.state(1), None);
        assert_eq!(rig.a.state(7), Some(State::Retiring));
        let loads = [
            loads[0],
            Load {
                streams: 0,
                ..loads[1]
            },
        ];
        rig.a.handle_load(at + SECOND, &loads);
        assert_eq!(rig.a.poll_decision(), Some(Decision::Stop(7)));
    }

    #[test]
    fn bad_policies_are_refused() {
        assert_eq!(policy(0, 1).check(), Err(PolicyError::NoWorkers));
        assert_eq!(
            policy(3, 2).check(),
            Err(PolicyError::MaxBelowMin { min: 3, max: 2 })
        );
        let marks = Policy {
            low: 0.8,
            ..Policy::default()
        };
        assert!(matches!(marks.check(), Err(PolicyError::Marks { .. })));
        let nan = Policy {
            high: f64::NAN,
            ..Policy::default()
        };
        assert!(nan.check().is_err());
        assert_eq!(Policy::default().check(), Ok(()));
        assert_eq!(Policy::default().max, cores());
    }
}
