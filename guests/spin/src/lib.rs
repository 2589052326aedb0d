//! A hostile guest for the runtime's tests: it never returns, so only the
//! host's fuel or epoch deadline can stop it.

use std::hint::black_box;

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, _event: Event) -> Result<Plan, HandlerError> {
    let mut turns = 0u64;
    loop {
        // `black_box` makes each turn observable, so the optimiser cannot
        // shrink the loop to a bare `loop {}` or fold it away.
        turns = black_box(turns.wrapping_add(1));
    }
}
