//! The spike's browser side: a page that calls with the fake microphone
//! and reports `getStats`, the small HTTP server that serves it and hands
//! its offer to the peer under test, and the run that ties them to a
//! headless Chromium. Shared by `tests/chromium.rs` (str0m) and
//! `spike-rtc/` (webrtc-rs's rtc).
#![allow(dead_code)] // each includer uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use switchyard_media::g711::Law;

#[path = "chromium.rs"]
mod chromium;
#[path = "../../../tests/common/tool.rs"]
mod tool;

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
pub type Reports = Arc<Mutex<serde_json::Value>>;

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

/// An offer and where its answer goes.
pub type Offers = mpsc::Receiver<(String, mpsc::Sender<String>)>;

/// Whether both sides heard enough of the other: `packets` at the peer,
/// and as many with energy in the browser's report.
pub fn enough(packets: usize, reports: &Reports) -> bool {
    let report = reports.lock().unwrap();
    packets >= 500
        && report["received"].as_u64().unwrap_or(0) >= 500
        && report["energy"].as_f64().unwrap_or(0.0) > 0.01
}

/// 20 ms of a 1 kHz tone from sample `timestamp` on, in `law`.
pub fn tone(law: Law, timestamp: u32) -> Vec<u8> {
    let samples: Vec<i16> = (0..160)
        .map(|i| {
            let t = f64::from(timestamp + i) / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect();
    let mut payload = vec![0u8; 160];
    law.encode(&samples, &mut payload);
    payload
}

/// Mean absolute sample of a G.711 payload.
pub fn level(law: Law, payload: &[u8]) -> f64 {
    let mut samples = Vec::new();
    law.decode(payload, &mut samples);
    samples
        .iter()
        .map(|s| f64::from(s.unsigned_abs()))
        .sum::<f64>()
        / samples.len().max(1) as f64
}

/// Opens the page in Chromium and runs `peer` (on its own thread, with
/// the media socket, the offers, the reports and a deadline 30 s away)
/// until it returns; what it returned and the browser's last report.
pub fn call<H: Send + 'static>(
    peer: impl FnOnce(UdpSocket, Offers, Reports, Instant) -> H + Send + 'static,
) -> (thread::Result<H>, serde_json::Value) {
    let web_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let page: SocketAddr = web_listener.local_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let reports: Reports = Arc::new(Mutex::new(serde_json::Value::Null));
    let (offers_tx, offers) = mpsc::channel();
    let shown = Arc::clone(&reports);
    thread::spawn(move || web(web_listener, offers_tx, shown));
    let until = Instant::now() + Duration::from_secs(30);
    let heard_reports = Arc::clone(&reports);
    let running = thread::spawn(move || peer(socket, offers, heard_reports, until));
    let profile = tempfile::tempdir().unwrap();
    let mut browser = chromium::chromium(&format!("http://{page}/"), profile.path());
    let heard = running.join();
    let report = reports.lock().unwrap().clone();
    let _ = browser.kill();
    let _ = browser.wait();
    (heard, report)
}
