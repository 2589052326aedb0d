//! The test user agent of `common/ua.rs` against a fake far end in this
//! file (SIP and RTP, no media engine), then against `switchyard serve`.
//!
//! The fake far end (`FarEnd`) is one thread with a SIP and an RTP socket:
//! it answers an INVITE 200 with `sdp::answer` (or refuses it); from the
//! ACK on it sends, every 20 ms, a DTMF 9 (when telephone-event was
//! agreed) and then a tone (`tone::sine`, G.711); it records the RTP and
//! the requests it gets, answers them 200, and may hang up itself. Its RTP
//! header reading and writing are its own, so the UA's are checked against
//! something else than themselves.
//!
//! Against the real server, `call_server` + `hang_up` frame a test and
//! `assert_prompt_tone` checks received audio.

#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rsip::{Method, SipMessage};
use sip_common::{Config, Server};
use switchyard::media::g711::Law;
use switchyard::media::tone::sine;
use switchyard::sip::message::{self, Inbound, Limits};
use switchyard::sip::sdp::{self, Codec};
use ua::{Call, Ua};

const HOLD: &str = "+15550100";
const PROMPT: &str = "+15550123";
const WAIT: Duration = Duration::from_secs(5);

/// The received audio holds a clean tone at `hz`: at least 200 ms of
/// audio came within 5 s, and some 100 ms window of it is mostly `hz`.
fn assert_prompt_tone(call: &Call, hz: f64) {
    assert!(
        call.wait_for_audio(200, WAIT),
        "less than 200 ms of audio within {WAIT:?}: {} packets",
        call.packets().len()
    );
    let purity = call.detect(hz, 100);
    assert!(
        purity > 0.8,
        "no clean {hz} Hz tone in the received audio (purity {purity:.2})"
    );
}

/// What the fake far end does with an INVITE.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with an SDP answer; then a tone at `hz`, and a BYE after
    /// `hangup_after` if given.
    Tone {
        hz: f64,
        hangup_after: Option<Duration>,
    },
    Refuse(u16),
}

/// An RTP packet as the fake far end read it (its own parser).
#[derive(Debug, Clone)]
struct Rtp {
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

#[derive(Default)]
struct FarLog {
    invites: usize,
    acks: usize,
    /// Methods of the in-dialog requests from the UA, with their bodies.
    requests: Vec<(String, String)>,
    rtp: Vec<Rtp>,
    /// Status of the answer to the far end's own BYE.
    bye_answered: Option<u16>,
}

struct FarEnd {
    sip: SocketAddr,
    log: Arc<Mutex<FarLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FarEnd {
    fn start(answer: Answer) -> FarEnd {
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

    fn log(&self) -> std::sync::MutexGuard<'_, FarLog> {
        lock(&self.log)
    }

    /// Waits until `done` holds on the log, at most 5 s.
    fn wait(&self, what: &str, done: impl Fn(&FarLog) -> bool) {
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
fn lock(log: &Mutex<FarLog>) -> std::sync::MutexGuard<'_, FarLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake far end's loop (bounded: 30 s at most).
fn far_end(sip: UdpSocket, rtp: UdpSocket, answer: Answer, log: &Mutex<FarLog>, stop: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 65_536];
    // Set by the INVITE: where the UA's RTP and SIP go, the law, the dialog.
    let mut media: Option<(SocketAddr, Law, u8, Option<u8>)> = None;
    let mut invite: Option<(rsip::Request, SocketAddr)> = None;
    let mut acked_at: Option<Instant> = None;
    let mut hung_up = false;
    let (mut seq, mut ts, mut next_frame) = (1000u16, 5000u32, Instant::now());
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Ok((n, from)) = sip.recv_from(&mut buf) {
            match message::parse_datagram(&buf[..n], &Limits::default()) {
                Ok(Inbound::Message(SipMessage::Request(req))) => match req.method {
                    Method::Invite => {
                        lock(log).invites += 1;
                        let reply = match answer {
                            Answer::Refuse(status) => {
                                message::response(&req, status, "Refused", Some("far")).to_string()
                            }
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

/// The far end's BYE in the dialog of `invite` (From and To swapped, to the UA's Contact).
fn far_bye(invite: &rsip::Request) -> String {
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
fn far_audio(log: &FarLog, pt: u8, law: Law) -> Vec<i16> {
    let mut out = Vec::new();
    for p in log.rtp.iter().filter(|p| p.pt == pt) {
        law.decode(&p.payload, &mut out);
    }
    out
}

#[test]
fn a_call_to_the_fake_far_end_hears_its_tone_and_sends_audio_digits_and_info() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1000.0,
        hangup_after: None,
    });
    let ua = Ua::new();
    let call = ua.call(far.sip, "+15550001", &Codec::ALL, true).unwrap();
    assert_eq!((call.codec, call.dtmf_pt), (Codec::PCMU, Some(ua::DTMF_PT)));
    far.wait("the ACK", |l| l.acks == 1);

    assert_prompt_tone(&call, 1000.0);
    assert!(call.detect(1400.0, 100) < 0.1, "1400 Hz is not there");
    assert_eq!(call.digits(), "9", "the far end's RFC 4733 digit");
    let packets: Vec<ua::Packet> = call.packets().into_iter().filter(|p| p.pt == 0).collect();
    assert!(packets.iter().all(|p| p.payload.len() == 160));
    // Arrivals are about 20 ms apart.
    let span = packets.last().unwrap().at - packets[0].at;
    let expected = Duration::from_millis(20) * (packets.len() as u32 - 1);
    assert!(
        span.abs_diff(expected) < Duration::from_millis(100),
        "{} packets over {span:?}",
        packets.len()
    );

    // Audio: 300 ms of 440 Hz, paced.
    let started = Instant::now();
    call.send_audio(&sine(440.0, 300, 0.5));
    assert!(call.wait_sent(WAIT));
    assert!(
        started.elapsed() >= Duration::from_millis(260),
        "{:?}",
        started.elapsed()
    );
    // DTMF 5: 8 packets with one timestamp and growing durations, the
    // marker on the first, then 3 end packets; audio continues after it.
    call.send_dtmf('5').unwrap();
    call.send_audio(&sine(440.0, 40, 0.5));
    call.info_dtmf('7').unwrap();
    far.wait("the audio after the digit", |l| l.rtp.len() >= 15 + 11 + 2);

    {
        let log = far.log();
        let heard = far_audio(&log, 0, Law::Mu);
        assert!(
            ua::tone_purity(&heard, 440.0, 100) > 0.8,
            "the far end heard no 440 Hz"
        );
        let seqs: Vec<u16> = log.rtp.iter().map(|p| p.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "seq not continuous: {seqs:?}"
        );
        let events: Vec<&Rtp> = log.rtp.iter().filter(|p| p.pt == ua::DTMF_PT).collect();
        assert_eq!(events.len(), 11);
        assert!(events[0].marker && events[1..].iter().all(|p| !p.marker));
        assert!(
            events
                .iter()
                .all(|p| p.ts == events[0].ts && p.payload[0] == 5)
        );
        let durations: Vec<u16> = events
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(
            durations,
            [160, 320, 480, 640, 800, 960, 1120, 1280, 1280, 1280, 1280]
        );
        let ends: Vec<bool> = events.iter().map(|p| p.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends.iter().filter(|e| **e).count(), 3);
        assert!(ends[8..].iter().all(|e| *e));
        // The audio after the event: its timestamp moved on by the event's
        // 11 packets, and a new talkspurt.
        let last_event = log.rtp.iter().rposition(|p| p.pt == ua::DTMF_PT).unwrap();
        let after = &log.rtp[last_event + 1];
        assert_eq!(after.pt, 0);
        assert!(after.marker);
        assert_eq!(after.ts, events[0].ts + 11 * 160);
        assert_eq!(
            log.requests,
            [(
                "INFO".to_string(),
                "Signal=7\r\nDuration=160\r\n".to_string()
            )]
        );
    }

    call.bye().unwrap();
    assert_eq!(far.log().requests.last().unwrap().0, "BYE");
    assert!(call.bye().is_err(), "a second bye is refused");
}

#[test]
fn a_pcma_only_offer_is_answered_pcma_and_decoded_as_a_law() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1000.0,
        hangup_after: None,
    });
    let ua = Ua::new();
    let call = ua
        .call(far.sip, "+15550001", &[Codec::PCMA], false)
        .unwrap();
    assert_eq!((call.codec, call.dtmf_pt), (Codec::PCMA, None));
    assert_prompt_tone(&call, 1000.0);
    assert!(call.packets().iter().all(|p| p.pt == 8));
    call.bye().unwrap();
}

#[test]
fn the_far_ends_bye_is_answered_and_ends_the_call() {
    let far = FarEnd::start(Answer::Tone {
        hz: 1000.0,
        hangup_after: Some(Duration::from_millis(300)),
    });
    let ua = Ua::new();
    let call = ua.call(far.sip, "+15550001", &Codec::ALL, true).unwrap();
    call.wait_bye(WAIT).unwrap();
    far.wait("the 200 to its BYE", |l| l.bye_answered == Some(200));
    assert_eq!(
        call.requests()
            .iter()
            .map(|r| r.method.as_str())
            .collect::<Vec<_>>(),
        ["BYE"]
    );
    drop(call);
    // No BYE of ours after theirs.
    thread::sleep(Duration::from_millis(100));
    assert!(far.log().requests.is_empty());
}

#[test]
fn a_refused_call_is_acked_and_returns_the_status() {
    let far = FarEnd::start(Answer::Refuse(486));
    let ua = Ua::new();
    let err = ua
        .call(far.sip, "+15550001", &Codec::ALL, true)
        .err()
        .expect("refused");
    assert_eq!(err.status(), Some(486), "{err}");
    far.wait("the ACK of the 486", |l| l.acks == 1);
    assert_eq!(far.log().invites, 1);
}

#[test]
fn an_unanswered_invite_is_retransmitted_and_times_out() {
    // A socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let ua = Ua::with_timeout(Duration::from_millis(1800));
    let started = Instant::now();
    let err = ua
        .call(silent.local_addr().unwrap(), "+15550001", &Codec::ALL, true)
        .err()
        .expect("no answer");
    assert!(matches!(err, ua::UaError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut buf = [0u8; 4096];
    let mut invites = 0;
    while silent.recv_from(&mut buf).is_ok() {
        invites += 1;
    }
    // At 0, 0.5 and 1.5 s.
    assert_eq!(invites, 3);
}

// --- against switchyard serve -------------------------------------------------

/// A server whose tenant `acme` answers `number` with the example guest
/// `guest`, and a call to it.
fn call_server(number: &str, guest: &str) -> (Server, Ua, Call) {
    let server = Server::serve(
        &Config::new()
            .tenant("acme", &["acme.test"])
            .number(number, guest),
    );
    let ua = Ua::new();
    let call = ua
        .call(server.udp, number, &Codec::ALL, true)
        .unwrap_or_else(|e| panic!("calling {number} ({guest}): {e}\n{}", server.output()));
    (server, ua, call)
}

/// The call is up, then ends with our BYE answered 200; the server lived.
fn hang_up(mut server: Server, ua: Ua, call: Call) {
    call.bye()
        .unwrap_or_else(|e| panic!("BYE: {e}\n{}", server.output()));
    drop(call);
    drop(ua);
    server.assert_alive();
}

#[test]
fn the_server_answers_a_call_to_the_hold_guest() {
    let (server, ua, call) = call_server(HOLD, "hold");
    assert!(call.remote_rtp.is_some(), "the answer names an RTP address");
    call.start_silence();
    thread::sleep(Duration::from_millis(200));
    assert!(call.sent_packets() >= 5);
    hang_up(server, ua, call);
}

#[test]
fn the_server_answers_a_call_to_the_prompt_guest() {
    let (server, ua, call) = call_server(PROMPT, "prompt");
    call.start_silence();
    thread::sleep(Duration::from_millis(200));
    hang_up(server, ua, call);
}
