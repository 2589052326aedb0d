//! A hostile verification policy for the runtime's fallback tests; never a
//! model for a tenant's. It never rules on a call:
//!
//! - a caller id (`call.from`) containing `trap` or starting with `+1999`
//!   panics, so the component traps;
//! - any other caller id loops forever, so only the runtime's deadline
//!   stops it.
//!
//! Either way the runtime must apply its default policy (never a plain
//! accept) and go on with the call.

use std::hint::black_box;

use switchyard_sdk::prelude::*;

#[verification_policy]
fn screen(call: CallAttempt, _findings: Findings) -> Ruling {
    if call.from.contains("trap") || call.from.starts_with("+1999") {
        panic!("deliberate trap for tests (caller {})", call.from);
    }
    let mut turns = 0u64;
    loop {
        // `black_box` makes each turn observable, so the optimiser cannot
        // shrink the loop to a bare `loop {}` or fold it away.
        turns = black_box(turns.wrapping_add(1));
    }
}
