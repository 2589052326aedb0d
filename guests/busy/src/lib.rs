//! Rejects every call as busy (SIP 486): the decision path benchmarked
//! against Kamailio's `sl_send_reply("486", ...)`. It takes no notices, so
//! a call costs one instantiation (the `incoming` decision), not two.

use switchyard_sdk::prelude::*;

#[call_handler(notices = false)]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(Plan::new().reject_busy()),
        _ => Ok(Plan::new()),
    }
}
