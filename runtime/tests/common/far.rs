//! A fake far end for media tests: one thread with a SIP and an RTP
//! socket on 127.0.0.1. It answers an INVITE 200 with `sdp::answer` (or
//! refuses it); from the ACK on it sends, every 20 ms, a DTMF 9 (when
//! telephone-event was agreed) and then a tone (`tone::sine`, G.711); it
//! records the RTP and the requests it gets, answers them 200, and may
//! hang up itself. Its RTP header reading and writing are its own, so the
//! UA's (and the server's) are checked against something else than
//! themselves.
//!
//! Include with `#[path = "common/far.rs"] mod far;`.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rsip::{Method, SipMessage};
use switchyard::media::g711::Law;
use switchyard::media::tone::sine;
use switchyard::sip::message::{self, Inbound, Limits};
use switchyard::sip::sdp;

/// How long the far end waits for what a test expects of it.
pub const WAIT: Duration = Duration::from_secs(5);

/// What the fake far end does with an INVITE.
#[derive(Clone, Copy)]
pub enum Answer {
    /// 200 with an SDP answer; then a tone at `hz`, and a BYE after
    /// `hangup_after` if given.
    Tone {
        hz: f64,
        hangup_after: Option<Duration>,
    },
    Refuse(u16),
    /// A trunk: 407 to an INVITE without good credentials for
    /// [`TRUNK_USER`] / [`TRUNK_PASSWORD`] in realm `carrier`, then as `Tone`.
    Challenge {
        hz: f64,
    },
}

pub const TRUNK_USER: &str = "acme-trunk";
pub const TRUNK_PASSWORD: &str = "trunk-secret-1";

/// An RTP packet as the fake far end read it (its own parser).
#[derive(Debug, Clone)]
pub struct Rtp {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub payload: Vec<u8>,
}

#[derive(Default)]
pub struct FarLog {
    pub invites: usize,
    pub acks: usize,
    /// INVITEs answered with a 407 (`Answer::Challenge`).
    pub challenged: usize,
    /// Methods of the in-dialog requests from the UA, with their bodies.
    pub requests: Vec<(String, String)>,
    pub rtp: Vec<Rtp>,
    /// Status of the answer to the far end's own BYE.
    pub bye_answered: Option<u16>,
}

pub struct FarEnd {
    pub sip: SocketAddr,
    pub log: Arc<Mutex<FarLog>>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
}

impl FarEnd {
    pub fn start(answer: Answer) -> FarEnd {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&sip, &rtp] {
            s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        }
        let log = Arc::new(Mutex::new(FarLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let addr = sip.local_addr().unwrap();
        let thread = thread::spawn({
            let (log, stop) = (log.clone(), stop.clone());
            move || far_end(sip, rtp, answer, &log, &stop)
        });
        FarEnd {
            sip: addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn log(&self) -> std::sync::MutexGuard<'_, FarLog> {
        lock(&self.log)
    }

    /// Waits until `done` holds on the log, at most 5 s.
    pub fn wait(&self, what: &str, done: impl Fn(&FarLog) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.log()) {
            assert!(Instant::now() < deadline, "far end: {what} within {WAIT:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FarEnd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The log, even after a failed assertion elsewhere poisoned it.
pub fn lock(log: &Mutex<FarLog>) -> std::sync::MutexGuard<'_, FarLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake far end's loop (bounded: 30 s at most).
pub fn far_end(
    sip: UdpSocket,
    rtp: UdpSocket,
    answer: Answer,
    log: &Mutex<FarLog>,
    stop: &AtomicBool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 65_536];
    // Set by the INVITE: where the UA's RTP and SIP go, the law, the dialog.
    let mut media: Option<(SocketAddr, Law, u8, Option<u8>)> = None;
    let mut invite: Option<(rsip::Request, SocketAddr)> = None;
    let mut acked_at: Option<Instant> = None;
    let mut hung_up = false;
    let (mut seq, mut ts, mut next_frame) = (1000u16, 5000u32, Instant::now());
    let mut book = switchyard::sip::digest::NonceBook::new(
        Duration::from_secs(60),
        rand::SeedableRng::seed_from_u64(60),
    );
    let challenges = matches!(answer, Answer::Challenge { .. });
    let answer = match answer {
        Answer::Challenge { hz } => Answer::Tone {
            hz,
            hangup_after: None,
        },
        other => other,
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Ok((n, from)) = sip.recv_from(&mut buf) {
            match message::parse_datagram(&buf[..n], &Limits::default()) {
                Ok(Inbound::Message(SipMessage::Request(req))) => match req.method {
                    Method::Invite => {
                        lock(log).invites += 1;
                        if challenges && !authorized(&mut book, &req) {
                            lock(log).challenged += 1;
                            let mut reply = message::response(
                                &req,
                                407,
                                "Proxy Authentication Required",
                                Some("far"),
                            );
                            for value in book.challenge(Instant::now(), "carrier", false) {
                                reply
                                    .headers
                                    .push(rsip::Header::Other("Proxy-Authenticate".into(), value));
                            }
                            let _ = sip.send_to(reply.to_string().as_bytes(), from);
                            continue;
                        }
                        let reply = match answer {
                            Answer::Refuse(status) => {
                                message::response(&req, status, "Refused", Some("far")).to_string()
                            }
                            Answer::Challenge { .. } => unreachable!("mapped to Tone"),
                            Answer::Tone { .. } => {
                                let local = rtp.local_addr().unwrap();
                                let (body, n) = sdp::answer(&req.body, local, 1, 1).unwrap();
                                media = Some((
                                    n.remote.unwrap(),
                                    Law::of(n.codec),
                                    n.codec.pt,
                                    n.dtmf_pt,
                                ));
                                let mut ok =
                                    message::response(&req, 200, "OK", Some("far")).to_string();
                                let head = format!(
                                    "Contact: <sip:far@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                                    sip.local_addr().unwrap(),
                                    body.len()
                                );
                                ok = ok.replace("Content-Length: 0\r\n\r\n", &head) + &body;
                                ok
                            }
                        };
                        invite = Some((req, from));
                        let _ = sip.send_to(reply.as_bytes(), from);
                    }
                    Method::Ack => {
                        lock(log).acks += 1;
                        acked_at.get_or_insert(Instant::now());
                    }
                    _ => {
                        // Logged before the answer, which the UA waits for.
                        lock(log).requests.push((
                            req.method.to_string(),
                            String::from_utf8_lossy(&req.body).into_owned(),
                        ));
                        let _ = sip.send_to(
                            message::response(&req, 200, "OK", None)
                                .to_string()
                                .as_bytes(),
                            from,
                        );
                    }
                },
                Ok(Inbound::Message(SipMessage::Response(resp))) => {
                    lock(log).bye_answered = Some(resp.status_code.code());
                }
                _ => {}
            }
        }
        while let Ok((n, _)) = rtp.recv_from(&mut buf) {
            let b = &buf[..n];
            if n >= 12 && b[0] == 0x80 {
                lock(log).rtp.push(Rtp {
                    pt: b[1] & 0x7f,
                    marker: b[1] & 0x80 != 0,
                    seq: u16::from_be_bytes([b[2], b[3]]),
                    ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    payload: b[12..].to_vec(),
                });
            }
        }
        let (Answer::Tone { hz, hangup_after }, Some(acked), Some((to, law, pt, dtmf))) =
            (answer, acked_at, media)
        else {
            continue;
        };
        if Instant::now() >= next_frame && !hung_up {
            let mut packet = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0x5e, 0xed];
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            packet[4..8].copy_from_slice(&ts.to_be_bytes());
            match dtmf {
                // First a digit 9 (RFC 4733): 4 packets of one event at
                // timestamp 5000, the marker on the first, the last an end.
                Some(dtmf_pt) if seq < 1004 => {
                    let n = seq - 1000;
                    packet[1] = dtmf_pt | if n == 0 { 0x80 } else { 0 };
                    packet[4..8].copy_from_slice(&5000u32.to_be_bytes());
                    let duration = (n + 1) * 160;
                    let flags = if n == 3 { 0x80 | 10 } else { 10 };
                    packet.extend_from_slice(&[9, flags]);
                    packet.extend_from_slice(&duration.to_be_bytes());
                }
                // 1 kHz fits 20 ms exactly; any tone restarts its phase per frame.
                _ => {
                    let mut frame = [0u8; 160];
                    law.encode(&sine(hz, 20, 0.5), &mut frame);
                    packet.extend_from_slice(&frame);
                }
            }
            let _ = rtp.send_to(&packet, to);
            (seq, ts) = (seq.wrapping_add(1), ts.wrapping_add(160));
            next_frame += Duration::from_millis(20);
        }
        if let (Some(after), Some((req, from))) = (hangup_after, &invite)
            && !hung_up
            && acked.elapsed() >= after
        {
            hung_up = true;
            let _ = sip.send_to(far_bye(req).as_bytes(), *from);
        }
    }
}

/// Whether `invite` carries good trunk credentials.
fn authorized(book: &mut switchyard::sip::digest::NonceBook, invite: &rsip::Request) -> bool {
    let value = invite.headers.iter().find_map(|h| {
        let text = h.to_string();
        let (name, value) = text.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("Proxy-Authorization")
            .then(|| value.trim().to_owned())
    });
    value.is_some_and(|value| {
        let verdict = book.verify(Instant::now(), "carrier", "INVITE", &value, |user| {
            (user == TRUNK_USER).then(|| TRUNK_PASSWORD.to_owned())
        });
        matches!(verdict, switchyard::sip::digest::Verdict::Ok { .. })
    })
}

/// The far end's BYE in the dialog of `invite` (From and To swapped, to the UA's Contact).
pub fn far_bye(invite: &rsip::Request) -> String {
    let text = invite.to_string();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let contact = field("Contact:");
    let uri = contact.trim_start_matches('<').trim_end_matches('>');
    format!(
        "BYE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-farbye\r\n\
         Max-Forwards: 70\r\n\
         From: {};tag=far\r\n\
         To: {}\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        field("To:"),
        field("From:"),
        field("Call-ID:")
    )
}

/// Decodes the far end's received packets of `pt`, in arrival order.
pub fn far_audio(log: &FarLog, pt: u8, law: Law) -> Vec<i16> {
    let mut out = Vec::new();
    for p in log.rtp.iter().filter(|p| p.pt == pt) {
        law.decode(&p.payload, &mut out);
    }
    out
}
