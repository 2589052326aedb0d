//! Forwards every call to client `alice`; when she does not answer the
//! caller leaves a voicemail.

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(Plan::new().dial(
            Dial::client("alice")
                .timeout_secs(15)
                .answer_on_bridge(true),
        )),
        Event::DialComplete(dial) if dial.status == DialStatus::Completed => {
            Ok(Plan::new().hangup())
        }
        // Busy, no answer, failed or canceled.
        Event::DialComplete(_) => Ok(Plan::new()
            .say("Alice is not available. Leave a message after the beep.")
            .record(
                Record::new()
                    .max_length_secs(120)
                    .beep(true)
                    .trim_silence(true),
            )),
        Event::RecordComplete(_) => Ok(Plan::new().say("Thanks").hangup()),
        // Informational events: the router ignores their plan.
        Event::Hangup(_) | Event::StatusChanged(_) => Ok(Plan::new()),
        other => Err(HandlerError::unexpected(&other)),
    }
}
