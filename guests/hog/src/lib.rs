//! A hostile guest for the runtime's tests: it allocates until the host's
//! memory cap stops it, which must end this call only.

use std::hint::black_box;

use switchyard_sdk::prelude::*;

/// Large chunks reach the cap in a few growths, well within the deadline
/// even on a loaded machine: the test is about the cap, not the clock.
const CHUNK: usize = 4 << 20;

#[call_handler]
fn handle(_ctx: Context, _event: Event) -> Result<Plan, HandlerError> {
    let mut chunks = Vec::new();
    loop {
        // Reserving is enough: the allocator grows linear memory at once,
        // and `black_box` keeps the optimiser from eliding the buffers.
        chunks.push(black_box(Vec::<u8>::with_capacity(CHUNK)));
    }
}
