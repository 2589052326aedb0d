//! RTP and RTCP arrive from anyone who finds the port: any datagrams are
//! parsed, used or dropped by a session, never a panic.
#![no_main]

use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use switchyard::media::session::{Session, SessionConfig};
use switchyard::media::{StreamParams, dtmf, rtcp, rtp};
use switchyard::sip::sdp::{Codec, DTMF_PT, Direction};

fuzz_target!(|data: &[u8]| {
    // The parsers alone, on the whole input.
    let _ = rtp::parse(data);
    let _ = dtmf::Payload::parse(data);
    for packet in rtcp::packets(data) {
        match packet {
            Ok(rtcp::Packet::Sender { blocks, .. } | rtcp::Packet::Receiver { blocks, .. }) => {
                blocks.for_each(drop)
            }
            Ok(rtcp::Packet::Other(_)) => {}
            Err(_) => break,
        }
    }
    // A session fed datagrams cut from the input: each is a control byte
    // (bit 0: RTCP, bit 1: force version 2, bits 2–6: milliseconds × 8 to
    // wait first, bit 7: tick after), a length byte, then the datagram.
    let mut now = Instant::now();
    let config = SessionConfig {
        ssrc: 7,
        timeout: Duration::from_secs(1),
        cname: "fuzz".into(),
        wall: UNIX_EPOCH,
    };
    let mut session = Session::new(now, config);
    let peer = "192.0.2.7:4000".parse().unwrap();
    session.start(
        now,
        StreamParams {
            codec: Codec::PCMU,
            dtmf_pt: Some(DTMF_PT),
            remote: Some(peer),
            direction: Direction::SendRecv,
        },
    );
    let mut out = Vec::new();
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let mut datagram = tail[..len].to_vec();
        rest = &tail[len..];
        if control & 2 != 0
            && let Some(first) = datagram.first_mut()
        {
            *first = 0x80 | (*first & 0x3f);
        }
        now += Duration::from_millis(u64::from((control >> 2) & 0x1f) * 8);
        if control & 1 == 0 {
            session.handle_rtp(now, peer, &datagram);
        } else {
            session.handle_rtcp(now, "192.0.2.7:4001".parse().unwrap(), &datagram);
        }
        if control & 0x80 != 0 {
            session.tick(now, &mut out);
            let _ = session.poll_received();
            let _ = session.poll_rtcp(now);
        }
        while session.poll_event().is_some() {}
    }
    let _ = session.stats();
});
