//! The media of a call's legs: opening streams on ports from the pool,
//! asking the media edge to play, record and send digits, and what its
//! notices mean for the call.
//!
//! Ids of plays, recordings and digit runs are the call's verb generation,
//! so a notice for a verb that was superseded is recognised as stale the
//! same way a timer is.

use std::net::SocketAddr;
use std::time::Instant;

use crate::sdp::{self, Negotiated};
use switchyard_contract::{
    ConferenceEnd, ConferenceOptions, ConferenceResult, DialResult, DialStatus, DialTarget, Event,
    HangupCause, Prompt, RecordEnd, RecordOptions, RecordResult,
};
use switchyard_media::{Action, Notice, Out, RecordSpec, StreamId, StreamParams};
use switchyard_router::LegEvent;

use super::call::{CallState, CallerState};
use super::{CallRef, Endpoint, EndpointEvent};

/// One leg's RTP stream.
#[derive(Debug, Clone)]
pub struct LegMedia {
    pub stream: StreamId,
    pub port: u16,
    /// Known once offer/answer is complete.
    pub params: Option<StreamParams>,
    /// SDP o= session id and version of what we sent on this leg.
    pub session: u64,
    pub version: u64,
}

/// A `conference` verb in progress.
#[derive(Debug, Clone)]
pub struct ConferenceRun {
    /// The verb's generation, echoed by the media edge's notice.
    pub id: u64,
    pub name: String,
    pub joined: Instant,
    /// Joined by `dial conference:NAME`: the result is a dial's.
    pub dialled: bool,
}

/// What `dial conference:NAME` joins with: TwiML's defaults.
pub fn dialled_conference(name: &str, record: bool) -> ConferenceOptions {
    ConferenceOptions {
        record,
        ..ConferenceOptions::named(name)
    }
}

/// A `record` verb in progress.
#[derive(Debug, Clone)]
pub struct RecordRun {
    pub id: u64,
    pub finish_keys: String,
    /// The finish key that ended it.
    pub digit: Option<char>,
}

pub fn params(negotiated: &Negotiated) -> StreamParams {
    StreamParams {
        codec: negotiated.codec,
        dtmf_pt: negotiated.dtmf_pt,
        remote: negotiated.remote,
        direction: negotiated.direction,
    }
}

impl Endpoint {
    /// Opens a stream for `call` on a free port pair; `None` when the pool
    /// is exhausted.
    pub(super) fn open_stream(&mut self, call: &CallState) -> Option<LegMedia> {
        self.open_stream_for(call.reference, &call.tenant_id, &call.id)
    }

    /// [`open_stream`](Self::open_stream) for a call not built yet.
    pub(super) fn open_stream_for(
        &mut self,
        reference: CallRef,
        tenant: &str,
        call_id: &str,
    ) -> Option<LegMedia> {
        let port = self.ports.allocate()?;
        self.next_stream += 1;
        let stream = self.next_stream;
        self.streams.insert(stream, reference);
        let open = Action::Open {
            port,
            tenant: tenant.to_owned(),
            call_id: call_id.to_owned(),
        };
        self.media(reference, stream, open);
        Some(LegMedia {
            stream,
            port,
            params: None,
            session: self.ids.session(),
            version: 1,
        })
    }

    pub(super) fn media(&mut self, call: CallRef, stream: StreamId, action: Action) {
        self.events.push_back(EndpointEvent::Media {
            call,
            stream,
            action,
        });
    }

    pub(super) fn media_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.config.media_ip, port)
    }

    /// Stops a stream and returns its ports to the pool.
    pub(super) fn close_stream(&mut self, call: CallRef, leg: &LegMedia) {
        self.media(call, leg.stream, Action::Close);
        self.streams.remove(&leg.stream);
        self.ports.release(leg.port);
    }

    /// Our SDP for the caller, with the caller's own stream behind it:
    /// an answer to its offer (the stream starts at once) or, for an
    /// INVITE without SDP, an offer whose answer comes in the ACK.
    pub(super) fn caller_sdp(&mut self, call: &mut CallState) -> Option<String> {
        if call.media.is_none() {
            call.media = self.open_stream(call);
        }
        let leg = call.media.as_mut()?;
        let local = SocketAddr::new(self.config.media_ip, leg.port);
        let Some(offer) = &call.offer else {
            return Some(sdp::offer(
                local,
                leg.session,
                leg.version,
                sdp::Direction::SendRecv,
            ));
        };
        // The offer was checked when the call arrived.
        let (answer, negotiated) = sdp::answer(offer, local, leg.session, leg.version).ok()?;
        let params = params(&negotiated);
        leg.params = Some(params);
        let (reference, stream) = (call.reference, leg.stream);
        self.media(reference, stream, Action::Start(params));
        Some(answer)
    }

    /// A new offer from the caller (re-INVITE): the stream follows it.
    pub(super) fn caller_reoffer(
        &mut self,
        call: &mut CallState,
        offer: &[u8],
    ) -> Option<Result<String, String>> {
        let leg = call.media.as_mut()?;
        leg.version += 1;
        let local = SocketAddr::new(self.config.media_ip, leg.port);
        Some(match sdp::answer(offer, local, leg.session, leg.version) {
            Ok((answer, negotiated)) => {
                let params = params(&negotiated);
                leg.params = Some(params);
                let (reference, stream) = (call.reference, leg.stream);
                self.media(reference, stream, Action::Start(params));
                Ok(answer)
            }
            Err(e) => Err(e.to_string()),
        })
    }

    /// The answer in the caller's ACK to the offer in our 200.
    pub(super) fn caller_late_answer(&mut self, call: &mut CallState, body: &[u8]) {
        let Some(leg) = call.media.as_mut() else {
            return;
        };
        if leg.params.is_some() {
            return;
        }
        match sdp::parse_answer(body) {
            Ok(negotiated) => {
                let params = params(&negotiated);
                leg.params = Some(params);
                let (reference, stream) = (call.reference, leg.stream);
                self.media(reference, stream, Action::Start(params));
            }
            Err(e) => {
                tracing::warn!(call = %call.id, error = %e, "the answer in the ACK is not usable; no audio")
            }
        }
    }

    /// Plays `prompts` on the caller's stream; the current generation
    /// comes back in PlayDone. `false` when the caller has no stream.
    pub(super) fn play(&mut self, call: &mut CallState, prompts: Vec<Prompt>) -> bool {
        let Some(leg) = &call.media else {
            return false;
        };
        let action = Action::Play {
            id: call.generation,
            tenant: call.tenant_id.clone(),
            prompts,
        };
        let stream = leg.stream;
        self.media(call.reference, stream, action);
        true
    }

    pub(super) fn stop_play(&mut self, call: &CallState) {
        if let Some(leg) = &call.media {
            self.media(call.reference, leg.stream, Action::StopPlay);
        }
    }

    /// Sends digits as RFC 4733 events when the caller's stream has
    /// telephone-event; `false` means use SIP INFO instead.
    pub(super) fn send_rtp_digits(&mut self, call: &CallState, digits: &str) -> bool {
        let Some(leg) = &call.media else {
            return false;
        };
        if leg.params.and_then(|p| p.dtmf_pt).is_none() {
            return false;
        }
        let action = Action::SendDigits {
            id: call.generation,
            digits: digits.to_string(),
        };
        self.media(call.reference, leg.stream, action);
        true
    }

    pub(super) fn start_record(&mut self, call: &mut CallState, options: &RecordOptions) -> bool {
        let Some(leg) = &call.media else {
            return false;
        };
        let spec = RecordSpec {
            max_ms: options.max_length_secs.saturating_mul(1000),
            silence_ms: options.silence_timeout_secs.saturating_mul(1000),
            beep: options.play_beep,
            trim_silence: options.trim_silence,
        };
        let stream = leg.stream;
        self.media(
            call.reference,
            stream,
            Action::Record {
                id: call.generation,
                spec,
            },
        );
        call.recording = Some(RecordRun {
            id: call.generation,
            finish_keys: options.finish_on_key.clone(),
            digit: None,
        });
        true
    }

    /// A notice from the media edge about one of the call's streams.
    pub fn handle_media(&mut self, now: Instant, stream: StreamId, notice: Notice) {
        let Some(&call) = self.streams.get(&stream) else {
            return; // the call is gone; late notices are expected
        };
        self.with_call(now, call, |ep, call| {
            ep.on_notice(now, call, stream, notice);
            ep.pump(now, call);
        });
    }

    fn on_notice(&mut self, now: Instant, call: &mut CallState, stream: StreamId, notice: Notice) {
        let caller = call.media.as_ref().is_some_and(|m| m.stream == stream);
        match notice {
            Notice::Digit(digit) if self.relay_digit(call, stream, digit) => {}
            Notice::Digit(digit) if caller => self.on_digit(now, call, digit),
            Notice::Digit(_) => {}
            Notice::PlayDone(id) | Notice::DigitsSent(id) => self.on_media_done(now, call, id),
            Notice::PlayFailed { id, error } => {
                tracing::error!(call = %call.id, error = %error, "a prompt could not be played; skipping it");
                self.on_media_done(now, call, id);
            }
            Notice::Recorded {
                id,
                ended_by,
                saved,
            } => self.on_recorded(call, id, ended_by, saved),
            Notice::Conference { id, out } => self.on_conference_out(now, call, id, out),
            Notice::Timeout => {
                tracing::warn!(call = %call.id, "no media from the peer for the media timeout; hanging up");
                self.media_failure(now, call);
            }
            Notice::Failed(reason) => {
                tracing::error!(call = %call.id, error = %reason, "media stream failed; hanging up");
                self.media_failure(now, call);
            }
        }
    }

    fn media_failure(&mut self, now: Instant, call: &mut CallState) {
        if call.caller == CallerState::Ended {
            return;
        }
        self.end_caller(now, call, 503, "Service Unavailable (media failure)");
        call.pending
            .push_back(LegEvent::Hangup(HangupCause::System));
    }

    fn on_recorded(
        &mut self,
        call: &mut CallState,
        id: u64,
        ended_by: RecordEnd,
        saved: Result<switchyard_media::Saved, String>,
    ) {
        if self.on_dial_recorded(call, id, &saved) {
            return;
        }
        let Some(run) = call.recording.take_if(|r| r.id == id) else {
            return;
        };
        let (recording_id, duration_ms) = match saved {
            Ok(saved) => (saved.recording_id, saved.duration_ms),
            Err(e) => {
                tracing::error!(call = %call.id, error = %e, "the recording could not be stored");
                (String::new(), 0)
            }
        };
        call.generation += 1;
        call.pending
            .push_back(LegEvent::Result(Event::RecordComplete(RecordResult {
                recording_id,
                duration_ms,
                ended_by,
                digit: run.digit,
            })));
    }

    /// Seats the caller in a conference; its result comes when the media
    /// edge says the caller is out of it.
    pub(super) fn join_conference(
        &mut self,
        now: Instant,
        call: &mut CallState,
        options: ConferenceOptions,
        dialled: bool,
    ) {
        let Some(leg) = &call.media else {
            return call
                .pending
                .push_back(LegEvent::Hangup(HangupCause::System));
        };
        call.conference = Some(ConferenceRun {
            id: call.generation,
            name: options.name.clone(),
            joined: now,
            dialled,
        });
        let join = Action::Join {
            id: call.generation,
            tenant: call.tenant_id.clone(),
            call_id: call.id.clone(),
            options,
            callback: call.binding.status_callback.clone(),
        };
        let stream = leg.stream;
        self.media(call.reference, stream, join);
    }

    /// Takes the caller out of its conference (a redirect from outside);
    /// no result follows.
    pub(super) fn leave_conference(&mut self, call: &mut CallState) {
        if call.conference.take().is_some()
            && let Some(leg) = &call.media
        {
            self.media(call.reference, leg.stream, Action::Leave);
        }
    }

    fn on_conference_out(&mut self, now: Instant, call: &mut CallState, id: u64, out: Out) {
        let Some(run) = call.conference.take_if(|r| r.id == id) else {
            return; // a conference the call already left
        };
        let ended_by = match out {
            Out::Kicked => ConferenceEnd::Kicked,
            Out::Hangup => ConferenceEnd::Hangup,
            Out::Ended | Out::Left => ConferenceEnd::Ended,
            Out::Full => {
                tracing::info!(call = %call.id, conference = %run.name, "the conference is full; the caller did not join");
                ConferenceEnd::Full
            }
            Out::Refused => {
                tracing::info!(call = %call.id, conference = %run.name, "the conference is ending; the caller did not join");
                ConferenceEnd::Ended
            }
        };
        call.generation += 1;
        let duration_secs = now.saturating_duration_since(run.joined).as_secs() as u32;
        let result = if run.dialled {
            let joined = !matches!(out, Out::Refused | Out::Full);
            Event::DialComplete(DialResult {
                status: if joined {
                    DialStatus::Completed
                } else {
                    DialStatus::Failed
                },
                answered: joined.then_some(DialTarget::Conference(run.name)),
                duration_secs,
                recording_id: None,
            })
        } else {
            Event::ConferenceComplete(ConferenceResult {
                name: run.name,
                ended_by,
                duration_secs,
            })
        };
        call.pending.push_back(LegEvent::Result(result));
    }

    /// A digit during `record`: a finish key ends it (the result follows
    /// when the recording is stored). `true` when the digit was taken.
    pub(super) fn record_digit(&mut self, call: &mut CallState, digit: char) -> bool {
        let Some(run) = call.recording.as_mut() else {
            return false;
        };
        if run.digit.is_none() && run.finish_keys.contains(digit) {
            run.digit = Some(digit);
            if let Some(leg) = &call.media {
                self.media(
                    call.reference,
                    leg.stream,
                    Action::StopRecord(RecordEnd::FinishKey),
                );
            }
        }
        true
    }

    /// The winning fork answered an anchored dial: its stream starts, the
    /// caller is answered with its own stream if it waited, and the two
    /// are bridged (and recorded when the dial asks).
    pub(super) fn bridge(&mut self, now: Instant, call: &mut CallState, answer: Option<&[u8]>) {
        match answer {
            Some(answer) => self.restart_dial_media(call, answer),
            None => {
                tracing::warn!(call = %call.id, "the callee answered without SDP; no audio from it")
            }
        }
        let Some(other) = call.dial_media.as_ref().map(|leg| leg.stream) else {
            return;
        };
        if !self.answer(now, call) {
            return;
        }
        let record = call.dial.as_ref().and_then(|d| d.record_id);
        if let Some(caller) = &call.media {
            self.media(
                call.reference,
                caller.stream,
                Action::Bridge { other, record },
            );
        }
    }

    /// The fork-side stream follows the SDP answer of the party it faces.
    pub(super) fn restart_dial_media(&mut self, call: &mut CallState, answer: &[u8]) {
        let Some(leg) = call.dial_media.as_mut() else {
            return;
        };
        match sdp::parse_answer(answer) {
            Ok(negotiated) => {
                let params = params(&negotiated);
                leg.params = Some(params);
                let stream = leg.stream;
                self.media(call.reference, stream, Action::Start(params));
            }
            Err(e) => {
                tracing::warn!(call = %call.id, error = %e, "the callee's SDP answer is unusable; no audio from it")
            }
        }
    }

    /// The bridge ends (its recording, if any, is stored and comes back
    /// as Recorded); the fork-side stream is released.
    pub(super) fn unbridge(&mut self, call: &mut CallState) {
        if let Some(caller) = &call.media
            && call.dial_media.is_some()
        {
            self.media(call.reference, caller.stream, Action::Unbridge);
        }
        if let Some(leg) = call.dial_media.take() {
            self.close_stream(call.reference, &leg);
        }
    }

    /// A digit on one side of an anchored, bridged dial goes to the other
    /// side as an RFC 4733 event (or in band), as if the phones were
    /// connected. `true` when it was relayed.
    fn relay_digit(&mut self, call: &CallState, stream: StreamId, digit: char) -> bool {
        let bridged = call
            .dial
            .as_ref()
            .is_some_and(|d| d.anchored && d.winner.is_some());
        let (Some(caller), Some(fork)) = (&call.media, &call.dial_media) else {
            return false;
        };
        if !bridged {
            return false;
        }
        let other = if stream == caller.stream {
            fork.stream
        } else {
            caller.stream
        };
        // Id 0 is never a verb's generation while a dial runs, so the
        // DigitsSent that follows is ignored.
        let action = Action::SendDigits {
            id: 0,
            digits: digit.to_string(),
        };
        self.media(call.reference, other, action);
        true
    }

    /// The recording of a finished dial: its result goes to the router.
    fn on_dial_recorded(
        &mut self,
        call: &mut CallState,
        id: u64,
        saved: &Result<switchyard_media::Saved, String>,
    ) -> bool {
        let Some((_, mut result)) = call.dial_waiting.take_if(|(waiting, _)| *waiting == id) else {
            return false;
        };
        match saved {
            Ok(saved) => result.recording_id = Some(saved.recording_id.clone()),
            Err(e) => {
                tracing::error!(call = %call.id, error = %e, "the dial recording could not be stored")
            }
        }
        call.pending
            .push_back(LegEvent::Result(Event::DialComplete(result)));
        true
    }

    /// The caller's hangup ends a recording in progress (it is still stored).
    pub(super) fn close_call_media(&mut self, call: &mut CallState) {
        if let Some(leg) = call.media.take() {
            if call.recording.is_some() {
                self.media(
                    call.reference,
                    leg.stream,
                    Action::StopRecord(RecordEnd::Hangup),
                );
            }
            self.close_stream(call.reference, &leg);
        }
        if let Some(leg) = call.dial_media.take() {
            self.close_stream(call.reference, &leg);
        }
    }
}
