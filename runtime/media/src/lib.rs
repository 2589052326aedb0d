//! Media, sans-IO: RTP sessions, G.711, DTMF, jitter, RTCP, audio and the
//! vocabulary between the SIP endpoint and the media IO edge.
//!
//! ```text
//!   sip::endpoint ──Action──► serve edge ──┬─ prompts ─► cache (say/play → Samples)
//!        ▲                                 └─ Command ─► engine workers
//!        └──────────Notice◄── serve edge ◄── Event ───── (timer wheel, one
//!                                             Session per stream, sockets)
//! ```
//!
//! The endpoint never touches a socket or a file: it asks for media with an
//! [`Action`] (open a stream on a port it picked from its [`ports`] pool,
//! play prompts, record, send digits) and hears back with a [`Notice`].
//! The serve edge resolves prompts through the prompt cache (`switchyard::media::cache`) (synthesized
//! speech and fetched files become telephony-ready [`Samples`] once) and
//! hands audio to the media engine (`switchyard::media::engine`), whose workers pace every stream from one
//! clock. A [`session::Session`] is the sans-IO core of one RTP stream.
//!
//! Everything inside is 8 kHz mono linear PCM ([`RATE`]); G.711 is applied
//! per packet at the edge of a session.

// Tests start virtual clocks from `Instant::now()`; the code itself never
// reads a clock or the OS RNG (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod audio;
pub mod codec;
pub mod dtmf;
pub mod format;
pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod ports;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod tone;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::codec::{Codec, Direction};
use switchyard_contract::{ConferenceOptions, Prompt, RecordEnd};

/// The endpoint's handle on one RTP stream (one leg's media).
pub type StreamId = u64;

/// Samples per second of everything inside the media layer.
pub const RATE: u32 = 8000;
/// Samples in one 20 ms packet at [`RATE`].
pub const FRAME_SAMPLES: usize = 160;
/// Milliseconds per packet.
pub const FRAME_MS: u32 = 20;

/// Telephony-ready audio: 8 kHz mono linear PCM, shared between streams.
pub type Samples = Arc<[i16]>;

/// One piece of what a stream plays.
#[derive(Debug, Clone)]
pub enum Clip {
    Audio(Samples),
    Silence { ms: u32 },
}

/// What a stream sends and where (from SDP offer/answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    pub codec: Codec,
    /// The peer's telephone-event payload type, if it does RFC 4733.
    pub dtmf_pt: Option<u8>,
    /// Where RTP goes until symmetric RTP latches onto the source of what
    /// arrives; `None` for c=0.0.0.0 / port 0 (hold).
    pub remote: Option<SocketAddr>,
    /// Our direction: whether we send and receive.
    pub direction: Direction,
}

/// How a `record` verb records (TwiML semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    pub max_ms: u32,
    /// End after this much silence; 0 never.
    pub silence_ms: u32,
    pub beep: bool,
    pub trim_silence: bool,
}

/// What the endpoint asks of the media edge for one stream.
#[derive(Debug, Clone)]
pub enum Action {
    /// Bind the RTP port `port` (even) and RTCP `port + 1` for a leg of
    /// the tenant's call `call_id` (what its recordings are filed under).
    Open {
        port: u16,
        tenant: String,
        call_id: String,
    },
    /// Start (or, again, update after a re-INVITE) sending and receiving.
    Start(StreamParams),
    /// Play prompts in order; `id` comes back in [`Notice::PlayDone`].
    /// A prompt whose loop count is 0 repeats until stopped.
    Play {
        id: u64,
        tenant: String,
        prompts: Vec<Prompt>,
    },
    /// Stop what is playing (a digit interrupted it); no PlayDone follows.
    StopPlay,
    /// Send digits as RFC 4733 events (`w` waits 500 ms).
    SendDigits {
        id: u64,
        digits: String,
    },
    Record {
        id: u64,
        spec: RecordSpec,
    },
    /// End a recording (finish key, hangup); its Recorded notice follows.
    StopRecord(RecordEnd),
    /// Relay audio between this stream and `other` (both ways); with
    /// `record`, record both directions under that id until Unbridge/Close.
    Bridge {
        other: StreamId,
        record: Option<u64>,
    },
    Unbridge,
    /// Join the tenant's conference `options.name` (opened by the first
    /// joiner); `id` comes back in [`Notice::Conference`]. The call
    /// `call_id` is the participant other parties and the REST API see.
    Join {
        id: u64,
        tenant: String,
        call_id: String,
        options: ConferenceOptions,
        /// Where this participant's conference events are POSTed (the
        /// status callback of the number it called).
        callback: Option<String>,
    },
    /// Leave the conference (a redirect took the call elsewhere); no
    /// notice follows.
    Leave,
    /// Stop and release the ports (a recording in progress is saved first).
    Close,
}

/// Why a stream is out of its conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// The stream closed (the call hung up).
    Hangup,
    /// It was asked to leave ([`Action::Leave`]).
    Left,
    /// Removed from outside (REST).
    Kicked,
    /// The conference ended (an end-on-exit participant left, the REST
    /// API ended it, or everyone else left).
    Ended,
    /// It could not join: the conference is at its participant limit.
    Full,
    /// It could not join: the conference is ending.
    Refused,
}

/// A recording that was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub recording_id: String,
    pub duration_ms: u32,
}

/// What the media edge tells the endpoint about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An RFC 4733 digit arrived (once per event, on its first packet).
    Digit(char),
    /// A Play ran to its end.
    PlayDone(u64),
    /// A prompt of this Play could not be prepared (bad URL, unknown media
    /// id, synthesizer failure); the Play is over.
    PlayFailed {
        id: u64,
        error: String,
    },
    DigitsSent(u64),
    Recorded {
        id: u64,
        ended_by: RecordEnd,
        /// `Err` when the recording could not be stored.
        saved: Result<Saved, String>,
    },
    /// The stream is out of the conference its [`Action::Join`] `id`
    /// put it in.
    Conference {
        id: u64,
        out: Out,
    },
    /// Nothing arrived for the configured media timeout: the peer is gone.
    Timeout,
    /// The stream could not be set up (port taken, ...).
    Failed(String),
}
