//! One client's WebRTC audio, sans-IO: what a browser or app connects to
//! after the signalling WebSocket carried its SDP offer.
//!
//! ```text
//!   offer (SDP) ─► Peer::answer ─► answer (SDP): ICE-lite, one host
//!                                  candidate, PCMU/PCMA only
//!   UDP datagram ─► handle_packet ─► STUN / DTLS / SRTP inside str0m
//!   poll() ─► Transmit (to send) | Event (connected, audio, closed)
//!          └► Timeout (call handle_timeout then)
//!   send_audio(timestamp, payload) ─► SRTP out, once connected
//! ```
//!
//! The runtime has a known address, so ICE-lite with host candidates is
//! enough: the client does the checks. G.711 is taken whenever the client
//! offers it, so a browser's audio bridges to SIP/RTP legs byte for byte.
//! A client that offers only Opus gets Opus, transcoded here (libopus,
//! [`opus`] module) to and from μ-law: its audio costs the runtime an
//! encode and a decode per frame, which the `opus-frame-each-way` bench
//! and the WebRTC sessions benchmark measure (BENCHMARKS.md).
//!
//! Library: str0m, chosen by a spike. The same headless Chromium call
//! was answered by str0m (`tests/chromium.rs`) and by webrtc-rs's sans-IO
//! `rtc` (`spike-rtc/`); both connected and carried PCMU both ways. str0m
//! won on fit: one `poll_output`/`handle_input` pair like our SIP and
//! media cores (rtc mirrors the W3C object model: a media engine, an
//! interceptor registry, transceivers, four queues to poll), G.711 and
//! ICE-lite as config flags, and 142 crates against rtc's 199. Time in
//! the peer until connected was close: 1.0–1.1 ms for str0m, 1.2–5.4 ms
//! for rtc (a few runs each, on a shared machine).

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use switchyard_media::g711::Law;

pub mod opus;

/// Why a peer could not be set up or went wrong. Messages say what was
/// wrong with the client's input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    #[error("the offer is not SDP a WebRTC peer can read: {0}")]
    Offer(String),
    #[error("the offer has no audio this runtime can take (it needs PCMU, PCMA or Opus): {0}")]
    Negotiation(String),
    #[error("local address {0} cannot be a host candidate: {1}")]
    Candidate(SocketAddr, String),
    #[error("WebRTC: {0}")]
    Rtc(String),
}

/// What the peer tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// ICE and DTLS are up: audio flows both ways from now.
    Connected,
    /// 20 ms (or what the client sends) of the client's audio.
    Audio {
        law: Law,
        timestamp: u32,
        payload: Vec<u8>,
    },
    /// The client is gone (ICE disconnected).
    Closed,
}

/// A datagram to send from the peer's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// The next thing the owner must do.
#[derive(Debug)]
pub enum Poll {
    Transmit(Transmit),
    Event(PeerEvent),
    /// Nothing until then: call [`Peer::handle_timeout`] at this instant
    /// (or earlier, when a packet arrives).
    Timeout(Instant),
}

/// One client's WebRTC session.
pub struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    /// The audio section, the payload type to send with and its codec,
    /// once known.
    audio: Option<(Mid, Pt, Wire)>,
    /// Opus state, for a client that offered no G.711.
    opus: Option<Box<opus::Transcoder>>,
    connected: bool,
    closed: bool,
}

impl Peer {
    /// Answers `offer` for a peer reached at `local` (the socket the
    /// owner reads and sends on). The answer is the SDP to send back.
    pub fn answer(
        now: Instant,
        local: SocketAddr,
        offer: &str,
    ) -> Result<(Self, String), PeerError> {
        let g711 = offers_g711(offer);
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| PeerError::Offer(e.to_string()))?;
        // Only the mid extension (BUNDLE demux): transport-cc feedback and
        // the other extensions serve bandwidth estimation of video, and
        // applying the client's TWCC reports was 5 % of a worker's CPU.
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_pcmu(g711)
            .enable_pcma(g711)
            .enable_opus(!g711)
            .clear_extension_map()
            .set_extension(4, Extension::RtpMid)
            .build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| PeerError::Candidate(local, e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| PeerError::Negotiation(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let opus = if g711 {
            None
        } else {
            Some(Box::new(opus::Transcoder::new().map_err(PeerError::Rtc)?))
        };
        let peer = Self {
            rtc,
            local,
            audio: None,
            opus,
            connected: false,
            closed: false,
        };
        // `MediaAdded` says which sections the answer took; without an
        // audio one in a codec we take there is nothing to bridge.
        let taken = [" PCMU/8000", " PCMA/8000", " opus/48000"];
        if !answer.contains("m=audio") || !taken.iter().any(|c| answer.contains(c)) {
            return Err(PeerError::Negotiation(
                "no audio section accepted PCMU, PCMA or Opus".into(),
            ));
        }
        Ok((peer, answer))
    }

    /// The first payload type the client offered for `mid` in a codec we
    /// take.
    fn codec(&self, mid: Mid) -> Option<(Pt, Wire)> {
        let media = self.rtc.media(mid)?;
        let config = self.rtc.codec_config();
        media.remote_pts().iter().find_map(|pt| {
            let params = config.find(|p| p.pt() == *pt)?;
            let wire = match params.spec().codec {
                Codec::PCMU => Wire::G711(Law::Mu),
                Codec::PCMA => Wire::G711(Law::A),
                Codec::Opus => Wire::Opus,
                _ => return None,
            };
            Some((*pt, wire))
        })
    }

    /// A datagram that arrived on the peer's socket from `source`.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        source: SocketAddr,
        contents: &[u8],
    ) -> Result<(), PeerError> {
        let Ok(contents) = contents.try_into() else {
            return Ok(()); // not STUN, DTLS or (S)RTP: ignored
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        self.rtc
            .handle_input(input)
            .map_err(|e| PeerError::Rtc(e.to_string()))
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), PeerError> {
        self.rtc
            .handle_input(Input::Timeout(now))
            .map_err(|e| PeerError::Rtc(e.to_string()))
    }

    /// The next thing to do; call until it is a [`Poll::Timeout`].
    pub fn poll(&mut self) -> Result<Poll, PeerError> {
        loop {
            let output = self
                .rtc
                .poll_output()
                .map_err(|e| PeerError::Rtc(e.to_string()))?;
            let event = match output {
                Output::Timeout(at) => return Ok(Poll::Timeout(at)),
                Output::Transmit(t) => {
                    return Ok(Poll::Transmit(Transmit {
                        destination: t.destination,
                        contents: t.contents.to_vec(),
                    }));
                }
                Output::Event(event) => event,
            };
            match event {
                Event::Connected => {
                    self.connected = true;
                    return Ok(Poll::Event(PeerEvent::Connected));
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    if !self.closed =>
                {
                    self.closed = true;
                    return Ok(Poll::Event(PeerEvent::Closed));
                }
                Event::MediaAdded(added) if self.audio.is_none() => {
                    if let Some((pt, wire)) = self.codec(added.mid) {
                        self.audio = Some((added.mid, pt, wire));
                    }
                    continue;
                }
                Event::MediaData(data) => {
                    let timestamp = data.time.rebase(Frequency::EIGHT_KHZ).numer() as u32;
                    let (law, payload) = match data.params.spec().codec {
                        Codec::PCMU => (Law::Mu, data.data.to_vec()),
                        Codec::PCMA => (Law::A, data.data.to_vec()),
                        Codec::Opus => match self.opus.as_mut() {
                            Some(opus) => match opus.decode(&data.data) {
                                Ok(payload) => (Law::Mu, payload),
                                Err(e) => {
                                    tracing::debug!(error = %e, "client Opus frame dropped");
                                    continue;
                                }
                            },
                            None => continue,
                        },
                        _ => continue,
                    };
                    return Ok(Poll::Event(PeerEvent::Audio {
                        law,
                        timestamp,
                        payload,
                    }));
                }
                _ => continue,
            }
        }
    }

    /// A candidate the client trickled (the `candidate:…` line of an
    /// RTCIceCandidate); an empty one ends the trickle and is ignored.
    pub fn add_candidate(&mut self, candidate: &str) -> Result<(), PeerError> {
        let line = candidate.trim().trim_start_matches("a=");
        if line.is_empty() {
            return Ok(());
        }
        let candidate = Candidate::from_sdp_string(line)
            .map_err(|e| PeerError::Offer(format!("candidate {line:?}: {e}")))?;
        self.rtc.add_remote_candidate(candidate);
        Ok(())
    }

    /// The law the client's audio comes in (and ours to it goes in): its
    /// G.711, or μ-law for an Opus client (transcoded here).
    pub fn law(&self) -> Option<Law> {
        self.audio.map(|(_, _, wire)| match wire {
            Wire::G711(law) => law,
            Wire::Opus => Law::Mu,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Sends G.711 `payload` (8 kHz, `timestamp` in samples) to the
    /// client; dropped until connected.
    pub fn send_audio(
        &mut self,
        now: Instant,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), PeerError> {
        let Some((mid, pt, wire)) = self.audio else {
            return Ok(());
        };
        if !self.connected {
            return Ok(());
        }
        let (time, data) = match (wire, self.opus.as_mut()) {
            (Wire::Opus, Some(opus)) => {
                let time = MediaTime::new(u64::from(timestamp) * 6, Frequency::FORTY_EIGHT_KHZ);
                (time, opus.encode(payload).map_err(PeerError::Rtc)?)
            }
            (Wire::Opus, None) => return Ok(()),
            (Wire::G711(_), _) => (
                MediaTime::new(u64::from(timestamp), Frequency::EIGHT_KHZ),
                payload.to_vec(),
            ),
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return Ok(());
        };
        writer
            .write(pt, now, time, data)
            .map_err(|e| PeerError::Rtc(e.to_string()))
    }
}

/// The codec on the client's side of the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    G711(Law),
    Opus,
}

/// Whether an SDP offer has a PCMU or PCMA payload type (an `a=rtpmap`).
fn offers_g711(offer: &str) -> bool {
    offer.lines().any(|line| {
        let line = line.trim().to_ascii_uppercase();
        line.starts_with("A=RTPMAP:")
            && (line.contains(" PCMU/8000") || line.contains(" PCMA/8000"))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests start a virtual clock at now

    use super::*;

    const CHROMIUM: &str = include_str!("../tests/data/chromium-offer.sdp");

    fn local() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[test]
    fn a_chromium_offer_is_answered_ice_lite_with_g711_and_one_host_candidate() {
        let (peer, answer) = Peer::answer(Instant::now(), local(), CHROMIUM).unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains(" 127.0.0.1 40000 typ host"), "{answer}");
        assert!(answer.contains("a=rtcp-mux"), "{answer}");
        assert!(answer.contains("a=fingerprint:sha-256 "), "{answer}");
        assert!(answer.contains("PCMU/8000"), "{answer}");
        assert!(!answer.contains("opus"), "only G.711 is taken: {answer}");
        assert!(answer.contains("sdes:mid"), "{answer}");
        assert!(!answer.contains("transport-wide-cc"), "no TWCC: {answer}");
        assert!(!peer.is_connected());
    }

    #[test]
    fn what_is_not_a_usable_offer_is_refused_with_the_reason() {
        let now = Instant::now();
        let err = Peer::answer(now, local(), "hello").err().unwrap();
        assert!(matches!(err, PeerError::Offer(_)), "{err}");
        // G.722 only: no codec of ours.
        let err = Peer::answer(now, local(), &only(CHROMIUM, "9"))
            .err()
            .unwrap();
        assert!(matches!(err, PeerError::Negotiation(_)), "{err}");
        assert!(err.to_string().contains("PCMU, PCMA or Opus"), "{err}");
    }

    #[test]
    fn a_client_offering_only_opus_gets_opus_and_one_with_g711_never_does() {
        let now = Instant::now();
        let (_, answer) = Peer::answer(now, local(), &only(CHROMIUM, "111")).unwrap();
        assert!(answer.contains(" opus/48000"), "{answer}");
        assert!(!answer.contains("PCMU"), "{answer}");
        let (_, answer) = Peer::answer(now, local(), CHROMIUM).unwrap();
        assert!(!answer.contains("opus"), "{answer}");
    }

    /// `offer` with payload type `pt` alone in its audio section.
    fn only(offer: &str, pt: &str) -> String {
        offer
            .replace(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
                &format!("m=audio 9 UDP/TLS/RTP/SAVPF {pt}"),
            )
            .lines()
            .filter(|l| {
                !(l.starts_with("a=rtpmap:")
                    || l.starts_with("a=fmtp:")
                    || l.starts_with("a=rtcp-fb:"))
                    || l.contains(&format!(":{pt} "))
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n"
    }

    #[test]
    fn stray_datagrams_before_the_client_connects_are_taken_without_harm() {
        let now = Instant::now();
        let (mut peer, _) = Peer::answer(now, local(), CHROMIUM).unwrap();
        let source: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        for junk in [
            &b""[..],
            b"\x00\x01",
            &[0x80; 200],
            &[0x16, 0xfe, 0xfd, 0, 0, 0, 0],
        ] {
            let _ = peer.handle_packet(now, source, junk);
        }
        // Nothing to send but timers; no audio, no panic.
        loop {
            match peer.poll() {
                Ok(Poll::Timeout(_)) | Err(_) => break,
                Ok(Poll::Event(PeerEvent::Audio { .. })) => panic!("junk became audio"),
                Ok(_) => {}
            }
        }
        assert!(
            peer.send_audio(now, 0, &[0xff; 160]).is_ok(),
            "dropped until connected"
        );
    }
}
