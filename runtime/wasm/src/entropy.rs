//! What a guest's WASI clocks and random numbers are made of, one event at
//! a time, so that a replay shows the guest exactly the same values.
//!
//! ```text
//!   Entropy { unix_ms, seed }   per event: the time now and a random seed,
//!        │                      or read back from the decision log (replay)
//!        ├─▶ wasi:clocks/wall-clock        unix_ms, the whole event
//!        ├─▶ voice:runtime/clock now-ms    unix_ms (imports.rs), the same instant
//!        ├─▶ wasi:clocks/monotonic-clock   unix_ms in ns, then +1 µs per read
//!        ├─▶ wasi:random/random, insecure  SplitMix64 streams from seed
//!        ├─▶ wasi:random/insecure-seed     (std's HashMap keys) from seed
//!        └─▶ ImportRecord::Entropy         the event's first import record
//! ```
//!
//! Two numbers per event reproduce every value, however many the guest
//! reads, so the record stays small and the hot path does no syscall:
//!
//! * **Wall clock** — the event's instant, standing still while the guest
//!   decides (an event is decided at one instant; the `clock` import says
//!   the same), at millisecond resolution.
//! * **Monotonic clock** — starts at the same instant (in nanoseconds, so
//!   `Instant::now() - duration` cannot underflow) and moves
//!   [`MONOTONIC_STEP`] on every read: strictly increasing, a guest timing
//!   its own work sees a few microseconds (about what an event costs), and
//!   a loop waiting for time to pass ends after a bounded number of reads
//!   instead of spinning into the deadline. A real wait (a WASI sleep)
//!   still waits, but does not move this clock.
//! * **Random numbers** — from [`SplitMix64`], written here rather than
//!   taken from a library so that a seed gives the same numbers after a
//!   dependency upgrade: a log recorded today replays the same tomorrow.
//!   They are predictable from the log, so they are **not secret**: a guest
//!   must not make keys or tokens with WASI randomness (`get-random-bytes`
//!   included), which the host has no capability for yet.

use std::cell::Cell;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use switchyard_contract::guest::ImportRecord;

/// How far the guest's monotonic clock moves on each read.
pub const MONOTONIC_STEP: Duration = Duration::from_micros(1);

/// Everything a guest's WASI clocks and random numbers derive from in one
/// event, recorded as [`ImportRecord::Entropy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entropy {
    /// The event's instant, ms since 1970: the wall clock's reading.
    pub unix_ms: u64,
    /// Seeds every random number the guest gets.
    pub seed: u64,
}

impl Entropy {
    /// For a live event: the time now and a fresh seed (from the thread's
    /// generator, so no syscall per event).
    pub fn fresh() -> Self {
        Self {
            unix_ms: unix_ms_now(),
            seed: rand::random(),
        }
    }

    /// The entropy recorded among an event's import records, if any (logs
    /// written before it was recorded have none).
    pub fn recorded_in(imports: &[ImportRecord]) -> Option<Self> {
        imports.iter().find_map(|import| match *import {
            ImportRecord::Entropy { unix_ms, seed } => Some(Self { unix_ms, seed }),
            _ => None,
        })
    }

    pub fn record(self) -> ImportRecord {
        ImportRecord::Entropy {
            unix_ms: self.unix_ms,
            seed: self.seed,
        }
    }

    /// Gives a guest's WASI context its clocks and random numbers from
    /// this entropy instead of the host's.
    pub(crate) fn give_to(self, wasi: &mut WasiCtxBuilder) {
        let mut streams = SplitMix64(self.seed);
        let secure = SplitMix64(streams.next());
        let insecure = SplitMix64(streams.next());
        let hash_seed = u128::from(streams.next()) | u128::from(streams.next()) << 64;
        wasi.wall_clock(EventWallClock {
            at: Duration::from_millis(self.unix_ms),
        })
        .monotonic_clock(EventMonotonicClock {
            next: Cell::new(self.unix_ms.saturating_mul(1_000_000)),
        })
        .secure_random(secure)
        .insecure_random(insecure)
        .insecure_random_seed(hash_seed);
    }
}

/// Milliseconds since 1970 by the host's clock. A clock before 1970 is a
/// host misconfiguration; 0 is as good an answer as any and keeps every
/// reader infallible.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `wasi:clocks/wall-clock`: the event's instant, standing still.
struct EventWallClock {
    at: Duration,
}

impl HostWallClock for EventWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.at
    }
}

/// `wasi:clocks/monotonic-clock`: nanoseconds from the event's instant,
/// [`MONOTONIC_STEP`] later on every read.
struct EventMonotonicClock {
    /// The next reading (`now` takes `&self`; one store, one thread at a time).
    next: Cell<u64>,
}

impl HostMonotonicClock for EventMonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        let now = self.next.get();
        self.next
            .set(now.saturating_add(MONOTONIC_STEP.as_nanos() as u64));
        now
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically sound
/// for non-secret use, and defined by the few lines below — which is the
/// point: what a recorded seed gives must never change.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl TryRng for SplitMix64 {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        // The high half: SplitMix64's best-mixed bits.
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand_core::Rng;

    use super::*;

    #[test]
    fn splitmix64_gives_the_published_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (from the
        // algorithm's reference implementation): a changed generator
        // would change what every recorded seed replays as.
        let mut rng = SplitMix64(1234567);
        let first: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(
            first,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn bytes_are_the_little_endian_words_in_order() {
        let mut words = SplitMix64(7);
        let expected: Vec<u8> = [words.next(), words.next()]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(11)
            .collect();
        let mut bytes = [0u8; 11];
        SplitMix64(7).fill_bytes(&mut bytes);
        assert_eq!(bytes.as_slice(), expected);
    }

    #[test]
    fn the_wall_clock_stands_at_the_events_instant() {
        let clock = EventWallClock {
            at: Duration::from_millis(1_700_000_000_123),
        };
        assert_eq!(clock.now(), clock.now());
        assert_eq!(clock.now().as_millis(), 1_700_000_000_123);
    }

    #[test]
    fn the_monotonic_clock_starts_at_the_instant_and_steps_per_read() {
        let clock = EventMonotonicClock {
            next: Cell::new(5_000_000),
        };
        let reads = [clock.now(), clock.now(), clock.now()];
        assert_eq!(reads, [5_000_000, 5_001_000, 5_002_000]);
        assert_eq!(clock.resolution(), 1_000);
    }

    #[test]
    fn entropy_is_found_among_the_import_records() {
        let entropy = Entropy {
            unix_ms: 42,
            seed: 7,
        };
        let imports = [
            ImportRecord::ClockNow { ms: 1 },
            entropy.record(),
            ImportRecord::VarAll { count: 0 },
        ];
        assert_eq!(Entropy::recorded_in(&imports), Some(entropy));
        assert_eq!(Entropy::recorded_in(&imports[..1]), None);
    }

    #[test]
    fn fresh_entropy_is_now_with_a_new_seed_each_time() {
        let before = unix_ms_now();
        let (a, b) = (Entropy::fresh(), Entropy::fresh());
        assert!(a.unix_ms >= before && b.unix_ms <= unix_ms_now());
        assert_ne!(a.seed, b.seed);
    }
}
