//! Answers, waits one second and hangs up: the runtime sends the BYE.

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(Plan::new().pause_ms(1_000).hangup()),
        _ => Ok(Plan::new()),
    }
}
