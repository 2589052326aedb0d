//! What a call leg of this runtime can execute: one table, read by plan
//! validation (so by every call: SIP, outbound, `simulate`), by `check`
//! (which lists what is missing) and by the SIP leg's own last-line check.
//!
//! A verb the contract names but the runtime cannot run yet (it needs
//! conferencing, queues or the secure card collector) is refused with the
//! same [`NotBuilt`] message wherever it shows up, instead of `simulate`
//! inventing an outcome that a real call would never produce. When a
//! feature lands, its rows turn to [`Support::Runs`] and nothing else
//! needs to change to let plans through.

use switchyard_contract::{DialTarget, Verb};

use super::verb_name;

/// Whether a leg can execute a verb (or a kind of dial target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Runs,
    /// Not built yet; the text says what is missing, as a sentence tail.
    NotBuilt(&'static str),
}

/// Every verb by its WIT name, and dial targets by their prefix
/// (`dial conference:`), with whether a leg can execute it.
pub const LEG_SUPPORT: &[(&str, Support)] = &[
    ("say", Support::Runs),
    ("play", Support::Runs),
    ("pause", Support::Runs),
    ("gather", Support::Runs),
    ("dial", Support::Runs),
    ("dial conference:", Support::Runs),
    ("dial queue:", Support::Runs),
    ("record", Support::Runs),
    ("conference", Support::Runs),
    ("enqueue", Support::Runs),
    ("leave-queue", Support::Runs),
    ("pay", Support::NotBuilt(COLLECTOR)),
    ("redirect", Support::Runs),
    ("send-digits", Support::Runs),
    ("hangup", Support::Runs),
    ("reject", Support::Runs),
    ("set-var", Support::Runs),
];

const COLLECTOR: &str = "the secure card collector is not built";

/// A verb (or dial target) the runtime cannot execute yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{feature}` cannot run on this runtime yet: {missing}")]
pub struct NotBuilt {
    /// The table row: a verb name or `dial conference:` / `dial queue:`.
    pub feature: &'static str,
    pub missing: &'static str,
}

/// Whether a leg can execute `verb`, dial targets included.
pub fn leg_support(verb: &Verb) -> Result<(), NotBuilt> {
    row(verb_name(verb))?;
    if let Verb::Dial(dial) = verb {
        for leg in &dial.targets {
            target_support(&leg.target)?;
        }
    }
    Ok(())
}

/// Whether a leg can ring a dial target of this kind.
pub fn target_support(target: &DialTarget) -> Result<(), NotBuilt> {
    match target {
        DialTarget::Conference(_) => row("dial conference:"),
        DialTarget::Queue(_) | DialTarget::QueueMember(_) => row("dial queue:"),
        DialTarget::Number(_) | DialTarget::Sip(_) | DialTarget::Client(_) => Ok(()),
    }
}

/// Every row a leg cannot execute yet, as the message a plan using it gets.
pub fn not_built() -> impl Iterator<Item = NotBuilt> {
    LEG_SUPPORT
        .iter()
        .filter_map(|&(feature, support)| match support {
            Support::Runs => None,
            Support::NotBuilt(missing) => Some(NotBuilt { feature, missing }),
        })
}

fn row(feature: &str) -> Result<(), NotBuilt> {
    match LEG_SUPPORT.iter().find(|(name, _)| *name == feature) {
        Some(&(feature, Support::NotBuilt(missing))) => Err(NotBuilt { feature, missing }),
        Some((_, Support::Runs)) => Ok(()),
        // A verb missing from the table is a bug caught by the test below;
        // in a release build the leg decides, as it did before the table.
        None => {
            debug_assert!(false, "verb {feature} is not in LEG_SUPPORT");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contract::*;

    fn dial(target: DialTarget) -> Verb {
        Verb::Dial(Dial::to(target))
    }

    /// One verb of every kind the contract has.
    fn every_verb() -> Vec<Verb> {
        vec![
            Verb::Say(Say::text("hi")),
            Verb::Play(Play {
                source: MediaSource::MediaId("m".into()),
                loop_count: 1,
            }),
            Verb::Pause(Pause { length_ms: 1 }),
            Verb::Gather(Gather {
                input: GatherInput::Dtmf,
                num_digits: Some(1),
                finish_on_key: None,
                timeout_secs: 5,
                prompts: vec![],
            }),
            dial(DialTarget::Number("+1".into())),
            Verb::Record(RecordOptions {
                max_length_secs: 60,
                finish_on_key: "#".into(),
                play_beep: false,
                trim_silence: false,
                silence_timeout_secs: 5,
            }),
            Verb::Conference(ConferenceOptions {
                name: "room".into(),
                muted: false,
                start_on_enter: true,
                end_on_exit: false,
                beep: false,
                record: false,
                wait_prompt: None,
                max_participants: None,
            }),
            Verb::Enqueue(Enqueue {
                queue: "support".into(),
                wait_prompts: vec![],
                max_wait_secs: None,
                priority: None,
                wait_update_secs: None,
            }),
            Verb::LeaveQueue,
            Verb::Pay(Pay {
                method: PayMethod::CreditCard,
                charge_amount: None,
                currency: "USD".into(),
                description: String::new(),
                timeout_secs: 20,
                max_attempts: 1,
            }),
            Verb::Redirect("other".into()),
            Verb::SendDigits("1".into()),
            Verb::Hangup,
            Verb::Reject(RejectReason::Busy),
            Verb::SetVar(SetVar {
                name: "a".into(),
                value: None,
            }),
        ]
    }

    #[test]
    fn every_verb_of_the_contract_has_a_row() {
        for verb in every_verb() {
            let name = verb_name(&verb);
            assert!(
                LEG_SUPPORT.iter().any(|(row, _)| *row == name),
                "{name} has no row in LEG_SUPPORT"
            );
        }
    }

    #[test]
    fn pay_is_not_built_and_the_rest_runs() {
        let refused: Vec<&str> = every_verb()
            .iter()
            .filter_map(|verb| leg_support(verb).err())
            .map(|not_built| not_built.feature)
            .collect();
        assert_eq!(refused, ["pay"]);
    }

    #[test]
    fn every_dial_target_runs() {
        for target in [
            DialTarget::Queue("support".into()),
            DialTarget::Conference("room".into()),
            DialTarget::Client("alice".into()),
        ] {
            assert_eq!(leg_support(&dial(target)), Ok(()));
        }
    }

    #[test]
    fn not_built_lists_each_refused_row_once() {
        let features: Vec<&str> = not_built().map(|n| n.feature).collect();
        assert_eq!(features, ["pay"]);
    }
}
