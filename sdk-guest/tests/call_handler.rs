//! `#[call_handler]` keeps the function callable and compiles on the host
//! too, so guests can unit-test their handler natively.

use switchyard_sdk::prelude::*;

#[call_handler]
fn answer(ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(Plan::new().say(format!("Call {}", ctx.call_id)).hangup()),
        other => Err(HandlerError::unexpected(&other)),
    }
}

fn context() -> Context {
    Context {
        call_id: "c1".into(),
        tenant: "acme".into(),
        sequence: 0,
        handler: "answer".into(),
    }
}

#[test]
fn the_annotated_function_stays_an_ordinary_function() {
    let plan = answer(context(), Event::Hangup(HangupCause::Caller));
    assert_eq!(plan, Err(HandlerError::UnexpectedEvent("hangup".into())));
}

#[test]
fn the_handler_answers_an_incoming_call_with_its_plan() {
    let call = IncomingCall {
        from: "+15551110000".into(),
        to: "+15552220000".into(),
        direction: Direction::Inbound,
        region: "eu-west".into(),
        headers: vec![],
        verification: Verification {
            status: VerificationStatus::NotChecked,
            attestation: None,
            label: None,
        },
    };
    let plan = answer(context(), Event::Incoming(call)).expect("a plan");
    assert_eq!(plan, Plan::new().say("Call c1").hangup());
}
