//! Dials the called number through the tenant's trunk and bridges; when
//! the far end does not answer, says so and hangs up.

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(call) => Ok(Plan::new().dial(Dial::number(call.to).timeout_secs(20))),
        Event::DialComplete(dial) if dial.status == DialStatus::Completed => {
            Ok(Plan::new().hangup())
        }
        Event::DialComplete(_) => Ok(Plan::new().say("The number you called is not available.")),
        _ => Ok(Plan::new()),
    }
}
