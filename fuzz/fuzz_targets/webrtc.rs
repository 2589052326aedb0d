//! A client's SDP offer and every datagram that reaches a WebRTC peer's
//! socket come from anyone: any offer is answered or refused with the
//! reason, any datagram is taken or dropped, never a panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchyard_webrtc::{Peer, Poll};

const CHROMIUM: &str = include_str!("../../runtime/webrtc/tests/data/chromium-offer.sdp");

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let local = "127.0.0.1:40000".parse().unwrap();
    let _ = Peer::answer(now, local, &String::from_utf8_lossy(data));
    // The same bytes as datagrams to a peer that answered a real offer.
    let Ok((mut peer, _)) = Peer::answer(now, local, CHROMIUM) else {
        return;
    };
    let source = "127.0.0.1:50000".parse().unwrap();
    for (i, datagram) in data.split(|b| *b == 0xff).enumerate() {
        let at = now + Duration::from_millis(i as u64 * 20);
        let _ = peer.handle_packet(at, source, datagram);
        for _ in 0..64 {
            match peer.poll() {
                Ok(Poll::Timeout(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
});
