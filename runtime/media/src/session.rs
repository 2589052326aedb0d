//! The sans-IO core of one RTP stream (one leg's media): what to send each
//! 20 ms, what arrived, and what to tell the endpoint.
//!
//! ```text
//!  handle_rtp / handle_rtcp (bytes in) ─┐            ┌─► tick → one packet per 20 ms
//!  play / stop_play / send_digits /     ├─ Session ──┼─► poll_rtcp → a report every ~5 s
//!  record / stop_record / relay ────────┘            ├─► poll_received → the frame heard
//!                                                    └─► poll_event → Digit, PlayDone, ...
//! ```
//!
//! The session never reads a clock or touches a socket: the engine passes
//! `now` and bytes in, and sends what comes out. Every 20 ms the engine
//! calls, in this order: [`Session::handle_rtp`] for each datagram that
//! arrived, [`Session::tick`] (send its packet), [`Session::poll_received`]
//! (bridging), then drains [`Session::poll_event`]; now and then
//! [`Session::handle_rtcp`] and [`Session::poll_rtcp`].
//!
//! What a tick sends, first that applies: an RFC 4733 event packet while
//! digits go out; the record beep; what plays; audio relayed from a bridge;
//! silence (which keeps NAT bindings open and the peer's jitter buffer
//! fed). Nothing is sent while our direction does not send (hold) or there
//! is no remote yet, but the timeline goes on: timestamps advance 160 per
//! tick and prompts, digits and beeps play out unheard, so a verb's
//! completion does not wait for the call to come off hold.
//!
//! Symmetric RTP (RFC 4961): we send to the SDP address until a packet
//! arrives, then to where packets come from, which gets through NATs. To
//! resist RTP bleed (someone spraying our port to hijack the stream), a new
//! source is only taken when the latched one has been silent for
//! [`RELATCH_AFTER`]; until then its packets are dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::dtmf::{self, Step};
use super::format::Format;
use super::jitter::{JitterBuffer, JitterStats, Playout};
use super::rtcp::{self, Seq, Source};
use super::rtp::{self, Header};
use super::{Clip, FRAME_SAMPLES, RATE, RecordSpec, StreamParams, tone};
use switchyard_contract::RecordEnd;

/// How long the latched source must be silent before another is taken.
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);
/// RTCP report interval before randomisation (RFC 3550 §6.2: 5 s minimum).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// A frame below this RMS level (of full scale, about -40 dBFS) is silence.
pub const SILENCE_RMS: f64 = 0.01;
/// The record beep: 500 ms at 1 kHz, half scale.
const BEEP_MS: u32 = 500;
const BEEP_HZ: f64 = 1000.0;
/// The most samples taken from one packet (120 ms); the rest is dropped.
const MAX_PACKET_SAMPLES: usize = 960;
/// Recordings reserve at most this much up front (10 s, 160 KB): a
/// thousand streams recording must not reserve gigabytes.
const RECORD_RESERVE: usize = 10 * RATE as usize;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our SSRC (random, from the engine).
    pub ssrc: u32,
    /// Media timeout: [`Event::Timeout`] after this long without RTP or
    /// RTCP while the peer should be sending; `Duration::ZERO` is off.
    pub timeout: Duration,
    /// The SDES CNAME in our reports (RFC 7022: random per session).
    pub cname: String,
    /// Wall-clock time at the `now` given to [`Session::new`], for the NTP
    /// timestamps of sender reports.
    pub wall: SystemTime,
}

/// What a session tells the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An RFC 4733 digit, once per event.
    Digit(char),
    /// A play ran to its end (never for `forever`, a replaced or a stopped one).
    PlayDone(u64),
    DigitsSent(u64),
    Recorded {
        id: u64,
        samples: Vec<i16>,
        ended_by: RecordEnd,
    },
    /// Nothing arrived for the media timeout.
    Timeout,
}

/// What the peer's reports say about our stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerReport {
    pub fraction_lost: u8,
    pub lost: i32,
    /// In timestamp units.
    pub jitter: u32,
    /// Round-trip time from LSR/DLSR, when the peer echoed one of our SRs.
    pub rtt: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub sent_packets: u64,
    pub sent_octets: u64,
    pub received_packets: u64,
    pub received_octets: u64,
    /// Lost packets of the peer's stream (RFC 3550 A.3; negative with
    /// duplicates).
    pub lost: i32,
    /// Interarrival jitter of the peer's stream, in timestamp units.
    pub jitter: u32,
    /// Datagrams that were not RTP/RTCP we could read.
    pub malformed: u64,
    /// Packets from a source other than the latched one (RTP bleed).
    pub foreign: u64,
    /// Readable but unused: RTCP on the RTP port, unknown payload types,
    /// media while we do not receive.
    pub ignored: u64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    pub jitter_buffer: JitterStats,
    /// Where RTP goes now.
    pub remote: Option<SocketAddr>,
    pub peer: Option<PeerReport>,
}

/// What plays: clips in order, maybe looping.
#[derive(Debug, Clone)]
struct Playing {
    id: u64,
    clips: Vec<Clip>,
    forever: bool,
    index: usize,
    offset: usize,
}

impl Playing {
    fn clip_len(clip: &Clip) -> usize {
        match clip {
            Clip::Audio(samples) => samples.len(),
            Clip::Silence { ms } => (u64::from(*ms) * u64::from(RATE) / 1000) as usize,
        }
    }

    /// Fills `out` with what plays next (silence past the end); true when
    /// the play is over.
    fn fill(&mut self, out: &mut [i16]) -> bool {
        let mut n = 0;
        // Clips passed without a sample: a loop of empty clips ends.
        let mut empty = 0;
        while n < out.len() {
            if self.index == self.clips.len() {
                if !self.forever || self.clips.is_empty() || empty > self.clips.len() {
                    out[n..].fill(0);
                    return true;
                }
                self.index = 0;
            }
            let clip = &self.clips[self.index];
            let take = (Self::clip_len(clip) - self.offset).min(out.len() - n);
            match clip {
                Clip::Audio(s) => {
                    out[n..n + take].copy_from_slice(&s[self.offset..self.offset + take])
                }
                Clip::Silence { .. } => out[n..n + take].fill(0),
            }
            n += take;
            self.offset += take;
            if take > 0 {
                empty = 0;
            }
            if self.offset == Self::clip_len(clip) {
                self.index += 1;
                self.offset = 0;
                empty += 1;
            }
        }
        !self.forever && self.index == self.clips.len()
    }
}

#[derive(Debug, Clone)]
struct Recording {
    id: u64,
    spec: RecordSpec,
    /// The beep still to play and how far it got; capture starts after.
    beep: Option<(Vec<i16>, usize)>,
    samples: Vec<i16>,
    silent_frames: u32,
}

/// The sending side of an RFC 4733 digit string.
#[derive(Debug, Clone)]
struct Digits {
    id: u64,
    sender: dtmf::Sender,
    /// The timestamp of the event on the wire.
    event_ts: u32,
}

/// One RTP stream. See the module doc for the calling order.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    epoch: Instant,
    params: Option<StreamParams>,
    format: Format,
    /// Sequence number and timestamp of the next packet.
    seq: u16,
    ts: u32,
    first_packet: bool,
    last_tick: Option<Instant>,
    latched: Option<SocketAddr>,
    latched_heard: Instant,
    rtcp_peer: Option<SocketAddr>,
    playing: Option<Playing>,
    digits: Option<Digits>,
    recording: Option<Recording>,
    relay: [i16; FRAME_SAMPLES],
    relay_fresh: bool,
    frame: [i16; FRAME_SAMPLES],
    source: Option<Source>,
    jitter: JitterBuffer,
    dtmf: dtmf::Receiver,
    received: [i16; FRAME_SAMPLES],
    received_fresh: bool,
    /// Time without a packet while we receive (the media timeout clock).
    /// A bridge takes the received audio (see [`Session::listen`]).
    listening: bool,
    quiet: Duration,
    timed_out: bool,
    next_report: Option<Instant>,
    /// The peer's last SR: its SSRC, LSR value and when it arrived.
    peer_sr: Option<(u32, u32, Instant)>,
    sent_since_report: bool,
    rng: u64,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Session {
    pub fn new(now: Instant, config: SessionConfig) -> Self {
        // Initial sequence number and timestamp are random (RFC 3550
        // §5.1); derived from the SSRC, which the engine draws at random,
        // so tests stay deterministic.
        let mut rng = u64::from(config.ssrc) | 1 << 40;
        let r = splitmix(&mut rng);
        Session {
            epoch: now,
            params: None,
            format: Format::of(crate::codec::Codec::PCMU),
            seq: r as u16,
            ts: (r >> 32) as u32,
            first_packet: true,
            last_tick: None,
            latched: None,
            latched_heard: now,
            rtcp_peer: None,
            playing: None,
            digits: None,
            recording: None,
            relay: [0; FRAME_SAMPLES],
            relay_fresh: false,
            frame: [0; FRAME_SAMPLES],
            source: None,
            jitter: JitterBuffer::new(),
            dtmf: dtmf::Receiver::default(),
            received: [0; FRAME_SAMPLES],
            received_fresh: false,
            quiet: Duration::ZERO,
            listening: false,
            timed_out: false,
            next_report: None,
            peer_sr: None,
            sent_since_report: false,
            rng,
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    // Getters.

    pub fn ssrc(&self) -> u32 {
        self.config.ssrc
    }

    pub fn params(&self) -> Option<&StreamParams> {
        self.params.as_ref()
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        if let Some(s) = &self.source {
            stats.lost = s.lost();
            stats.jitter = s.jitter();
        }
        stats.jitter_buffer = self.jitter.stats();
        stats.remote = self.destination();
        stats
    }

    /// Where RTP goes: the latched source, else the SDP address; nowhere
    /// when the SDP gives none (c=0.0.0.0 or port 0), latched or not.
    fn destination(&self) -> Option<SocketAddr> {
        let remote = self.params?.remote?;
        Some(self.latched.unwrap_or(remote))
    }

    fn rtcp_destination(&self) -> Option<SocketAddr> {
        self.rtcp_peer.or_else(|| {
            let mut rtp = self.destination()?;
            rtp.set_port(rtp.port().checked_add(1)?);
            Some(rtp)
        })
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.config.wall + now.saturating_duration_since(self.epoch)
    }

    /// `now` in timestamp units since the session began.
    fn arrival(&self, now: Instant) -> u32 {
        samples(now.saturating_duration_since(self.epoch))
    }

    // Commands.

    /// Starts the stream, or updates it after a re-INVITE (codec, remote,
    /// direction, telephone-event type). A new remote address drops the
    /// latch, so media follows the new SDP.
    pub fn start(&mut self, now: Instant, params: StreamParams) {
        if let Some(old) = self.params
            && old.remote != params.remote
        {
            self.latched = None;
            self.rtcp_peer = None;
        }
        if self.next_report.is_none() {
            self.next_report = Some(now + self.report_interval());
        }
        // The media timeout counts from here.
        self.last_tick.get_or_insert(now);
        self.format = Format::of(params.codec);
        self.params = Some(params);
    }

    /// Plays `clips` in order, replacing what played (which ends without
    /// PlayDone). [`Event::PlayDone`] with `id` follows when the last clip
    /// has been sent; with `forever` it loops until stopped or replaced.
    pub fn play(&mut self, id: u64, clips: Vec<Clip>, forever: bool) {
        self.playing = Some(Playing {
            id,
            clips,
            forever,
            index: 0,
            offset: 0,
        });
    }

    /// Stops what plays, without PlayDone.
    pub fn stop_play(&mut self) {
        self.playing = None;
    }

    /// Sends `digits` (keypad digits, `w` for a 500 ms pause) as RFC 4733
    /// events, or in band when the peer has no telephone-event; replaces a
    /// string still being sent (which gets no DigitsSent). While a tone is
    /// on the wire no audio is sent and what plays waits.
    /// [`Event::DigitsSent`] follows the last digit.
    pub fn send_digits(&mut self, id: u64, digits: &str) {
        self.digits = Some(Digits {
            id,
            sender: dtmf::Sender::new(digits),
            event_ts: self.ts,
        });
    }

    /// Records what the peer sends (from the jitter buffer, gaps as
    /// silence), after a 500 ms 1 kHz beep if `spec.beep`, until
    /// `spec.max_ms` (0: no limit), `spec.silence_ms` of silence (counted
    /// from the start, like TwiML's timeout) or [`Session::stop_record`].
    /// A recording in progress ends first, as if hung up.
    pub fn record(&mut self, id: u64, spec: RecordSpec) {
        self.stop_record(RecordEnd::Hangup);
        let beep = spec.beep.then(|| (tone::sine(BEEP_HZ, BEEP_MS, 0.5), 0));
        let max = (u64::from(spec.max_ms) * u64::from(RATE) / 1000) as usize;
        let reserve = if max == 0 {
            RECORD_RESERVE
        } else {
            max.min(RECORD_RESERVE)
        };
        self.recording = Some(Recording {
            id,
            spec,
            beep,
            samples: Vec::with_capacity(reserve),
            silent_frames: 0,
        });
    }

    /// Ends the recording in progress: [`Event::Recorded`] with what was
    /// captured. Nothing happens without one.
    pub fn stop_record(&mut self, ended_by: RecordEnd) {
        let Some(rec) = self.recording.take() else {
            return;
        };
        let mut samples = rec.samples;
        // Audio that arrived before a finish key or hangup but still waits
        // in the jitter buffer belongs to the recording: the stop came
        // after it.
        if rec.beep.is_none() && matches!(ended_by, RecordEnd::FinishKey | RecordEnd::Hangup) {
            let mut frame = [0; FRAME_SAMPLES];
            for _ in 0..self.jitter.buffered_ms().div_ceil(super::FRAME_MS) {
                if self.jitter.pop(&mut frame) == Playout::Audio {
                    samples.extend_from_slice(&frame);
                }
            }
        }
        if rec.spec.trim_silence {
            trim_silence(&mut samples);
        }
        self.events.push_back(Event::Recorded {
            id: rec.id,
            samples,
            ended_by,
        });
    }

    /// Whether something other than a recording takes the received audio
    /// (a bridge); without either, received audio is not decoded.
    pub fn listen(&mut self, on: bool) {
        self.listening = on;
    }

    /// Audio to send at the next tick when nothing plays (a bridge).
    pub fn relay(&mut self, frame: &[i16]) {
        let n = frame.len().min(FRAME_SAMPLES);
        self.relay[..n].copy_from_slice(&frame[..n]);
        self.relay[n..].fill(0);
        self.relay_fresh = true;
    }

    // Input.

    /// A datagram that arrived on the RTP port.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        let p = match rtp::parse(packet) {
            Ok(p) => p,
            Err(rtp::RtpError::Rtcp) => {
                self.stats.ignored += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let Some(params) = self.params else {
            self.stats.ignored += 1;
            return;
        };
        if !self.latch(now, from) {
            self.stats.foreign += 1;
            return;
        }
        self.heard();
        self.stats.received_packets += 1;
        self.stats.received_octets += p.payload.len() as u64;
        let h = p.header;
        let arrival = self.arrival(now);
        let source = match &mut self.source {
            Some(s) if s.ssrc == h.ssrc => s,
            _ => {
                self.jitter.reset();
                self.dtmf = dtmf::Receiver::default();
                self.source.insert(Source::new(h.ssrc, h.seq))
            }
        };
        match source.update(h.seq) {
            Seq::Valid => {}
            Seq::Jumped => return,
            Seq::Restarted => self.jitter.reset(),
        }
        if !params.direction.receives() {
            self.stats.ignored += 1;
            return;
        }
        if Some(h.pt) == params.dtmf_pt {
            if let Some(payload) = dtmf::Payload::parse(p.payload)
                && let Some(digit) = self.dtmf.packet(h.ts, &payload)
            {
                self.events.push_back(Event::Digit(digit));
            }
            return;
        }
        let Some(format) = Format::of_received(h.pt, params.codec) else {
            self.stats.ignored += 1;
            return;
        };
        source.arrival(arrival, h.ts);
        self.jitter.set_jitter(source.jitter());
        // Decoding and buffering cost a tenth of a stream's CPU: only done
        // when a recording or a bridge takes the audio.
        if !self.listening && self.recording.is_none() {
            return;
        }
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        let n = format.decode(p.payload, &mut pcm);
        self.jitter.insert(h.seq, h.ts, &pcm[..n]);
    }

    /// Whether a packet from `from` is ours to use, latching onto it when
    /// nothing is latched or the latched source went quiet.
    fn latch(&mut self, now: Instant, from: SocketAddr) -> bool {
        match self.latched {
            Some(addr) if addr == from => {}
            Some(_) if now.saturating_duration_since(self.latched_heard) < RELATCH_AFTER => {
                return false;
            }
            _ => {
                self.latched = Some(from);
                // RTCP follows the new source unless it says otherwise.
                self.rtcp_peer = None;
            }
        }
        self.latched_heard = now;
        true
    }

    fn heard(&mut self) {
        self.quiet = Duration::ZERO;
        self.timed_out = false;
    }

    /// A datagram that arrived on the RTCP port.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        if self.params.is_none() {
            self.stats.ignored += 1;
            return;
        }
        // Only the latched peer's host may report (RTCP comes from its
        // own port, so the address cannot be compared whole).
        if self.latched.is_some_and(|l| l.ip() != from.ip()) {
            self.stats.foreign += 1;
            return;
        }
        let mut valid = false;
        for packet in rtcp::packets(packet) {
            let blocks = match packet {
                Ok(rtcp::Packet::Sender { ssrc, info, blocks }) => {
                    self.peer_sr = Some((ssrc, rtcp::ntp_middle(info.ntp), now));
                    blocks
                }
                Ok(rtcp::Packet::Receiver { blocks, .. }) => blocks,
                Ok(rtcp::Packet::Other(_)) => {
                    valid = true;
                    continue;
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    break;
                }
            };
            valid = true;
            for block in blocks.filter(|b| b.ssrc == self.config.ssrc) {
                self.stats.peer = Some(PeerReport {
                    fraction_lost: block.fraction_lost,
                    lost: block.lost,
                    jitter: block.jitter,
                    rtt: self.rtt(now, block.lsr, block.dlsr),
                });
            }
        }
        if valid {
            self.stats.rtcp_received += 1;
            self.rtcp_peer = Some(from);
            self.heard();
        }
    }

    /// RTT = arrival − LSR − DLSR (RFC 3550 §6.4.1), in 1/65536 s.
    fn rtt(&self, now: Instant, lsr: u32, dlsr: u32) -> Option<Duration> {
        if lsr == 0 {
            return None;
        }
        let arrival = rtcp::ntp_middle(rtcp::ntp(self.wall(now)));
        let rtt = arrival.wrapping_sub(lsr).wrapping_sub(dlsr);
        // A negative result (clock trouble, forged report) is no RTT.
        (rtt < 1 << 31).then(|| rtcp::from_units(rtt))
    }

    // Output.

    /// The packet of this 20 ms tick into `out`, and where to send it;
    /// `None` (and `out` empty) when we must not send.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        let elapsed = self
            .last_tick
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_tick = Some(now);
        let Some(params) = self.params else {
            self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
            return None;
        };
        self.receive(params, elapsed);
        let dest = self.destination().filter(|_| params.direction.sends());
        let sent = self.compose(params, dest.is_some(), out);
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        let dest = dest.filter(|_| sent)?;
        self.seq = self.seq.wrapping_add(1);
        self.stats.sent_packets += 1;
        self.stats.sent_octets += (out.len() - rtp::HEADER_LEN) as u64;
        self.sent_since_report = true;
        Some(dest)
    }

    /// The receiving half of a tick: the frame due, the timeout, capture.
    fn receive(&mut self, params: StreamParams, elapsed: Duration) {
        self.received_fresh = false;
        if params.direction.receives() {
            self.received_fresh = self.jitter.pop(&mut self.received) == Playout::Audio;
            self.quiet += elapsed;
            let timeout = self.config.timeout;
            if !timeout.is_zero() && self.quiet >= timeout && !self.timed_out {
                self.timed_out = true;
                self.events.push_back(Event::Timeout);
            }
        } else {
            self.received.fill(0);
        }
        self.capture();
    }

    fn capture(&mut self) {
        let Some(rec) = self.recording.as_mut() else {
            return;
        };
        if rec.beep.is_some() {
            return;
        }
        let frame = if self.received_fresh {
            &self.received
        } else {
            &[0; FRAME_SAMPLES]
        };
        rec.samples.extend_from_slice(frame);
        let silent = tone::rms(frame) < SILENCE_RMS;
        rec.silent_frames = if silent { rec.silent_frames + 1 } else { 0 };
        let ms = |samples: u64| samples * 1000 / u64::from(RATE);
        let ended = if rec.spec.silence_ms > 0
            && ms(u64::from(rec.silent_frames) * FRAME_SAMPLES as u64)
                >= u64::from(rec.spec.silence_ms)
        {
            Some(RecordEnd::Silence)
        } else if rec.spec.max_ms > 0 && ms(rec.samples.len() as u64) >= u64::from(rec.spec.max_ms)
        {
            Some(RecordEnd::MaxLength)
        } else {
            None
        };
        if let Some(ended_by) = ended {
            self.stop_record(ended_by);
        }
    }

    /// Writes this tick's packet into `out` when `send`; advances what
    /// plays either way. False when there is nothing to send.
    fn compose(&mut self, params: StreamParams, send: bool, out: &mut Vec<u8>) -> bool {
        let mut tone = None;
        if let Some(digits) = self.digits.as_mut() {
            match digits.sender.next_step() {
                Step::Done => {
                    self.events.push_back(Event::DigitsSent(digits.id));
                    self.digits = None;
                }
                Step::Pause => {}
                Step::Tone {
                    payload,
                    start,
                    resend,
                } => {
                    if start {
                        digits.event_ts = self.ts;
                    }
                    tone = Some((payload, start, resend, digits.event_ts));
                }
            }
        }
        let relay_fresh = std::mem::take(&mut self.relay_fresh);
        if let Some((payload, start, resend, event_ts)) = tone {
            if let Some(pt) = params.dtmf_pt {
                if send {
                    let ssrc = self.config.ssrc;
                    let header = Header {
                        marker: start,
                        pt,
                        seq: self.seq,
                        ts: event_ts,
                        ssrc,
                    };
                    header.build(out, 4).copy_from_slice(&payload.to_bytes());
                }
                return send;
            }
            // No telephone-event: the same steps in band.
            if resend {
                self.frame.fill(0);
            } else {
                let offset = usize::from(payload.duration).saturating_sub(FRAME_SAMPLES);
                dtmf::inband(payload.event, offset, &mut self.frame);
            }
        } else if let Some(rec) = self.recording.as_mut()
            && let Some((beep, at)) = rec.beep.as_mut()
        {
            let n = (beep.len() - *at).min(FRAME_SAMPLES);
            self.frame[..n].copy_from_slice(&beep[*at..*at + n]);
            self.frame[n..].fill(0);
            *at += n;
            if *at == beep.len() {
                rec.beep = None;
            }
        } else if let Some(playing) = self.playing.as_mut() {
            if playing.fill(&mut self.frame) {
                let forever = playing.forever;
                let id = playing.id;
                self.playing = None;
                if !forever {
                    self.events.push_back(Event::PlayDone(id));
                }
            }
        } else if relay_fresh {
            self.frame = self.relay;
        } else {
            self.frame.fill(0);
        }
        if send {
            let marker = std::mem::take(&mut self.first_packet);
            let header = Header {
                marker,
                pt: params.codec.pt,
                seq: self.seq,
                ts: self.ts,
                ssrc: self.config.ssrc,
            };
            let bytes = FRAME_SAMPLES * self.format.bytes_per_sample();
            (self.format).encode(&self.frame, header.build(out, bytes));
        }
        send
    }

    /// The frame heard at the last tick, once; `None` for a gap.
    pub fn poll_received(&mut self) -> Option<&[i16; FRAME_SAMPLES]> {
        std::mem::take(&mut self.received_fresh).then_some(&self.received)
    }

    /// A compound report (SR or RR, with SDES CNAME) when one is due, and
    /// where to send it.
    pub fn poll_rtcp(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let due = self.next_report?;
        if now < due {
            return None;
        }
        self.next_report = Some(now + self.report_interval());
        let dest = self.rtcp_destination()?;
        let mut blocks = Vec::with_capacity(1);
        if let Some(source) = self.source.as_mut().filter(|s| s.received() > 0) {
            let (lsr, dlsr) = match self.peer_sr {
                Some((ssrc, lsr, at)) if ssrc == source.ssrc => {
                    (lsr, rtcp::to_units(now.saturating_duration_since(at)))
                }
                _ => (0, 0),
            };
            blocks.push(source.report(lsr, dlsr));
        }
        let mut out = Vec::with_capacity(128);
        let ssrc = self.config.ssrc;
        if std::mem::take(&mut self.sent_since_report) {
            // The RTP timestamp of this instant: the last packet's, plus
            // the time since it.
            let since = self
                .last_tick
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let info = rtcp::SenderInfo {
                ntp: rtcp::ntp(self.wall(now)),
                rtp_ts: self
                    .ts
                    .wrapping_sub(FRAME_SAMPLES as u32)
                    .wrapping_add(samples(since)),
                packets: self.stats.sent_packets as u32,
                octets: self.stats.sent_octets as u32,
            };
            rtcp::write_sr(&mut out, ssrc, &info, &blocks);
        } else {
            rtcp::write_rr(&mut out, ssrc, &blocks);
        }
        rtcp::write_sdes(&mut out, ssrc, &self.config.cname);
        self.stats.rtcp_sent += 1;
        Some((dest, out))
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The report interval randomised over [0.5, 1.5] × 5 s (RFC 3550
    /// §6.3.1), so reports of many streams do not bunch up.
    fn report_interval(&mut self) -> Duration {
        let r = splitmix(&mut self.rng) % 1000;
        REPORT_INTERVAL / 2 + REPORT_INTERVAL * r as u32 / 1000
    }
}

/// A duration in 8 kHz timestamp units (wrapping).
fn samples(d: Duration) -> u32 {
    (d.as_micros() * u128::from(RATE) / 1_000_000) as u32
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Drops leading and trailing 20 ms frames of silence.
fn trim_silence(samples: &mut Vec<i16>) {
    let loud = |c: &[i16]| tone::rms(c) >= SILENCE_RMS;
    let frames = samples.len().div_ceil(FRAME_SAMPLES);
    let chunks = || samples.chunks(FRAME_SAMPLES);
    let Some(first) = chunks().position(loud) else {
        samples.clear();
        return;
    };
    let last = frames - 1 - chunks().rev().position(loud).unwrap_or(0);
    let end = ((last + 1) * FRAME_SAMPLES).min(samples.len());
    samples.truncate(end);
    samples.drain(..first * FRAME_SAMPLES);
}

#[cfg(test)]
mod tests;
