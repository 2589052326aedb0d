//! What a WebRTC client's audio costs the runtime per packet, without
//! sockets: one 20 ms PCMU frame each way through a connected [`Peer`]
//! (SRTP encrypt and decrypt, RTCP bookkeeping in str0m) against the same
//! frame as plain RTP (our header written and read back). The bridged
//! sessions benchmark of issue 16 (sockets, a load client) comes with
//! WebRTC calls; this measures the part WebRTC adds per packet.

#[path = "../tests/common/pair.rs"]
mod pair;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pair::Pair;
use switchyard_media::rtp::{self, Header};

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("webrtc");
    let mut pair = Pair::new();
    pair.connect();
    let frame = [0x55u8; 160];
    let mut i = 0u32;
    group.bench_function("srtp-frame-each-way", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            pair.client_sends(i, &frame);
            pair.peer
                .send_audio(pair.now, i.wrapping_mul(160), &frame)
                .unwrap();
            pair.run(Duration::from_millis(20));
            // Keep what was heard from growing without bound.
            pair.peer_heard.clear();
            pair.client.heard.clear();
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
    group.finish();
}

criterion_group!(benches, srtp);
criterion_main!(benches);
