//! A [`Peer`] against a str0m client (the WebRTC stack a browser would
//! be), connected through in-memory datagrams on a virtual clock: no
//! socket, no sleep. Shared by `tests/pair.rs` and `benches/srtp.rs`.
#![allow(dead_code)] // each includer uses part of it

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use switchyard_media::g711::Law;
use switchyard_webrtc::{Peer, PeerEvent, Poll};

/// The client: str0m offering one send-receive audio section in one codec.
pub struct Client {
    pub rtc: Rtc,
    pub mid: Mid,
    pub addr: SocketAddr,
    pub heard: Vec<(u32, Vec<u8>)>,
    pub connected: bool,
}

pub struct Pair {
    pub now: Instant,
    pub client: Client,
    pub peer: Peer,
    pub peer_addr: SocketAddr,
    pub peer_heard: Vec<(Law, u32, Vec<u8>)>,
    pub peer_connected: bool,
    /// The client's one codec: PCMU or Opus.
    pub codec: Codec,
}

impl Pair {
    /// A PCMU client.
    pub fn new() -> Self {
        Self::with(Codec::PCMU)
    }

    pub fn with(codec: Codec) -> Self {
        #[allow(clippy::disallowed_methods)] // the virtual clock starts here
        let now = Instant::now();
        let (addr, peer_addr) = (
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:40000".parse().unwrap(),
        );
        let mut rtc = (RtcConfig::new().clear_codecs())
            .enable_pcmu(codec == Codec::PCMU)
            .enable_opus(codec == Codec::Opus)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (peer, answer) = Peer::answer(now, peer_addr, &offer.to_sdp_string()).unwrap();
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        Self {
            now,
            client: Client {
                rtc,
                mid,
                addr,
                heard: Vec::new(),
                connected: false,
            },
            peer,
            peer_addr,
            peer_heard: Vec::new(),
            peer_connected: false,
            codec,
        }
    }

    /// Delivers everything both sides send, then moves the clock to the
    /// earlier of their timers (at most `step`).
    pub fn run(&mut self, step: Duration) {
        let mut wake = self.now + step;
        loop {
            let mut quiet = true;
            loop {
                match self.client.rtc.poll_output().unwrap() {
                    Output::Timeout(at) => {
                        wake = wake.min(at);
                        break;
                    }
                    Output::Transmit(t) => {
                        quiet = false;
                        self.peer
                            .handle_packet(self.now, self.client.addr, &t.contents)
                            .unwrap();
                    }
                    Output::Event(Event::Connected) => self.client.connected = true,
                    Output::Event(Event::MediaData(data)) => {
                        self.client
                            .heard
                            .push((data.time.numer() as u32, data.data.to_vec()));
                    }
                    Output::Event(_) => {}
                }
            }
            loop {
                match self.peer.poll().unwrap() {
                    Poll::Timeout(at) => {
                        wake = wake.min(at);
                        break;
                    }
                    Poll::Transmit(t) => {
                        quiet = false;
                        assert_eq!(t.destination, self.client.addr);
                        let receive = Receive {
                            proto: Protocol::Udp,
                            source: self.peer_addr,
                            destination: self.client.addr,
                            contents: t.contents.as_slice().try_into().unwrap(),
                        };
                        self.client
                            .rtc
                            .handle_input(Input::Receive(self.now, receive))
                            .unwrap();
                    }
                    Poll::Event(PeerEvent::Connected) => self.peer_connected = true,
                    Poll::Event(PeerEvent::Audio {
                        law,
                        timestamp,
                        payload,
                    }) => self.peer_heard.push((law, timestamp, payload)),
                    Poll::Event(PeerEvent::Closed) => {}
                }
            }
            if quiet {
                break;
            }
        }
        self.now = wake.max(self.now);
        self.client
            .rtc
            .handle_input(Input::Timeout(self.now))
            .unwrap();
        self.peer.handle_timeout(self.now).unwrap();
    }

    pub fn connect(&mut self) {
        for _ in 0..500 {
            if self.client.connected && self.peer_connected {
                return;
            }
            self.run(Duration::from_millis(50));
        }
        panic!(
            "ICE/DTLS never came up (client {}, peer {})",
            self.client.connected, self.peer_connected
        );
    }

    /// The client sends 20 ms frame `i` (160 bytes of PCMU, or an Opus
    /// packet).
    pub fn client_sends(&mut self, i: u32, frame: &[u8]) {
        let time = match self.codec {
            Codec::Opus => MediaTime::new(u64::from(i * 960), Frequency::FORTY_EIGHT_KHZ),
            _ => MediaTime::new(u64::from(i * 160), Frequency::EIGHT_KHZ),
        };
        let config = self.client.rtc.codec_config();
        let pt = config.find(|p| p.spec().codec == self.codec).unwrap().pt();
        let writer = self.client.rtc.writer(self.client.mid).unwrap();
        writer.write(pt, self.now, time, frame.to_vec()).unwrap();
    }
}
