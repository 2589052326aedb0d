//! A jitter buffer for received audio: packets go in as they arrive (any
//! order, any lateness), one 20 ms frame comes out per tick, in order,
//! after a playout delay that follows the network's jitter.
//!
//! ```text
//!  insert(seq, ts, samples) ─► ring of 32 frames, placed by timestamp ─► pop() every tick
//!       │ duplicate (seq seen) / late (before the playout point): dropped, counted
//!       │ a jump of more than 1 s: start over around the new packet
//! ```
//!
//! Placing by timestamp rather than by sequence number keeps any
//! packetization (30 ms packets fill a frame and a half); sequence numbers
//! only find duplicates. A frame nothing arrived for comes out as
//! [`Playout::Gap`] (the caller hears silence).
//!
//! The playout delay starts at 40 ms. Once a second it moves one frame
//! towards three times the RFC 3550 interarrival jitter (clamped to
//! 20–200 ms): skipping a frame when the average buffered audio is more
//! than a frame above that, holding one back when it is more than a frame
//! below. Running dry (nothing buffered at all) also holds back, so a
//! sender slower than our clock, or a burst of late packets, grows the
//! delay instead of turning every packet late.

use super::{FRAME_SAMPLES, RATE};

pub const START_DELAY_MS: u32 = 40;
pub const MIN_DELAY_MS: u32 = 20;
pub const MAX_DELAY_MS: u32 = 200;
/// Frames the ring holds: the longest delay plus room for bursts.
const FRAMES: usize = 32;
const CAPACITY: usize = FRAMES * FRAME_SAMPLES;
/// A timestamp further than this from the playout point is a new stream
/// (new SSRC, a re-INVITE to another media server, hold ended).
const JUMP: i64 = RATE as i64;
/// Pops between two adaptations of the delay (one second).
const WINDOW: u32 = 50;
/// Sequence numbers remembered to spot duplicates.
const SEEN: u16 = 64;
const FRAME: i64 = FRAME_SAMPLES as i64;

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Queued,
    /// Its sequence number was seen already.
    Duplicate,
    /// Its audio was due before the playout point (or its sequence number
    /// is too old to tell).
    Late,
    /// It jumped too far from the playout point: the buffer started over.
    Reset,
}

/// What came out of [`JitterBuffer::pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout {
    Audio,
    /// Nothing for this frame (lost, not yet started, or held back); the
    /// output frame is silence.
    Gap,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub queued: u64,
    pub duplicates: u64,
    pub late: u64,
    pub resets: u64,
    /// Frames played as gaps because their packet never came in time.
    pub lost: u64,
    /// Frames dropped to shrink the delay or make room for a burst.
    pub skipped: u64,
    /// Ticks held back to grow the delay or because nothing was buffered.
    pub held: u64,
}

#[derive(Debug, Clone)]
pub struct JitterBuffer {
    ring: Box<[i16]>,
    filled: [bool; FRAMES],
    started: bool,
    /// The timestamp of position 0; positions count samples from there.
    base_ts: u32,
    /// Position of the next frame out (a multiple of a frame).
    next: u64,
    /// One past the highest position received.
    end: u64,
    /// Desired buffered audio in samples.
    target: i64,
    jitter: u32,
    /// Highest sequence number and the bitmap of the ones below it.
    seq_max: u16,
    seen: u64,
    pops: u32,
    margin_sum: i64,
    hold: bool,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    pub fn new() -> Self {
        JitterBuffer {
            ring: vec![0; CAPACITY].into_boxed_slice(),
            filled: [false; FRAMES],
            started: false,
            base_ts: 0,
            next: 0,
            end: 0,
            target: ms_to_samples(START_DELAY_MS),
            jitter: 0,
            seq_max: 0,
            seen: 0,
            pops: 0,
            margin_sum: 0,
            hold: false,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The playout delay aimed at.
    pub fn delay_ms(&self) -> u32 {
        (self.target * 1000 / i64::from(RATE)) as u32
    }

    /// Audio buffered from the frame due next on.
    pub fn buffered_ms(&self) -> u32 {
        if !self.started {
            return 0;
        }
        let samples = (self.end as i64 - self.next as i64).max(0);
        (samples * 1000 / i64::from(RATE)) as u32
    }

    /// The latest RFC 3550 interarrival jitter of the source, in samples.
    pub fn set_jitter(&mut self, jitter: u32) {
        self.jitter = jitter;
    }

    /// Forgets everything buffered: the next packet starts a new playout
    /// (a new SSRC, a restarted sequence).
    pub fn reset(&mut self) {
        if self.started {
            self.stats.resets += 1;
        }
        self.started = false;
        self.ring.fill(0);
        self.filled = [false; FRAMES];
    }

    fn start(&mut self, seq: u16, ts: u32) {
        self.started = true;
        self.base_ts = ts.wrapping_sub(self.target as u32);
        self.next = 0;
        self.end = 0;
        self.seq_max = seq.wrapping_sub(1);
        self.seen = 0;
        self.pops = 0;
        self.margin_sum = 0;
        self.hold = false;
    }

    /// Queues the decoded `samples` of packet `seq` stamped `ts`.
    pub fn insert(&mut self, seq: u16, ts: u32, samples: &[i16]) -> Insert {
        let mut verdict = Insert::Queued;
        if !self.started {
            self.start(seq, ts);
        }
        let mut rel = self.distance(ts);
        if !(-JUMP..=JUMP).contains(&rel) {
            self.reset();
            self.start(seq, ts);
            rel = self.distance(ts);
            verdict = Insert::Reset;
        }
        let ahead = seq.wrapping_sub(self.seq_max) as i16;
        if ahead > 0 {
            self.seen = if ahead as u16 >= SEEN {
                0
            } else {
                self.seen << ahead
            };
            self.seen |= 1;
            self.seq_max = seq;
        } else {
            let back = ahead.unsigned_abs();
            if back >= SEEN {
                self.stats.late += 1;
                return Insert::Late;
            }
            if self.seen & (1 << back) != 0 {
                self.stats.duplicates += 1;
                return Insert::Duplicate;
            }
            self.seen |= 1 << back;
        }
        let len = samples.len().min(CAPACITY) as i64;
        if rel + len <= 0 {
            self.stats.late += 1;
            return Insert::Late;
        }
        // A burst beyond the ring: drop the oldest frames to make room.
        let over = rel + len - CAPACITY as i64;
        if over > 0 {
            let frames = (over + FRAME - 1) / FRAME;
            self.skip(frames as u64);
            rel -= frames * FRAME;
        }
        let first = (-rel).max(0);
        let start = self.next as i64 + rel;
        for i in first..len {
            let pos = (start + i) as u64;
            self.ring[(pos % CAPACITY as u64) as usize] = samples[i as usize];
            self.filled[(pos / FRAME as u64) as usize % FRAMES] = true;
        }
        self.end = self.end.max((start + len) as u64);
        self.stats.queued += 1;
        verdict
    }

    /// Signed distance in samples from the playout point to `ts`.
    fn distance(&self, ts: u32) -> i64 {
        let next_ts = self.base_ts.wrapping_add(self.next as u32);
        i64::from(ts.wrapping_sub(next_ts) as i32)
    }

    /// Drops `frames` frames from the head.
    fn skip(&mut self, frames: u64) {
        for _ in 0..frames {
            self.clear_frame();
            self.next += FRAME as u64;
        }
        self.stats.skipped += frames;
    }

    fn clear_frame(&mut self) {
        let at = (self.next % CAPACITY as u64) as usize;
        self.ring[at..at + FRAME_SAMPLES].fill(0);
        self.filled[(self.next / FRAME as u64) as usize % FRAMES] = false;
    }

    /// The frame due this tick into `out` (silence on a gap).
    pub fn pop(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Playout {
        if !self.started {
            out.fill(0);
            return Playout::Gap;
        }
        self.adapt();
        let buffered = self.end as i64 - self.next as i64;
        let slot = (self.next / FRAME as u64) as usize % FRAMES;
        if std::mem::take(&mut self.hold) || buffered <= 0 {
            self.stats.held += 1;
            out.fill(0);
            return Playout::Gap;
        }
        let at = (self.next % CAPACITY as u64) as usize;
        let playout = if self.filled[slot] {
            out.copy_from_slice(&self.ring[at..at + FRAME_SAMPLES]);
            Playout::Audio
        } else {
            self.stats.lost += 1;
            out.fill(0);
            Playout::Gap
        };
        self.clear_frame();
        self.next += FRAME as u64;
        playout
    }

    /// Once a window, moves the delay one frame towards the target.
    fn adapt(&mut self) {
        // Audio buffered beyond the frame due now.
        self.margin_sum += self.end as i64 - self.next as i64 - FRAME;
        self.pops += 1;
        if self.pops < WINDOW {
            return;
        }
        let average = self.margin_sum / i64::from(WINDOW);
        self.pops = 0;
        self.margin_sum = 0;
        self.target = (3 * i64::from(self.jitter))
            .clamp(ms_to_samples(MIN_DELAY_MS), ms_to_samples(MAX_DELAY_MS));
        if average > self.target + FRAME {
            self.skip(1);
        } else if average < self.target - FRAME {
            self.hold = true;
        }
    }
}

fn ms_to_samples(ms: u32) -> i64 {
    i64::from(ms) * i64::from(RATE) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose samples all carry `n`, to follow it through.
    fn frame(n: i16) -> [i16; FRAME_SAMPLES] {
        [n; FRAME_SAMPLES]
    }

    /// What the next pops give: the frame's marker or None for a gap.
    fn drain(jb: &mut JitterBuffer, pops: usize) -> Vec<Option<i16>> {
        let mut out = [0; FRAME_SAMPLES];
        (0..pops)
            .map(|_| match jb.pop(&mut out) {
                Playout::Audio => Some(out[0]),
                Playout::Gap => None,
            })
            .collect()
    }

    const TS: u32 = u32::MAX - 400; // timestamps wrap during the tests

    fn ts(n: u16) -> u32 {
        TS.wrapping_add(u32::from(n) * 160)
    }

    #[test]
    fn reordered_packets_come_out_in_order_after_the_start_delay() {
        let mut jb = JitterBuffer::new();
        assert_eq!(drain(&mut jb, 1), vec![None], "nothing yet");
        let seq = |n: u16| 65534u16.wrapping_add(n);
        for n in [0u16, 2, 1, 3] {
            assert_eq!(
                jb.insert(seq(n), ts(n), &frame(n as i16 + 1)),
                Insert::Queued
            );
        }
        // 40 ms of delay: two gaps, then the four frames in order.
        assert_eq!(
            drain(&mut jb, 6),
            vec![None, None, Some(1), Some(2), Some(3), Some(4)]
        );
        assert_eq!(jb.stats().lost, 2);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped_and_counted() {
        let mut jb = JitterBuffer::new();
        jb.insert(10, ts(0), &frame(1));
        assert_eq!(jb.insert(10, ts(0), &frame(9)), Insert::Duplicate);
        drain(&mut jb, 3); // gap, gap, frame 1
        jb.insert(12, ts(2), &frame(3));
        drain(&mut jb, 1); // frame 2 is missing: a gap
        assert_eq!(jb.insert(11, ts(1), &frame(2)), Insert::Late);
        assert_eq!(drain(&mut jb, 1), vec![Some(3)]);
        // A sequence number too old to tell is late as well.
        assert_eq!(
            jb.insert(12u16.wrapping_sub(200), ts(3), &frame(4)),
            Insert::Late
        );
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.queued), (1, 2, 2));
    }

    #[test]
    fn a_missing_frame_is_a_gap_between_its_neighbours() {
        let mut jb = JitterBuffer::new();
        for n in [0u16, 1, 3] {
            jb.insert(n, ts(n), &frame(n as i16 + 1));
        }
        assert_eq!(
            drain(&mut jb, 6),
            vec![None, None, Some(1), Some(2), None, Some(4)]
        );
        // Then it runs dry: held, not advanced, so a slow packet still fits.
        assert_eq!(drain(&mut jb, 2), vec![None, None]);
        jb.insert(4, ts(4), &frame(5));
        assert_eq!(drain(&mut jb, 1), vec![Some(5)]);
        assert_eq!(jb.stats().held, 2);
    }

    #[test]
    fn a_big_jump_starts_over() {
        let mut jb = JitterBuffer::new();
        jb.insert(0, ts(0), &frame(1));
        jb.insert(1, ts(1), &frame(2));
        drain(&mut jb, 3);
        // A re-INVITE to another media server: timestamps 10 s away.
        assert_eq!(
            jb.insert(2, ts(1).wrapping_add(80_000), &frame(7)),
            Insert::Reset
        );
        assert_eq!(drain(&mut jb, 3), vec![None, None, Some(7)]);
        assert_eq!(jb.stats().resets, 1);
        jb.reset();
        assert_eq!(drain(&mut jb, 1), vec![None]);
        assert_eq!(jb.stats().resets, 2);
    }

    #[test]
    fn thirty_millisecond_packets_fill_frames_and_a_half() {
        let mut jb = JitterBuffer::new();
        let p = |n: i16| [n; 240];
        for n in 0..4u16 {
            jb.insert(n, 1000 + u32::from(n) * 240, &p(n as i16 + 1));
        }
        let mut out = [0; FRAME_SAMPLES];
        drain(&mut jb, 2);
        let mut samples = Vec::new();
        for _ in 0..6 {
            assert_eq!(jb.pop(&mut out), Playout::Audio);
            samples.extend(out);
        }
        let expected: Vec<i16> = (1..=4).flat_map(|n| [n; 240]).collect();
        assert_eq!(samples, expected);
    }

    #[test]
    fn a_burst_beyond_the_ring_drops_the_oldest() {
        let mut jb = JitterBuffer::new();
        for n in 0..40u16 {
            jb.insert(n, ts(n), &frame(n as i16 + 1));
        }
        let s = jb.stats();
        assert_eq!(s.queued, 40);
        assert!(s.skipped >= 8, "{s:?}");
        let out = drain(&mut jb, 32);
        assert_eq!(out.last(), Some(&Some(40)));
    }

    #[test]
    fn the_delay_grows_with_jitter_and_shrinks_back() {
        let mut jb = JitterBuffer::new();
        jb.set_jitter(480); // 60 ms of jitter: aim for the 180 ms cap
        let mut n = 0u16;
        let mut out = [0; FRAME_SAMPLES];
        // A steady stream, one packet per pop, for ten seconds.
        for _ in 0..500 {
            jb.insert(n, ts(n), &frame(1));
            n += 1;
            jb.pop(&mut out);
        }
        assert_eq!(jb.delay_ms(), 180);
        let grown = jb.buffered_ms();
        assert!((160..=220).contains(&grown), "{grown} ms, {:?}", jb.stats());
        jb.set_jitter(0);
        for _ in 0..1000 {
            jb.insert(n, ts(n), &frame(1));
            n += 1;
            jb.pop(&mut out);
        }
        assert_eq!(jb.delay_ms(), MIN_DELAY_MS);
        let shrunk = jb.buffered_ms();
        assert!(shrunk <= 60, "{shrunk} ms, {:?}", jb.stats());
        assert_eq!(jb.stats().lost, 2, "only the two start gaps");
    }
}
