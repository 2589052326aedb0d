//! The spike's other half (issue 16): the same headless Chromium call as
//! `runtime/webrtc/tests/chromium.rs`, answered by webrtc-rs's sans-IO
//! `rtc` (ICE-lite, PCMU) instead of our str0m `Peer`. It prints what
//! both sides heard and the time spent in the peer until connected.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use switchyard_media::g711::Law;

const PAGE: &str = r#"<!doctype html><meta charset=utf-8><title>spike</title>
<script type=module>
const report = (o) => fetch('/report', {method: 'POST', body: JSON.stringify(o)});
try {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const pc = new RTCPeerConnection();
  // Played out, so that getStats measures the audio's energy.
  pc.ontrack = (e) => { const a = new Audio(); a.srcObject = e.streams[0] || new MediaStream([e.track]); a.play(); };
  stream.getTracks().forEach((t) => pc.addTrack(t, stream));
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await (await fetch('/offer', {method: 'POST', body: pc.localDescription.sdp})).text();
  if (!answer.startsWith('v=0')) throw new Error(answer);
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  setInterval(async () => {
    const r = {state: pc.connectionState};
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        r.received = s.packetsReceived; r.energy = s.totalAudioEnergy; r.codec = s.codecId;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') r.sent = s.packetsSent;
    });
    report(r);
  }, 250);
} catch (e) { report({error: String(e)}); }
</script>"#;

/// The browser's last report.
type Reports = Arc<Mutex<serde_json::Value>>;

/// A request's method, path and body.
fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn respond(stream: &mut TcpStream, kind: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// Serves the page, hands offers to `offers` (answering what comes back)
/// and keeps the browser's reports.
fn web(
    listener: TcpListener,
    offers: mpsc::Sender<(String, mpsc::Sender<String>)>,
    reports: Reports,
) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let Some((method, path, body)) = read_request(&mut stream) else {
            continue;
        };
        match (method.as_str(), path.as_str()) {
            ("GET", "/") => respond(&mut stream, "text/html", PAGE),
            ("POST", "/offer") => {
                let (reply, answer) = mpsc::channel();
                let offer = String::from_utf8_lossy(&body).into_owned();
                if offers.send((offer, reply)).is_err() {
                    return;
                }
                let answer = answer
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                respond(&mut stream, "application/sdp", &answer);
            }
            ("POST", "/report") => {
                if let Ok(report) = serde_json::from_slice(&body) {
                    *reports.lock().unwrap() = report;
                }
                respond(&mut stream, "text/plain", "");
            }
            _ => respond(&mut stream, "text/plain", ""),
        }
    }
}

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

fn run_peer(
    socket: UdpSocket,
    offers: mpsc::Receiver<(String, mpsc::Sender<String>)>,
    reports: Reports,
    until: Instant,
) -> Heard {
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
    let enough = |heard: &Heard| {
        let report = reports.lock().unwrap();
        heard.packets >= 500
            && report["received"].as_u64().unwrap_or(0) >= 500
            && report["energy"].as_f64().unwrap_or(0.0) > 0.01
    };
    while Instant::now() < until && !enough(&heard) {
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
                let mut samples = Vec::new();
                Law::Mu.decode(&packet.payload, &mut samples);
                let level = samples
                    .iter()
                    .map(|s| f64::from(s.unsigned_abs()))
                    .sum::<f64>()
                    / samples.len().max(1) as f64;
                heard.loudest = heard.loudest.max(level);
            }
        }
        let now = Instant::now();
        heard.busy += now - polled;
        if heard.connected && now >= next_frame {
            let samples: Vec<i16> = (0..160)
                .map(|i| {
                    let t = f64::from(timestamp + i) / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
                })
                .collect();
            let mut payload = vec![0u8; 160];
            Law::Mu.encode(&samples, &mut payload);
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

fn chromium(url: &str, profile: &std::path::Path) -> std::process::Child {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "chromium is not installed and this test needs it: apt-get install chromium"
    );
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--disable-background-networking",
            "--disable-gpu",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            // The peer's candidate is 127.0.0.1: without this Chromium
            // does not pair loopback candidates, and tests stay on it.
            "--allow-loopback-in-peer-connection",
            // The peer's audio plays without a click.
            "--autoplay-policy=no-user-gesture-required",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts")
}

fn main() {
    let web_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page: SocketAddr = web_listener.local_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reports: Reports = Arc::new(Mutex::new(serde_json::Value::Null));
    let (offers_tx, offers) = mpsc::channel();
    let shown = Arc::clone(&reports);
    thread::spawn(move || web(web_listener, offers_tx, shown));
    let until = Instant::now() + Duration::from_secs(30);
    let heard_reports = Arc::clone(&reports);
    let peer = thread::spawn(move || run_peer(socket, offers, heard_reports, until));

    let profile = tempfile::tempdir().unwrap();
    let mut browser = chromium(&format!("http://{page}/"), profile.path());
    let heard = peer.join();
    let report = reports.lock().unwrap().clone();
    let _ = browser.kill();
    let _ = browser.wait();
    let heard = heard.unwrap_or_else(|_| panic!("the peer failed; the browser said {report}"));

    println!(
        "rtc spike: {heard:?}; {:?} in the peer until connected; browser: {report}",
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
