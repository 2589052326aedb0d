//! Conference rooms on a worker: a [`Mixer`] fed by the streams that
//! joined it.
//!
//! All streams of a room live on the room's worker (the engine moves a
//! joining stream there), so mixing needs no lock: each stream's tick
//! leaves the frame it received in `heard`, and once per 20 ms, in the
//! room's own slot of the wheel, the mixer takes those frames and hands
//! every member what it hears as relay audio for its next tick. A member
//! in a slot before the room's hears the mix one tick later than one
//! after it: at most 20 ms, the price of spreading sends over the period.

use std::sync::Arc;

use super::{Out, SLOTS, StreamId, Worker};
use crate::media::mixer::{Join, Mixer, MixerConfig, MixerEvent};

/// The media edge's handle on a conference room.
pub type RoomId = u64;

/// Where rooms report: called on worker threads, so it must be cheap.
pub type RoomSink = Arc<dyn Fn(RoomId, RoomEvent) + Send + Sync>;

/// What the REST API (through the media edge) asks of a room.
#[derive(Debug, Clone)]
pub enum RoomCommand {
    Mute(StreamId, bool),
    Hold(StreamId, bool),
    /// Whisper to one participant only (`None`: back to everyone).
    Coach(StreamId, Option<StreamId>),
    Kick(StreamId),
    /// Start it (another region's mixer of the conference started).
    Start,
    End,
    /// Music for participants waiting for the conference to start.
    WaitMusic(crate::media::Samples),
}

/// What a room reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// From the mixer; participants are stream ids.
    Mixer(MixerEvent),
    /// A stream is out of the room, and why (after the mixer's `Left`).
    Out { stream: StreamId, out: Out },
    /// A command was refused (full, not in the room, ...).
    Refused {
        stream: Option<StreamId>,
        error: String,
    },
    /// What the room recorded (it recorded from the first join that asked).
    Recorded(Vec<i16>),
    /// The room is gone: every stream is out, and its recording reported.
    Closed,
}

pub(super) struct Room {
    mixer: Mixer,
    slot: usize,
    members: Vec<StreamId>,
    recording: Option<Vec<i16>>,
}

impl Worker {
    pub(super) fn join(
        &mut self,
        i: usize,
        id: RoomId,
        config: MixerConfig,
        join: Join,
        record: bool,
    ) {
        let Some(stream) = self.streams[i].as_ref().map(|s| s.id) else {
            return;
        };
        self.leave(i, Out::Left);
        let room = self.rooms.entry(id).or_insert_with(|| {
            let slot = (0..SLOTS)
                .min_by_key(|&s| self.room_wheel[s].len())
                .unwrap_or(0);
            self.room_wheel[slot].push(id);
            Room {
                mixer: Mixer::new(config),
                slot,
                members: Vec::new(),
                recording: None,
            }
        });
        match room.mixer.join(stream, join) {
            Ok(()) => {
                room.members.push(stream);
                if record && room.recording.is_none() {
                    room.recording = Some(Vec::new());
                }
                if let Some(s) = self.streams[i].as_mut() {
                    s.room = Some(id);
                    s.heard = None;
                    s.session.listen(true);
                }
            }
            Err(e) => {
                let out = match e {
                    crate::media::mixer::MixError::Full { .. } => Out::Full,
                    _ => Out::Refused,
                };
                let refused = RoomEvent::Refused {
                    stream: Some(stream),
                    error: e.to_string(),
                };
                (self.room_sink)(id, refused);
                (self.room_sink)(id, RoomEvent::Out { stream, out });
            }
        }
        self.settle(id);
    }

    /// Takes stream `i` out of its room, if it is in one.
    pub(super) fn leave(&mut self, i: usize, out: Out) {
        let Some(s) = self.streams[i].as_mut() else {
            return;
        };
        let Some(id) = s.room.take() else {
            return;
        };
        s.session.listen(false);
        s.heard = None;
        let stream = s.id;
        if let Some(room) = self.rooms.get_mut(&id) {
            room.members.retain(|&m| m != stream);
            let _ = room.mixer.leave(stream);
        }
        self.settle_after(id, Some((stream, out)));
    }

    pub(super) fn room_command(&mut self, id: RoomId, command: RoomCommand) {
        let Some(room) = self.rooms.get_mut(&id) else {
            let error = "the conference is not in progress".to_string();
            (self.room_sink)(
                id,
                RoomEvent::Refused {
                    stream: None,
                    error,
                },
            );
            return;
        };
        let m = &mut room.mixer;
        let (stream, result) = match command {
            RoomCommand::Mute(s, on) => (Some(s), m.set_muted(s, on)),
            RoomCommand::Hold(s, on) => (Some(s), m.set_held(s, on)),
            RoomCommand::Coach(s, target) => (Some(s), m.set_coach(s, target)),
            RoomCommand::WaitMusic(music) => {
                m.set_wait_music(music);
                (None, Ok(()))
            }
            RoomCommand::End => {
                m.end();
                (None, Ok(()))
            }
            RoomCommand::Start => {
                m.start();
                (None, Ok(()))
            }
            RoomCommand::Kick(s) => match self.index.get(&s) {
                Some(&i) if room.members.contains(&s) => {
                    self.leave(i, Out::Kicked);
                    return;
                }
                _ => (Some(s), Err(crate::media::mixer::MixError::NotIn(s))),
            },
        };
        if let Err(e) = result {
            let error = e.to_string();
            (self.room_sink)(id, RoomEvent::Refused { stream, error });
        }
        self.settle(id);
    }

    /// One mix of room `id` from what its members heard since the last.
    pub(super) fn mix(&mut self, id: RoomId) {
        let Some(room) = self.rooms.get_mut(&id) else {
            return;
        };
        let (streams, index) = (&self.streams, &self.index);
        room.mixer.tick(|member| {
            let s = streams[*index.get(&member)?].as_ref()?;
            s.heard.as_ref().map(|f| &f[..])
        });
        for &member in &room.members {
            let Some(s) = index.get(&member).and_then(|&i| self.streams[i].as_mut()) else {
                continue;
            };
            s.heard = None;
            if let Some(out) = room.mixer.output(member) {
                s.session.relay(out);
            }
        }
        if let Some(recording) = room.recording.as_mut() {
            recording.extend_from_slice(room.mixer.recording());
        }
        self.settle(id);
    }

    /// Reports the room's mixer events; an ended room lets everyone out
    /// and closes.
    fn settle(&mut self, id: RoomId) {
        self.settle_after(id, None);
    }

    /// [`settle`](Self::settle), reporting `left` out of the room after
    /// its mixer events and before the room closes.
    fn settle_after(&mut self, id: RoomId, left: Option<(StreamId, Out)>) {
        let report = |event| (self.room_sink)(id, event);
        let Some(room) = self.rooms.get_mut(&id) else {
            if let Some((stream, out)) = left {
                report(RoomEvent::Out { stream, out });
            }
            return;
        };
        while let Some(event) = room.mixer.poll_event() {
            report(RoomEvent::Mixer(event));
        }
        if let Some((stream, out)) = left {
            report(RoomEvent::Out { stream, out });
        }
        if room.mixer.ended().is_none() && !room.members.is_empty() {
            return;
        }
        let Some(room) = self.rooms.remove(&id) else {
            return;
        };
        let wheel = &mut self.room_wheel[room.slot];
        wheel.retain(|&r| r != id);
        for stream in room.members {
            if let Some(s) = self
                .index
                .get(&stream)
                .and_then(|&i| self.streams[i].as_mut())
            {
                s.room = None;
                s.heard = None;
                s.session.listen(false);
            }
            let out = Out::Ended;
            (self.room_sink)(id, RoomEvent::Out { stream, out });
        }
        if let Some(samples) = room.recording {
            (self.room_sink)(id, RoomEvent::Recorded(samples));
        }
        (self.room_sink)(id, RoomEvent::Closed);
    }
}
