//! The spike that chose the WebRTC library (issue 16): headless Chromium
//! (Debian `chromium`) calls a [`Peer`] over 127.0.0.1 with its fake
//! microphone. The page posts its SDP offer to a small HTTP server here,
//! the peer answers (ICE-lite, DTLS-SRTP, PCMU/PCMA), and audio flows both
//! ways: the peer hears the browser's beep, the browser's `getStats`
//! reports the 1 kHz tone the peer sends (packets and audio energy).
//! `spike-rtc/` runs the same call against webrtc-rs's `rtc`.

// The edge of the spike: real sockets and the wall clock (the crate's
// clippy.toml keeps them out of the sans-IO library itself).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "common/spike.rs"]
mod spike;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use spike::{Offers, Reports, enough, level, tone};
use switchyard_media::g711::Law;
use switchyard_webrtc::{Peer, PeerEvent, Poll};

/// What the peer saw of the browser.
#[derive(Debug, Default)]
struct Heard {
    connected: bool,
    packets: usize,
    /// Mean absolute sample of the loudest packet.
    loudest: f64,
    law: Option<Law>,
    /// Time in the peer's calls (and the sends they ask for) until ICE
    /// and DTLS were up: printed for the spike.
    busy: Duration,
    setup: Duration,
}

/// Answers the first offer, then runs the peer until both sides heard
/// enough (or `until`), sending a 1 kHz tone every 20 ms once connected.
fn run_peer(socket: UdpSocket, offers: Offers, reports: Reports, until: Instant) -> Heard {
    let local = socket.local_addr().unwrap();
    let (offer, reply) = offers
        .recv_timeout(Duration::from_secs(30))
        .expect("the browser sent an offer");
    if let Ok(path) = std::env::var("SPIKE_OFFER_TO") {
        std::fs::write(path, &offer).unwrap();
    }
    let (mut peer, answer) = match Peer::answer(Instant::now(), local, &offer) {
        Ok(answered) => answered,
        Err(e) => {
            let _ = reply.send(format!("refused: {e}"));
            panic!("the offer was refused: {e}\n{offer}");
        }
    };
    reply.send(answer).unwrap();
    let mut heard = Heard::default();
    let mut buf = vec![0u8; 2048];
    let (mut next_frame, mut timestamp) = (Instant::now(), 0u32);
    while Instant::now() < until && !enough(heard.packets, &reports) {
        let polled = Instant::now();
        let wake = loop {
            match peer.poll().expect("the peer keeps going") {
                Poll::Transmit(t) => {
                    assert!(t.destination.ip().is_loopback(), "{t:?}");
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Poll::Event(PeerEvent::Connected) => {
                    heard.connected = true;
                    heard.setup = heard.busy + polled.elapsed();
                }
                Poll::Event(PeerEvent::Audio { law, payload, .. }) => {
                    heard.packets += 1;
                    heard.law = Some(law);
                    heard.loudest = heard.loudest.max(level(law, &payload));
                }
                Poll::Event(PeerEvent::Closed) => return heard,
                Poll::Timeout(at) => break at,
            }
        };
        let now = Instant::now();
        heard.busy += now - polled;
        if peer.is_connected() && now >= next_frame {
            let payload = tone(peer.law().unwrap_or(Law::Mu), timestamp);
            peer.send_audio(now, timestamp, &payload)
                .expect("audio goes out");
            timestamp = timestamp.wrapping_add(160);
            next_frame += Duration::from_millis(20);
            continue;
        }
        let deadline = wake.min(next_frame).min(until);
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv_from(&mut buf) {
            // Chromium also checks from the machine's other addresses;
            // answering those would leave 127.0.0.1, so only its loopback
            // candidate gets an answer (and wins).
            Ok((_, source)) if !source.ip().is_loopback() => {}
            Ok((n, source)) => {
                let arrived = Instant::now();
                peer.handle_packet(arrived, source, &buf[..n])
                    .expect("the peer reads what the browser sends");
                heard.busy += arrived.elapsed();
            }
            Err(_) => {
                let woke = Instant::now();
                peer.handle_timeout(woke).unwrap();
                heard.busy += woke.elapsed();
            }
        }
    }
    heard
}

#[test]
fn chromium_calls_a_peer_and_audio_flows_both_ways() {
    let (heard, report) = spike::call(run_peer);
    let heard = heard.unwrap_or_else(|_| panic!("the peer failed; the browser said {report}"));
    eprintln!(
        "spike: {heard:?}; {:?} in the peer until connected; browser: {report}",
        heard.setup
    );
    assert!(
        heard.connected,
        "ICE and DTLS never came up: {heard:?}; browser: {report}"
    );
    assert!(
        heard.packets >= 500,
        "the browser's audio: {heard:?}; browser: {report}"
    );
    assert!(
        heard.loudest > 100.0,
        "the browser's fake microphone beeps: {heard:?}"
    );
    assert_eq!(report["state"], "connected", "{report}");
    let received = report["received"].as_u64().unwrap_or(0);
    assert!(
        received >= 500,
        "the browser got the peer's audio: {report}"
    );
    assert!(
        report["energy"].as_f64().unwrap_or(0.0) > 0.01,
        "and it is a tone: {report}"
    );
}
