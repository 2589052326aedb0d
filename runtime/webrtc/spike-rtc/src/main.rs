//! The spike's other half (issue 16): the same headless Chromium call as
//! `runtime/webrtc/tests/chromium.rs` (its harness, `tests/common/spike.rs`),
//! answered by webrtc-rs's sans-IO `rtc` (ICE-lite, PCMU) instead of our
//! str0m `Peer`. It prints what both sides heard and the time spent in the
//! peer until connected, and fails as the str0m test does.

#[path = "../../tests/common/spike.rs"]
mod spike;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use spike::{Offers, Reports, enough, level, tone};
use switchyard_media::g711::Law;

/// What the peer saw of the browser.
#[derive(Debug, Default)]
struct Heard {
    connected: bool,
    packets: usize,
    loudest: f64,
    busy: Duration,
    sent: usize,
    setup: Duration,
}

use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_PCMU, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

fn run_peer(socket: UdpSocket, offers: Offers, reports: Reports, until: Instant) -> Heard {
    let local = socket.local_addr().unwrap();
    let (offer, reply) = offers.recv_timeout(Duration::from_secs(30)).expect("offer");
    let pcmu = RTCRtpCodec {
        mime_type: MIME_TYPE_PCMU.to_owned(),
        clock_rate: 8000,
        channels: 1,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    };
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: pcmu.clone(),
                payload_type: 0,
                ..Default::default()
            },
            RtpCodecKind::Audio,
        )
        .unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).unwrap();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(SettingEngineBuilder::new().with_lite(true).build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .unwrap();
    let ssrc = 0x1234_5678u32;
    let track = MediaStreamTrack::new(
        "s".into(),
        "t".into(),
        "l".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: pcmu.clone(),
            ..Default::default()
        }],
    );
    let sender = pc.add_track(track).unwrap();
    pc.set_remote_description(Instant::now(), RTCSessionDescription::offer(offer).unwrap())
        .unwrap();
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".into(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .unwrap();
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
        .unwrap();
    let answer = pc.create_answer(None).unwrap();
    pc.set_local_description(Instant::now(), answer).unwrap();
    reply.send(pc.local_description().unwrap().sdp).unwrap();

    let mut heard = Heard::default();
    let mut buf = vec![0u8; 2048];
    let (mut next_frame, mut timestamp, mut seq) = (Instant::now(), 0u32, 0u16);
    while Instant::now() < until && !enough(heard.packets, &reports) {
        let polled = Instant::now();
        while let Some(msg) = pc.poll_write() {
            if msg.transport.peer_addr.ip().is_loopback() {
                let _ = socket.send_to(&msg.message, msg.transport.peer_addr);
            }
        }
        while let Some(event) = pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = event
            {
                heard.connected = true;
                heard.setup = heard.busy + polled.elapsed();
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = message {
                heard.packets += 1;
                heard.loudest = heard.loudest.max(level(Law::Mu, &packet.payload));
            }
        }
        let now = Instant::now();
        heard.busy += now - polled;
        if heard.connected && now >= next_frame {
            let payload = tone(Law::Mu, timestamp);
            let packet = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: 0,
                    sequence_number: seq,
                    timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: Bytes::from(payload),
            };
            let sending = Instant::now();
            pc.rtp_sender(sender)
                .unwrap()
                .write_rtp(now, packet)
                .unwrap();
            heard.busy += sending.elapsed();
            heard.sent += 1;
            timestamp = timestamp.wrapping_add(160);
            seq = seq.wrapping_add(1);
            next_frame += Duration::from_millis(20);
            continue;
        }
        let wake = pc.poll_timeout().unwrap_or(now + Duration::from_secs(1));
        let deadline = wake.min(next_frame).min(until);
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((_, source)) if !source.ip().is_loopback() => {}
            Ok((n, source)) => {
                let a = Instant::now();
                pc.handle_read(TaggedBytesMut {
                    now: a,
                    transport: TransportContext {
                        local_addr: local,
                        peer_addr: source,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&buf[..n]),
                })
                .unwrap();
                heard.busy += a.elapsed();
            }
            Err(_) => {
                let a = Instant::now();
                pc.handle_timeout(a).unwrap();
                heard.busy += a.elapsed();
            }
        }
    }
    heard
}

fn main() {
    let (heard, report) = spike::call(run_peer);
    let heard = heard.unwrap_or_else(|_| panic!("the peer failed; the browser said {report}"));
    println!(
        "rtc spike: {heard:?}; {:?} in the peer until connected; browser: {report}",
        heard.setup
    );
    assert!(heard.connected && heard.packets >= 500, "{heard:?}");
    assert!(report["received"].as_u64().unwrap_or(0) >= 500, "{report}");
    assert!(report["energy"].as_f64().unwrap_or(0.0) > 0.01, "{report}");
}
