//! The plan builder: [`Plan`] and the media verbs [`Say`], [`Play`] and
//! [`Pause`], which are also the prompts of a gather or a queue.
//!
//! Builders are methods on the generated WIT records, so what a handler
//! returns is exactly what the host receives; no conversion in between.

use crate::types::{Conference, Dial, Enqueue, Gather, MediaSource, Pay, Play, Record};
use crate::types::{Pause, Plan, Prompt, RejectReason, Say, SetVar, Verb};

impl Plan {
    /// An empty plan.
    ///
    /// Return it for events whose plan is ignored (`hangup`,
    /// `status-changed`); otherwise chain verbs onto it. Verbs run in order;
    /// a verb with a result (gather, dial, record, conference, enqueue, pay)
    /// must be the last one, and so must redirect, hangup and reject.
    pub fn new() -> Self {
        Plan { verbs: Vec::new() }
    }

    /// Appends any verb; the named methods cover each one.
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verbs.push(verb);
        self
    }

    /// Collects digits; the [`GatherResult`](crate::types::GatherResult)
    /// arrives as [`Event::GatherComplete`](crate::Event::GatherComplete).
    pub fn gather(self, gather: Gather) -> Self {
        self.verb(Verb::Gather(gather))
    }

    /// Calls out and bridges the caller; the outcome arrives as
    /// [`Event::DialComplete`](crate::Event::DialComplete).
    pub fn dial(self, dial: Dial) -> Self {
        self.verb(Verb::Dial(dial))
    }

    /// Records the caller; the recording arrives as
    /// [`Event::RecordComplete`](crate::Event::RecordComplete).
    pub fn record(self, record: Record) -> Self {
        self.verb(Verb::Record(record))
    }

    /// Joins a conference; arrives as
    /// [`Event::ConferenceComplete`](crate::Event::ConferenceComplete) when the caller leaves it.
    pub fn conference(self, conference: Conference) -> Self {
        self.verb(Verb::Conference(conference))
    }

    /// Puts the caller in a queue; arrives as
    /// [`Event::QueueComplete`](crate::Event::QueueComplete) when they leave it.
    pub fn enqueue(self, enqueue: Enqueue) -> Self {
        self.verb(Verb::Enqueue(enqueue))
    }

    /// Takes the caller out of the queue they wait in.
    pub fn leave_queue(self) -> Self {
        self.verb(Verb::LeaveQueue)
    }

    /// Collects card or bank details securely (the guest never sees them);
    /// arrives as [`Event::PayComplete`](crate::Event::PayComplete).
    pub fn pay(self, pay: Pay) -> Self {
        self.verb(Verb::Pay(pay))
    }

    /// Hands the call to `handler`, a component name bound in the tenant;
    /// it receives [`Event::Redirected`](crate::Event::Redirected). Call
    /// variables survive.
    pub fn redirect(self, handler: impl Into<String>) -> Self {
        self.verb(Verb::Redirect(handler.into()))
    }

    /// Sends DTMF to the far end; `w` waits half a second (`"1w2"`).
    pub fn send_digits(self, digits: impl Into<String>) -> Self {
        self.verb(Verb::SendDigits(digits.into()))
    }

    /// Ends the call.
    pub fn hangup(self) -> Self {
        self.verb(Verb::Hangup)
    }

    /// Refuses an unanswered call, as TwiML `<Reject reason="rejected">`.
    pub fn reject(self) -> Self {
        self.verb(Verb::Reject(RejectReason::Rejected))
    }

    /// Refuses an unanswered call as busy, as TwiML `<Reject reason="busy">`.
    pub fn reject_busy(self) -> Self {
        self.verb(Verb::Reject(RejectReason::Busy))
    }

    /// Sets call variable `name` when the runtime reaches this verb.
    /// [`vars::set`](crate::vars::set) sets it at once instead.
    pub fn set_var(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.verb(Verb::SetVar(SetVar {
            name: name.into(),
            value: Some(value.into()),
        }))
    }

    /// Removes call variable `name` when the runtime reaches this verb.
    pub fn unset_var(self, name: impl Into<String>) -> Self {
        self.verb(Verb::SetVar(SetVar {
            name: name.into(),
            value: None,
        }))
    }

    pub(crate) fn push_prompt(self, prompt: Prompt) -> Self {
        self.verb(prompt.into())
    }
}

impl Default for Plan {
    fn default() -> Self {
        Self::new()
    }
}

/// Gives a builder `say`, `say_with`, `play`, `play_with` and `pause_ms`,
/// given a `push_prompt(self, Prompt) -> Self` that appends where the
/// builder keeps its media.
macro_rules! media_methods {
    ($ty:ty, $when:literal) => {
        impl $ty {
            #[doc = concat!("Speaks `text` once ", $when, "; see [`Say::new`](crate::types::Say::new).")]
            pub fn say(self, text: impl Into<String>) -> Self {
                self.push_prompt(Prompt::Say(Say::new(text)))
            }

            #[doc = concat!("Speaks a [`Say`](crate::types::Say) with a chosen voice, language or repeat count ", $when, ".")]
            pub fn say_with(self, say: Say) -> Self {
                self.push_prompt(Prompt::Say(say))
            }

            #[doc = concat!("Plays the WAV file at `url` once ", $when, ".")]
            pub fn play(self, url: impl Into<String>) -> Self {
                self.push_prompt(Prompt::Play(Play::url(url)))
            }

            #[doc = concat!("Plays a [`Play`](crate::types::Play) (stored media, a repeat count) ", $when, ".")]
            pub fn play_with(self, play: Play) -> Self {
                self.push_prompt(Prompt::Play(play))
            }

            #[doc = concat!("Stays silent for `ms` milliseconds ", $when, ".")]
            pub fn pause_ms(self, ms: u32) -> Self {
                self.push_prompt(Prompt::Pause(Pause { length_ms: ms }))
            }
        }
    };
}

media_methods!(Plan, "in the plan");
media_methods!(
    Gather,
    "before waiting for digits (the first digit interrupts it)"
);
media_methods!(Enqueue, "while the caller waits");

/// A prompt is also a verb of its own.
impl From<Prompt> for Verb {
    fn from(prompt: Prompt) -> Self {
        match prompt {
            Prompt::Say(say) => Verb::Say(say),
            Prompt::Play(play) => Verb::Play(play),
            Prompt::Pause(pause) => Verb::Pause(pause),
        }
    }
}

impl Say {
    /// `text` spoken once in the runtime's default voice and language.
    pub fn new(text: impl Into<String>) -> Self {
        Say {
            text: text.into(),
            voice: None,
            language: None,
            loop_count: 1,
        }
    }

    /// Speaks with `voice`, a voice name the runtime's TTS knows.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// Speaks in `language`, a BCP 47 tag such as `"en-US"`.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Speaks `count` times; 0 repeats until interrupted, as in TwiML.
    pub fn loop_count(mut self, count: u32) -> Self {
        self.loop_count = count;
        self
    }
}

impl Play {
    /// Plays the WAV file at the http(s) `url` once; the media layer
    /// fetches and caches it.
    pub fn url(url: impl Into<String>) -> Self {
        Self::source(MediaSource::Url(url.into()))
    }

    /// Plays media already in the tenant's media store, by content id.
    pub fn media(id: impl Into<String>) -> Self {
        Self::source(MediaSource::MediaId(id.into()))
    }

    /// Plays `count` times; 0 repeats until interrupted, as in TwiML.
    pub fn loop_count(mut self, count: u32) -> Self {
        self.loop_count = count;
        self
    }

    fn source(source: MediaSource) -> Self {
        Play {
            source,
            loop_count: 1,
        }
    }
}
