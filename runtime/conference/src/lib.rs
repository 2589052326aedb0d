//! Conferences and call queues above the mixer, sans-IO (issue 15).
//!
//! * [`queue`] — one call queue: order by priority then arrival, positions,
//!   max size, dequeue of the longest-waiting or a named call, timeouts and
//!   the average wait.
//! * [`placement`] — which regions run a mixer for a conference and which
//!   cascade links join them, recomputed as participants join and leave,
//!   behind the [`placement::Placements`] interface (in memory today; the
//!   multi-node storage implements it later).
//!
//! Time comes in as arguments (`Instant`), as in every core: nothing here
//! reads a clock.

// Tests start virtual clocks from `Instant::now()`; the code never does.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod placement;
pub mod queue;
