//! The plan builders produce the WIT records the host expects, with TwiML
//! defaults.

use switchyard_sdk::kv::KvError;
use switchyard_sdk::prelude::*;

#[test]
fn verbs_run_in_the_order_they_are_chained() {
    let plan = Plan::new()
        .say("Welcome")
        .pause_ms(500)
        .play("https://example.com/jingle.wav")
        .hangup();

    assert_eq!(
        plan.verbs,
        vec![
            Verb::Say(Say::new("Welcome")),
            Verb::Pause(Pause { length_ms: 500 }),
            Verb::Play(Play {
                source: MediaSource::Url("https://example.com/jingle.wav".into()),
                loop_count: 1,
            }),
            Verb::Hangup,
        ]
    );
}

#[test]
fn say_speaks_once_in_the_default_voice_unless_told_otherwise() {
    let plain = Say::new("Hi");
    assert_eq!(
        (plain.voice, plain.language, plain.loop_count),
        (None, None, 1)
    );

    let plan = Plan::new().say_with(
        Say::new("Hi")
            .voice("alice")
            .language("en-GB")
            .loop_count(0),
    );
    let Verb::Say(say) = &plan.verbs[0] else {
        panic!("not a say: {plan:?}")
    };
    assert_eq!(say.voice.as_deref(), Some("alice"));
    assert_eq!(say.language.as_deref(), Some("en-GB"));
    assert_eq!(say.loop_count, 0);
}

#[test]
fn gather_defaults_match_twiml() {
    let gather = Gather::new();
    assert_eq!(gather.input, GatherInput::Dtmf);
    assert_eq!(gather.num_digits, None);
    assert_eq!(gather.finish_on_key, Some('#'));
    assert_eq!(gather.timeout_secs, 5);
    assert!(gather.prompts.is_empty());
    assert_eq!(Gather::default(), gather);
}

#[test]
fn gather_prompts_keep_their_order_and_the_finish_key_can_be_disabled() {
    let gather = Gather::digits(1)
        .timeout_secs(8)
        .finish_on_key(None)
        .say("Press 1 for sales")
        .play_with(Play::media("menu-music").loop_count(2))
        .pause_ms(250);

    assert_eq!(gather.num_digits, Some(1));
    assert_eq!(gather.timeout_secs, 8);
    assert_eq!(gather.finish_on_key, None);
    assert_eq!(
        gather.prompts,
        vec![
            Prompt::Say(Say::new("Press 1 for sales")),
            Prompt::Play(Play {
                source: MediaSource::MediaId("menu-music".into()),
                loop_count: 2,
            }),
            Prompt::Pause(Pause { length_ms: 250 }),
        ]
    );
    assert_eq!(Gather::new().finish_on_key('*').finish_on_key, Some('*'));
}

#[test]
fn dial_defaults_to_one_target_rung_for_thirty_seconds() {
    let dial = Dial::number("+15551234567");
    assert_eq!(
        dial,
        Dial {
            targets: vec![DialLeg {
                target: DialTarget::Number("+15551234567".into()),
                headers: vec![],
            }],
            strategy: RingStrategy::Sequential,
            timeout_secs: 30,
            caller_id: None,
            record: false,
            answer_on_bridge: false,
            time_limit_secs: None,
        }
    );
}

#[test]
fn dial_headers_go_to_the_target_added_last() {
    let dial = Dial::client("alice")
        .header("X-Team", "sales")
        .and_client("bob")
        .and_sip("sip:carol@example.com")
        .header("X-Team", "support")
        .header("User-to-User", "42")
        .and_number("+15550000000")
        .simultaneous();

    let headers: Vec<Vec<(&str, &str)>> = dial
        .targets
        .iter()
        .map(|leg| {
            leg.headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(
        headers,
        vec![
            vec![("X-Team", "sales")],
            vec![],
            vec![("X-Team", "support"), ("User-to-User", "42")],
            vec![],
        ]
    );
    assert_eq!(dial.targets[1].target, DialTarget::Client("bob".into()));
    assert_eq!(dial.strategy, RingStrategy::Simultaneous);
}

#[test]
fn dial_setters_fill_their_fields() {
    let dial = Dial::sip("sip:desk@example.com")
        .timeout_secs(20)
        .caller_id("+15559999999")
        .record(true)
        .answer_on_bridge(true)
        .time_limit_secs(600);
    assert_eq!(dial.timeout_secs, 20);
    assert_eq!(dial.caller_id.as_deref(), Some("+15559999999"));
    assert!(dial.record && dial.answer_on_bridge);
    assert_eq!(dial.time_limit_secs, Some(600));
}

#[test]
fn record_defaults_match_twiml() {
    assert_eq!(
        Record::new(),
        RecordOptions {
            max_length_secs: 3600,
            finish_on_key: "1234567890*#".into(),
            play_beep: true,
            trim_silence: true,
            silence_timeout_secs: 5,
        }
    );
    let voicemail = Record::new()
        .max_length_secs(60)
        .beep(false)
        .finish_on_key("#")
        .trim_silence(false)
        .silence_timeout_secs(3);
    assert_eq!(
        Plan::new().record(voicemail).verbs,
        vec![Verb::Record(RecordOptions {
            max_length_secs: 60,
            finish_on_key: "#".into(),
            play_beep: false,
            trim_silence: false,
            silence_timeout_secs: 3,
        })]
    );
}

#[test]
fn conference_defaults_match_twiml() {
    let conference = Conference::named("standup");
    assert_eq!(conference.name, "standup");
    assert!(!conference.muted && conference.start_on_enter && !conference.end_on_exit);
    assert!(conference.beep && !conference.record);
    assert_eq!(
        (conference.wait_prompt, conference.max_participants),
        (None, None)
    );

    let moderated = Conference::named("standup")
        .muted(true)
        .start_on_enter(false)
        .end_on_exit(true)
        .beep(false)
        .record(true)
        .wait_prompt(MediaSource::MediaId("hold".into()))
        .max_participants(10);
    assert!(moderated.muted && !moderated.start_on_enter && moderated.end_on_exit);
    assert!(!moderated.beep && moderated.record);
    assert_eq!(
        moderated.wait_prompt,
        Some(MediaSource::MediaId("hold".into()))
    );
    assert_eq!(moderated.max_participants, Some(10));
}

#[test]
fn enqueue_waits_forever_with_the_prompts_given() {
    let plain = Enqueue::queue("support");
    assert_eq!(
        (plain.queue.as_str(), plain.max_wait_secs),
        ("support", None)
    );
    assert!(plain.wait_prompts.is_empty());

    let enqueue = Enqueue::queue("support")
        .say("Please hold")
        .play("https://example.com/hold.wav")
        .max_wait_secs(300);
    assert_eq!(enqueue.wait_prompts.len(), 2);
    assert_eq!(enqueue.max_wait_secs, Some(300));
    assert_eq!((plain.priority, plain.wait_update_secs), (None, None));

    let urgent = Enqueue::queue("support").priority(5).wait_updates_every(30);
    assert_eq!(
        (urgent.priority, urgent.wait_update_secs),
        (Some(5), Some(30))
    );
}

#[test]
fn a_queue_dial_takes_the_head_or_a_named_caller() {
    let head = Dial::queue("support");
    assert_eq!(head.targets[0].target, DialTarget::Queue("support".into()));
    let named = Dial::queue_member("support", "CA1");
    assert_eq!(
        named.targets[0].target,
        DialTarget::QueueMember(QueueMember {
            queue: "support".into(),
            call_id: "CA1".into(),
        })
    );
}

#[test]
fn pay_tokenises_by_default_and_charges_when_given_an_amount() {
    let card = Pay::card();
    assert_eq!(card.method, PayMethod::CreditCard);
    assert_eq!((card.charge_amount, card.currency.as_str()), (None, "USD"));
    assert_eq!((card.timeout_secs, card.max_attempts), (5, 1));

    let charge = Pay::ach()
        .amount_cents(1999, "EUR")
        .description("Annual plan")
        .timeout_secs(10)
        .max_attempts(3);
    assert_eq!(charge.method, PayMethod::AchDebit);
    assert_eq!(
        (charge.charge_amount, charge.currency.as_str()),
        (Some(1999), "EUR")
    );
    assert_eq!(charge.description, "Annual plan");
    assert_eq!((charge.timeout_secs, charge.max_attempts), (10, 3));
}

#[test]
fn control_verbs_map_to_their_wit_cases() {
    let plan = Plan::new()
        .set_var("dept", "sales")
        .unset_var("attempts")
        .send_digits("1w2")
        .leave_queue()
        .conference(Conference::named("room"))
        .enqueue(Enqueue::queue("q"))
        .pay(Pay::card())
        .dial(Dial::client("alice"))
        .gather(Gather::new())
        .redirect("other-handler")
        .reject()
        .reject_busy();

    assert_eq!(
        plan.verbs[..4],
        [
            Verb::SetVar(SetVar {
                name: "dept".into(),
                value: Some("sales".into())
            }),
            Verb::SetVar(SetVar {
                name: "attempts".into(),
                value: None
            }),
            Verb::SendDigits("1w2".into()),
            Verb::LeaveQueue,
        ]
    );
    assert!(matches!(plan.verbs[4], Verb::Conference(_)));
    assert!(matches!(plan.verbs[5], Verb::Enqueue(_)));
    assert!(matches!(plan.verbs[6], Verb::Pay(_)));
    assert!(matches!(plan.verbs[7], Verb::Dial(_)));
    assert!(matches!(plan.verbs[8], Verb::Gather(_)));
    assert_eq!(
        plan.verbs[9..],
        [
            Verb::Redirect("other-handler".into()),
            Verb::Reject(RejectReason::Rejected),
            Verb::Reject(RejectReason::Busy),
        ]
    );
}

#[test]
fn a_prompt_becomes_the_verb_of_the_same_kind() {
    assert_eq!(
        Verb::from(Prompt::Say(Say::new("x"))),
        Verb::Say(Say::new("x"))
    );
    assert_eq!(
        Verb::from(Prompt::Pause(Pause { length_ms: 1 })),
        Verb::Pause(Pause { length_ms: 1 })
    );
    assert_eq!(Plan::default(), Plan::new());
}

#[test]
fn unexpected_events_and_storage_failures_become_handler_errors() {
    let event = Event::Redirected("menu".into());
    assert_eq!(event.name(), "redirected");
    assert_eq!(
        HandlerError::unexpected(&event),
        HandlerError::UnexpectedEvent("redirected".into())
    );
    let HandlerError::HostFailure(message) = HandlerError::from(KvError::QuotaExceeded) else {
        panic!("kv errors are host failures");
    };
    assert!(message.contains("QuotaExceeded"), "{message}");
}
