//! The call router: one sans-IO state machine per call.
//!
//! ```text
//!            handle_leg(LegEvent)          handle_invocation(Invocation)
//!   call leg ───────────────────►  Call  ◄─────────────────────────── handler
//!            ◄── Output::Execute ───┤├── Output::Invoke(request) ───►
//!                                   └─── Output::Finished(summary)
//! ```
//!
//! [`Call`] never touches a socket, a clock or a guest. Whoever drives it
//! (the simulator, a SIP call task) feeds it what happened with a `now`,
//! then drains [`Call::poll_output`] until it returns `None`:
//!
//! * `Invoke` — ask the call's handler to decide on an event, then feed the
//!   answer back with [`Call::handle_invocation`]. At most one is in flight.
//! * `Execute` — run a verb on the call leg; report its end with
//!   [`Call::handle_leg`] (`Done`, or `Result` for verbs that have one).
//! * `Finished` — the call is over and the decision log is complete.
//!
//! Timing (gather timeouts, dial ringing, media) belongs to the leg, so the
//! router has no timers of its own.
//!
//! Which verbs a leg can execute at all is one table, [`LEG_SUPPORT`]:
//! plan validation refuses the rest, so `simulate`, `check` and real calls
//! say the same thing about them.
//!
//! Every event, decision, host-import result, fallback and executed verb is
//! appended to the call's [`DecisionLog`], which is what replay runs from.

// Tests start virtual clocks from `Instant::now()`; the code itself never
// reads a clock or the OS RNG (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod call;
mod config;
pub mod describe;
pub mod estimate;
mod log;
mod plan;
mod support;

pub use call::{Call, CallSummary, LegEvent, Output, RouterError, WaitEnd, WaitPlan};
pub use config::{Fallback, FallbackError, RouterConfig};
pub use log::{DecisionLog, Entry, LogEntry, Screening};
pub use plan::{MAX_PARTICIPANTS, PlanError, check_name, validate, validate_wait, verb_name};
pub use support::{LEG_SUPPORT, NotBuilt, Support, leg_support, not_built, target_support};

#[cfg(test)]
mod tests;
