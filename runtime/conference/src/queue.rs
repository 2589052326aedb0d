//! One call queue (the `enqueue` verb, `dial queue:NAME`, `/v1/queues`).
//!
//! Callers wait in order of priority (higher first), then of arrival; the
//! queue hands out the caller at its head (or a named one), tells each
//! caller its 1-based position, and keeps the average wait of the callers
//! it handed out, as TwiML's `<Queue>` reports it. Timeouts are checked
//! when the owner calls [`Queue::expire`] with the time; nothing here
//! reads a clock.

use std::time::{Duration, Instant};

use switchyard_contract::QueueOutcome;

/// A queued call, by whatever id its owner uses (the call id).
pub type CallKey = String;

/// Why a queue refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("queue {queue} is full ({max} callers)")]
    Full { queue: String, max: usize },
    #[error("call {call} is already in queue {queue}")]
    AlreadyQueued { queue: String, call: CallKey },
    #[error("call {call} is not in queue {queue}")]
    NotQueued { queue: String, call: CallKey },
}

impl QueueError {
    /// What the caller's handler hears in `queue-complete` when a join
    /// fails.
    pub fn outcome(&self) -> Option<QueueOutcome> {
        matches!(self, QueueError::Full { .. }).then_some(QueueOutcome::Full)
    }
}

/// One waiting caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub call: CallKey,
    pub priority: u32,
    pub since: Instant,
    /// Leave after this long (the verb's `max-wait-secs`).
    pub max_wait: Option<Duration>,
}

/// A caller that left the queue, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub call: CallKey,
    pub outcome: QueueOutcome,
    pub waited: Duration,
}

/// One tenant's queue.
#[derive(Debug, Clone)]
pub struct Queue {
    name: String,
    max_size: usize,
    /// Ordered: priority descending, then arrival.
    members: Vec<Member>,
    handed_out: u64,
    waited_total: Duration,
}

impl Queue {
    /// Default size as Twilio's: 100 callers.
    pub const DEFAULT_MAX: usize = 100;

    pub fn new(name: impl Into<String>, max_size: usize) -> Self {
        Self {
            name: name.into(),
            max_size,
            members: Vec::new(),
            handed_out: 0,
            waited_total: Duration::ZERO,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// A new limit for joins from now on; callers already waiting beyond
    /// it stay (as Twilio's queues do).
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
    }

    /// Queues `call`; its 1-based position.
    pub fn join(
        &mut self,
        call: &str,
        priority: u32,
        max_wait: Option<Duration>,
        now: Instant,
    ) -> Result<usize, QueueError> {
        if self.members.iter().any(|m| m.call == call) {
            return Err(QueueError::AlreadyQueued {
                queue: self.name.clone(),
                call: call.into(),
            });
        }
        if self.members.len() >= self.max_size {
            return Err(QueueError::Full {
                queue: self.name.clone(),
                max: self.max_size,
            });
        }
        // After everyone of the same or a higher priority: arrival order
        // within a priority.
        let at = self
            .members
            .iter()
            .position(|m| m.priority < priority)
            .unwrap_or(self.members.len());
        self.members.insert(
            at,
            Member {
                call: call.into(),
                priority,
                since: now,
                max_wait,
            },
        );
        Ok(at + 1)
    }

    /// 1-based position of `call`.
    pub fn position(&self, call: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.call == call)
            .map(|i| i + 1)
    }

    /// The waiting callers, head first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Hands out the caller at the head (to be bridged): `dial queue:NAME`
    /// or `POST /v1/queues/{name}/dequeue`.
    pub fn dequeue(&mut self, now: Instant) -> Option<Departure> {
        if self.members.is_empty() {
            return None;
        }
        Some(self.depart(0, QueueOutcome::Bridged, now))
    }

    /// Hands out `call` whatever its position.
    pub fn dequeue_call(&mut self, call: &str, now: Instant) -> Result<Departure, QueueError> {
        let i = self.index(call)?;
        Ok(self.depart(i, QueueOutcome::Bridged, now))
    }

    /// `call` left by itself (hung up, `leave-queue`).
    pub fn leave(&mut self, call: &str, now: Instant) -> Result<Departure, QueueError> {
        let i = self.index(call)?;
        Ok(self.depart(i, QueueOutcome::Left, now))
    }

    /// Takes out every caller whose `max_wait` has passed, head first.
    pub fn expire(&mut self, now: Instant) -> Vec<Departure> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.members.len() {
            let m = &self.members[i];
            if m.max_wait
                .is_some_and(|w| now.saturating_duration_since(m.since) >= w)
            {
                gone.push(self.depart(i, QueueOutcome::Timeout, now));
            } else {
                i += 1;
            }
        }
        gone
    }

    /// When the next timeout is due, for the owner's timer.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| m.max_wait.map(|w| m.since + w))
            .min()
    }

    /// Mean wait of the callers handed out so far (TwiML's `AvgWaitTime`);
    /// `None` before the first.
    pub fn average_wait(&self) -> Option<Duration> {
        (self.handed_out > 0).then(|| self.waited_total / self.handed_out as u32)
    }

    fn index(&self, call: &str) -> Result<usize, QueueError> {
        self.members
            .iter()
            .position(|m| m.call == call)
            .ok_or_else(|| QueueError::NotQueued {
                queue: self.name.clone(),
                call: call.into(),
            })
    }

    fn depart(&mut self, i: usize, outcome: QueueOutcome, now: Instant) -> Departure {
        let m = self.members.remove(i);
        let waited = now.saturating_duration_since(m.since);
        if outcome == QueueOutcome::Bridged {
            self.handed_out += 1;
            self.waited_total += waited;
        }
        Departure {
            call: m.call,
            outcome,
            waited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn callers_are_handed_out_by_priority_then_arrival_with_positions() {
        let t0 = Instant::now();
        let mut q = Queue::new("support", 10);
        assert_eq!(q.join("a", 0, None, t0), Ok(1));
        assert_eq!(q.join("b", 0, None, t0 + secs(1)), Ok(2));
        assert_eq!(q.join("vip", 5, None, t0 + secs(2)), Ok(1));
        assert_eq!(q.join("c", 0, None, t0 + secs(3)), Ok(4));
        assert_eq!(q.join("vip2", 5, None, t0 + secs(4)), Ok(2));
        let order: Vec<_> = q.members().iter().map(|m| m.call.as_str()).collect();
        assert_eq!(order, ["vip", "vip2", "a", "b", "c"]);
        assert_eq!(q.position("a"), Some(3));
        let first = q.dequeue(t0 + secs(10)).unwrap();
        assert_eq!(
            (first.call.as_str(), first.outcome, first.waited),
            ("vip", QueueOutcome::Bridged, secs(8))
        );
        assert_eq!(q.position("a"), Some(2), "everyone moves up");
    }

    #[test]
    fn a_named_call_is_handed_out_and_the_average_counts_handed_out_callers_only() {
        let t0 = Instant::now();
        let mut q = Queue::new("sales", 10);
        for (i, call) in ["a", "b", "c"].into_iter().enumerate() {
            q.join(call, 0, None, t0 + secs(i as u64)).unwrap();
        }
        assert_eq!(q.average_wait(), None);
        let b = q.dequeue_call("b", t0 + secs(11)).unwrap();
        assert_eq!(b.waited, secs(10));
        let left = q.leave("a", t0 + secs(100)).unwrap();
        assert_eq!(left.outcome, QueueOutcome::Left);
        let c = q.dequeue(t0 + secs(22)).unwrap();
        assert_eq!(c.waited, secs(20));
        assert_eq!(
            q.average_wait(),
            Some(secs(15)),
            "(10 + 20) / 2; the leaver is not counted"
        );
        assert!(q.dequeue(t0).is_none());
        assert_eq!(
            q.leave("zz", t0),
            Err(QueueError::NotQueued {
                queue: "sales".into(),
                call: "zz".into()
            })
        );
    }

    #[test]
    fn a_full_queue_refuses_and_says_full() {
        let t0 = Instant::now();
        let mut q = Queue::new("tiny", 2);
        q.join("a", 0, None, t0).unwrap();
        q.join("b", 0, None, t0).unwrap();
        let err = q.join("c", 9, None, t0).unwrap_err();
        assert_eq!(err.to_string(), "queue tiny is full (2 callers)");
        assert_eq!(err.outcome(), Some(QueueOutcome::Full));
        assert!(matches!(
            q.join("a", 0, None, t0),
            Err(QueueError::AlreadyQueued { .. })
        ));
    }

    #[test]
    fn callers_time_out_at_their_max_wait() {
        let t0 = Instant::now();
        let mut q = Queue::new("q", 10);
        q.join("patient", 0, None, t0).unwrap();
        q.join("short", 0, Some(secs(30)), t0).unwrap();
        q.join("later", 0, Some(secs(30)), t0 + secs(10)).unwrap();
        assert_eq!(q.next_timeout(), Some(t0 + secs(30)));
        assert!(q.expire(t0 + secs(29)).is_empty());
        let gone = q.expire(t0 + secs(30));
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].call.as_str(), gone[0].outcome, gone[0].waited),
            ("short", QueueOutcome::Timeout, secs(30))
        );
        assert_eq!(q.next_timeout(), Some(t0 + secs(40)));
        assert_eq!(q.expire(t0 + secs(3600)).len(), 1);
        assert_eq!(q.len(), 1, "no max wait: waits forever");
        assert_eq!(q.average_wait(), None, "timeouts are not handed out");
    }
}
