//! Answers every call and waits: the caller decides when it ends. Used by
//! the SIP load tests and benchmark (one Wasm decision per call).

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        // Answered by the pause, as a TwiML <Pause> answers a call.
        Event::Incoming(_) => Ok(Plan::new().pause_ms(60_000)),
        _ => Ok(Plan::new()),
    }
}
