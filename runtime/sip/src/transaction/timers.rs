//! One queue for every transaction timer: a binary heap of
//! `(deadline, seq)` with lazy deletion, O(log n) per arm and per firing.
//!
//! A transaction has two timer slots ([`Slot`]) and remembers the `seq` of
//! the entry armed in each; re-arming or stopping a slot only changes that
//! number, and heap entries whose `seq` no longer matches are skipped when
//! they reach the top. Stale entries are bounded: each lies at most 64·T1
//! (or Timer D) in the future and is popped when its time comes.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use super::TxKey;

/// The two timers a transaction runs at once (RFC 3261 §17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// A, E, G, the 2xx retransmission of RFC 6026 and the 100 Trying delay.
    Retransmit = 0,
    /// B, D, F, H, I, J, K, L, M and the CANCEL guard of §9.1.
    Expire = 1,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub at: Instant,
    pub seq: u64,
    pub key: TxKey,
    pub slot: Slot,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
}

impl TimerQueue {
    /// Queues a timer and returns the `seq` the transaction must remember.
    pub fn arm(&mut self, at: Instant, key: &TxKey, slot: Slot) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq,
            key: key.clone(),
            slot,
        }));
        seq
    }

    pub fn peek(&self) -> Option<&Entry> {
        self.heap.peek().map(|Reverse(entry)| entry)
    }

    pub fn pop(&mut self) -> Option<Entry> {
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The deadline furthest away, stale or not.
    #[cfg(test)]
    pub fn latest(&self) -> Option<Instant> {
        self.heap.iter().map(|Reverse(entry)| entry.at).max()
    }
}
