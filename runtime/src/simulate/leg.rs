//! A call leg that runs verbs against a scripted caller instead of media.
//!
//! It turns each verb into the [`LegEvent`] a real leg would report, and
//! how long that would have taken on a real call (for the virtual clock).

use std::collections::VecDeque;

use crate::contract::{
    ConferenceEnd, ConferenceOptions, ConferenceResult, Dial, DialResult, DialStatus, Enqueue,
    Event, Gather, GatherEnd, GatherResult, HangupCause, QueueOutcome, QueueResult, QueueStatus,
    RecordEnd, RecordOptions, RecordResult, RingStrategy, Verb,
};
use crate::router::estimate::{PLAY_MS, prompts_ms, say_ms};
use crate::router::{LegEvent, WaitEnd, WaitPlan};

use super::script::{Action, Step};

/// What running one verb did.
#[derive(Debug, Clone, PartialEq)]
pub struct LegStep {
    /// The script step the verb consumed, if it waited for the caller.
    pub caller: Option<Step>,
    pub event: LegEvent,
    /// Virtual time the verb took.
    pub elapsed_ms: u64,
}

/// The script ran out where the caller had to act, or the action does not
/// fit what the call waits for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("script line {line}: `{text}` does not fit: the call is waiting for {waiting}")]
pub struct Mismatch {
    pub line: usize,
    pub text: String,
    pub waiting: &'static str,
}

pub struct SimulatedLeg {
    actions: VecDeque<Step>,
    recordings: u32,
    /// An `enqueue` with wait updates, between them.
    waiting: Option<Waiting>,
}

/// A caller waiting in a queue whose handler hears `queue-wait`. The
/// scripted outcome comes when the wait is over; until then, one update
/// every `every_ms` of waiting.
struct Waiting {
    queue: String,
    every_ms: u64,
    /// How long the caller waits (the outcome's `wait-secs`).
    end_ms: u64,
    /// How long the verb lasts in all (a bridge's talk included).
    total_ms: u64,
    waited_ms: u64,
    ahead: u32,
    updates: u32,
    outcome: LegEvent,
}

impl SimulatedLeg {
    pub fn new(actions: VecDeque<Step>) -> Self {
        Self {
            actions,
            recordings: 0,
            waiting: None,
        }
    }

    /// The next thing a waiting caller's queue does by itself: a wait
    /// update, or the scripted outcome once the wait is over. `None` when
    /// no caller waits.
    pub fn resume(&mut self) -> Option<LegStep> {
        let w = self.waiting.as_mut()?;
        let next = (w.waited_ms / w.every_ms + 1) * w.every_ms;
        if next < w.end_ms {
            let elapsed_ms = next - w.waited_ms;
            w.waited_ms = next;
            // The scripted callers ahead leave one per update.
            let position = (w.ahead + 1).saturating_sub(w.updates).max(1);
            w.updates += 1;
            let status = QueueStatus {
                queue: w.queue.clone(),
                position,
                size: position,
                wait_secs: (next / 1000) as u32,
                average_wait_secs: None,
            };
            return Some(LegStep {
                caller: None,
                event: LegEvent::QueueWait(status),
                elapsed_ms,
            });
        }
        let w = self.waiting.take()?;
        Some(LegStep {
            caller: None,
            event: w.outcome,
            elapsed_ms: w.total_ms.saturating_sub(w.waited_ms),
        })
    }

    /// Plays a wait plan to the waiting caller: how long it took, and the
    /// leg event its end causes (none when the caller stays, or is
    /// redirected: the driver redirects the call).
    pub fn wait_plan(&mut self, plan: &WaitPlan) -> (u64, Option<LegEvent>) {
        let ms = prompts_ms(&plan.prompts);
        let Some(w) = self.waiting.as_mut() else {
            return (0, None);
        };
        w.waited_ms += ms;
        let waited_secs = (w.waited_ms / 1000) as u32;
        let event = match &plan.then {
            WaitEnd::Stay => return (ms, None),
            WaitEnd::Leave => LegEvent::Result(Event::QueueComplete(QueueResult {
                queue: w.queue.clone(),
                outcome: QueueOutcome::Left,
                wait_secs: waited_secs,
            })),
            WaitEnd::Hangup => LegEvent::Hangup(HangupCause::Handler),
            WaitEnd::Redirect(_) => {
                self.waiting = None;
                return (ms, None);
            }
        };
        self.waiting = None;
        (ms, Some(event))
    }

    /// Script steps not used by the call.
    pub fn unused(&self) -> impl Iterator<Item = &Step> {
        self.actions.iter()
    }

    pub fn execute(&mut self, verb: &Verb) -> Result<LegStep, Mismatch> {
        let done = |elapsed_ms| LegStep {
            caller: None,
            event: LegEvent::Done,
            elapsed_ms,
        };
        match verb {
            Verb::Say(say) => Ok(done(say_ms(&say.text) * u64::from(say.loop_count.max(1)))),
            Verb::Play(play) => Ok(done(PLAY_MS * u64::from(play.loop_count.max(1)))),
            Verb::Pause(pause) => Ok(done(u64::from(pause.length_ms))),
            Verb::SendDigits(digits) => Ok(done(digits.len() as u64 * 250)),
            Verb::LeaveQueue => Ok(done(0)),
            Verb::Gather(gather) => self.wait("a gather (press, silence, hang up)", |action| {
                gather_result(gather, action)
            }),
            Verb::Record(options) => {
                let id = self.next_recording();
                self.wait("a record (speak, press, silence, hang up)", |action| {
                    record_result(options, action, id)
                })
            }
            Verb::Dial(dial) => {
                let id = dial.record.then(|| self.next_recording());
                self.wait(
                    "a dial outcome (answer, busy, no-answer, fail, hang up)",
                    |action| dial_result(dial, action, id),
                )
            }
            Verb::Conference(options) => self.wait(
                "a conference outcome (conference ends after N, conference kicked after N, conference full, hang up)",
                |action| conference_result(options, action),
            ),
            Verb::Enqueue(enqueue) => {
                let step = self.wait(
                    "a queue outcome (queue bridged after N, queue timeout, queue full, hang up)",
                    |action| queue_result(enqueue, action),
                )?;
                Ok(self.start_waiting(enqueue, step))
            }
            // Plan validation refuses it (`router::LEG_SUPPORT`), as on a
            // real call, so it never reaches the leg; should it, the call
            // ends the way the SIP leg ends it.
            Verb::Pay(_) => Ok(LegStep {
                caller: None,
                event: LegEvent::Hangup(HangupCause::System),
                elapsed_ms: 0,
            }),
            // The router ends the call itself for these; nothing runs on the leg.
            Verb::Hangup | Verb::Reject(_) | Verb::Redirect(_) | Verb::SetVar(_) => Ok(done(0)),
        }
    }

    /// An `enqueue` that asked for wait updates: its outcome waits until
    /// the updates due before it have been given (`resume`).
    fn start_waiting(&mut self, enqueue: &Enqueue, step: LegStep) -> LegStep {
        let (Some(every), LegEvent::Result(Event::QueueComplete(result))) =
            (enqueue.wait_update_secs, &step.event)
        else {
            return step;
        };
        let ahead = match step.caller.as_ref().map(|s| &s.action) {
            Some(Action::QueueBridged { ahead, .. } | Action::QueueTimeout { ahead }) => *ahead,
            _ => 0,
        };
        let (every_ms, end_ms) = (u64::from(every) * 1000, u64::from(result.wait_secs) * 1000);
        if every_ms == 0 || every_ms >= end_ms {
            return step;
        }
        self.waiting = Some(Waiting {
            queue: enqueue.queue.clone(),
            every_ms,
            end_ms,
            total_ms: step.elapsed_ms,
            waited_ms: 0,
            ahead,
            updates: 0,
            outcome: step.event.clone(),
        });
        match self.resume() {
            Some(first) => LegStep {
                caller: step.caller,
                ..first
            },
            None => step,
        }
    }

    fn next_recording(&mut self) -> String {
        self.recordings += 1;
        format!("sim-rec-{}", self.recordings)
    }

    /// Takes the caller's next action; `fit` says what event it produces
    /// (or `None` when the action is not one this verb accepts).
    fn wait(
        &mut self,
        waiting: &'static str,
        fit: impl FnOnce(&Action) -> Option<(Event, u64)>,
    ) -> Result<LegStep, Mismatch> {
        let Some(step) = self.actions.pop_front() else {
            return Ok(LegStep {
                caller: None,
                event: LegEvent::Hangup(HangupCause::Caller),
                elapsed_ms: 0,
            });
        };
        if step.action == Action::HangUp {
            return Ok(LegStep {
                caller: Some(step),
                event: LegEvent::Hangup(HangupCause::Caller),
                elapsed_ms: 0,
            });
        }
        match fit(&step.action) {
            Some((event, elapsed_ms)) => Ok(LegStep {
                caller: Some(step),
                event: LegEvent::Result(event),
                elapsed_ms,
            }),
            None => Err(Mismatch {
                line: step.line,
                text: step.text,
                waiting,
            }),
        }
    }
}

/// TwiML gather semantics over the keys the caller pressed.
fn gather_result(gather: &Gather, action: &Action) -> Option<(Event, u64)> {
    let timeout_ms = u64::from(gather.timeout_secs) * 1000;
    let (digits, ended_by) = match action {
        Action::Silence => (String::new(), GatherEnd::Timeout),
        Action::Press(keys) => {
            let mut digits = String::new();
            let mut ended_by = GatherEnd::Timeout;
            for key in keys.chars() {
                if Some(key) == gather.finish_on_key {
                    ended_by = GatherEnd::FinishKey;
                    break;
                }
                digits.push(key);
                if gather.num_digits.is_some_and(|n| digits.len() as u32 >= n) {
                    ended_by = GatherEnd::NumDigits;
                    break;
                }
            }
            (digits, ended_by)
        }
        _ => return None,
    };
    // The first key interrupts the prompts; a timeout waits them out and then the timeout.
    let elapsed = match ended_by {
        GatherEnd::Timeout => prompts_ms(&gather.prompts) + timeout_ms,
        _ => 1_000,
    };
    Some((
        Event::GatherComplete(GatherResult { digits, ended_by }),
        elapsed,
    ))
}

fn record_result(
    options: &RecordOptions,
    action: &Action,
    recording_id: String,
) -> Option<(Event, u64)> {
    let max_ms = u64::from(options.max_length_secs) * 1000;
    let finish = |key: char| options.finish_on_key.contains(key).then_some(key);
    let (spoken_ms, ended_by, digit) = match action {
        Action::Silence => (0, RecordEnd::Silence, None),
        Action::Press(keys) => match keys.chars().next().and_then(finish) {
            Some(key) => (0, RecordEnd::FinishKey, Some(key)),
            None => (0, RecordEnd::Silence, None),
        },
        Action::Speak { secs, then_press } => {
            let spoken = u64::from(*secs) * 1000;
            match then_press.and_then(finish) {
                _ if spoken >= max_ms => (max_ms, RecordEnd::MaxLength, None),
                Some(key) => (spoken, RecordEnd::FinishKey, Some(key)),
                None => (spoken, RecordEnd::Silence, None),
            }
        }
        _ => return None,
    };
    // Trailing silence is part of the recording unless trimmed.
    let silence_ms = if ended_by == RecordEnd::Silence {
        u64::from(options.silence_timeout_secs) * 1000
    } else {
        0
    };
    let duration_ms = spoken_ms + if options.trim_silence { 0 } else { silence_ms };
    let result = RecordResult {
        recording_id,
        duration_ms: duration_ms as u32,
        ended_by,
        digit,
    };
    Some((Event::RecordComplete(result), spoken_ms + silence_ms))
}

/// What the SIP leg reports when the caller is out of the conference: a
/// join refused because the conference is full is `full` after 0 s, as
/// there.
fn conference_result(options: &ConferenceOptions, action: &Action) -> Option<(Event, u64)> {
    let (ended_by, secs) = match *action {
        Action::Conference { ended_by, secs } => (ended_by, secs),
        Action::ConferenceFull => (ConferenceEnd::Full, 0),
        _ => return None,
    };
    let result = ConferenceResult {
        name: options.name.clone(),
        ended_by,
        duration_secs: secs,
    };
    Some((Event::ConferenceComplete(result), u64::from(secs) * 1000))
}

/// What the SIP leg reports when the caller is out of the queue: bridged
/// once the bridge ends, timed out at `max-wait-secs` (a queue without one
/// never times out), or refused at once when full.
fn queue_result(enqueue: &Enqueue, action: &Action) -> Option<(Event, u64)> {
    let (outcome, wait_secs, elapsed_secs) = match *action {
        Action::QueueBridged { waited, talk, .. } => match enqueue.max_wait_secs {
            Some(max) if waited >= max => (QueueOutcome::Timeout, max, max),
            _ => (QueueOutcome::Bridged, waited, waited + talk),
        },
        Action::QueueTimeout { .. } => {
            let max = enqueue.max_wait_secs?;
            (QueueOutcome::Timeout, max, max)
        }
        Action::QueueFull => (QueueOutcome::Full, 0, 0),
        _ => return None,
    };
    let result = QueueResult {
        queue: enqueue.queue.clone(),
        outcome,
        wait_secs,
    };
    Some((Event::QueueComplete(result), u64::from(elapsed_secs) * 1000))
}

fn dial_result(dial: &Dial, action: &Action, recording_id: Option<String>) -> Option<(Event, u64)> {
    let ring_ms = u64::from(dial.timeout_secs) * 1000;
    let (status, answered, duration_secs, elapsed) = match action {
        Action::Answer { target, talk_secs } => {
            let leg = dial.targets.get(target - 1)?;
            // Sequential ringing lets every earlier target ring out first.
            let rang = match dial.strategy {
                RingStrategy::Sequential => ring_ms * (*target as u64 - 1) + 3_000,
                RingStrategy::Simultaneous => 3_000,
            };
            (
                DialStatus::Completed,
                Some(leg.target.clone()),
                *talk_secs,
                rang + u64::from(*talk_secs) * 1000,
            )
        }
        Action::Busy => (DialStatus::Busy, None, 0, 1_000),
        Action::NoAnswer => (
            DialStatus::NoAnswer,
            None,
            0,
            ring_ms * dial.targets.len() as u64,
        ),
        Action::Fail => (DialStatus::Failed, None, 0, 500),
        _ => return None,
    };
    let recording_id = recording_id.filter(|_| status == DialStatus::Completed);
    let result = DialResult {
        status,
        answered,
        duration_secs,
        recording_id,
    };
    Some((Event::DialComplete(result), elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::GatherInput;

    fn gather(num_digits: Option<u32>) -> Gather {
        Gather {
            input: GatherInput::Dtmf,
            num_digits,
            finish_on_key: Some('#'),
            timeout_secs: 5,
            prompts: vec![],
        }
    }

    fn digits(g: &Gather, keys: &str) -> (String, GatherEnd) {
        match gather_result(g, &Action::Press(keys.into())) {
            Some((Event::GatherComplete(r), _)) => (r.digits, r.ended_by),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gather_stops_at_num_digits_or_finish_key_like_twiml() {
        assert_eq!(
            digits(&gather(Some(1)), "23"),
            ("2".into(), GatherEnd::NumDigits)
        );
        assert_eq!(
            digits(&gather(None), "12#9"),
            ("12".into(), GatherEnd::FinishKey)
        );
        assert_eq!(
            digits(&gather(Some(4)), "12"),
            ("12".into(), GatherEnd::Timeout)
        );
    }

    #[test]
    fn a_conference_ends_as_the_script_says_and_a_full_one_refuses_the_caller() {
        use crate::contract::{ConferenceEnd, ConferenceOptions};
        let options = ConferenceOptions::named("standup");
        let outcome = |action| match conference_result(&options, &action) {
            Some((Event::ConferenceComplete(r), ms)) => (r.ended_by, r.duration_secs, ms),
            other => panic!("{other:?}"),
        };
        let kicked = Action::Conference {
            ended_by: ConferenceEnd::Kicked,
            secs: 30,
        };
        assert_eq!(outcome(kicked), (ConferenceEnd::Kicked, 30, 30_000));
        assert_eq!(outcome(Action::ConferenceFull), (ConferenceEnd::Full, 0, 0));
        assert_eq!(conference_result(&options, &Action::Busy), None);
    }
}
