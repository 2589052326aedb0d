//! The rules a plan must follow before the router runs any of it.
//!
//! A guest's plan is untrusted input: it is checked whole, up front, so a
//! call never runs half a plan and then discovers the rest is broken.

use switchyard_contract::{DialTarget, Event, GatherInput, MediaSource, Plan, Prompt, Verb};

use super::RouterConfig;
use super::support::{NotBuilt, leg_support};

/// Longest text one `say` may speak.
const MAX_SAY_CHARS: usize = 4_096;
/// Longest call-variable name and value.
const MAX_VAR_NAME: usize = 128;
const MAX_VAR_VALUE: usize = 4_096;
/// Longest `record` (4 hours, as TwiML's limit).
const MAX_RECORD_SECS: u32 = 14_400;
/// Longest `dial` ring time and `gather` digit wait.
const MAX_WAIT_SECS: u32 = 600;
/// Keys of a telephone keypad (RFC 4733 events 0–15).
const DTMF_KEYS: &str = "0123456789*#ABCD";

/// What is wrong with a plan; the router turns it into a fallback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("plan has {count} verbs; at most {max} are allowed")]
    TooManyVerbs { count: usize, max: usize },
    #[error(
        "verb {index} ({verb}) ends the plan, so it must be the last verb; {after} more follow it"
    )]
    VerbsAfterEnd {
        index: usize,
        verb: &'static str,
        after: usize,
    },
    #[error("verb {index} ({verb}): {reason} is not supported yet")]
    Unsupported {
        index: usize,
        verb: &'static str,
        reason: &'static str,
    },
    /// The contract has the verb, but this runtime cannot execute it yet
    /// (see [`super::LEG_SUPPORT`]).
    #[error("verb {index}: {refusal}")]
    NotBuilt { index: usize, refusal: NotBuilt },
    #[error("verb {index} ({verb}): {reason}")]
    Invalid {
        index: usize,
        verb: &'static str,
        reason: String,
    },
    #[error(
        "verb {index} ({verb}) cannot run while the caller waits in a queue: a queue-wait plan may \
         say, play, pause and set-var, and end with leave-queue, redirect or hangup"
    )]
    NotWhileQueued { index: usize, verb: &'static str },
}

/// The WIT name of a verb, for messages and logs.
pub fn verb_name(verb: &Verb) -> &'static str {
    match verb {
        Verb::Say(_) => "say",
        Verb::Play(_) => "play",
        Verb::Pause(_) => "pause",
        Verb::Gather(_) => "gather",
        Verb::Dial(_) => "dial",
        Verb::Record(_) => "record",
        Verb::Conference(_) => "conference",
        Verb::Enqueue(_) => "enqueue",
        Verb::LeaveQueue => "leave-queue",
        Verb::Pay(_) => "pay",
        Verb::Redirect(_) => "redirect",
        Verb::SendDigits(_) => "send-digits",
        Verb::Hangup => "hangup",
        Verb::Reject(_) => "reject",
        Verb::SetVar(_) => "set-var",
    }
}

/// Whether the verb's outcome comes back to the handler as an event, and
/// whether `event` is that outcome.
pub(super) fn result_matches(verb: &Verb, event: &Event) -> bool {
    matches!(
        (verb, event),
        (Verb::Gather(_), Event::GatherComplete(_))
            | (Verb::Dial(_), Event::DialComplete(_))
            | (Verb::Record(_), Event::RecordComplete(_))
            | (Verb::Conference(_), Event::ConferenceComplete(_))
            | (Verb::Enqueue(_), Event::QueueComplete(_))
            | (Verb::Pay(_), Event::PayComplete(_))
    )
}

/// Verbs whose result is the next event.
pub(super) fn has_result(verb: &Verb) -> bool {
    matches!(
        verb,
        Verb::Gather(_)
            | Verb::Dial(_)
            | Verb::Record(_)
            | Verb::Conference(_)
            | Verb::Enqueue(_)
            | Verb::Pay(_)
    )
}

/// Verbs after which nothing else in the plan can run.
fn ends_plan(verb: &Verb) -> bool {
    has_result(verb) || matches!(verb, Verb::Redirect(_) | Verb::Hangup | Verb::Reject(_))
}

/// Checks a whole plan against the contract and the tenant's limits.
/// Participants a conference may hold: the runtime's limit, and the
/// default when the plan names none (Twilio's is 250; one media worker
/// mixes a conference of this size in real time, see BENCHMARKS.md).
pub const MAX_PARTICIPANTS: u32 = 1_000;
/// Longest conference or queue name.
pub const MAX_NAME: usize = 128;

/// Whether `name` can name a conference or queue (`kind`): not blank, at
/// most [`MAX_NAME`] bytes. The REST API applies the same rule.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("empty {kind} name"));
    }
    if name.len() > MAX_NAME {
        return Err(format!("{kind} name longer than {MAX_NAME} bytes"));
    }
    Ok(())
}

/// How often a waiting caller's handler may hear `queue-wait`: not so
/// often that waiting callers keep guests busy, at least once an hour.
pub const WAIT_UPDATE_SECS: std::ops::RangeInclusive<u32> = 5..=3_600;

/// Checks a plan returned for `queue-wait`: what the waiting caller hears
/// meanwhile, ending at most with leaving the queue, a redirect or a
/// hangup. Every rule of [`validate`] applies too.
pub fn validate_wait(plan: &Plan, config: &RouterConfig) -> Result<(), PlanError> {
    validate(plan, config)?;
    let count = plan.verbs.len();
    for (index, verb) in plan.verbs.iter().enumerate() {
        let verb_name = verb_name(verb);
        match verb {
            Verb::Say(_) | Verb::Play(_) | Verb::Pause(_) | Verb::SetVar(_) => {}
            Verb::Redirect(_) | Verb::Hangup => {}
            Verb::LeaveQueue if index + 1 == count => {}
            Verb::LeaveQueue => {
                return Err(PlanError::VerbsAfterEnd {
                    index,
                    verb: verb_name,
                    after: count - index - 1,
                });
            }
            _ => {
                return Err(PlanError::NotWhileQueued {
                    index,
                    verb: verb_name,
                });
            }
        }
    }
    Ok(())
}

pub fn validate(plan: &Plan, config: &RouterConfig) -> Result<(), PlanError> {
    let count = plan.verbs.len();
    if count > config.max_plan_verbs {
        return Err(PlanError::TooManyVerbs {
            count,
            max: config.max_plan_verbs,
        });
    }
    for (index, verb) in plan.verbs.iter().enumerate() {
        let name = verb_name(verb);
        if ends_plan(verb) && index + 1 < count {
            return Err(PlanError::VerbsAfterEnd {
                index,
                verb: name,
                after: count - index - 1,
            });
        }
        leg_support(verb).map_err(|refusal| PlanError::NotBuilt { index, refusal })?;
        check_verb(verb, config).map_err(|problem| match problem {
            Problem::Unsupported(reason) => PlanError::Unsupported {
                index,
                verb: name,
                reason,
            },
            Problem::Invalid(reason) => PlanError::Invalid {
                index,
                verb: name,
                reason,
            },
        })?;
    }
    Ok(())
}

enum Problem {
    Unsupported(&'static str),
    Invalid(String),
}

fn invalid(reason: impl Into<String>) -> Problem {
    Problem::Invalid(reason.into())
}

fn require(ok: bool, reason: impl FnOnce() -> String) -> Result<(), Problem> {
    if ok {
        Ok(())
    } else {
        Err(Problem::Invalid(reason()))
    }
}

fn check_verb(verb: &Verb, config: &RouterConfig) -> Result<(), Problem> {
    match verb {
        Verb::Say(say) => check_say(&say.text),
        Verb::Play(play) => check_media(&play.source),
        Verb::Pause(_) | Verb::LeaveQueue | Verb::Hangup | Verb::Reject(_) => Ok(()),
        Verb::Gather(gather) => {
            if gather.input != GatherInput::Dtmf {
                return Err(Problem::Unsupported("speech input (use dtmf)"));
            }
            require(gather.num_digits != Some(0), || {
                "num-digits must be at least 1".into()
            })?;
            require(gather.timeout_secs <= MAX_WAIT_SECS, || {
                format!(
                    "timeout-secs {} is over {MAX_WAIT_SECS}",
                    gather.timeout_secs
                )
            })?;
            if let Some(key) = gather.finish_on_key {
                require(DTMF_KEYS.contains(key), || {
                    format!("finish-on-key {key:?} is not a keypad key")
                })?;
            }
            gather.prompts.iter().try_for_each(check_prompt)
        }
        Verb::Dial(dial) => {
            require(!dial.targets.is_empty(), || "no targets".into())?;
            require(dial.targets.len() <= config.max_dial_targets, || {
                format!(
                    "{} targets; at most {} are allowed",
                    dial.targets.len(),
                    config.max_dial_targets
                )
            })?;
            require((1..=MAX_WAIT_SECS).contains(&dial.timeout_secs), || {
                format!(
                    "timeout-secs must be 1 to {MAX_WAIT_SECS}, not {}",
                    dial.timeout_secs
                )
            })?;
            for leg in &dial.targets {
                let (kind, value) = match &leg.target {
                    DialTarget::Number(v) => ("number", v),
                    DialTarget::Sip(v) => ("sip", v),
                    DialTarget::Client(v) => ("client", v),
                    DialTarget::Conference(v) => ("conference", v),
                    DialTarget::Queue(v) => ("queue", v),
                    DialTarget::QueueMember(m) => {
                        require(!m.call_id.trim().is_empty(), || {
                            "empty call-id of a queue-member target".into()
                        })?;
                        ("queue", &m.queue)
                    }
                };
                require(!value.trim().is_empty(), || format!("empty {kind} target"))?;
                let alone = matches!(kind, "conference" | "queue");
                require(!alone || dial.targets.len() == 1, || {
                    format!("a {kind} target must be the dial's only target")
                })?;
            }
            Ok(())
        }
        Verb::Record(options) => {
            require(
                (1..=MAX_RECORD_SECS).contains(&options.max_length_secs),
                || {
                    format!(
                        "max-length-secs must be 1 to {MAX_RECORD_SECS}, not {}",
                        options.max_length_secs
                    )
                },
            )?;
            check_keys(&options.finish_on_key, "finish-on-key")
        }
        Verb::Conference(options) => {
            check_name("conference", &options.name).map_err(Problem::Invalid)?;
            let max = options.max_participants.unwrap_or(MAX_PARTICIPANTS);
            require((1..=MAX_PARTICIPANTS).contains(&max), || {
                format!("max-participants must be 1 to {MAX_PARTICIPANTS}, not {max}")
            })
        }
        Verb::Enqueue(enqueue) => {
            check_name("queue", &enqueue.queue).map_err(Problem::Invalid)?;
            if let Some(secs) = enqueue.wait_update_secs {
                require(WAIT_UPDATE_SECS.contains(&secs), || {
                    format!(
                        "wait-update-secs must be {} to {}, not {secs}",
                        WAIT_UPDATE_SECS.start(),
                        WAIT_UPDATE_SECS.end()
                    )
                })?;
            }
            enqueue.wait_prompts.iter().try_for_each(check_prompt)
        }
        Verb::Pay(pay) => {
            require(
                pay.currency.len() == 3 && pay.currency.chars().all(|c| c.is_ascii_alphabetic()),
                || format!("currency {:?} is not an ISO 4217 code", pay.currency),
            )?;
            require(pay.max_attempts >= 1, || {
                "max-attempts must be at least 1".into()
            })
        }
        Verb::Redirect(handler) => {
            require(!handler.trim().is_empty(), || "empty handler name".into())
        }
        Verb::SendDigits(digits) => {
            require(!digits.is_empty(), || "no digits".into())?;
            check_keys(&digits.replace('w', ""), "digits")
        }
        Verb::SetVar(var) => {
            require(
                !var.name.is_empty() && var.name.len() <= MAX_VAR_NAME,
                || format!("variable name must be 1 to {MAX_VAR_NAME} bytes"),
            )?;
            let len = var.value.as_ref().map_or(0, String::len);
            require(len <= MAX_VAR_VALUE, || {
                format!("value is {len} bytes; at most {MAX_VAR_VALUE}")
            })
        }
    }
}

fn check_say(text: &str) -> Result<(), Problem> {
    let chars = text.chars().count();
    require(!text.trim().is_empty(), || "empty text".into())?;
    require(chars <= MAX_SAY_CHARS, || {
        format!("text is {chars} characters; at most {MAX_SAY_CHARS}")
    })
}

fn check_media(source: &MediaSource) -> Result<(), Problem> {
    match source {
        MediaSource::Url(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(())
        }
        MediaSource::Url(url) => Err(invalid(format!("url {url:?} is not http(s)"))),
        MediaSource::MediaId(id) => require(!id.is_empty(), || "empty media id".into()),
    }
}

fn check_prompt(prompt: &Prompt) -> Result<(), Problem> {
    match prompt {
        Prompt::Say(say) => check_say(&say.text),
        Prompt::Play(play) => check_media(&play.source),
        Prompt::Pause(_) => Ok(()),
    }
}

fn check_keys(keys: &str, what: &str) -> Result<(), Problem> {
    match keys.chars().find(|c| !DTMF_KEYS.contains(*c)) {
        Some(bad) => Err(invalid(format!("{what} has {bad:?}, not a keypad key"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contract::{Dial, DialLeg, Gather, Say};

    fn say(text: &str) -> Verb {
        Verb::Say(Say::text(text))
    }

    fn gather(input: GatherInput) -> Verb {
        Verb::Gather(Gather {
            input,
            num_digits: Some(1),
            finish_on_key: Some('#'),
            timeout_secs: 5,
            prompts: vec![],
        })
    }

    fn check(verbs: Vec<Verb>) -> Result<(), PlanError> {
        validate(&Plan { verbs }, &RouterConfig::default())
    }

    #[test]
    fn a_plain_menu_is_valid() {
        assert_eq!(check(vec![say("Hello"), gather(GatherInput::Dtmf)]), Ok(()));
    }

    #[test]
    fn verbs_after_a_gather_are_refused() {
        let err = check(vec![gather(GatherInput::Dtmf), say("never heard")]).unwrap_err();
        assert_eq!(
            err,
            PlanError::VerbsAfterEnd {
                index: 0,
                verb: "gather",
                after: 1
            }
        );
    }

    #[test]
    fn speech_gather_is_reported_unsupported() {
        let err = check(vec![gather(GatherInput::DtmfAndSpeech)]).unwrap_err();
        assert!(err.to_string().contains("speech input"), "{err}");
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }

    #[test]
    fn a_verb_the_runtime_cannot_run_is_refused_with_the_tables_message() {
        let pay = Verb::Pay(switchyard_contract::Pay {
            method: switchyard_contract::PayMethod::CreditCard,
            charge_amount: None,
            currency: "usd".into(),
            description: String::new(),
            timeout_secs: 10,
            max_attempts: 3,
        });
        let refusal = super::super::leg_support(&pay).unwrap_err();
        let err = check(vec![say("Please hold"), pay]).unwrap_err();
        assert_eq!(err, PlanError::NotBuilt { index: 1, refusal });
        assert_eq!(
            err.to_string(),
            "verb 1: `pay` cannot run on this runtime yet: the secure card collector is not built"
        );
    }

    #[test]
    fn a_conference_or_queue_target_is_the_dials_only_target() {
        for target in [
            DialTarget::Queue("support".into()),
            DialTarget::Conference("room".into()),
        ] {
            let mut dial = Dial::to(target);
            assert_eq!(check(vec![Verb::Dial(dial.clone())]), Ok(()));
            dial.targets.push(DialLeg {
                target: DialTarget::Client("alice".into()),
                headers: vec![],
            });
            let err = check(vec![Verb::Dial(dial.clone())]).unwrap_err();
            assert!(
                err.to_string().contains("must be the dial's only target"),
                "{err}"
            );
        }
        let conference = |max| {
            Verb::Conference(switchyard_contract::ConferenceOptions {
                max_participants: Some(max),
                ..switchyard_contract::ConferenceOptions::named("room")
            })
        };
        assert_eq!(check(vec![conference(1_000)]), Ok(()));
        let err = check(vec![conference(0)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("max-participants must be 1 to 1000"),
            "{err}"
        );
    }

    #[test]
    fn empty_say_and_bad_digits_are_invalid() {
        assert!(matches!(
            check(vec![say("  ")]),
            Err(PlanError::Invalid { .. })
        ));
        let err = check(vec![Verb::SendDigits("12x".into())]).unwrap_err();
        assert!(err.to_string().contains("'x'"), "{err}");
    }

    #[test]
    fn too_many_verbs_are_refused() {
        let verbs = vec![say("hi"); 101];
        assert!(matches!(
            check(verbs),
            Err(PlanError::TooManyVerbs {
                count: 101,
                max: 100
            })
        ));
    }
}
