//! Answers every call with a long sentence spoken over and over (loop count
//! 0: until the call ends). The media benchmark's "each call playing a
//! prompt" (benches/media): every call is a stream the engine paces.

use switchyard_sdk::prelude::*;

/// Long enough that a repeat is rare next to the packets in between.
const PROMPT: &str = "Thank you for calling. All of our agents are busy helping \
    other customers right now. Please stay on the line and your call will be \
    answered in the order it was received. We appreciate your patience.";

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(Plan::new().say_with(Say::new(PROMPT).loop_count(0))),
        _ => Ok(Plan::new()),
    }
}
