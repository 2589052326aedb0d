//! Decides on presence (test guest for `presence.lookup`): a call is
//! refused as busy (486) unless client `alice` is available, when it is
//! declined (603) — a stand-in for ringing her, which needs browser calls.

use switchyard_sdk::prelude::*;
use switchyard_sdk::presence::{self, Status};

#[call_handler(notices = false)]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => {
            let alice = presence::lookup("alice");
            switchyard_sdk::log::info(format!(
                "alice is {:?} on {} device(s)",
                alice.status, alice.devices
            ));
            Ok(match alice.status {
                Status::Available => Plan::new().reject(),
                _ => Plan::new().reject_busy(),
            })
        }
        _ => Ok(Plan::new()),
    }
}
