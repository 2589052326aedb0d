//! What a WebRTC client's audio costs the runtime per packet, without
//! sockets: one 20 ms PCMU frame each way through a connected [`Peer`]
//! (SRTP encrypt and decrypt, RTCP bookkeeping in str0m) against the same
//! frame as plain RTP (our header written and read back). The bridged
//! sessions benchmark of issue 16 (sockets, a load client) comes with
//! WebRTC calls; this measures the part WebRTC adds per packet, and what
//! an Opus client adds on top (transcoding to and from G.711).

#[path = "../tests/common/pair.rs"]
mod pair;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pair::Pair;
use switchyard_media::g711::Law;
use switchyard_media::rtp::{self, Header};
use switchyard_media::tone::sine;
use switchyard_webrtc::opus::Transcoder;

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("webrtc");
    let mut pair = Pair::new();
    pair.connect();
    let frame = [0x55u8; 160];
    let mut i = 0u32;
    group.bench_function("srtp-frame-each-way", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            each_way(&mut pair, i, &frame, &frame);
        })
    });
    group.bench_function("plain-rtp-frame-each-way", |b| {
        let mut out = Vec::with_capacity(200);
        b.iter(|| {
            i = i.wrapping_add(1);
            for _ in 0..2 {
                let header = Header {
                    marker: false,
                    pt: 0,
                    seq: i as u16,
                    ts: i.wrapping_mul(160),
                    ssrc: 0x1234_5678,
                };
                header.build(&mut out, frame.len()).copy_from_slice(&frame);
                black_box(rtp::parse(black_box(&out)).unwrap());
            }
        })
    });
    // The same through an Opus-only client: the peer decodes the client's
    // Opus frame to μ-law and encodes ours (libopus both ways), beside
    // SRTP; the client sends a frame encoded once, outside the loop.
    let mut pair = Pair::with(str0m::format::Codec::Opus);
    pair.connect();
    let speech: Vec<u8> = (sine(440.0, 20, 0.3).iter())
        .map(|&s| Law::Mu.encode_sample(s))
        .collect();
    let packet = Transcoder::new().unwrap().encode(&speech).unwrap();
    group.bench_function("opus-frame-each-way", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            each_way(&mut pair, i, &packet, &speech);
        })
    });
    group.finish();
}

/// Frame `i`: the client sends `theirs`, the peer sends `ours` (μ-law),
/// and both are delivered.
fn each_way(pair: &mut Pair, i: u32, theirs: &[u8], ours: &[u8]) {
    pair.client_sends(i, theirs);
    pair.peer
        .send_audio(pair.now, i.wrapping_mul(160), ours)
        .unwrap();
    pair.run(Duration::from_millis(20));
    // Keep what was heard from growing without bound.
    pair.peer_heard.clear();
    pair.client.heard.clear();
}

criterion_group!(benches, srtp);
criterion_main!(benches);
