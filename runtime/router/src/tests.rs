//! The router driven by closures: no sockets, no guests, no sleeps.

use std::time::{Duration, Instant};

use super::*;
use switchyard_contract::guest::{CallVars, GuestFailure, Invocation, InvokeRequest};
use switchyard_contract::*;

fn incoming() -> IncomingCall {
    IncomingCall::inbound("+1555", "+1666", "test")
}

fn say(text: &str) -> Verb {
    Verb::Say(Say::text(text))
}

fn new_call(start: Instant) -> Call {
    Call::new(
        start,
        "c1",
        "t1",
        "main",
        incoming(),
        RouterConfig::default(),
    )
}

/// Takes the invocation the call asks for and answers it with `outcome`.
fn answer(call: &mut Call, now: Instant, outcome: Result<Plan, GuestFailure>) -> InvokeRequest {
    let Some(Output::Invoke(request)) = call.poll_output() else {
        panic!("an invocation was expected")
    };
    let invocation = Invocation {
        outcome,
        vars: request.vars.clone(),
        imports: vec![],
        elapsed: Duration::ZERO,
    };
    call.handle_invocation(now, invocation).unwrap();
    request
}

/// Answers the invocation already taken from the call's output.
fn answer_request(call: &mut Call, now: Instant, outcome: Result<Plan, GuestFailure>) {
    let invocation = Invocation {
        outcome,
        vars: CallVars::new(),
        imports: vec![],
        elapsed: Duration::ZERO,
    };
    call.handle_invocation(now, invocation).unwrap();
}

fn gather() -> Verb {
    Verb::Gather(Gather {
        input: GatherInput::Dtmf,
        num_digits: Some(1),
        finish_on_key: Some('#'),
        timeout_secs: 5,
        prompts: vec![],
    })
}

fn plan(verbs: Vec<Verb>) -> Result<Plan, GuestFailure> {
    Ok(Plan { verbs })
}

fn pressed(digits: &str) -> LegEvent {
    LegEvent::Result(Event::GatherComplete(GatherResult {
        digits: digits.into(),
        ended_by: GatherEnd::NumDigits,
    }))
}

/// What the driver saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Event(String),
    Verb(String),
    Finished(HangupCause, u32),
}

/// Drives a call to its end: `decide` plays the handler (it may set vars),
/// `leg` plays the call leg. Each step advances a virtual clock by 1 s.
fn drive(
    config: RouterConfig,
    decide: impl FnMut(&InvokeRequest, &mut CallVars) -> Result<Plan, GuestFailure>,
    leg: impl FnMut(&Verb) -> LegEvent,
) -> (Call, Vec<Seen>) {
    drive_quiet(config, &[], decide, leg)
}

/// [`drive`], with the handlers named in `quiet` taking no notices (the
/// driver sets the flag from each invocation's handler, as the SIP
/// endpoint and the simulator do).
fn drive_quiet(
    config: RouterConfig,
    quiet: &[&str],
    mut decide: impl FnMut(&InvokeRequest, &mut CallVars) -> Result<Plan, GuestFailure>,
    mut leg: impl FnMut(&Verb) -> LegEvent,
) -> (Call, Vec<Seen>) {
    let start = Instant::now();
    let mut call = Call::new(start, "c1", "t1", "main", incoming(), config);
    let mut seen = Vec::new();
    for step in 1..=200u64 {
        let now = start + Duration::from_secs(step);
        match call.poll_output() {
            Some(Output::Invoke(request)) => {
                call.set_notices(!quiet.contains(&request.ctx.handler.as_str()));
                seen.push(Seen::Event(crate::describe::describe_event(&request.event)));
                let mut vars = request.vars.clone();
                let outcome = decide(&request, &mut vars);
                let invocation = Invocation {
                    outcome,
                    vars,
                    imports: vec![],
                    elapsed: Duration::from_micros(10),
                };
                call.handle_invocation(now, invocation).unwrap();
            }
            Some(Output::Execute(verb)) => {
                seen.push(Seen::Verb(crate::describe::describe_verb(&verb)));
                let event = leg(&verb);
                call.handle_leg(now, event).unwrap();
            }
            Some(Output::Finished(summary)) => {
                seen.push(Seen::Finished(summary.ended_by, summary.fallbacks));
                return (call, seen);
            }
            Some(Output::Wait(wait)) => panic!("no caller waits in a queue here: {wait:?}"),
            None => panic!("router stalled after {seen:?}"),
        }
    }
    panic!("call never finished: {seen:?}")
}

fn events(seen: &[Seen]) -> Vec<&str> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Event(e) => Some(e.split_whitespace().next().unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_gather_result_becomes_the_next_event() {
    let (call, seen) = drive(
        RouterConfig::default(),
        |req, _| match &req.event {
            Event::Incoming(_) => plan(vec![say("Menu"), gather()]),
            Event::GatherComplete(g) if g.digits == "2" => plan(vec![say("Support"), Verb::Hangup]),
            _ => plan(vec![]),
        },
        |verb| match verb {
            Verb::Gather(_) => pressed("2"),
            _ => LegEvent::Done,
        },
    );
    assert_eq!(events(&seen), ["incoming", "gather-complete", "hangup"]);
    assert!(
        seen.contains(&Seen::Verb("say \"Support\"".into())),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&Seen::Finished(HangupCause::Handler, 0)));
    assert!(call.is_finished());
}

#[test]
fn a_trapping_handler_gets_the_fallback_apology_then_hangup() {
    let (_, seen) = drive(
        RouterConfig::default(),
        |_, _| Err(GuestFailure::Trap("unreachable".into())),
        |_| LegEvent::Done,
    );
    let verbs: Vec<_> = seen.iter().filter(|s| matches!(s, Seen::Verb(_))).collect();
    assert!(
        matches!(verbs[0], Seen::Verb(v) if v.contains("sorry")),
        "{seen:?}"
    );
    assert_eq!(verbs[1], &Seen::Verb("hangup".into()));
    assert_eq!(seen.last(), Some(&Seen::Finished(HangupCause::Handler, 1)));
}

#[test]
fn an_invalid_plan_runs_none_of_its_verbs_and_logs_why() {
    let (call, seen) = drive(
        RouterConfig::default(),
        |_, _| plan(vec![gather(), say("unreachable")]),
        |_| LegEvent::Done,
    );
    assert!(
        !seen
            .iter()
            .any(|s| matches!(s, Seen::Verb(v) if v.starts_with("gather"))),
        "{seen:?}"
    );
    let reason = call.log().entries().iter().find_map(|e| match &e.entry {
        Entry::Fallback { reason, .. } => Some(reason.to_string()),
        _ => None,
    });
    assert!(reason.unwrap().contains("must be the last verb"));
}

#[test]
fn a_tenant_fallback_replaces_the_default() {
    let fallback = Fallback::new(Plan {
        verbs: vec![say("Please call back later")],
    })
    .unwrap();
    let config = RouterConfig {
        fallback,
        ..RouterConfig::default()
    };
    let (_, seen) = drive(
        config,
        |_, _| Err(GuestFailure::Deadline { limit_ms: 20 }),
        |_| LegEvent::Done,
    );
    assert!(seen.contains(&Seen::Verb("say \"Please call back later\"".into())));
    assert!(
        seen.contains(&Seen::Verb("hangup".into())),
        "a hangup is appended: {seen:?}"
    );
}

#[test]
fn a_fallback_that_needs_a_decision_is_refused() {
    let err = Fallback::new(Plan {
        verbs: vec![gather()],
    })
    .unwrap_err();
    assert!(err.to_string().contains("gather"), "{err}");
}

#[test]
fn a_plan_that_runs_out_hangs_up() {
    let (_, seen) = drive(
        RouterConfig::default(),
        |_, _| plan(vec![say("Bye")]),
        |_| LegEvent::Done,
    );
    assert_eq!(
        &seen[1..],
        [
            Seen::Verb("say \"Bye\"".into()),
            Seen::Verb("hangup".into()),
            Seen::Event("hangup (handler)".into()),
            Seen::Finished(HangupCause::Handler, 0)
        ]
    );
}

#[test]
fn call_variables_survive_a_redirect_and_reach_the_next_handler() {
    let (call, seen) = drive(
        RouterConfig::default(),
        |req, vars| match (&req.ctx.handler[..], &req.event) {
            ("main", Event::Incoming(_)) => {
                vars.insert("from-guest".into(), "1".into());
                plan(vec![
                    Verb::SetVar(SetVar {
                        name: "lang".into(),
                        value: Some("fr".into()),
                    }),
                    Verb::Redirect("billing".into()),
                ])
            }
            ("billing", Event::Redirected(from)) => {
                assert_eq!(from, "main");
                assert_eq!(req.vars.get("lang").map(String::as_str), Some("fr"));
                assert_eq!(req.vars.get("from-guest").map(String::as_str), Some("1"));
                plan(vec![Verb::Hangup])
            }
            (_, Event::Hangup(_)) => plan(vec![]),
            other => panic!("unexpected {other:?}"),
        },
        |_| LegEvent::Done,
    );
    assert_eq!(events(&seen), ["incoming", "redirected", "hangup"]);
    assert_eq!(call.vars().get("lang").map(String::as_str), Some("fr"));
}

#[test]
fn a_failed_decision_is_handed_once_to_the_fallback_handler_with_the_same_event() {
    let start = Instant::now();
    let mut call = new_call(start);
    call.set_fallback_handler(Some("backup".into()));
    let first = answer(&mut call, start, Err(GuestFailure::Trap("boom".into())));
    assert_eq!(first.ctx.handler, "main");
    let Some(Output::Invoke(handed)) = call.poll_output() else {
        panic!("the event goes to the fallback handler")
    };
    assert_eq!(handed.ctx.handler, "backup");
    assert_eq!(handed.event, first.event);
    let invocation = Invocation {
        outcome: Err(GuestFailure::Trap("again".into())),
        vars: handed.vars.clone(),
        imports: vec![],
        elapsed: Duration::ZERO,
    };
    call.handle_invocation(start, invocation).unwrap();
    // The fallback handler failed too: the static apology runs.
    let handover = call
        .log()
        .entries()
        .iter()
        .filter(|e| matches!(e.entry, Entry::Handover { .. } | Entry::Fallback { .. }))
        .count();
    assert_eq!(handover, 2);
    assert!(matches!(
        call.poll_output(),
        Some(Output::Execute(Verb::Say(_)))
    ));
}

#[test]
fn an_outside_redirect_drops_the_plan_and_any_decision_in_flight() {
    let start = Instant::now();
    let mut call = new_call(start);
    answer(&mut call, start, plan(vec![gather()]));
    assert!(matches!(
        call.poll_output(),
        Some(Output::Execute(Verb::Gather(_)))
    ));
    // Redirected while the gather runs: the billing handler decides next.
    call.redirect(start, "billing".into()).unwrap();
    let Some(Output::Invoke(request)) = call.poll_output() else {
        panic!("the new handler is asked")
    };
    assert_eq!(request.ctx.handler, "billing");
    assert_eq!(request.event, Event::Redirected("main".into()));
    // Redirected again before billing answered: its plan is dropped.
    call.redirect(start, "sales".into()).unwrap();
    answer_request(&mut call, start, plan(vec![say("stale")]));
    let Some(Output::Invoke(request)) = call.poll_output() else {
        panic!("sales is asked")
    };
    assert_eq!(request.ctx.handler, "sales");
    answer_request(&mut call, start, plan(vec![say("hi")]));
    assert!(matches!(
        call.poll_output(),
        Some(Output::Execute(Verb::Say(_)))
    ));
}

#[test]
fn a_redirect_cycle_stops_at_the_event_limit() {
    let config = RouterConfig {
        max_events: 5,
        ..RouterConfig::default()
    };
    let (_, seen) = drive(
        config,
        |_, _| plan(vec![Verb::Redirect("main".into())]),
        |_| LegEvent::Done,
    );
    assert_eq!(
        events(&seen).len(),
        6,
        "5 decisions, then the hangup notice: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&Seen::Finished(HangupCause::Handler, 1)));
}

#[test]
fn a_caller_hangup_while_deciding_discards_the_plan() {
    let start = Instant::now();
    let mut call = new_call(start);
    let Some(Output::Invoke(request)) = call.poll_output() else {
        panic!()
    };
    call.handle_leg(start, LegEvent::Hangup(HangupCause::Caller))
        .unwrap();
    let late = Invocation {
        outcome: plan(vec![say("too late")]),
        vars: request.vars,
        imports: vec![],
        elapsed: Duration::ZERO,
    };
    call.handle_invocation(start, late).unwrap();
    let hangup = answer(&mut call, start, Err(GuestFailure::Trap("x".into())));
    assert_eq!(hangup.event, Event::Hangup(HangupCause::Caller));
    assert_eq!(hangup.ctx.sequence, 1);
    assert!(
        matches!(call.poll_output(), Some(Output::Finished(s)) if s.ended_by == HangupCause::Caller && s.fallbacks == 0),
        "a failure on the hangup notice runs no fallback"
    );
}

#[test]
fn a_status_change_does_not_disturb_the_running_plan() {
    let start = Instant::now();
    let mut call = new_call(start);
    answer(&mut call, start, plan(vec![say("one"), say("two")]));
    assert_eq!(call.poll_output(), Some(Output::Execute(say("one"))));
    call.handle_leg(start, LegEvent::Status(CallStatus::InProgress))
        .unwrap();
    let notice = answer(&mut call, start, plan(vec![say("ignored")]));
    assert_eq!(notice.event, Event::StatusChanged(CallStatus::InProgress));
    assert_eq!(call.poll_output(), None, "\"one\" is still playing");
    call.handle_leg(start, LegEvent::Done).unwrap();
    assert_eq!(call.poll_output(), Some(Output::Execute(say("two"))));
}

#[test]
fn a_leg_result_of_the_wrong_kind_is_an_error() {
    let start = Instant::now();
    let mut call = new_call(start);
    answer(&mut call, start, plan(vec![gather()]));
    assert!(matches!(
        call.poll_output(),
        Some(Output::Execute(Verb::Gather(_)))
    ));
    let wrong = LegEvent::Result(Event::DialComplete(DialResult {
        status: DialStatus::Busy,
        answered: None,
        duration_secs: 0,
        recording_id: None,
    }));
    assert!(matches!(
        call.handle_leg(start, wrong),
        Err(RouterError::WrongResult { verb: "gather", .. })
    ));
    assert!(matches!(
        call.handle_leg(start, LegEvent::Done),
        Err(RouterError::MissingResult { verb: "gather" })
    ));
    call.handle_leg(start, pressed("1")).unwrap();
    assert!(
        matches!(call.poll_output(), Some(Output::Invoke(r)) if matches!(r.event, Event::GatherComplete(_)))
    );
}

#[test]
fn the_decision_log_holds_every_event_plan_and_verb_and_round_trips_as_json() {
    let (call, _) = drive(
        RouterConfig::default(),
        |req, _| match &req.event {
            Event::Incoming(_) => plan(vec![gather()]),
            _ => plan(vec![Verb::Hangup]),
        },
        |_| pressed("7"),
    );
    let kinds: Vec<&str> = call
        .log()
        .entries()
        .iter()
        .map(|e| match e.entry {
            Entry::Event { .. } => "event",
            Entry::Decision { .. } => "decision",
            Entry::Verb { .. } => "verb",
            Entry::Ended { .. } => "ended",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "event", "decision", "verb", "event", "decision", "verb", "ended", "event", "decision"
        ]
    );
    let json = call.log().to_json_lines();
    assert_eq!(&DecisionLog::from_json_lines(&json).unwrap(), call.log());
}

/// Plays `main` (redirects to `billing` on incoming) and `billing` (says
/// something and hangs up); returns the events the handlers heard.
fn redirect_with_quiet(quiet: &[&str]) -> Vec<String> {
    let (_, seen) = drive_quiet(
        RouterConfig::default(),
        quiet,
        |req, _| match (&req.ctx.handler[..], &req.event) {
            ("main", Event::Incoming(_)) => plan(vec![Verb::Redirect("billing".into())]),
            ("billing", Event::Redirected(_)) => plan(vec![say("hi"), Verb::Hangup]),
            (_, Event::Hangup(_)) => plan(vec![]),
            other => panic!("unexpected {other:?}"),
        },
        |_| LegEvent::Done,
    );
    assert!(
        matches!(seen.last(), Some(Seen::Finished(HangupCause::Handler, 0))),
        "{seen:?}"
    );
    events(&seen).into_iter().map(String::from).collect()
}

#[test]
fn a_handler_that_takes_no_notices_is_not_sent_the_hangup() {
    assert_eq!(
        redirect_with_quiet(&[]),
        ["incoming", "redirected", "hangup"]
    );
    assert_eq!(
        redirect_with_quiet(&["billing"]),
        ["incoming", "redirected"]
    );
    // Notices follow the handler deciding now, not the one the call began on.
    assert_eq!(
        redirect_with_quiet(&["main"]),
        ["incoming", "redirected", "hangup"]
    );
}

#[test]
fn a_handler_that_takes_no_notices_is_not_sent_status_changes() {
    let start = Instant::now();
    let mut call = new_call(start);
    call.set_notices(false);
    answer(&mut call, start, plan(vec![say("one"), Verb::Hangup]));
    assert_eq!(call.poll_output(), Some(Output::Execute(say("one"))));
    call.handle_leg(start, LegEvent::Status(CallStatus::InProgress))
        .unwrap();
    assert_eq!(call.poll_output(), None, "no notice, \"one\" still playing");
    call.handle_leg(start, LegEvent::Done).unwrap();
    assert_eq!(call.poll_output(), Some(Output::Execute(Verb::Hangup)));
    assert!(matches!(call.poll_output(), Some(Output::Finished(_))));
    assert_eq!(call.log().events().count(), 1, "only the incoming event");
}

#[test]
fn a_call_with_a_plan_and_no_handler_runs_it_and_ends_with_its_result() {
    let start = Instant::now();
    let join = Verb::Conference(ConferenceOptions::named("standup"));
    let plan = Plan {
        verbs: vec![join.clone()],
    };
    let mut call = Call::with_plan(start, "c1", "t1", "", plan, RouterConfig::default());
    assert_eq!(call.poll_output(), Some(Output::Execute(join)));
    assert_eq!(call.poll_output(), None, "nobody is asked");
    let result = Event::ConferenceComplete(ConferenceResult {
        name: "standup".into(),
        ended_by: ConferenceEnd::Ended,
        duration_secs: 30,
    });
    call.handle_leg(start, LegEvent::Result(result)).unwrap();
    assert_eq!(call.poll_output(), Some(Output::Execute(Verb::Hangup)));
    assert!(matches!(call.poll_output(), Some(Output::Finished(_))));
    assert!(call.is_finished());

    // With a handler, the result is the handler's to decide.
    let plan = Plan {
        verbs: vec![Verb::Conference(ConferenceOptions::named("standup"))],
    };
    let mut call = Call::with_plan(start, "c2", "t1", "main", plan, RouterConfig::default());
    call.poll_output();
    let result = Event::ConferenceComplete(ConferenceResult {
        name: "standup".into(),
        ended_by: ConferenceEnd::Kicked,
        duration_secs: 3,
    });
    call.handle_leg(start, LegEvent::Result(result)).unwrap();
    let Some(Output::Invoke(request)) = call.poll_output() else {
        panic!("the handler decides")
    };
    assert!(matches!(request.event, Event::ConferenceComplete(_)));
}

// ------------------------------------------------------------ queue-wait

fn enqueue(updates: Option<u32>) -> Verb {
    Verb::Enqueue(Enqueue {
        queue: "support".into(),
        wait_prompts: vec![],
        max_wait_secs: None,
        priority: Some(3),
        wait_update_secs: updates,
    })
}

fn status(position: u32) -> LegEvent {
    LegEvent::QueueWait(QueueStatus {
        queue: "support".into(),
        position,
        size: 4,
        wait_secs: 10,
        average_wait_secs: Some(42),
    })
}

/// A call that runs `enqueue(updates)`: the leg is running it.
fn queued(start: Instant, updates: Option<u32>) -> Call {
    let mut call = new_call(start);
    answer(&mut call, start, plan(vec![enqueue(updates)]));
    assert_eq!(call.poll_output(), Some(Output::Execute(enqueue(updates))));
    call
}

fn bridged() -> LegEvent {
    LegEvent::Result(Event::QueueComplete(QueueResult {
        queue: "support".into(),
        outcome: QueueOutcome::Bridged,
        wait_secs: 30,
    }))
}

fn wait_ignored(call: &Call) -> Vec<&str> {
    (call.log().entries().iter())
        .filter_map(|e| match &e.entry {
            Entry::WaitIgnored { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wait_plan_plays_to_the_waiting_caller_and_the_enqueue_keeps_running() {
    let start = Instant::now();
    let mut call = queued(start, Some(10));
    let later = start + Duration::from_secs(10);
    call.handle_leg(later, status(2)).unwrap();
    let request = answer(
        &mut call,
        later,
        plan(vec![
            Verb::SetVar(SetVar {
                name: "told".into(),
                value: Some("2".into()),
            }),
            say("You are number 2."),
        ]),
    );
    let Event::QueueWait(told) = &request.event else {
        panic!("{:?}", request.event)
    };
    assert_eq!(
        (told.position, told.size, told.average_wait_secs),
        (2, 4, Some(42))
    );
    assert_eq!(
        call.poll_output(),
        Some(Output::Wait(WaitPlan {
            prompts: vec![Prompt::Say(Say::text("You are number 2."))],
            then: WaitEnd::Stay,
        }))
    );
    assert_eq!(call.vars().get("told").map(String::as_str), Some("2"));
    // The enqueue still runs: its result is the next decision.
    call.handle_leg(later, bridged()).unwrap();
    let request = answer(&mut call, later, plan(vec![Verb::Hangup]));
    assert!(matches!(request.event, Event::QueueComplete(_)));
    assert_eq!(request.vars.get("told").map(String::as_str), Some("2"));
}

#[test]
fn a_wait_plan_may_end_by_leaving_the_queue_redirecting_or_hanging_up() {
    let ends = [
        (Verb::LeaveQueue, WaitEnd::Leave),
        (
            Verb::Redirect("agent".into()),
            WaitEnd::Redirect("agent".into()),
        ),
        (Verb::Hangup, WaitEnd::Hangup),
    ];
    for (verb, then) in ends {
        let start = Instant::now();
        let mut call = queued(start, Some(10));
        call.handle_leg(start, status(1)).unwrap();
        answer(&mut call, start, plan(vec![verb]));
        assert_eq!(
            call.poll_output(),
            Some(Output::Wait(WaitPlan {
                prompts: vec![],
                then
            }))
        );
    }
}

#[test]
fn a_wait_plan_that_cannot_run_while_waiting_is_logged_and_the_caller_keeps_waiting() {
    let start = Instant::now();
    let mut call = queued(start, Some(10));
    call.handle_leg(start, status(1)).unwrap();
    answer(&mut call, start, plan(vec![gather()]));
    assert_eq!(call.poll_output(), None);
    call.handle_leg(start, status(1)).unwrap();
    answer(&mut call, start, plan(vec![Verb::LeaveQueue, say("bye")]));
    call.handle_leg(start, status(1)).unwrap();
    answer(
        &mut call,
        start,
        Err(GuestFailure::Trap("unreachable".into())),
    );
    assert_eq!(call.poll_output(), None, "no fallback runs");
    let ignored = wait_ignored(&call);
    assert_eq!(ignored.len(), 3, "{ignored:?}");
    assert!(
        ignored[0].contains("verb 0 (gather) cannot run while the caller waits in a queue"),
        "{}",
        ignored[0]
    );
    assert!(ignored[1].contains("leave-queue"), "{}", ignored[1]);
    assert!(ignored[2].contains("unreachable"), "{}", ignored[2]);
    // Still waiting: the result decides as usual.
    call.handle_leg(start, bridged()).unwrap();
    let request = answer(&mut call, start, plan(vec![Verb::Hangup]));
    assert!(matches!(request.event, Event::QueueComplete(_)));
}

#[test]
fn wait_updates_go_one_at_a_time_and_only_when_the_enqueue_asked() {
    let start = Instant::now();
    let mut call = queued(start, None);
    call.handle_leg(start, status(1)).unwrap();
    assert_eq!(
        call.poll_output(),
        None,
        "this enqueue asked for no updates"
    );

    let mut call = queued(start, Some(10));
    call.handle_leg(start, status(3)).unwrap();
    let Some(Output::Invoke(first)) = call.poll_output() else {
        panic!()
    };
    // The handler is slow: updates due meanwhile are skipped.
    call.handle_leg(start, status(2)).unwrap();
    call.handle_leg(start, status(1)).unwrap();
    assert_eq!(call.poll_output(), None);
    answer_request(&mut call, start, plan(vec![]));
    assert_eq!(
        call.poll_output(),
        None,
        "an empty wait plan changes nothing"
    );
    assert!(matches!(
        first.event,
        Event::QueueWait(QueueStatus { position: 3, .. })
    ));
}

#[test]
fn a_wait_plan_that_returns_after_the_caller_left_the_queue_is_not_run() {
    let start = Instant::now();
    let mut call = queued(start, Some(10));
    call.handle_leg(start, status(1)).unwrap();
    let Some(Output::Invoke(_)) = call.poll_output() else {
        panic!()
    };
    call.handle_leg(start, bridged()).unwrap();
    answer_request(&mut call, start, plan(vec![say("still there?")]));
    assert_eq!(
        wait_ignored(&call),
        vec!["the caller no longer waits in the queue"]
    );
    // The queue-complete decision comes next.
    let request = answer(&mut call, start, plan(vec![Verb::Hangup]));
    assert!(matches!(request.event, Event::QueueComplete(_)));
}
