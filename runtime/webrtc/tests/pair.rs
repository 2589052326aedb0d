//! A [`Peer`] against a str0m client through in-memory datagrams on a
//! virtual clock: ICE, DTLS and SRTP come up, and G.711 audio goes both
//! ways, in order, with its timestamps.

mod common;

use std::time::Duration;

use common::pair::Pair;
use switchyard_media::g711::Law;

#[test]
fn a_client_connects_and_audio_goes_both_ways_in_order() {
    let mut pair = Pair::new();
    pair.connect();
    assert_eq!(pair.peer.law(), Some(Law::Mu));
    for i in 0..50u32 {
        pair.client_sends(i, &[(i % 100) as u8; 160]);
        pair.peer
            .send_audio(pair.now, 1_000 + i * 160, &[(i % 100) as u8 ^ 0x55; 160])
            .unwrap();
        pair.run(Duration::from_millis(20));
    }
    pair.run(Duration::from_millis(100));
    assert_eq!(pair.peer_heard.len(), 50, "the client's 50 frames");
    for (i, (law, _, payload)) in pair.peer_heard.iter().enumerate() {
        assert_eq!(*law, Law::Mu);
        assert_eq!(payload, &vec![(i % 100) as u8; 160], "frame {i}");
    }
    let stamps: Vec<u32> = pair.peer_heard.iter().map(|(_, t, _)| *t).collect();
    assert!(
        stamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160),
        "{stamps:?}"
    );
    assert_eq!(pair.client.heard.len(), 50, "the peer's 50 frames");
    for (i, (_, payload)) in pair.client.heard.iter().enumerate() {
        assert_eq!(payload, &vec![(i % 100) as u8 ^ 0x55; 160], "frame {i}");
    }
}
