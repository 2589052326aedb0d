//! Builders for the verbs that produce a result: [`Gather`], [`Dial`],
//! [`Record`], [`Conference`], [`Enqueue`] and [`Pay`].
//!
//! Each constructor starts from the TwiML default of every attribute, so a
//! plan reads like the TwiML it replaces; setters override one attribute.

use crate::types::{
    ConferenceOptions, Dial, DialLeg, DialTarget, Enqueue, Gather, GatherInput, Header,
    MediaSource, Pay, PayMethod, Prompt, QueueMember, RecordOptions, RingStrategy,
};

/// Options of the record verb, named as the verb reads in a plan.
pub type Record = RecordOptions;

/// Options of the conference verb, named as the verb reads in a plan.
pub type Conference = ConferenceOptions;

impl Gather {
    /// Collects DTMF with the TwiML defaults: input ends on `#` or 5 s
    /// after the prompts (or the last digit), with no digit count and no
    /// prompts.
    pub fn new() -> Self {
        Gather {
            input: GatherInput::Dtmf,
            num_digits: None,
            finish_on_key: Some('#'),
            timeout_secs: 5,
            prompts: Vec::new(),
        }
    }

    /// Like [`Gather::new`], but completes as soon as `count` digits were
    /// pressed.
    pub fn digits(count: u32) -> Self {
        Gather {
            num_digits: Some(count),
            ..Self::new()
        }
    }

    /// The key that ends input (default `'#'`); `None` disables it, so
    /// `'#'` counts as a digit.
    pub fn finish_on_key(mut self, key: impl Into<Option<char>>) -> Self {
        self.finish_on_key = key.into();
        self
    }

    /// Seconds to wait for the next digit once the prompts end (default 5).
    pub fn timeout_secs(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    pub(crate) fn push_prompt(mut self, prompt: Prompt) -> Self {
        self.prompts.push(prompt);
        self
    }
}

impl Default for Gather {
    fn default() -> Self {
        Self::new()
    }
}

impl Dial {
    /// Dials `target` for 30 s (the TwiML default), showing the caller's own
    /// id, answering the caller at once, not recording, with no time limit.
    pub fn new(target: DialTarget) -> Self {
        Dial {
            targets: vec![leg(target)],
            strategy: RingStrategy::Sequential,
            timeout_secs: 30,
            caller_id: None,
            record: false,
            answer_on_bridge: false,
            time_limit_secs: None,
        }
    }

    /// Dials an E.164 number through the tenant's trunks.
    pub fn number(e164: impl Into<String>) -> Self {
        Self::new(DialTarget::Number(e164.into()))
    }

    /// Dials a SIP URI.
    pub fn sip(uri: impl Into<String>) -> Self {
        Self::new(DialTarget::Sip(uri.into()))
    }

    /// Dials a registered client identity, such as `"alice"`.
    pub fn client(identity: impl Into<String>) -> Self {
        Self::new(DialTarget::Client(identity.into()))
    }

    /// Takes the caller waiting longest in queue `name` and bridges the
    /// two calls; `no-answer` at once when nobody waits. A queue is the
    /// dial's only target.
    pub fn queue(name: impl Into<String>) -> Self {
        Self::new(DialTarget::Queue(name.into()))
    }

    /// Takes caller `call_id` out of queue `name` whatever its place (the
    /// call ids a [`QueueStatus`](crate::types::QueueStatus) handler or
    /// `GET /v1/queues/{name}` sees); `no-answer` at once when it does not
    /// wait there. A queue is the dial's only target.
    pub fn queue_member(name: impl Into<String>, call_id: impl Into<String>) -> Self {
        Self::new(DialTarget::QueueMember(QueueMember {
            queue: name.into(),
            call_id: call_id.into(),
        }))
    }

    /// Joins conference `name` with the default options (see
    /// [`Conference::named`](crate::types::Conference::named)); the dial
    /// completes when the caller is out of it. A conference is the
    /// dial's only target.
    pub fn conference(name: impl Into<String>) -> Self {
        Self::new(DialTarget::Conference(name.into()))
    }

    /// Adds another target. Targets ring one after another, each for
    /// [`timeout_secs`](Dial::timeout_secs), unless
    /// [`simultaneous`](Dial::simultaneous).
    pub fn and(mut self, target: DialTarget) -> Self {
        self.targets.push(leg(target));
        self
    }

    /// Adds an E.164 number as another target.
    pub fn and_number(self, e164: impl Into<String>) -> Self {
        self.and(DialTarget::Number(e164.into()))
    }

    /// Adds a SIP URI as another target.
    pub fn and_sip(self, uri: impl Into<String>) -> Self {
        self.and(DialTarget::Sip(uri.into()))
    }

    /// Adds a client identity as another target.
    pub fn and_client(self, identity: impl Into<String>) -> Self {
        self.and(DialTarget::Client(identity.into()))
    }

    /// Sends a custom SIP header on the INVITE of the target added last.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let header = Header {
            name: name.into(),
            value: value.into(),
        };
        // Every constructor adds a target, so there is a last one unless
        // the caller emptied `targets` by hand.
        if let Some(leg) = self.targets.last_mut() {
            leg.headers.push(header);
        }
        self
    }

    /// Rings every target at once; the first to answer wins. (TwiML rings
    /// several nouns at once by default; here it is a choice.)
    pub fn simultaneous(mut self) -> Self {
        self.strategy = RingStrategy::Simultaneous;
        self
    }

    /// Seconds to ring each target before giving up (default 30).
    pub fn timeout_secs(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// The caller id the callee sees (default: the caller's own).
    pub fn caller_id(mut self, id: impl Into<String>) -> Self {
        self.caller_id = Some(id.into());
        self
    }

    /// Records the bridged call (default off); the recording id arrives in
    /// the [`DialResult`](crate::types::DialResult).
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// Keeps an unanswered caller in early media until the callee answers,
    /// so it hears ringing and is not billed for it (default off). A dial
    /// that passes media through (no `record`) does this anyway; a dial
    /// that records answers the caller as it starts unless this is on.
    pub fn answer_on_bridge(mut self, on: bool) -> Self {
        self.answer_on_bridge = on;
        self
    }

    /// Hangs up the bridged call after `secs` seconds (default: no limit).
    pub fn time_limit_secs(mut self, secs: u32) -> Self {
        self.time_limit_secs = Some(secs);
        self
    }
}

fn leg(target: DialTarget) -> DialLeg {
    DialLeg {
        target,
        headers: Vec::new(),
    }
}

impl RecordOptions {
    /// Records with the TwiML defaults: at most 3600 s, any key of
    /// `1234567890*#` ends it, a beep first, silence trimmed from both ends,
    /// and 5 s of silence ends it.
    pub fn new() -> Self {
        RecordOptions {
            max_length_secs: 3600,
            finish_on_key: "1234567890*#".to_owned(),
            play_beep: true,
            trim_silence: true,
            silence_timeout_secs: 5,
        }
    }

    /// The longest recording, in seconds (default 3600).
    pub fn max_length_secs(mut self, secs: u32) -> Self {
        self.max_length_secs = secs;
        self
    }

    /// The keys that end the recording (default `"1234567890*#"`); `""`
    /// lets no key end it.
    pub fn finish_on_key(mut self, keys: impl Into<String>) -> Self {
        self.finish_on_key = keys.into();
        self
    }

    /// Whether a beep marks the start (default on).
    pub fn beep(mut self, on: bool) -> Self {
        self.play_beep = on;
        self
    }

    /// Whether leading and trailing silence is cut (default on).
    pub fn trim_silence(mut self, on: bool) -> Self {
        self.trim_silence = on;
        self
    }

    /// Seconds of silence that end the recording (default 5).
    pub fn silence_timeout_secs(mut self, secs: u32) -> Self {
        self.silence_timeout_secs = secs;
        self
    }
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ConferenceOptions {
    /// Joins conference `name` with the TwiML defaults: unmuted, the
    /// conference starts when this caller enters and goes on when they
    /// leave, beeps on join and leave, not recorded, the runtime's wait
    /// music, and no participant limit beyond the runtime's.
    pub fn named(name: impl Into<String>) -> Self {
        ConferenceOptions {
            name: name.into(),
            muted: false,
            start_on_enter: true,
            end_on_exit: false,
            beep: true,
            record: false,
            wait_prompt: None,
            max_participants: None,
        }
    }

    /// Whether the caller joins muted (default off).
    pub fn muted(mut self, on: bool) -> Self {
        self.muted = on;
        self
    }

    /// Whether the conference starts when this caller enters (default on);
    /// until someone with this on enters, others hear the wait prompt.
    pub fn start_on_enter(mut self, on: bool) -> Self {
        self.start_on_enter = on;
        self
    }

    /// Whether the conference ends when this caller leaves (default off).
    pub fn end_on_exit(mut self, on: bool) -> Self {
        self.end_on_exit = on;
        self
    }

    /// Whether participants hear a beep on join and leave (default on).
    pub fn beep(mut self, on: bool) -> Self {
        self.beep = on;
        self
    }

    /// Whether the conference is recorded (default off).
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// What plays while the conference has not started (default: the
    /// runtime's wait music).
    pub fn wait_prompt(mut self, source: MediaSource) -> Self {
        self.wait_prompt = Some(source);
        self
    }

    /// The most participants the conference admits.
    pub fn max_participants(mut self, count: u32) -> Self {
        self.max_participants = Some(count);
        self
    }
}

impl Enqueue {
    /// Puts the caller in `name`, waiting without a time limit at
    /// priority 0, with no wait updates; with no wait prompts the runtime
    /// plays its own.
    pub fn queue(name: impl Into<String>) -> Self {
        Enqueue {
            queue: name.into(),
            wait_prompts: Vec::new(),
            max_wait_secs: None,
            priority: None,
            wait_update_secs: None,
        }
    }

    /// Callers with a higher priority are taken before this one, equal
    /// ones in order of arrival (default 0).
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Every `secs` seconds the handler hears
    /// [`Event::QueueWait`](crate::Event::QueueWait) with the caller's
    /// position (default: never). Its plan plays to the caller instead of
    /// the wait prompts, and may end with `leave-queue`, `redirect` or
    /// `hangup`.
    pub fn wait_updates_every(mut self, secs: u32) -> Self {
        self.wait_update_secs = Some(secs);
        self
    }

    /// Leaves the queue after `secs` seconds (default: wait forever); the
    /// result then says [`QueueOutcome::Timeout`](crate::types::QueueOutcome::Timeout).
    pub fn max_wait_secs(mut self, secs: u32) -> Self {
        self.max_wait_secs = Some(secs);
        self
    }

    pub(crate) fn push_prompt(mut self, prompt: Prompt) -> Self {
        self.wait_prompts.push(prompt);
        self
    }
}

impl Pay {
    /// Collects a credit card with the TwiML defaults: tokenise only (no
    /// charge), USD, 5 s timeout per input, one attempt.
    pub fn card() -> Self {
        Self::method(PayMethod::CreditCard)
    }

    /// Collects ACH bank details, with the same defaults as [`Pay::card`].
    pub fn ach() -> Self {
        Self::method(PayMethod::AchDebit)
    }

    /// Charges `cents` minor units of `currency` (ISO 4217, e.g. `"USD"`)
    /// instead of only tokenising.
    pub fn amount_cents(mut self, cents: u64, currency: impl Into<String>) -> Self {
        self.charge_amount = Some(cents);
        self.currency = currency.into();
        self
    }

    /// What the charge is for, passed to the payment collector.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Seconds to wait for each input (default 5).
    pub fn timeout_secs(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// How many tries the caller gets to enter valid details (default 1).
    pub fn max_attempts(mut self, count: u32) -> Self {
        self.max_attempts = count;
        self
    }

    fn method(method: PayMethod) -> Self {
        Pay {
            method,
            charge_amount: None,
            currency: "USD".to_owned(),
            description: String::new(),
            timeout_secs: 5,
            max_attempts: 1,
        }
    }
}
