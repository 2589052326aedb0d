//! A stream whose far end is a WebRTC client. The client's media (a
//! [`PeerLeg`]: its str0m peer, its socket, G.711 both ways) is driven
//! either by the clients' relay task, relaying plain RTP to wherever the
//! call's SIP leg points, or, once the call's media is anchored on this
//! engine, by the stream's worker itself, in place of the stream's RTP
//! socket:
//!
//! ```text
//!  attached:  browser ══SRTP══ webrtc socket ─ Peer ─ RTP packet ─► Session::handle_rtp
//!                                                ◄─ send_audio ◄─ Session::tick
//!  relaying:  browser ══SRTP══ webrtc socket ─ Peer ─ RTP ─► plain socket ──► remote
//! ```
//!
//! Attached, a client's packet costs what a SIP caller's does: one
//! `recvmmsg` and one `send_to` per 20 ms tick. Relayed, each packet
//! crossed loopback once more both ways, with a task wake-up for each:
//! six syscalls per tick and 3-4 times a SIP call's CPU (BENCHMARKS.md,
//! webrtc at a8f9de6). Relaying stays for media the engine does not
//! anchor: another region's runtime, or the party a transfer
//! re-INVITEd the client to.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use switchyard_media::g711::Law;
use switchyard_media::rtp;
use switchyard_sip::sdp::Negotiated;
use switchyard_webrtc::{Peer, PeerEvent, Poll};

use super::{BATCH, Batch, Session};

/// Called once when the client's ICE goes away.
pub type Closed = Box<dyn FnOnce() + Send>;

/// One client call's WebRTC media.
pub struct PeerLeg {
    peer: Peer,
    /// The socket the client sends to (its host candidate).
    pub webrtc: UdpSocket,
    /// Where the call's SIP leg sends plain RTP (the address offered to it).
    pub plain: UdpSocket,
    /// `plain`'s address: what the engine's session hears the client from.
    plain_addr: SocketAddr,
    /// The SIP leg's media: codec, and where relayed RTP goes.
    pub remote: Option<Negotiated>,
    out: OutStream,
    /// When the peer wants [`Peer::handle_timeout`].
    deadline: Option<Instant>,
    closed: Option<Closed>,
    /// Gives the sockets' ports back (on drop).
    release: Option<Box<dyn FnOnce() + Send>>,
    payload: Vec<u8>,
}

impl fmt::Debug for PeerLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (f.debug_struct("PeerLeg"))
            .field("plain", &self.plain_addr)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Drop for PeerLeg {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// Our RTP stream towards the SIP leg: one SSRC, sequence and timestamps
/// of our own (the browser's may jump; a jitter buffer wants a steady
/// stream).
#[derive(Default)]
struct OutStream {
    seq: u16,
    ts: u32,
    ssrc: u32,
    started: bool,
    buf: Vec<u8>,
}

impl PeerLeg {
    /// Both sockets non-blocking; `release` runs when the leg is dropped.
    pub fn new(
        peer: Peer,
        (webrtc, plain): (UdpSocket, UdpSocket),
        closed: Closed,
        release: Box<dyn FnOnce() + Send>,
    ) -> io::Result<Self> {
        // Built first, so that an error below drops it, which gives the
        // ports back.
        let mut leg = Self {
            peer,
            plain_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            webrtc,
            plain,
            remote: None,
            out: OutStream {
                ssrc: rand::random(),
                ..OutStream::default()
            },
            deadline: None,
            closed: Some(closed),
            release: Some(release),
            payload: Vec::with_capacity(160),
        };
        leg.plain_addr = leg.plain.local_addr()?;
        leg.webrtc.set_nonblocking(true)?;
        leg.plain.set_nonblocking(true)?;
        Ok(leg)
    }

    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
    }

    pub fn add_candidate(&mut self, candidate: &str) {
        if let Err(e) = self.peer.add_candidate(candidate) {
            tracing::debug!(error = %e, "client candidate ignored");
        }
    }

    /// A datagram from the client.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        let _ = self.peer.handle_packet(now, source, datagram);
    }

    /// Does what the peer asks until it waits: sends its datagrams, and
    /// passes the client's audio, as RTP of the SIP leg's codec, to
    /// `to_sip`. The instant it wants to be driven again; `None` once the
    /// client is gone (then `closed` has run).
    pub fn drive(&mut self, now: Instant, mut to_sip: impl FnMut(&[u8])) -> Option<Instant> {
        if self.deadline.is_some_and(|at| at <= now) {
            let _ = self.peer.handle_timeout(now);
        }
        // str0m queues what `send_audio` wrote and releases it on its next
        // timeout, which it asks for at once: a worker that waited for its
        // next tick held every packet 20 ms (jitter p99 20 ms in the
        // benchmark). Bounded, in case a peer keeps asking.
        let mut due = 4;
        loop {
            let poll = match self.peer.poll() {
                Ok(poll) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "client media failed");
                    return self.close();
                }
            };
            match poll {
                Poll::Timeout(at) if at <= now && due > 0 => {
                    due -= 1;
                    let _ = self.peer.handle_timeout(now);
                }
                Poll::Timeout(at) => {
                    self.deadline = Some(at);
                    return Some(at);
                }
                Poll::Transmit(t) => {
                    let _ = self.webrtc.send_to(&t.contents, t.destination);
                }
                Poll::Event(PeerEvent::Audio { law, payload, .. }) => {
                    if self.rtp(law, &payload) {
                        to_sip(&self.out.buf);
                    }
                }
                Poll::Event(PeerEvent::Closed) => return self.close(),
                Poll::Event(PeerEvent::Connected) => tracing::debug!("client media connected"),
            }
        }
    }

    fn close(&mut self) -> Option<Instant> {
        self.deadline = None;
        if let Some(closed) = self.closed.take() {
            closed();
        }
        None
    }

    /// The client's `payload` as the SIP leg's next RTP packet, in `out.buf`.
    fn rtp(&mut self, law: Law, payload: &[u8]) -> bool {
        let Some(remote) = self.remote.filter(|r| r.direction.sends()) else {
            return false;
        };
        let out = &mut self.out;
        let header = rtp::Header {
            marker: !out.started,
            pt: remote.codec.pt,
            seq: out.seq,
            ts: out.ts,
            ssrc: out.ssrc,
        };
        out.started = true;
        out.seq = out.seq.wrapping_add(1);
        out.ts = out.ts.wrapping_add(payload.len() as u32);
        let room = header.build(&mut out.buf, payload.len());
        transcode(law, Law::of(remote.codec), payload, room);
        true
    }

    /// An RTP packet of the SIP leg, for the client.
    pub fn to_client(&mut self, now: Instant, datagram: &[u8]) {
        let (Some(remote), Some(law)) = (self.remote, self.peer.law()) else {
            return;
        };
        let Ok(packet) = rtp::parse(datagram) else {
            return; // RTCP, or not RTP
        };
        if packet.header.pt != remote.codec.pt {
            return; // telephone-event and comfort noise stay on the SIP side
        }
        self.payload.resize(packet.payload.len(), 0);
        transcode(
            Law::of(remote.codec),
            law,
            packet.payload,
            &mut self.payload,
        );
        let _ = self.peer.send_audio(now, packet.header.ts, &self.payload);
    }

    /// One tick on a stream's worker: what the client sent goes through
    /// the peer into `session`, as if it came from `plain`. The count of
    /// datagrams read.
    pub(super) fn receive(
        &mut self,
        now: Instant,
        batch: &mut Batch,
        session: &mut Session,
    ) -> u64 {
        let mut count = 0;
        loop {
            let n = match batch.recv(&self.webrtc) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock, or an ICMP error: not fatal
            };
            for m in 0..n {
                let (from, datagram, _) = batch.get(m);
                self.handle_datagram(now, from, datagram);
            }
            count += n as u64;
            if n < BATCH {
                break;
            }
        }
        self.drive_into(now, session);
        count
    }

    /// The session's packet of this tick, for the client.
    pub(super) fn send(&mut self, now: Instant, packet: &[u8], session: &mut Session) {
        self.to_client(now, packet);
        self.drive_into(now, session);
    }

    fn drive_into(&mut self, now: Instant, session: &mut Session) {
        let from = self.plain_addr;
        self.drive(now, |packet| session.handle_rtp(now, from, packet));
    }
}

/// G.711 from one law into the other (a copy when they agree).
fn transcode(from: Law, to: Law, input: &[u8], out: &mut [u8]) {
    if from == to {
        out.copy_from_slice(input);
    } else {
        for (o, &i) in out.iter_mut().zip(input) {
            *o = to.encode_sample(from.decode_sample(i));
        }
    }
}
