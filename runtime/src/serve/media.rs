//! The media edge: carries out the endpoint's media [`Action`]s with the
//! engine (RTP), the cache (prompts) and the recording store, and turns
//! what the engine reports into [`Notice`]s for the core task.
//!
//! Prompts are prepared off the core task (synthesis and fetches take
//! milliseconds to seconds); a play that was stopped or replaced while its
//! prompts were being prepared is dropped rather than started late.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::cascade::Cascade;
use crate::conferences::Conferences;
use crate::contract::{MediaSource, Prompt};
use crate::media::cache::{MediaCache, MediaError};
use crate::media::engine::{Command, Engine, Event, RoomCommand, RoomEvent, RoomId, RoomSink};
use crate::media::{Action, Clip, Notice, Saved, StreamId};
use crate::sip::endpoint::CallRef;
use crate::store::recordings::RecordingStore;
use switchyard_conference::placement::ConferenceKey;

use super::Input;

/// Where a recording in progress will be filed.
struct Filing {
    tenant: String,
    call_id: String,
    source: &'static str,
}

#[derive(Clone)]
pub struct MediaEdge {
    engine: Engine,
    cache: MediaCache,
    /// Stream → (tenant, call id), from its Open.
    owners: Arc<DashMap<StreamId, (String, String)>>,
    /// Recordings in progress, by stream and id.
    filings: Arc<DashMap<(StreamId, u64), Filing>>,
    /// The play each stream should be playing (0: none); see the module doc.
    plays: Arc<DashMap<StreamId, u64>>,
    conferences: Conferences,
    late: Arc<Late>,
    inputs: mpsc::UnboundedSender<Input>,
}

impl MediaEdge {
    /// `start_engine` gets the sink the engine reports through.
    pub fn new(
        cache: MediaCache,
        recordings: RecordingStore,
        conferences: Conferences,
        inputs: mpsc::UnboundedSender<Input>,
        start_engine: impl FnOnce(
            Arc<dyn Fn(StreamId, Event) + Send + Sync>,
            RoomSink,
        ) -> std::io::Result<Engine>,
    ) -> std::io::Result<Self> {
        let filings: Arc<DashMap<(StreamId, u64), Filing>> = Arc::default();
        let runtime = tokio::runtime::Handle::current();
        let sink = sink(
            inputs.clone(),
            recordings.clone(),
            Arc::clone(&filings),
            runtime.clone(),
        );
        // The room sink needs the engine (to forget closed rooms) and the
        // cascade, which do not exist before the engine starts: it finds
        // them here.
        let late: Arc<Late> = Arc::default();
        let rooms = room_sink(
            conferences.clone(),
            Arc::clone(&late),
            inputs.clone(),
            recordings,
            runtime,
        );
        let engine = start_engine(sink, rooms)?;
        let _ = late.engine.set(engine.clone());
        conferences.attach(engine.clone());
        Ok(Self {
            engine,
            cache,
            owners: Arc::default(),
            filings,
            plays: Arc::default(),
            conferences,
            late,
            inputs,
        })
    }

    /// Links this runtime's conferences to other regions' (see
    /// [`crate::cascade`]).
    pub fn set_cascade(&self, cascade: Arc<Cascade>) {
        let _ = self.late.cascade.set(cascade);
    }

    /// Where conferences' status callbacks go.
    pub fn set_callbacks(&self, callbacks: crate::callbacks::Callbacks) {
        let _ = self.late.callbacks.set(callbacks);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn handle(&self, call: CallRef, stream: StreamId, action: Action) {
        let command = match action {
            Action::Open {
                port,
                tenant,
                call_id,
            } => {
                if let Err(e) = self.engine.open(stream, call, port) {
                    let notice = Notice::Failed(format!("cannot bind RTP port {port}: {e}"));
                    let _ = self.inputs.send(Input::Media(stream, notice));
                } else {
                    self.owners.insert(stream, (tenant, call_id));
                }
                return;
            }
            Action::Start(params) => Command::Start(params),
            Action::Play {
                id,
                tenant,
                prompts,
            } => return self.play(stream, id, tenant, prompts),
            Action::StopPlay => {
                self.plays.insert(stream, 0);
                Command::StopPlay
            }
            Action::SendDigits { id, digits } => Command::SendDigits { id, digits },
            Action::Record { id, spec } => {
                self.file(stream, id, "record");
                Command::Record { id, spec }
            }
            Action::StopRecord(end) => Command::StopRecord(end),
            Action::Bridge { other, record } => {
                if let Some(id) = record {
                    self.file(stream, id, "dial");
                }
                Command::Bridge { other, record }
            }
            Action::Unbridge => Command::Unbridge,
            Action::Join {
                id,
                tenant,
                call_id,
                options,
                callback,
            } => {
                let now = crate::wasm::entropy::unix_ms_now();
                let seat = crate::conferences::SeatRequest {
                    stream,
                    id,
                    tenant: &tenant,
                    call_id: &call_id,
                    callback,
                };
                let seating = self.conferences.seat(seat, &options, now);
                if seating.opened
                    && let Some(cascade) = self.late.cascade.get()
                {
                    let key = ConferenceKey::new(tenant.clone(), options.name.clone());
                    tokio::spawn(Arc::clone(cascade).opened(key));
                }
                if seating.opened
                    && let Some(source) = options.wait_prompt
                {
                    self.wait_music(seating.room, tenant, source);
                }
                Command::Join {
                    room: seating.room,
                    config: Box::new(seating.config),
                    join: seating.join,
                    record: seating.record,
                }
            }
            Action::Leave => Command::Leave,
            Action::Close => {
                self.owners.remove(&stream);
                self.plays.remove(&stream);
                Command::Close
            }
        };
        self.engine.command(stream, command);
    }

    /// Prepares a room's wait music and hands it to the room; a prompt
    /// that cannot be prepared leaves the room waiting in silence.
    fn wait_music(&self, room: RoomId, tenant: String, source: MediaSource) {
        let edge = self.clone();
        tokio::spawn(async move {
            let prompt = Prompt::Play(crate::contract::Play {
                source,
                loop_count: 1,
            });
            match clips(&edge.cache, &tenant, &[prompt]).await {
                Ok((clips, _)) => {
                    let music: Vec<i16> = clips
                        .iter()
                        .flat_map(|c| match c {
                            Clip::Audio(samples) => samples.to_vec(),
                            Clip::Silence { ms } => vec![0; (*ms * 8) as usize],
                        })
                        .collect();
                    edge.engine.room(room, RoomCommand::WaitMusic(music.into()));
                }
                Err(e) => {
                    tracing::warn!(%tenant, room, error = %e, "the conference's wait prompt cannot be played; waiting in silence")
                }
            }
        });
    }

    fn file(&self, stream: StreamId, id: u64, source: &'static str) {
        if let Some(owner) = self.owners.get(&stream) {
            let (tenant, call_id) = owner.clone();
            let filing = Filing {
                tenant,
                call_id,
                source,
            };
            self.filings.insert((stream, id), filing);
        }
    }

    /// Prepares the prompts, then starts them unless the play was stopped
    /// or replaced meanwhile.
    fn play(&self, stream: StreamId, id: u64, tenant: String, prompts: Vec<Prompt>) {
        self.plays.insert(stream, id);
        let edge = self.clone();
        tokio::spawn(async move {
            let prepared = clips(&edge.cache, &tenant, &prompts).await;
            // Checked and sent under the entry's lock, so a StopPlay
            // handled meanwhile is ordered before or after, never between.
            let Some(current) = edge.plays.get_mut(&stream) else {
                return;
            };
            if *current != id {
                return;
            }
            match prepared {
                Ok((clips, forever)) => {
                    let command = Command::Play { id, clips, forever };
                    edge.engine.command(stream, command);
                }
                Err(e) => {
                    let notice = Notice::PlayFailed {
                        id,
                        error: e.to_string(),
                    };
                    let _ = edge.inputs.send(Input::Media(stream, notice));
                }
            }
        });
    }
}

/// The audio of `prompts`, each repeated its loop count; a prompt that
/// loops forever (count 0, as in TwiML) ends the list and makes all of
/// it repeat until stopped.
async fn clips(
    cache: &MediaCache,
    tenant: &str,
    prompts: &[Prompt],
) -> Result<(Vec<Clip>, bool), MediaError> {
    let mut clips = Vec::new();
    for prompt in prompts {
        let (clip, loops) = match prompt {
            Prompt::Say(say) => {
                let media = cache
                    .say(&say.text, say.voice.as_deref(), say.language.as_deref())
                    .await?;
                (Clip::Audio(media.samples), say.loop_count)
            }
            Prompt::Play(play) => {
                let media = match &play.source {
                    MediaSource::Url(url) => cache.fetch(url).await?,
                    MediaSource::MediaId(id) => cache.get(tenant, id)?,
                };
                (Clip::Audio(media.samples), play.loop_count)
            }
            Prompt::Pause(pause) => (
                Clip::Silence {
                    ms: pause.length_ms,
                },
                1,
            ),
        };
        if loops == 0 {
            clips.push(clip);
            return Ok((clips, true));
        }
        clips.extend(std::iter::repeat_n(clip, loops as usize));
    }
    Ok((clips, false))
}

/// The engine's sink: notices go to the core task; a recording is stored
/// first, off the engine's threads.
fn sink(
    inputs: mpsc::UnboundedSender<Input>,
    recordings: RecordingStore,
    filings: Arc<DashMap<(StreamId, u64), Filing>>,
    runtime: tokio::runtime::Handle,
) -> Arc<dyn Fn(StreamId, Event) + Send + Sync> {
    Arc::new(move |stream, event| {
        let notice = match event {
            Event::Digit(digit) => Notice::Digit(digit),
            Event::PlayDone(id) => Notice::PlayDone(id),
            Event::DigitsSent(id) => Notice::DigitsSent(id),
            Event::Timeout => Notice::Timeout,
            Event::Recorded {
                id,
                samples,
                ended_by,
            } => {
                let filing = filings.remove(&(stream, id)).map(|(_, f)| f);
                let (recordings, inputs) = (recordings.clone(), inputs.clone());
                runtime.spawn_blocking(move || {
                    let saved = match filing {
                        Some(f) => recordings
                            .save(&f.tenant, &f.call_id, &samples, f.source)
                            .map(|r| Saved {
                                recording_id: r.id,
                                duration_ms: r.duration_ms,
                            })
                            .map_err(|e| format!("{e:#}")),
                        None => Err("recording of an unknown stream".into()),
                    };
                    let notice = Notice::Recorded {
                        id,
                        ended_by,
                        saved,
                    };
                    let _ = inputs.send(Input::Media(stream, notice));
                });
                return;
            }
        };
        let _ = inputs.send(Input::Media(stream, notice));
    })
}

/// The engine's room sink: events update the conference directory; a
/// stream out of its room is a notice for its call; a recording is stored
/// off the engine's threads.
fn room_sink(
    conferences: Conferences,
    late: Arc<Late>,
    inputs: mpsc::UnboundedSender<Input>,
    recordings: RecordingStore,
    runtime: tokio::runtime::Handle,
) -> RoomSink {
    Arc::new(move |room, event: RoomEvent| {
        let now = crate::wasm::entropy::unix_ms_now();
        if let (RoomEvent::Out { stream, .. }, Some(cascade)) = (&event, late.cascade.get()) {
            cascade.out(*stream);
        }
        let effects = conferences.on_event(room, event, now);
        for (stream, id, out) in effects.notices {
            let _ = inputs.send(Input::Media(stream, Notice::Conference { id, out }));
        }
        if let Some(callbacks) = late.callbacks.get() {
            for delivery in effects.callbacks {
                callbacks.deliver(delivery);
            }
        }
        if let Some((tenant, sid, samples)) = effects.recording {
            let (recordings, conferences) = (recordings.clone(), conferences.clone());
            runtime.spawn_blocking(move || {
                match recordings.save(&tenant, &sid, &samples, "conference") {
                    Ok(r) => conferences.recorded(&sid, r.id),
                    Err(e) => {
                        tracing::error!(%tenant, conference = %sid, error = %format!("{e:#}"), "the conference recording could not be stored")
                    }
                }
            });
        }
        if let (Some((tenant, name)), Some(cascade)) = (effects.started, late.cascade.get()) {
            let key = ConferenceKey::new(tenant, name);
            runtime.spawn(Arc::clone(cascade).started(key));
        }
        let Some((tenant, name)) = effects.closed else {
            return;
        };
        if let Some(engine) = late.engine.get() {
            engine.forget_room(room);
        }
        if let Some(cascade) = late.cascade.get() {
            let key = ConferenceKey::new(tenant, name);
            runtime.spawn(Arc::clone(cascade).closed(key));
        }
    })
}

/// What the room sink needs but the engine's start cannot give it yet.
#[derive(Default)]
struct Late {
    engine: std::sync::OnceLock<Engine>,
    cascade: std::sync::OnceLock<Arc<Cascade>>,
    callbacks: std::sync::OnceLock<crate::callbacks::Callbacks>,
}
