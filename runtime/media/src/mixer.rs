//! Conference mixing, sans-IO (issue 15, C5): fed one frame of 16-bit
//! linear audio per participant per tick by whoever owns the clock (the
//! media workers), it says what each participant hears.
//!
//! ```text
//!   tick(inputs) ─▶ sum of everyone heard (i32, once)
//!                    ├─ a cascade link hears the sum − every link (this region only)
//!                    ├─ participant p hears sum − p's own frame (+ its coach)
//!                    ├─ on hold: hold music; before the start: wait music
//!                    ├─ + entry/exit beep
//!                    └─ recording: the sum, as everyone hears it
//!   join / leave / mute / hold / coach / end ─▶ events (poll_event)
//! ```
//!
//! Mixing once and subtracting each participant's own contribution costs
//! O(participants × samples) instead of O(participants² × samples), and is
//! exact because the sum is kept in i32 until each output is saturated.
//! The frame length is a parameter: G.711 legs use 160 samples (20 ms at
//! 8 kHz); a wideband mixer (Opus clients, later) uses another length and
//! rate with the same code.
//!
//! A coach (whisper) is heard by one participant only and hears everyone;
//! the others do not hear the coach. Nothing here reads a clock: a tick is
//! one frame, and every duration is counted in ticks.

use std::collections::{BTreeMap, VecDeque};

use super::Samples;

/// A participant's handle, chosen by the owner (a call or stream id).
pub type ParticipantId = u64;

/// How a conference behaves; defaults as Twilio's `<Conference>`.
#[derive(Debug, Clone)]
pub struct MixerConfig {
    /// Samples per frame (160: 20 ms at 8 kHz).
    pub frame: usize,
    /// Participants at once; a join beyond it is refused. Default 250.
    pub max_participants: usize,
    /// Played (looped) to everyone until the conference starts.
    pub wait_music: Option<Samples>,
    /// Played (looped) to a participant on hold.
    pub hold_music: Option<Samples>,
    /// Heard by everyone when someone joins / leaves; `None`: no beep.
    pub entry_beep: Option<Samples>,
    pub exit_beep: Option<Samples>,
    /// RMS level (0.0–1.0 of full scale) above which a frame is speech.
    pub speech_level: f64,
    /// Frames of speech before "speaking" starts (debounce). Default 2.
    pub speech_start_frames: u32,
    /// Frames of quiet before "speaking" stops (hangover). Default 25.
    pub speech_stop_frames: u32,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            frame: super::FRAME_SAMPLES,
            max_participants: 250,
            wait_music: None,
            hold_music: None,
            entry_beep: None,
            exit_beep: None,
            speech_level: 0.02,
            speech_start_frames: 2,
            speech_stop_frames: 25,
        }
    }
}

/// How one participant takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// The conference starts when this participant enters. Default true.
    pub start_on_enter: bool,
    /// The conference ends when this participant leaves. Default false.
    pub end_on_exit: bool,
    pub muted: bool,
    /// Whisper to this participant only (a supervisor coaching an agent).
    pub coach: Option<ParticipantId>,
    /// Everyone hears a beep when this participant enters and leaves
    /// (when the config has beeps). Default true.
    pub beep: bool,
    /// A cascade link to another region's mixer: it hears this region's
    /// participants only (never another link: every region hears every
    /// other directly) and no music or beeps; everyone here hears it.
    pub link: bool,
}

impl Default for Join {
    fn default() -> Self {
        Self {
            start_on_enter: true,
            end_on_exit: false,
            muted: false,
            coach: None,
            beep: true,
            link: false,
        }
    }
}

/// Why a conference ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The last participant left.
    LastLeft,
    /// A participant with `end_on_exit` left.
    EndOnExit(ParticipantId),
    /// Ended from outside (REST, the handler).
    Ended,
}

/// What happened, in order, for the handler's events and status callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixerEvent {
    Joined(ParticipantId),
    Left(ParticipantId),
    Started,
    Ended(EndReason),
    Muted(ParticipantId, bool),
    Held(ParticipantId, bool),
    Coaching(ParticipantId, Option<ParticipantId>),
    SpeakingStarted(ParticipantId),
    SpeakingStopped(ParticipantId),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MixError {
    #[error("the conference is full ({max} participants)")]
    Full { max: usize },
    #[error("participant {0} is already in the conference")]
    AlreadyIn(ParticipantId),
    #[error("participant {0} is not in the conference")]
    NotIn(ParticipantId),
    #[error("a participant cannot coach itself")]
    CoachSelf,
    #[error("the conference has ended")]
    Ended,
    #[error("a cascade link cannot coach")]
    LinkCoach,
}

#[derive(Debug)]
struct Participant {
    join: Join,
    held: bool,
    /// Where this participant is in the hold music.
    music_at: usize,
    speaking: bool,
    /// Consecutive frames above (while quiet) or below (while speaking)
    /// the speech level.
    run: u32,
    out: Vec<i16>,
}

/// One conference's mixer.
#[derive(Debug)]
pub struct Mixer {
    config: MixerConfig,
    participants: BTreeMap<ParticipantId, Participant>,
    started: bool,
    ended: Option<EndReason>,
    wait_at: usize,
    /// The beep being played to everyone and how far it got.
    beep: Option<(Samples, usize)>,
    sum: Vec<i32>,
    /// The part of `sum` that came over cascade links.
    links: Vec<i32>,
    /// One participant's output before saturation.
    acc: Vec<i32>,
    recording: Vec<i16>,
    events: VecDeque<MixerEvent>,
}

impl Mixer {
    pub fn new(config: MixerConfig) -> Self {
        let frame = config.frame;
        Self {
            config,
            participants: BTreeMap::new(),
            started: false,
            ended: None,
            wait_at: 0,
            beep: None,
            sum: vec![0; frame],
            links: vec![0; frame],
            acc: vec![0; frame],
            recording: vec![0; frame],
            events: VecDeque::new(),
        }
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn ended(&self) -> Option<EndReason> {
        self.ended
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.participants.keys().copied()
    }

    pub fn join(&mut self, id: ParticipantId, join: Join) -> Result<(), MixError> {
        if self.ended.is_some() {
            return Err(MixError::Ended);
        }
        if self.participants.contains_key(&id) {
            return Err(MixError::AlreadyIn(id));
        }
        if self.participants.len() >= self.config.max_participants {
            return Err(MixError::Full {
                max: self.config.max_participants,
            });
        }
        if join.coach == Some(id) {
            return Err(MixError::CoachSelf);
        }
        if join.link && join.coach.is_some() {
            return Err(MixError::LinkCoach);
        }
        self.participants.insert(
            id,
            Participant {
                join,
                held: false,
                music_at: 0,
                speaking: false,
                run: 0,
                out: vec![0; self.config.frame],
            },
        );
        self.events.push_back(MixerEvent::Joined(id));
        if join.start_on_enter && !self.started {
            self.started = true;
            self.events.push_back(MixerEvent::Started);
        }
        if join.beep && !join.link {
            self.beep = self.config.entry_beep.clone().map(|b| (b, 0));
        }
        Ok(())
    }

    /// Takes `id` out (it hung up, left, or was kicked); may end the
    /// conference.
    pub fn leave(&mut self, id: ParticipantId) -> Result<(), MixError> {
        let gone = self.participants.remove(&id).ok_or(MixError::NotIn(id))?;
        if gone.speaking {
            self.events.push_back(MixerEvent::SpeakingStopped(id));
        }
        self.events.push_back(MixerEvent::Left(id));
        // A coach of the one who left has no one to whisper to.
        for (&coach, p) in &mut self.participants {
            if p.join.coach == Some(id) {
                p.join.coach = None;
                self.events.push_back(MixerEvent::Coaching(coach, None));
            }
        }
        if gone.join.end_on_exit {
            self.finish(EndReason::EndOnExit(id));
        } else if self.participants.values().all(|p| p.join.link) {
            // Links alone are no conference: the region's mixer closes.
            self.finish(EndReason::LastLeft);
        } else if gone.join.beep && !gone.join.link {
            self.beep = self.config.exit_beep.clone().map(|b| (b, 0));
        }
        Ok(())
    }

    /// Starts the conference from outside (another region's mixer of it
    /// started): wait music stops and everyone hears everyone.
    pub fn start(&mut self) {
        if !self.started && self.ended.is_none() {
            self.started = true;
            self.events.push_back(MixerEvent::Started);
        }
    }

    /// Ends the conference from outside; everyone still in is to be
    /// disconnected by the owner.
    pub fn end(&mut self) {
        self.finish(EndReason::Ended);
    }

    fn finish(&mut self, reason: EndReason) {
        if self.ended.is_none() {
            self.ended = Some(reason);
            self.events.push_back(MixerEvent::Ended(reason));
        }
    }

    /// Music for participants waiting for the start (prepared after the
    /// room opened: a fetched or synthesized prompt).
    pub fn set_wait_music(&mut self, music: Samples) {
        self.config.wait_music = Some(music);
        self.wait_at = 0;
    }

    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<(), MixError> {
        let p = self.participant(id)?;
        if p.join.muted != muted {
            p.join.muted = muted;
            self.events.push_back(MixerEvent::Muted(id, muted));
        }
        Ok(())
    }

    pub fn set_held(&mut self, id: ParticipantId, held: bool) -> Result<(), MixError> {
        let p = self.participant(id)?;
        if p.held != held {
            p.held = held;
            p.music_at = 0;
            self.events.push_back(MixerEvent::Held(id, held));
        }
        Ok(())
    }

    /// Makes `id` whisper to `target` only (`None`: back to everyone).
    pub fn set_coach(
        &mut self,
        id: ParticipantId,
        target: Option<ParticipantId>,
    ) -> Result<(), MixError> {
        if target == Some(id) {
            return Err(MixError::CoachSelf);
        }
        if let Some(t) = target
            && !self.participants.contains_key(&t)
        {
            return Err(MixError::NotIn(t));
        }
        let p = self.participant(id)?;
        if p.join.link && target.is_some() {
            return Err(MixError::LinkCoach);
        }
        if p.join.coach != target {
            p.join.coach = target;
            self.events.push_back(MixerEvent::Coaching(id, target));
        }
        Ok(())
    }

    fn participant(&mut self, id: ParticipantId) -> Result<&mut Participant, MixError> {
        self.participants.get_mut(&id).ok_or(MixError::NotIn(id))
    }

    pub fn poll_event(&mut self) -> Option<MixerEvent> {
        self.events.pop_front()
    }

    /// Mixes one frame. `input` gives a participant's frame this tick
    /// (`None`: nothing arrived, heard as silence); a frame of another
    /// length than the config's is cut or padded with silence.
    pub fn tick<'a>(&mut self, mut input: impl FnMut(ParticipantId) -> Option<&'a [i16]>) {
        let frame = self.config.frame;
        let started = self.started;
        let inputs: Vec<Input<'a>> = self
            .participants
            .iter()
            .map(|(&id, p)| Input {
                id,
                samples: input(id),
                heard: started && !p.join.muted && !p.held,
                coach: p.join.coach,
                held: p.held,
                link: p.join.link,
            })
            .collect();

        // Speech detection sees what a participant sends, muted or not, so
        // a "you are muted" hint is possible; only heard audio is mixed.
        for i in &inputs {
            self.detect_speech(i.id, i.samples.map_or(0.0, super::tone::rms));
        }

        self.sum.iter_mut().for_each(|s| *s = 0);
        for i in inputs.iter().filter(|i| i.in_sum()) {
            for (s, &x) in self.sum.iter_mut().zip(i.samples.unwrap_or(&[])) {
                *s += x as i32;
            }
        }
        for (r, &s) in self.recording.iter_mut().zip(&self.sum) {
            *r = saturate(s);
        }
        // What links send each other is taken out of what a link hears.
        let links = inputs.iter().any(|i| i.link);
        if links {
            self.links.iter_mut().for_each(|s| *s = 0);
            for i in inputs.iter().filter(|i| i.link && i.in_sum()) {
                for (s, &x) in self.links.iter_mut().zip(i.samples.unwrap_or(&[])) {
                    *s += x as i32;
                }
            }
        }

        let beep = self.beep.as_ref().map(|(b, at)| &b[(*at).min(b.len())..]);
        // Scanning for whispers is O(participants²): skip it when no one coaches.
        let coaching = inputs.iter().any(|c| c.coach.is_some());
        for me in &inputs {
            let p = self
                .participants
                .get_mut(&me.id)
                .expect("inputs are of participants");
            let music = if !started {
                self.config.wait_music.as_ref().map(|m| (m, self.wait_at))
            } else if me.held {
                self.config.hold_music.as_ref().map(|m| (m, p.music_at))
            } else {
                None
            };
            let acc = &mut self.acc;
            if me.link {
                // This region's participants only, once started; no
                // music or beeps (each region plays its own).
                if started {
                    for ((a, &s), &l) in acc.iter_mut().zip(&self.sum).zip(&self.links) {
                        *a = s - l;
                    }
                } else {
                    acc.iter_mut().for_each(|a| *a = 0);
                }
                for (o, &a) in p.out.iter_mut().zip(acc.iter()) {
                    *o = saturate(a);
                }
                continue;
            }
            match music {
                Some((m, at)) if !m.is_empty() => {
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = m[(at + i) % m.len()] as i32;
                    }
                }
                _ if !started || me.held => acc.iter_mut().for_each(|a| *a = 0),
                _ => {
                    acc.copy_from_slice(&self.sum);
                    if me.in_sum() {
                        for (a, &x) in acc.iter_mut().zip(me.samples.unwrap_or(&[])) {
                            *a -= x as i32;
                        }
                    }
                }
            }
            if !me.held {
                let whispers = inputs
                    .iter()
                    .take(if coaching { inputs.len() } else { 0 })
                    .filter(|c| c.heard && c.coach == Some(me.id))
                    .filter_map(|c| c.samples);
                for extra in whispers.chain(beep) {
                    for (a, &x) in acc.iter_mut().zip(extra) {
                        *a += x as i32;
                    }
                }
            }
            for (o, &a) in p.out.iter_mut().zip(acc.iter()) {
                *o = saturate(a);
            }
            if me.held {
                p.music_at = advance(p.music_at, frame, self.config.hold_music.as_ref());
            }
        }
        if !started {
            self.wait_at = advance(self.wait_at, frame, self.config.wait_music.as_ref());
        }
        if let Some((b, at)) = &mut self.beep {
            *at += frame;
            if *at >= b.len() {
                self.beep = None;
            }
        }
    }

    /// What `id` hears after the last [`tick`](Self::tick).
    pub fn output(&self, id: ParticipantId) -> Option<&[i16]> {
        self.participants.get(&id).map(|p| &p.out[..])
    }

    /// The conference as a recording hears it after the last tick: every
    /// participant heard, no whispers, no music, no beeps.
    pub fn recording(&self) -> &[i16] {
        &self.recording
    }

    fn detect_speech(&mut self, id: ParticipantId, level: f64) {
        let (start, stop) = (
            self.config.speech_start_frames.max(1),
            self.config.speech_stop_frames.max(1),
        );
        let loud = level >= self.config.speech_level;
        let p = self
            .participants
            .get_mut(&id)
            .expect("inputs are of participants");
        if loud != p.speaking {
            p.run += 1;
            if p.run >= if p.speaking { stop } else { start } {
                p.speaking = loud;
                p.run = 0;
                self.events.push_back(if loud {
                    MixerEvent::SpeakingStarted(id)
                } else {
                    MixerEvent::SpeakingStopped(id)
                });
            }
        } else {
            p.run = 0;
        }
    }
}

/// A participant as one tick sees it.
struct Input<'a> {
    id: ParticipantId,
    samples: Option<&'a [i16]>,
    /// Started, not muted, not on hold.
    heard: bool,
    coach: Option<ParticipantId>,
    held: bool,
    link: bool,
}

impl Input<'_> {
    /// In the sum everyone hears: heard, sending, and not a coach (whose
    /// audio reaches its target only).
    fn in_sum(&self) -> bool {
        self.heard && self.samples.is_some() && self.coach.is_none()
    }
}

fn saturate(v: i32) -> i16 {
    v.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

fn advance(at: usize, frame: usize, music: Option<&Samples>) -> usize {
    match music {
        Some(m) if !m.is_empty() => (at + frame) % m.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
