//! The spike that chose the WebRTC library (issue 16): headless Chromium
//! (Debian `chromium`) calls a [`Peer`] over 127.0.0.1 with its fake
//! microphone. The page posts its SDP offer to a small HTTP server here,
//! the peer answers (ICE-lite, DTLS-SRTP, PCMU/PCMA), and audio flows both
//! ways: the peer hears the browser's tone, the browser's `getStats`
//! reports the 1 kHz tone the peer sends (packets and audio energy).

// The edge of the spike: real sockets and the wall clock (the crate's
// clippy.toml keeps them out of the sans-IO library itself).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use switchyard_media::g711::Law;
use switchyard_webrtc::{Peer, PeerEvent, Poll};

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
    /// Mean absolute sample of the loudest packet.
    loudest: f64,
    law: Option<Law>,
    /// Time in the peer's calls (and the sends they ask for), and the
    /// packets it sent: printed for the spike.
    busy: Duration,
    sent: usize,
    /// `busy` when ICE and DTLS were up: the setup's share.
    setup: Duration,
}

/// Answers the first offer, then runs the peer until `until`, sending a
/// 1 kHz tone (PCMU or PCMA as negotiated) every 20 ms once connected.
fn run_peer(
    socket: UdpSocket,
    offers: mpsc::Receiver<(String, mpsc::Sender<String>)>,
    reports: Reports,
    until: Instant,
) -> Heard {
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
    // Until both sides heard 10 s of the other, or `until`.
    let enough = |heard: &Heard| {
        let report = reports.lock().unwrap();
        heard.packets >= 500
            && report["received"].as_u64().unwrap_or(0) >= 500
            && report["energy"].as_f64().unwrap_or(0.0) > 0.01
    };
    while Instant::now() < until && !enough(&heard) {
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
                    let mut samples = Vec::new();
                    law.decode(&payload, &mut samples);
                    let level = samples
                        .iter()
                        .map(|s| f64::from(s.unsigned_abs()))
                        .sum::<f64>()
                        / samples.len().max(1) as f64;
                    heard.loudest = heard.loudest.max(level);
                }
                Poll::Event(PeerEvent::Closed) => return heard,
                Poll::Timeout(at) => break at,
            }
        };
        let now = Instant::now();
        heard.busy += now - polled;
        if peer.is_connected() && now >= next_frame {
            let law = peer.law().unwrap_or(Law::Mu);
            let samples: Vec<i16> = (0..160)
                .map(|i| {
                    let t = f64::from(timestamp + i) / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
                })
                .collect();
            let mut payload = vec![0u8; 160];
            law.encode(&samples, &mut payload);
            let sending = Instant::now();
            peer.send_audio(now, timestamp, &payload)
                .expect("audio goes out");
            heard.busy += sending.elapsed();
            heard.sent += 1;
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

#[test]
fn chromium_calls_a_peer_and_audio_flows_both_ways() {
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
