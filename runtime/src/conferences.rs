//! The conferences of this runtime as the media edge and the REST API see
//! them: name → room, who is in each, and what happened to it.
//!
//! ```text
//!   endpoint ─Action::Join─► media edge ─seat()─► room id, mixer config ─► engine
//!   engine worker ─RoomEvent─► on_event() ─► this directory (REST reads it)
//!                                        └─► Notice::Conference to the call
//!   REST ─mute/hold/coach/kick/end─► command() ─► engine room
//! ```
//!
//! A conference is the tenant's name for a room while it is open: the
//! first participant opens it, and once it ends the next join of the same
//! name opens a new one (with a new sid). Open conferences live here, in
//! memory (the mixer is in this process anyway); when one closes, its
//! summary goes to the [`ConferenceStore`] (SQLite, written behind) and
//! the directory forgets it, so the REST history survives a restart and
//! costs no memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde::Serialize;

use crate::callbacks::{Delivery, encode_form};
use crate::contract::ConferenceOptions;
use crate::media::engine::{Engine, RoomCommand, RoomEvent, RoomId};
use crate::media::mixer::{EndReason, Join, MixerConfig, MixerEvent};
use crate::media::{Out, Samples, StreamId, tone};
use crate::store::{ConferenceStore, EndedConference};

/// Entry and exit beeps (as Twilio's: a rising and a falling tone).
const ENTRY_HZ: f64 = 880.0;
const EXIT_HZ: f64 = 440.0;
const BEEP_MS: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Open, waiting for a participant who starts it.
    Init,
    InProgress,
    Completed,
}

impl Status {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "init" => Some(Self::Init),
            "in-progress" => Some(Self::InProgress),
            "completed" => Some(Self::Completed),
            _ => None,
        }
    }
}

/// One conference as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Conference {
    pub sid: String,
    pub name: String,
    pub status: Status,
    pub created_unix_ms: u64,
    pub started_unix_ms: Option<u64>,
    pub ended_unix_ms: Option<u64>,
    /// `last-left`, `end-on-exit` or `ended` (REST).
    pub ended_by: Option<&'static str>,
    pub recording_id: Option<String>,
    /// Other regions' mixers this one is linked to (a cascade).
    pub linked_regions: Vec<String>,
    /// In the conference now, by call id.
    pub participants: Vec<Participant>,
    #[serde(skip)]
    tenant: String,
    #[serde(skip)]
    room: RoomId,
    #[serde(skip)]
    seats: BTreeMap<StreamId, Participant>,
    /// Every participant's status callback URL so far.
    #[serde(skip)]
    callbacks: std::collections::BTreeSet<String>,
    /// Status callback events sent so far.
    #[serde(skip)]
    sequence: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Participant {
    #[serde(skip)]
    callback: Option<String>,
    pub call_id: String,
    pub muted: bool,
    pub held: bool,
    /// The call this participant whispers to, if coaching.
    pub coaching: Option<String>,
    pub speaking: bool,
    pub start_on_enter: bool,
    pub end_on_exit: bool,
    pub joined_unix_ms: u64,
}

/// A change a REST client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Mute(bool),
    Hold(bool),
    /// Whisper to this call only (`None`: speak to everyone again).
    Coach(Option<String>),
    Kick,
}

/// Why a REST request about a conference failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConferenceError {
    #[error("no conference {0}")]
    NotFound(String),
    #[error("call {0} is not in this conference")]
    NotParticipant(String),
    #[error("the conference has ended")]
    Ended,
    #[error("the media engine is not running")]
    NoEngine,
    #[error("after={0:?} is not a conference of this account")]
    UnknownCursor(String),
    #[error("{0}")]
    History(String),
}

/// A stream to seat in a conference: the endpoint's `Join`.
pub struct SeatRequest<'a> {
    pub stream: StreamId,
    /// The endpoint's `Join` id, echoed in its notice.
    pub id: u64,
    pub tenant: &'a str,
    pub call_id: &'a str,
    /// The participant's status callback URL.
    pub callback: Option<String>,
}

/// What the media edge does with a room event.
#[derive(Debug, Default)]
pub struct Effects {
    /// Status callback events to send.
    pub callbacks: Vec<Delivery>,
    /// Notices for the calls whose streams left (`Join` id, why).
    pub notices: Vec<(StreamId, u64, Out)>,
    /// A finished recording to store: tenant, conference sid, audio.
    pub recording: Option<(String, String, Vec<i16>)>,
    /// The room closed: the engine may forget it, and the cascade the
    /// conference (tenant, name).
    pub closed: Option<(String, String)>,
    /// The conference (tenant, name) started here: linked regions start.
    pub started: Option<(String, String)>,
}

/// A stream's place in a room.
#[derive(Debug, Clone)]
struct Seat {
    room: RoomId,
    /// The endpoint's `Join` id, echoed in its notice.
    id: u64,
}

#[derive(Default)]
struct State {
    next_room: RoomId,
    /// Open rooms by (tenant, name).
    open: HashMap<(String, String), RoomId>,
    /// Open rooms (a closed one goes to the history).
    rooms: HashMap<RoomId, Conference>,
    seats: HashMap<StreamId, Seat>,
}

/// The directory; clones share it.
#[derive(Clone)]
pub struct Conferences {
    state: Arc<Mutex<State>>,
    engine: Arc<OnceLock<Engine>>,
    history: ConferenceStore,
}

impl std::fmt::Debug for Conferences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conferences")
    }
}

/// What the engine needs to seat a stream.
pub struct Seating {
    pub room: RoomId,
    pub config: MixerConfig,
    pub join: Join,
    pub record: bool,
    /// The room was opened by this join (its wait music is to be set).
    pub opened: bool,
}

impl Conferences {
    pub fn new(history: ConferenceStore) -> Self {
        Self {
            state: Arc::default(),
            engine: Arc::default(),
            history,
        }
    }

    /// The engine that REST commands go to (set once it runs).
    pub fn attach(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Seats `stream` (call `call_id` of `tenant`) in the conference the
    /// options name, opening it if it is not open.
    pub fn seat(&self, seat: SeatRequest<'_>, options: &ConferenceOptions, now_ms: u64) -> Seating {
        let SeatRequest {
            stream,
            id,
            tenant,
            call_id,
            callback,
        } = seat;
        let mut state = self.state();
        let key = (tenant.to_string(), options.name.clone());
        let (room, opened) = match state.open.get(&key) {
            Some(&room) => (room, false),
            None => {
                state.next_room += 1;
                let room = state.next_room;
                state.open.insert(key, room);
                let conference = Conference {
                    sid: sid(),
                    name: options.name.clone(),
                    status: Status::Init,
                    created_unix_ms: now_ms,
                    started_unix_ms: None,
                    ended_unix_ms: None,
                    ended_by: None,
                    recording_id: None,
                    linked_regions: Vec::new(),
                    participants: Vec::new(),
                    tenant: tenant.to_string(),
                    room,
                    seats: BTreeMap::new(),
                    callbacks: std::collections::BTreeSet::new(),
                    sequence: 0,
                };
                state.rooms.insert(room, conference);
                (room, true)
            }
        };
        state.seats.insert(stream, Seat { room, id });
        if let Some(c) = state.rooms.get_mut(&room) {
            c.callbacks.extend(callback.clone());
            c.seats.insert(
                stream,
                Participant {
                    callback,
                    call_id: call_id.to_string(),
                    muted: options.muted,
                    held: false,
                    coaching: None,
                    speaking: false,
                    start_on_enter: options.start_on_enter,
                    end_on_exit: options.end_on_exit,
                    joined_unix_ms: now_ms,
                },
            );
        }
        Seating {
            room,
            config: mixer_config(options),
            join: Join {
                start_on_enter: options.start_on_enter,
                end_on_exit: options.end_on_exit,
                muted: options.muted,
                coach: None,
                beep: options.beep,
                link: false,
            },
            record: options.record,
            opened,
        }
    }

    /// Folds a room's event into the directory; says what the edge must do.
    pub fn on_event(&self, room: RoomId, event: RoomEvent, now_ms: u64) -> Effects {
        let mut effects = Effects::default();
        let mut state = self.state();
        let state = &mut *state;
        match event {
            RoomEvent::Out { stream, out } => {
                if let Some(seat) = state.seats.remove(&stream).filter(|s| s.room == room) {
                    effects.notices.push((stream, seat.id, out));
                }
                if let Some(c) = state.rooms.get_mut(&room) {
                    effects.callbacks = status_events(c, "participant-leave", Some(stream), now_ms);
                    c.seats.remove(&stream);
                }
            }
            RoomEvent::Mixer(event) => {
                let Some(c) = state.rooms.get_mut(&room) else {
                    return effects;
                };
                let call = |c: &Conference, s: StreamId| c.seats.get(&s).map(|p| p.call_id.clone());
                let report = reported(&event);
                match event {
                    MixerEvent::Started => {
                        c.status = Status::InProgress;
                        c.started_unix_ms = Some(now_ms);
                        effects.started = Some((c.tenant.clone(), c.name.clone()));
                    }
                    MixerEvent::Ended(reason) => {
                        c.ended_by = Some(match reason {
                            EndReason::LastLeft => "last-left",
                            EndReason::EndOnExit(_) => "end-on-exit",
                            EndReason::Ended => "ended",
                        });
                    }
                    MixerEvent::Muted(s, on) => set(c, s, |p| p.muted = on),
                    MixerEvent::Held(s, on) => set(c, s, |p| p.held = on),
                    MixerEvent::Coaching(s, target) => {
                        let target = target.and_then(|t| call(c, t));
                        set(c, s, |p| p.coaching = target);
                    }
                    MixerEvent::SpeakingStarted(s) => set(c, s, |p| p.speaking = true),
                    MixerEvent::SpeakingStopped(s) => set(c, s, |p| p.speaking = false),
                    MixerEvent::Joined(_) | MixerEvent::Left(_) => {}
                }
                // After the change: the event carries the new state.
                if let Some((what, about)) = report {
                    effects.callbacks = status_events(c, what, about, now_ms);
                }
            }
            RoomEvent::Refused { stream, error } => {
                tracing::warn!(room, ?stream, %error, "conference request refused");
            }
            RoomEvent::Recorded(samples) => {
                if let Some(c) = state.rooms.get(&room) {
                    effects.recording = Some((c.tenant.clone(), c.sid.clone(), samples));
                }
            }
            RoomEvent::Closed => {
                if let Some(mut c) = state.rooms.remove(&room) {
                    effects.closed = Some((c.tenant.clone(), c.name.clone()));
                    c.status = Status::Completed;
                    c.ended_unix_ms = Some(now_ms);
                    let ended_by = *c.ended_by.get_or_insert("last-left");
                    effects.callbacks = status_events(&mut c, "conference-end", None, now_ms);
                    let key = (c.tenant.clone(), c.name.clone());
                    if state.open.get(&key) == Some(&room) {
                        state.open.remove(&key);
                    }
                    self.history.ended(EndedConference {
                        tenant: c.tenant,
                        sid: c.sid,
                        name: c.name,
                        created_unix_ms: c.created_unix_ms,
                        started_unix_ms: c.started_unix_ms,
                        ended_unix_ms: now_ms,
                        ended_by: ended_by.to_string(),
                        recording_id: c.recording_id,
                    });
                }
            }
        }
        effects
    }

    /// The room of the tenant's open conference `name`.
    pub fn room(&self, tenant: &str, name: &str) -> Option<RoomId> {
        (self.state().open)
            .get(&(tenant.to_string(), name.to_string()))
            .copied()
    }

    /// Whether the tenant's open conference `name` has started.
    pub fn is_started(&self, tenant: &str, name: &str) -> bool {
        let state = self.state();
        let room = state.open.get(&(tenant.to_string(), name.to_string()));
        room.and_then(|r| state.rooms.get(r))
            .is_some_and(|c| c.status == Status::InProgress)
    }

    /// Notes that the open conference is (or no longer is) linked to
    /// `region`'s mixer.
    pub fn set_link(&self, tenant: &str, name: &str, region: &str, on: bool) {
        let mut state = self.state();
        let Some(room) = state
            .open
            .get(&(tenant.to_string(), name.to_string()))
            .copied()
        else {
            return;
        };
        if let Some(c) = state.rooms.get_mut(&room) {
            c.linked_regions.retain(|r| r != region);
            if on {
                c.linked_regions.push(region.to_string());
                c.linked_regions.sort();
            }
        }
    }

    /// The recording of a conference was stored (it may have closed
    /// meanwhile: then its history row gets the id).
    pub fn recorded(&self, sid: &str, recording_id: String) {
        let mut state = self.state();
        match state.rooms.values_mut().find(|c| c.sid == sid) {
            Some(c) => c.recording_id = Some(recording_id),
            None => self.history.recorded(sid, &recording_id),
        }
    }

    /// Up to `limit` of the tenant's conferences, newest first (created,
    /// then sid), optionally of one status, after the conference `after`
    /// in that order. Blocks on the history when ended ones are asked for.
    pub fn list(
        &self,
        tenant: &str,
        status: Option<Status>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Conference>, ConferenceError> {
        let open: Vec<Conference> = (self.state().rooms.values())
            .filter(|c| c.tenant == tenant && status.is_none_or(|s| c.status == s))
            .map(view)
            .collect();
        let cursor = match after {
            None => None,
            Some(after) => Some(match open.iter().find(|c| c.sid == after) {
                Some(c) => (c.created_unix_ms, c.sid.clone()),
                None => (self.history.get(tenant, after))
                    .map_err(|e| ConferenceError::History(e.to_string()))?
                    .map(|c| (c.created_unix_ms, c.sid))
                    .ok_or_else(|| ConferenceError::UnknownCursor(after.to_string()))?,
            }),
        };
        let before = |c: &Conference| {
            (cursor.as_ref()).is_none_or(|(at, sid)| (c.created_unix_ms, &c.sid) < (*at, sid))
        };
        let mut list: Vec<Conference> = open.into_iter().filter(before).collect();
        if status.is_none_or(|s| s == Status::Completed) {
            let from = cursor.as_ref().map(|(at, sid)| (*at, sid.as_str()));
            let ended = (self.history.page(tenant, from, limit))
                .map_err(|e| ConferenceError::History(e.to_string()))?;
            list.extend(ended.into_iter().map(Conference::from));
        }
        list.sort_by(|a, b| (b.created_unix_ms, &b.sid).cmp(&(a.created_unix_ms, &a.sid)));
        list.truncate(limit as usize);
        Ok(list)
    }

    /// One of the tenant's conferences, by sid or, while open, by name.
    /// Blocks on the history when it is not open.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Conference, ConferenceError> {
        if let Ok(c) = find(&self.state(), tenant, id) {
            return Ok(view(c));
        }
        (self.history.get(tenant, id))
            .map_err(|e| ConferenceError::History(e.to_string()))?
            .map(Conference::from)
            .ok_or_else(|| ConferenceError::NotFound(id.to_string()))
    }

    /// The open conference's room, or why there is none: it has ended
    /// (history) or is not the tenant's.
    fn open_room<T>(
        &self,
        tenant: &str,
        id: &str,
        then: impl FnOnce(&Conference) -> Result<T, ConferenceError>,
    ) -> Result<(RoomId, T), ConferenceError> {
        if let Ok(c) = find(&self.state(), tenant, id) {
            return then(c).map(|t| (c.room, t));
        }
        Err(match self.get(tenant, id) {
            Ok(_) => ConferenceError::Ended,
            Err(e) => e,
        })
    }

    /// Mutes, holds, coaches or kicks a participant (by call id).
    pub fn change(
        &self,
        tenant: &str,
        id: &str,
        call_id: &str,
        change: Change,
    ) -> Result<Conference, ConferenceError> {
        let (room, command) = self.open_room(tenant, id, |c| {
            let stream = stream_of(c, call_id)?;
            Ok(match change {
                Change::Mute(on) => RoomCommand::Mute(stream, on),
                Change::Hold(on) => RoomCommand::Hold(stream, on),
                Change::Coach(None) => RoomCommand::Coach(stream, None),
                Change::Coach(Some(target)) => {
                    RoomCommand::Coach(stream, Some(stream_of(c, &target)?))
                }
                Change::Kick => RoomCommand::Kick(stream),
            })
        })?;
        self.engine()?.room(room, command);
        self.get(tenant, id)
    }

    /// Ends a conference: everyone in it is let out.
    pub fn end(&self, tenant: &str, id: &str) -> Result<Conference, ConferenceError> {
        let (room, ()) = self.open_room(tenant, id, |_| Ok(()))?;
        self.engine()?.room(room, RoomCommand::End);
        self.get(tenant, id)
    }

    fn engine(&self) -> Result<&Engine, ConferenceError> {
        self.engine.get().ok_or(ConferenceError::NoEngine)
    }
}

fn find<'a>(state: &'a State, tenant: &str, id: &str) -> Result<&'a Conference, ConferenceError> {
    let by_name = state.open.get(&(tenant.to_string(), id.to_string()));
    by_name
        .and_then(|room| state.rooms.get(room))
        .or_else(|| state.rooms.values().find(|c| c.sid == id))
        .filter(|c| c.tenant == tenant)
        .ok_or_else(|| ConferenceError::NotFound(id.to_string()))
}

fn stream_of(c: &Conference, call_id: &str) -> Result<StreamId, ConferenceError> {
    c.seats
        .iter()
        .find(|(_, p)| p.call_id == call_id)
        .map(|(&s, _)| s)
        .ok_or_else(|| ConferenceError::NotParticipant(call_id.to_string()))
}

fn set(c: &mut Conference, stream: StreamId, f: impl FnOnce(&mut Participant)) {
    if let Some(p) = c.seats.get_mut(&stream) {
        f(p);
    }
}

impl From<EndedConference> for Conference {
    fn from(c: EndedConference) -> Self {
        Self {
            sid: c.sid,
            name: c.name,
            status: Status::Completed,
            created_unix_ms: c.created_unix_ms,
            started_unix_ms: c.started_unix_ms,
            ended_unix_ms: Some(c.ended_unix_ms),
            ended_by: Some(match c.ended_by.as_str() {
                "end-on-exit" => "end-on-exit",
                "ended" => "ended",
                _ => "last-left",
            }),
            recording_id: c.recording_id,
            linked_regions: Vec::new(),
            participants: Vec::new(),
            tenant: c.tenant,
            room: 0,
            seats: BTreeMap::new(),
            callbacks: std::collections::BTreeSet::new(),
            sequence: 0,
        }
    }
}

fn view(c: &Conference) -> Conference {
    let mut c = c.clone();
    c.participants = c.seats.values().cloned().collect();
    c
}

/// What a mixer event reports to status callbacks: Twilio's conference
/// `StatusCallbackEvent` and the participant it is about. Joins and leaves
/// come from the room (`participant-leave` for everyone let out when the
/// conference ends), the end when the room closes.
fn reported(event: &MixerEvent) -> Option<(&'static str, Option<StreamId>)> {
    let onoff = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    Some(match *event {
        MixerEvent::Started => ("conference-start", None),
        MixerEvent::Joined(s) => ("participant-join", Some(s)),
        MixerEvent::Muted(s, on) => (onoff(on, "participant-mute", "participant-unmute"), Some(s)),
        MixerEvent::Held(s, on) => (onoff(on, "participant-hold", "participant-unhold"), Some(s)),
        MixerEvent::Coaching(s, _) => ("participant-modified", Some(s)),
        MixerEvent::SpeakingStarted(s) => ("participant-speech-start", Some(s)),
        MixerEvent::SpeakingStopped(s) => ("participant-speech-stop", Some(s)),
        MixerEvent::Left(_) | MixerEvent::Ended(_) => return None,
    })
}

/// The status callback deliveries of `what`: a participant's events go to
/// its own call's URL, the conference's start and end to every
/// participant's so far.
fn status_events(
    c: &mut Conference,
    what: &'static str,
    about: Option<StreamId>,
    now_ms: u64,
) -> Vec<Delivery> {
    let participant = about.and_then(|s| c.seats.get(&s)).cloned();
    let urls: Vec<String> = match (&participant, about) {
        (Some(p), _) => p.callback.iter().cloned().collect(),
        (None, Some(_)) => Vec::new(), // a cascade link: no one's call
        (None, None) => c.callbacks.iter().cloned().collect(),
    };
    let mut deliveries = Vec::new();
    for url in urls {
        let mut fields = vec![
            ("ConferenceSid", c.sid.clone()),
            ("FriendlyName", c.name.clone()),
            ("AccountSid", c.tenant.clone()),
            ("StatusCallbackEvent", what.to_string()),
            ("Timestamp", now_ms.to_string()),
            ("SequenceNumber", c.sequence.to_string()),
        ];
        if let Some(p) = &participant {
            fields.push(("CallSid", p.call_id.clone()));
            fields.push(("Muted", p.muted.to_string()));
            fields.push(("Hold", p.held.to_string()));
            fields.push(("EndConferenceOnExit", p.end_on_exit.to_string()));
            fields.push(("StartConferenceOnEnter", p.start_on_enter.to_string()));
        }
        if what == "conference-end" {
            let why = match c.ended_by {
                Some("end-on-exit") => "participant-with-end-conference-on-exit-left",
                Some("ended") => "conference-ended-via-api",
                _ => "last-participant-left",
            };
            fields.push(("ReasonConferenceEnded", why.to_string()));
        }
        c.sequence += 1;
        deliveries.push(Delivery {
            key: c.sid.clone(),
            tenant: c.tenant.clone(),
            url,
            body: encode_form(&fields),
            what: what.to_string(),
        });
    }
    deliveries
}

/// A conference sid: `CF` and 32 hex digits.
fn sid() -> String {
    format!("CF{:032x}", rand::random::<u128>())
}

/// The runtime's wait and hold music: a soft two-note chime every four
/// seconds (a tenant's `wait-prompt` replaces it while waiting).
fn chime() -> Samples {
    let mut music = tone::sine(660.0, 250, 0.08);
    music.extend(tone::sine(880.0, 350, 0.08));
    music.resize(music.len() + 3_400 * crate::media::RATE as usize / 1000, 0);
    music.into()
}

fn mixer_config(options: &ConferenceOptions) -> MixerConfig {
    let beep = |hz| -> Samples { tone::sine(hz, BEEP_MS, 0.3).into() };
    let music = chime();
    let mut config = MixerConfig {
        entry_beep: Some(beep(ENTRY_HZ)),
        exit_beep: Some(beep(EXIT_HZ)),
        wait_music: Some(music.clone()),
        hold_music: Some(music),
        ..MixerConfig::default()
    };
    config.max_participants =
        (options.max_participants).unwrap_or(crate::router::MAX_PARTICIPANTS) as usize;
    config
}
