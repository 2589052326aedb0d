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

/// A client that offers only Opus: the peer transcodes, so the client's
/// Opus tone reaches the owner as μ-law, and the owner's μ-law tone
/// reaches the client as Opus, each still its tone.
#[test]
fn an_opus_client_is_transcoded_both_ways() {
    use switchyard_media::tone::{goertzel, sine};
    use switchyard_webrtc::opus::Transcoder;

    let mut pair = Pair::with(str0m::format::Codec::Opus);
    pair.connect();
    assert_eq!(pair.peer.law(), Some(Law::Mu), "the owner sees μ-law");
    let mut client_codec = Transcoder::new().unwrap();
    let ulaw = |pcm: &[i16]| {
        pcm.iter()
            .map(|&s| Law::Mu.encode_sample(s))
            .collect::<Vec<_>>()
    };
    let (theirs, ours) = (sine(700.0, 1_000, 0.5), sine(1_300.0, 1_000, 0.5));
    for (i, (a, b)) in theirs.chunks(160).zip(ours.chunks(160)).enumerate() {
        let i = i as u32;
        let packet = client_codec.encode(&ulaw(a)).unwrap();
        pair.client_sends(i, &packet);
        pair.peer.send_audio(pair.now, i * 160, &ulaw(b)).unwrap();
        pair.run(Duration::from_millis(20));
    }
    pair.run(Duration::from_millis(100));

    let pcm = |ulaw: &[u8]| {
        ulaw.iter()
            .map(|&b| Law::Mu.decode_sample(b))
            .collect::<Vec<_>>()
    };
    // Most of the tone's power (0.25) survives, after the codec's start-up
    // (the first 200 ms), and none of the other side's.
    let is_tone = |heard: Vec<i16>, hz: f64, not: f64| {
        assert!(heard.len() >= 40 * 160, "{} samples", heard.len());
        let settled = &heard[1_600..];
        assert!(
            goertzel(settled, hz) > 0.15,
            "{hz} Hz: {}",
            goertzel(settled, hz)
        );
        assert!(
            goertzel(settled, not) < 0.01,
            "{not} Hz: {}",
            goertzel(settled, not)
        );
    };
    let at_peer = (pair.peer_heard.iter()).flat_map(|(_, _, p)| pcm(p));
    is_tone(at_peer.collect(), 700.0, 1_300.0);
    let at_client = (pair.client.heard.iter())
        .flat_map(|(_, packet)| pcm(&client_codec.decode(packet).unwrap()));
    is_tone(at_client.collect(), 1_300.0, 700.0);
}
