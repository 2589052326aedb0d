//! An IVR menu: 1 dials sales, 2 queues for support, 3 takes a message.
//!
//! ```text
//! incoming        ─▶ welcome, menu (gather one digit)
//! gather-complete ─▶ "1": dial client sales   "2": enqueue support   "3": voicemail
//!                    none or invalid: menu again; goodbye after 3 attempts
//! dial-complete   ─▶ completed: hangup        otherwise: "Sales is busy", voicemail
//! record-complete ─▶ thanks, hangup
//! queue-complete  ─▶ hangup
//! ```
//!
//! "2" waits in queue `support` until an agent's handler dials
//! `queue:support` (or the caller hangs up).
//!
//! The failed attempts live in call variable `attempts`, since every event
//! runs in a fresh instance; the total of finished calls lives in tenant
//! key `stats/calls`, counted on the hangup event.

use switchyard_sdk::prelude::*;
use switchyard_sdk::{kv, log, vars};

const MENU: &str = "Press 1 for sales, 2 for support, 3 to leave a message";
/// Failed menu attempts after which the caller is let go.
const MAX_ATTEMPTS: u64 = 3;
const ATTEMPTS_VAR: &str = "attempts";
const CALLS_KEY: &str = "stats/calls";

#[call_handler]
fn handle(ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    log::info(format!("{} (event {})", event.name(), ctx.sequence));
    match event {
        Event::Incoming(call) => {
            log::info(format!("call from {} to {}", call.from, call.to));
            Ok(menu(Plan::new().say("Welcome to Switchyard")))
        }
        Event::GatherComplete(input) => Ok(choose(&input.digits)),
        Event::DialComplete(dial) => Ok(match dial.status {
            DialStatus::Completed => Plan::new().hangup(),
            _ => voicemail(Plan::new().say("Sales is busy")),
        }),
        Event::RecordComplete(_) => Ok(Plan::new().say("Thank you, goodbye").hangup()),
        Event::QueueComplete(_) => Ok(Plan::new().hangup()),
        // Counted at the end, so answering a call never waits on storage.
        Event::Hangup(_) => {
            count_call();
            Ok(Plan::new())
        }
        // Informational: the router ignores its plan.
        Event::StatusChanged(_) => Ok(Plan::new()),
        other => Err(HandlerError::unexpected(&other)),
    }
}

/// The plan for the digits the caller pressed at the menu.
fn choose(digits: &str) -> Plan {
    match digits {
        "1" => Plan::new()
            .set_var("dept", "sales")
            .say("Connecting you to sales")
            .dial(Dial::client("sales").timeout_secs(20)),
        "2" => Plan::new()
            .set_var("dept", "support")
            .enqueue(Enqueue::queue("support")),
        "3" => voicemail(Plan::new()),
        "" => retry(Plan::new()),
        _ => retry(Plan::new().say("Sorry, that is not a valid choice")),
    }
}

/// `plan`, then the menu again, or goodbye once the attempts are used up.
fn retry(plan: Plan) -> Plan {
    let attempts = next_count(vars::get(ATTEMPTS_VAR).as_deref());
    if attempts >= MAX_ATTEMPTS {
        log::warn(format!("no valid choice after {attempts} attempts"));
        return plan.say("Goodbye").hangup();
    }
    menu(plan.set_var(ATTEMPTS_VAR, attempts.to_string()))
}

fn menu(plan: Plan) -> Plan {
    plan.gather(Gather::digits(1).timeout_secs(5).say(MENU))
}

fn voicemail(plan: Plan) -> Plan {
    plan.say("Leave a message after the beep")
        .record(Record::new().max_length_secs(60).beep(true))
}

/// Adds one to the tenant's call count. A storage failure is only logged:
/// statistics must not cost the caller their call.
fn count_call() {
    // Not atomic: two calls arriving together may count once.
    let counted = kv::get_string(CALLS_KEY)
        .and_then(|stored| kv::set_string(CALLS_KEY, &next_count(stored.as_deref()).to_string()));
    if let Err(err) = counted {
        log::warn(format!("counting the call in {CALLS_KEY}: {err}"));
    }
}

/// One more than a count stored as decimal text; a missing or garbled
/// count starts again from zero.
fn next_count(stored: Option<&str>) -> u64 {
    stored.and_then(|text| text.parse().ok()).unwrap_or(0) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_start_at_one_and_survive_garbage() {
        assert_eq!(next_count(None), 1);
        assert_eq!(next_count(Some("41")), 42);
        assert_eq!(next_count(Some("forty-one")), 1);
    }

    #[test]
    fn pressing_1_dials_sales_for_twenty_seconds() {
        let plan = choose("1");
        assert_eq!(
            plan,
            Plan::new()
                .set_var("dept", "sales")
                .say("Connecting you to sales")
                .dial(Dial::client("sales").timeout_secs(20))
        );
    }

    #[test]
    fn pressing_3_takes_a_message_of_at_most_a_minute() {
        let Some(Verb::Record(record)) = choose("3").verbs.pop() else {
            panic!("voicemail ends with a record");
        };
        assert_eq!((record.max_length_secs, record.play_beep), (60, true));
    }
}
