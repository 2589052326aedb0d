//! A SIP + RTP test user agent over UDP on 127.0.0.1, for tests that call
//! `switchyard serve` (or a fake far end) and look at the media.
//!
//! Include with `#[path = "common/ua.rs"] mod ua;`.
//!
//! * `Ua::new()` binds a SIP socket on 127.0.0.1. A thread reads it:
//!   responses go to the transaction waiting for them (by Call-ID, CSeq
//!   and method); requests of the far end (BYE, INFO, OPTIONS, re-INVITE,
//!   ...) are answered 200 at once (a re-INVITE with an SDP answer) and
//!   logged on their call; a repeated 2xx to an INVITE is ACKed again.
//! * `ua.call(server, number, codecs, dtmf)` sends an INVITE with an SDP
//!   offer for the call's own RTP socket, retransmitted from T1 until a
//!   response; provisional responses are waited through; a 2xx is ACKed to
//!   its Contact and its SDP answer read with `switchyard::sip::sdp`; a
//!   final non-2xx is ACKed and returned as `UaError::Status`.
//! * A `Call` has two RTP threads. The receiver records every packet
//!   (`Packet`: arrival, seq, ts, pt, marker, payload); `audio()` decodes
//!   the negotiated codec in sequence order, `detect` measures a tone with
//!   Goertzel, `digits()` reads the RFC 4733 events that came in. The
//!   sender runs one 20 ms clock with one sequence and timestamp space: it
//!   sends queued DTMF events (`send_dtmf`), else queued audio
//!   (`send_audio`), else silence after `start_silence`, else nothing.
//! * `bye()` hangs up (BYE, waits for the 200); `wait_bye` waits for the
//!   far end's BYE (already answered by the SIP thread). A call dropped
//!   while up sends a BYE without waiting.
//!
//! Every wait is bounded (`Ua::timeout`, default 10 s for a transaction);
//! the threads stop when their `Ua` or `Call` is dropped. Drop the calls
//! before their `Ua`: without the SIP thread their BYE gets no answer.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;
use rsip::{Header, Method, SipMessage};
use switchyard::media::g711::Law;
use switchyard::media::tone::{goertzel, rms};
use switchyard::media::{FRAME_MS, FRAME_SAMPLES};
use switchyard::sip::message::{self, Inbound, Limits};
use switchyard::sip::sdp::{self, Codec};

/// RFC 3261 T1 and T2.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// The telephone-event payload type of our offers.
pub const DTMF_PT: u8 = sdp::DTMF_PT;
/// Packets of one DTMF event before its end (8 × 20 ms = 160 ms).
pub const DTMF_PACKETS: u16 = 8;
/// Times the end packet of an event is sent (RFC 4733 §2.5.1.4).
pub const DTMF_END_PACKETS: u16 = 3;
const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaError {
    /// A final non-2xx response (an INVITE's is ACKed).
    Status { status: u16, reason: String },
    /// No final response in time, or the awaited event did not come.
    Timeout(String),
    /// A socket error, an unreadable SDP answer.
    Other(String),
}

impl UaError {
    pub fn status(&self) -> Option<u16> {
        match self {
            UaError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for UaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UaError::Status { status, reason } => write!(f, "answered {status} {reason}"),
            UaError::Timeout(what) => write!(f, "timed out: {what}"),
            UaError::Other(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for UaError {}

pub type Result<T> = std::result::Result<T, UaError>;

/// One RTP packet as it arrived.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Instant,
    pub from: SocketAddr,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub pt: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// An RTP packet (RFC 3550 §5.1, version 2, no CSRC or extension).
pub fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt & 0x7f | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Reads an RTP packet: version 2, skipping CSRCs, a header extension and
/// padding. `None` for anything else (RTCP on the same port, junk).
pub fn parse_rtp(bytes: &[u8], at: Instant, from: SocketAddr) -> Option<Packet> {
    let b0 = *bytes.first()?;
    if b0 >> 6 != 2 || bytes.len() < 12 {
        return None;
    }
    let b1 = bytes[1];
    // RTCP packet types 200..=204 land in 72..=76 with the marker set.
    if (72..=76).contains(&(b1 & 0x7f)) && b1 & 0x80 != 0 {
        return None;
    }
    let mut start = 12 + 4 * (b0 & 0x0f) as usize;
    if b0 & 0x10 != 0 {
        let words = bytes.get(start + 2..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([words[0], words[1]]) as usize;
    }
    let mut end = bytes.len();
    if b0 & 0x20 != 0 {
        end = end.checked_sub(*bytes.last()? as usize)?;
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Some(Packet {
        at,
        from,
        seq: u16::from_be_bytes([bytes[2], bytes[3]]),
        ts: word(4),
        ssrc: word(8),
        pt: b1 & 0x7f,
        marker: b1 & 0x80 != 0,
        payload: bytes.get(start..end)?.to_vec(),
    })
}

/// The RFC 4733 event code of a DTMF digit.
pub fn dtmf_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + digit as u8 - b'A'),
        _ => None,
    }
}

/// The digit of an RFC 4733 event code.
pub fn dtmf_digit(event: u8) -> Option<char> {
    "0123456789*#ABCD".chars().nth(event as usize)
}

/// A request the far end sent within a call (already answered).
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A response, read from the wire.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    reason: String,
    cseq: u32,
    method: Method,
    to: Option<String>,
    contact: Option<String>,
    body: Vec<u8>,
}

/// The value of the first header `pick` accepts.
fn header<'m>(
    headers: &'m rsip::Headers,
    pick: impl Fn(&'m Header) -> Option<&'m str>,
) -> Option<String> {
    headers.iter().find_map(pick).map(str::to_string)
}

/// `sip:user@host:port;params` (in `<>` or not) → host:port (5060 by default).
fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let uri = uri.trim().trim_start_matches('<');
    let uri = uri.split(['>', ';']).next()?;
    let rest = uri.strip_prefix("sip:")?;
    let hostport = rest.rsplit('@').next()?;
    hostport
        .parse()
        .ok()
        .or_else(|| format!("{hostport}:5060").parse().ok())
}

/// The SIP side of a `Ua`, shared with its calls and its thread.
struct Sip {
    socket: UdpSocket,
    local: SocketAddr,
    state: Mutex<SipState>,
    changed: Condvar,
    stop: AtomicBool,
    timeout: Duration,
}

#[derive(Default)]
struct SipState {
    /// Responses not taken yet, by Call-ID.
    responses: HashMap<String, VecDeque<Reply>>,
    /// What the far end sent in each call, by Call-ID.
    requests: HashMap<String, Vec<Received>>,
    /// The ACK of each answered INVITE and where it went, by Call-ID:
    /// sent again when the 2xx repeats.
    acks: HashMap<String, (String, SocketAddr)>,
    /// The RTP side of each call, for re-INVITEs, by Call-ID.
    media: HashMap<String, Arc<Rtp>>,
}

impl Sip {
    fn lock(&self) -> MutexGuard<'_, SipState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, text: &str, to: SocketAddr) {
        let _ = self.socket.send_to(text.as_bytes(), to);
    }

    fn run(&self) {
        let mut buf = vec![0u8; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                self.handle(&buf[..n], from);
            }
        }
    }

    fn handle(&self, bytes: &[u8], from: SocketAddr) {
        let Ok(Inbound::Message(msg)) = message::parse_datagram(bytes, &Limits::default()) else {
            return;
        };
        match msg {
            SipMessage::Response(resp) => {
                let (Some(call_id), Some((cseq, method))) =
                    (message::call_id(&resp), message::cseq(&resp))
                else {
                    return;
                };
                let status = resp.status_code.code();
                let mut state = self.lock();
                if method == Method::Invite
                    && (200..300).contains(&status)
                    && let Some((ack, to)) = state.acks.get(call_id)
                {
                    self.send(ack, *to);
                    return;
                }
                let status_line = String::from_utf8_lossy(
                    bytes.split(|&b| b == b'\r').next().unwrap_or_default(),
                )
                .into_owned();
                let reply = Reply {
                    status,
                    reason: status_line
                        .splitn(3, ' ')
                        .nth(2)
                        .unwrap_or_default()
                        .to_string(),
                    cseq,
                    method,
                    to: header(&resp.headers, |h| match h {
                        Header::To(v) => Some(v.value()),
                        _ => None,
                    }),
                    contact: header(&resp.headers, |h| match h {
                        Header::Contact(v) => Some(v.value()),
                        _ => None,
                    }),
                    body: resp.body.clone(),
                };
                state
                    .responses
                    .entry(call_id.to_string())
                    .or_default()
                    .push_back(reply);
                self.changed.notify_all();
            }
            SipMessage::Request(req) => {
                if req.method == Method::Ack {
                    return;
                }
                let call_id = message::call_id(&req).unwrap_or_default().to_string();
                let mut state = self.lock();
                let media = state.media.get(&call_id).cloned();
                let mut reply = message::response(&req, 200, "OK", None);
                match (&req.method, media) {
                    (Method::Invite, Some(rtp)) if message::to_tag(&req).is_some() => {
                        // A re-INVITE: answer its offer, follow a new address.
                        let answered = sdp::answer(
                            &req.body,
                            rtp.local,
                            1,
                            rtp.version.fetch_add(1, Ordering::Relaxed) + 2,
                        );
                        match answered {
                            Ok((body, negotiated)) => {
                                *rtp.remote.lock().unwrap() = negotiated.remote;
                                reply
                                    .headers
                                    .retain(|h| !matches!(h, Header::ContentLength(_)));
                                reply.headers.push(
                                    rsip::headers::Contact::new(format!("<sip:ua@{}>", self.local))
                                        .into(),
                                );
                                reply.headers.push(
                                    rsip::headers::ContentType::new("application/sdp").into(),
                                );
                                reply.headers.push(
                                    rsip::headers::ContentLength::new(body.len().to_string())
                                        .into(),
                                );
                                reply.body = body.into_bytes();
                            }
                            Err(_) => {
                                reply = message::response(&req, 488, "Not Acceptable Here", None)
                            }
                        }
                    }
                    (Method::Invite, _) => {
                        reply = message::response(&req, 486, "Busy Here", Some("ua"))
                    }
                    _ => {}
                }
                self.send(&reply.to_string(), from);
                state.requests.entry(call_id).or_default().push(Received {
                    method: req.method.to_string(),
                    body: req.body.clone(),
                    at: Instant::now(),
                });
                self.changed.notify_all();
            }
        }
    }

    /// Sends `request` to `to` until the final response of (`call_id`,
    /// `cseq`, `method`) comes back, retransmitting from T1 (doubling, at
    /// most T2; an INVITE stops at the first provisional response).
    fn transact(
        &self,
        request: &str,
        to: SocketAddr,
        call_id: &str,
        cseq: u32,
        method: Method,
    ) -> Result<Reply> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut interval = T1;
        let mut resend = Some(start + interval);
        self.send(request, to);
        let mut state = self.lock();
        loop {
            let queue = state.responses.entry(call_id.to_string()).or_default();
            while let Some(reply) = queue.pop_front() {
                if reply.cseq != cseq || reply.method != method {
                    continue;
                }
                if reply.status >= 200 {
                    return Ok(reply);
                }
                if method == Method::Invite {
                    resend = None;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(UaError::Timeout(format!(
                    "no final response to {method} within {:?}",
                    self.timeout
                )));
            }
            if resend.is_some_and(|at| now >= at) {
                self.send(request, to);
                let cap = if method == Method::Invite {
                    self.timeout
                } else {
                    T2
                };
                interval = (interval * 2).min(cap);
                resend = Some(now + interval);
            }
            let until = resend.map_or(deadline, |at| at.min(deadline));
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `done` holds on the state, at most `timeout`.
    fn wait(&self, timeout: Duration, mut done: impl FnMut(&mut SipState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if done(&mut state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Samples per millisecond of the received audio.
const RATE_PER_MS: usize = switchyard::media::RATE as usize / 1000;

/// A SIP user agent on 127.0.0.1 (see the module doc).
pub struct Ua {
    sip: Arc<Sip>,
    thread: Option<JoinHandle<()>>,
    next: AtomicU64,
    /// The user of our From URI (default `ua`).
    user: String,
}

impl Default for Ua {
    fn default() -> Ua {
        Ua::new()
    }
}

impl Ua {
    pub fn new() -> Ua {
        Ua::with_timeout(Duration::from_secs(10))
    }

    /// A UA whose transactions wait at most `timeout` for a final response.
    pub fn with_timeout(timeout: Duration) -> Ua {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the SIP socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let sip = Arc::new(Sip {
            socket,
            local,
            state: Mutex::default(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            timeout,
        });
        let runner = sip.clone();
        let thread = thread::Builder::new()
            .name("ua-sip".into())
            .spawn(move || runner.run())
            .unwrap();
        Ua {
            sip,
            thread: Some(thread),
            next: AtomicU64::new(1),
            user: "ua".into(),
        }
    }

    /// Calls from `sip:{user}@…` (a caller number).
    pub fn calling_as(mut self, user: &str) -> Ua {
        self.user = user.into();
        self
    }

    /// The SIP socket's address.
    pub fn addr(&self) -> SocketAddr {
        self.sip.local
    }

    /// Calls `number` at `server`, offering `codecs` (in that order) and,
    /// with `dtmf`, telephone-event 101. `Ok` once a 2xx was ACKed.
    pub fn call(
        &self,
        server: SocketAddr,
        number: &str,
        codecs: &[Codec],
        dtmf: bool,
    ) -> Result<Call> {
        self.call_with(server, number, codecs, dtmf, &[])
    }

    /// `call` with extra INVITE headers (`X-...` ones reach the guest).
    pub fn call_with(
        &self,
        server: SocketAddr,
        number: &str,
        codecs: &[Codec],
        dtmf: bool,
        headers: &[(&str, &str)],
    ) -> Result<Call> {
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let unique = format!("{n}-{}-{}", std::process::id(), self.sip.local.port());
        let call_id = format!("ua-{unique}");
        let from_tag = format!("f{unique}");
        let local = self.sip.local;
        let rtp = Rtp::bind().map_err(|e| UaError::Other(format!("bind RTP: {e}")))?;

        let offer = offer_sdp(rtp.local, codecs, dtmf);
        let uri = format!("sip:{number}@{server}");
        let from = format!("<sip:{}@{}>;tag={from_tag}", self.user, local.ip());
        let to = format!("<{uri}>");
        let branch = format!("z9hG4bK-{unique}");
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:ua@{local}>\r\n\
             {extra}\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{offer}",
            offer.len()
        );
        let reply = self
            .sip
            .transact(&invite, server, &call_id, 1, Method::Invite)?;
        let to_header = reply.to.clone().unwrap_or(to);

        if reply.status >= 300 {
            // The ACK of a non-2xx is part of the INVITE transaction (§17.1.1.3).
            let ack = format!(
                "ACK {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: {from}\r\n\
                 To: {to_header}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: 1 ACK\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            self.sip.send(&ack, server);
            return Err(UaError::Status {
                status: reply.status,
                reason: reply.reason,
            });
        }

        let target_uri = reply
            .contact
            .as_deref()
            .map(|c| {
                c.trim()
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or(c)
                    .to_string()
            })
            .unwrap_or_else(|| uri.clone());
        let target = uri_addr(&target_uri).unwrap_or(server);
        let dialog = Dialog {
            local,
            call_id: call_id.clone(),
            from,
            to: to_header,
            target_uri,
            target,
            cseq: AtomicU32::new(1),
        };
        let ack = dialog.request("ACK", 1, "", "");
        {
            let mut state = self.sip.lock();
            state.acks.insert(call_id.clone(), (ack.clone(), target));
            self.sip.send(&ack, target);
        }
        let answer = sdp::parse_answer(&reply.body).map_err(|e| {
            let bye = dialog.request("BYE", dialog.next_cseq(), "", "");
            self.sip.send(&bye, target);
            UaError::Other(format!("SDP answer: {e}"))
        })?;

        let rtp = Arc::new(rtp.start(answer.codec, answer.dtmf_pt, answer.remote));
        self.sip.lock().media.insert(call_id.clone(), rtp.clone());
        let threads = vec![
            spawn("ua-rtp-recv", {
                let rtp = rtp.clone();
                move || rtp.receive()
            }),
            spawn("ua-rtp-send", {
                let rtp = rtp.clone();
                move || rtp.send_loop()
            }),
        ];
        Ok(Call {
            sip: self.sip.clone(),
            dialog,
            codec: answer.codec,
            dtmf_pt: answer.dtmf_pt,
            remote_rtp: answer.remote,
            rtp,
            threads,
            ended: AtomicBool::new(false),
        })
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        self.sip.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new().name(name.into()).spawn(f).unwrap()
}

/// An SDP offer for `rtp` with `codecs` in order and, with `dtmf`,
/// telephone-event (not `sdp::offer`, which always offers both laws).
fn offer_sdp(rtp: SocketAddr, codecs: &[Codec], dtmf: bool) -> String {
    let mut formats: Vec<String> = codecs.iter().map(|c| c.pt.to_string()).collect();
    let mut maps: Vec<String> = codecs
        .iter()
        .map(|c| format!("a=rtpmap:{} {}/8000\r\n", c.pt, c.name))
        .collect();
    if dtmf {
        formats.push(DTMF_PT.to_string());
        maps.push(format!(
            "a=rtpmap:{DTMF_PT} telephone-event/8000\r\na=fmtp:{DTMF_PT} 0-15\r\n"
        ));
    }
    let ip = rtp.ip();
    format!(
        "v=0\r\no=ua 1 1 IN IP4 {ip}\r\ns=ua\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {}\r\n{}a=ptime:20\r\na=sendrecv\r\n",
        rtp.port(),
        formats.join(" "),
        maps.concat()
    )
}

/// What in-dialog requests of ours carry (RFC 3261 §12.2.1.1; the server
/// is a B2BUA: no route set).
struct Dialog {
    local: SocketAddr,
    call_id: String,
    from: String,
    to: String,
    target_uri: String,
    target: SocketAddr,
    cseq: AtomicU32,
}

impl Dialog {
    fn next_cseq(&self) -> u32 {
        self.cseq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `method` with `cseq`, and a body of `content_type` unless empty.
    fn request(&self, method: &str, cseq: u32, content_type: &str, body: &str) -> String {
        let via = format!("z9hG4bK-{}-{method}-{cseq}", self.call_id);
        let typed = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {content_type}\r\n")
        };
        format!(
            "{method} {} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch={via};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             {typed}Content-Length: {}\r\n\r\n{body}",
            self.target_uri,
            self.local,
            self.from,
            self.to,
            self.call_id,
            body.len()
        )
    }
}

/// One call that was answered (see the module doc).
pub struct Call {
    sip: Arc<Sip>,
    dialog: Dialog,
    /// What the answer chose: the codec we receive and send, the far end's
    /// telephone-event payload type, where its RTP goes.
    pub codec: Codec,
    pub dtmf_pt: Option<u8>,
    pub remote_rtp: Option<SocketAddr>,
    rtp: Arc<Rtp>,
    threads: Vec<JoinHandle<()>>,
    ended: AtomicBool,
}

impl Call {
    pub fn call_id(&self) -> &str {
        &self.dialog.call_id
    }

    /// Our RTP socket's address (what the offer named).
    pub fn rtp_addr(&self) -> SocketAddr {
        self.rtp.local
    }

    /// Every RTP packet received so far, in arrival order.
    pub fn packets(&self) -> Vec<Packet> {
        self.rtp.packets.lock().unwrap().clone()
    }

    /// The audio received so far: packets of the negotiated codec in
    /// sequence order (duplicates dropped), decoded.
    pub fn audio(&self) -> Vec<i16> {
        let law = Law::of(self.codec);
        let mut frames = Vec::new();
        let mut last: Option<i64> = None;
        for p in self
            .rtp
            .packets
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.pt == self.codec.pt)
        {
            let ext = extend_seq(last, p.seq);
            last = Some(ext);
            frames.push((ext, p.payload.clone()));
        }
        frames.sort_by_key(|f| f.0);
        frames.dedup_by_key(|f| f.0);
        let mut out = Vec::with_capacity(frames.len() * FRAME_SAMPLES);
        for (_, payload) in frames {
            law.decode(&payload, &mut out);
        }
        out
    }

    /// Waits until at least `ms` of audio arrived; false after `timeout`.
    pub fn wait_for_audio(&self, ms: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let samples: usize = {
                let packets = self.rtp.packets.lock().unwrap();
                packets
                    .iter()
                    .filter(|p| p.pt == self.codec.pt)
                    .map(|p| p.payload.len())
                    .sum()
            };
            if samples * 1000 >= ms as usize * switchyard::media::RATE as usize {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// How purely `hz` sounds in the received audio: over consecutive
    /// windows of `window_ms`, the best Goertzel power at `hz` relative to
    /// the window's total power (a clean sine at `hz` ≈ 1.0, other sound or
    /// silence ≈ 0.0; near-silent windows are skipped).
    pub fn detect(&self, hz: f64, window_ms: u32) -> f64 {
        tone_purity(&self.audio(), hz, window_ms)
    }

    /// The Goertzel power of `hz` in the last `ms` of the received audio.
    pub fn recent(&self, hz: f64, ms: usize) -> f64 {
        let audio = self.audio();
        let tail = &audio[audio.len().saturating_sub(ms * RATE_PER_MS)..];
        switchyard::media::tone::goertzel(tail, hz)
    }

    /// The digits of the RFC 4733 events received (one per event, told
    /// apart by their RTP timestamp).
    pub fn digits(&self) -> String {
        let Some(pt) = self.dtmf_pt else {
            return String::new();
        };
        let mut seen = Vec::new();
        let mut digits = String::new();
        for p in self
            .rtp
            .packets
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.pt == pt)
        {
            if seen.contains(&p.ts) {
                continue;
            }
            seen.push(p.ts);
            if let Some(d) = p.payload.first().and_then(|e| dtmf_digit(*e)) {
                digits.push(d);
            }
        }
        digits
    }

    /// Queues `samples` to be sent in 20 ms packets of the negotiated law
    /// (the last one padded with silence); returns at once.
    pub fn send_audio(&self, samples: &[i16]) {
        let law = Law::of(self.codec);
        let mut tx = self.rtp.tx.lock().unwrap();
        for chunk in samples.chunks(FRAME_SAMPLES) {
            let mut frame = vec![law.silence(); FRAME_SAMPLES];
            law.encode(chunk, &mut frame);
            tx.frames.push_back(frame);
        }
    }

    /// Waits until the queued audio and digits are sent; false after `timeout`.
    pub fn wait_sent(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let tx = self.rtp.tx.lock().unwrap();
                if tx.frames.is_empty() && tx.digits.is_empty() && tx.event.is_none() {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `digit` as an RFC 4733 event (payload type: the answer's, else
    /// 101): 8 packets 20 ms apart with one timestamp, the first with the
    /// marker, then the end packet 3 times. Returns once it is sent.
    pub fn send_dtmf(&self, digit: char) -> Result<()> {
        let event =
            dtmf_event(digit).ok_or_else(|| UaError::Other(format!("no DTMF digit {digit:?}")))?;
        self.rtp.tx.lock().unwrap().digits.push_back(event);
        if self.wait_sent(Duration::from_secs(5)) {
            Ok(())
        } else {
            Err(UaError::Timeout(format!("sending DTMF {digit}")))
        }
    }

    /// Sends G.711 silence whenever there is nothing else to send (as a
    /// phone does), until `stop_silence`.
    pub fn start_silence(&self) {
        self.rtp.tx.lock().unwrap().silence = true;
    }

    pub fn stop_silence(&self) {
        self.rtp.tx.lock().unwrap().silence = false;
    }

    /// Packets sent so far.
    pub fn sent_packets(&self) -> u64 {
        self.rtp.tx.lock().unwrap().sent
    }

    /// Sends `digit` in a SIP INFO (`application/dtmf-relay`); `Ok` on 2xx.
    pub fn info_dtmf(&self, digit: char) -> Result<()> {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        self.in_dialog("INFO", Method::Info, "application/dtmf-relay", &body)
            .map(|_| ())
    }

    /// Hangs up: BYE, and waits for its final response (`Ok` on 2xx).
    pub fn bye(&self) -> Result<()> {
        if self.ended.swap(true, Ordering::Relaxed) {
            return Err(UaError::Other("the call is over".into()));
        }
        self.rtp.stop.store(true, Ordering::Relaxed);
        self.in_dialog("BYE", Method::Bye, "", "").map(|_| ())
    }

    /// Waits for the far end's BYE (the SIP thread answered it 200).
    pub fn wait_bye(&self, timeout: Duration) -> Result<()> {
        let call_id = self.dialog.call_id.clone();
        let got = self.sip.wait(timeout, |state| {
            state
                .requests
                .get(&call_id)
                .is_some_and(|r| r.iter().any(|r| r.method == "BYE"))
        });
        if !got {
            return Err(UaError::Timeout(format!("no BYE within {timeout:?}")));
        }
        self.ended.store(true, Ordering::Relaxed);
        self.rtp.stop.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The requests the far end sent in this call so far.
    pub fn requests(&self) -> Vec<Received> {
        self.sip
            .lock()
            .requests
            .get(&self.dialog.call_id)
            .cloned()
            .unwrap_or_default()
    }

    fn in_dialog(&self, name: &str, method: Method, content_type: &str, body: &str) -> Result<u16> {
        let cseq = self.dialog.next_cseq();
        let request = self.dialog.request(name, cseq, content_type, body);
        let reply = self.sip.transact(
            &request,
            self.dialog.target,
            &self.dialog.call_id,
            cseq,
            method,
        )?;
        if (200..300).contains(&reply.status) {
            Ok(reply.status)
        } else {
            Err(UaError::Status {
                status: reply.status,
                reason: reply.reason,
            })
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.ended.swap(true, Ordering::Relaxed) {
            let cseq = self.dialog.next_cseq();
            let bye = self.dialog.request("BYE", cseq, "", "");
            self.sip.send(&bye, self.dialog.target);
        }
        self.rtp.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let mut state = self.sip.lock();
        state.media.remove(&self.dialog.call_id);
        state.acks.remove(&self.dialog.call_id);
    }
}

/// `seq` extended to 64 bits next to the previous extended value (RFC
/// 3550 A.1 without the probation); the first starts high enough that
/// reordering before it stays positive.
pub fn extend_seq(previous: Option<i64>, seq: u16) -> i64 {
    match previous {
        None => (1 << 32) + seq as i64,
        Some(p) => p + (seq.wrapping_sub(p as u16) as i16) as i64,
    }
}

/// See `Call::detect`.
pub fn tone_purity(audio: &[i16], hz: f64, window_ms: u32) -> f64 {
    let window = (switchyard::media::RATE * window_ms / 1000).max(1) as usize;
    audio
        .chunks_exact(window)
        .filter(|w| rms(w) > 0.001)
        .map(|w| goertzel(w, hz) / (2.0 * rms(w).powi(2)))
        .fold(0.0, f64::max)
}

/// The RTP side of a call: its socket, what it received, what it sends.
struct Rtp {
    socket: UdpSocket,
    local: SocketAddr,
    law: Law,
    pt: u8,
    dtmf_pt: u8,
    remote: Mutex<Option<SocketAddr>>,
    packets: Mutex<Vec<Packet>>,
    tx: Mutex<Tx>,
    stop: AtomicBool,
    /// SDP answers to re-INVITEs so far (their o= version).
    version: AtomicU64,
}

/// The sender's state: one sequence and timestamp space for everything.
struct Tx {
    frames: VecDeque<Vec<u8>>,
    digits: VecDeque<u8>,
    /// The event being sent: (code, its timestamp, packets sent).
    event: Option<(u8, u32, u16)>,
    silence: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// The next audio packet starts a talkspurt (RFC 3551 §4.1).
    marker: bool,
    sent: u64,
}

impl Rtp {
    fn bind() -> std::io::Result<Rtp> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let local = socket.local_addr()?;
        let seed = local.port() as u32 ^ std::process::id().rotate_left(16);
        Ok(Rtp {
            socket,
            local,
            law: Law::Mu,
            pt: 0,
            dtmf_pt: DTMF_PT,
            remote: Mutex::new(None),
            packets: Mutex::default(),
            tx: Mutex::new(Tx {
                frames: VecDeque::new(),
                digits: VecDeque::new(),
                event: None,
                silence: false,
                seq: seed as u16,
                ts: seed.wrapping_mul(2_654_435_761),
                ssrc: seed.wrapping_mul(40_503) | 1,
                marker: true,
                sent: 0,
            }),
            stop: AtomicBool::new(false),
            version: AtomicU64::new(0),
        })
    }

    fn start(mut self, codec: Codec, dtmf_pt: Option<u8>, remote: Option<SocketAddr>) -> Rtp {
        self.law = Law::of(codec);
        self.pt = codec.pt;
        self.dtmf_pt = dtmf_pt.unwrap_or(DTMF_PT);
        self.remote = Mutex::new(remote);
        self
    }

    fn receive(&self) {
        let mut buf = [0u8; 2048];
        while !self.stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = self.socket.recv_from(&mut buf)
                && let Some(p) = parse_rtp(&buf[..n], Instant::now(), from)
            {
                self.packets.lock().unwrap().push(p);
            }
        }
    }

    /// One packet (or none) every 20 ms on an absolute schedule.
    fn send_loop(&self) {
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            self.tick();
            next += FRAME;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else if now - next > 5 * FRAME {
                next = now; // far behind (a stalled machine): do not burst
            }
        }
    }

    fn tick(&self) {
        let mut tx = self.tx.lock().unwrap();
        let tx = &mut *tx;
        let packet = if let Some((code, ts, n)) = tx.event.take() {
            Some(self.event_packet(tx, code, ts, n))
        } else if let Some(code) = tx.digits.pop_front() {
            Some(self.event_packet(tx, code, tx.ts, 0))
        } else if let Some(frame) = tx.frames.pop_front() {
            Some(self.audio_packet(tx, &frame))
        } else if tx.silence {
            Some(self.audio_packet(tx, &[self.law.silence(); FRAME_SAMPLES]))
        } else {
            tx.marker = true;
            None
        };
        tx.ts = tx.ts.wrapping_add(FRAME_SAMPLES as u32);
        let (Some(packet), Some(remote)) = (packet, *self.remote.lock().unwrap()) else {
            return;
        };
        if self.socket.send_to(&packet, remote).is_ok() {
            tx.sent += 1;
        }
    }

    fn audio_packet(&self, tx: &mut Tx, payload: &[u8]) -> Vec<u8> {
        let packet = rtp_packet(self.pt, tx.marker, tx.seq, tx.ts, tx.ssrc, payload);
        tx.marker = false;
        tx.seq = tx.seq.wrapping_add(1);
        packet
    }

    /// Packet `n` of event `code` (RFC 4733 §2.3): durations 160, 320, ...,
    /// then the end bit on the last `DTMF_END_PACKETS` packets.
    fn event_packet(&self, tx: &mut Tx, code: u8, ts: u32, n: u16) -> Vec<u8> {
        let end = n >= DTMF_PACKETS;
        let duration = (n.min(DTMF_PACKETS - 1) + 1) * FRAME_SAMPLES as u16;
        let volume = 10u8;
        let payload = [
            code,
            if end { 0x80 | volume } else { volume },
            (duration >> 8) as u8,
            duration as u8,
        ];
        let packet = rtp_packet(self.dtmf_pt, n == 0, tx.seq, ts, tx.ssrc, &payload);
        tx.seq = tx.seq.wrapping_add(1);
        if n + 1 < DTMF_PACKETS + DTMF_END_PACKETS {
            tx.event = Some((code, ts, n + 1));
        } else {
            tx.marker = true;
        }
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_round_trip_and_seq_extension() {
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let bytes = rtp_packet(8, true, 65_535, 7, 9, &[1, 2, 3]);
        let p = parse_rtp(&bytes, Instant::now(), from).unwrap();
        assert_eq!(
            (p.pt, p.marker, p.seq, p.ts, p.ssrc, p.payload),
            (8, true, 65_535, 7, 9, vec![1, 2, 3])
        );
        let a = extend_seq(None, 65_535);
        assert_eq!(extend_seq(Some(a), 0), a + 1);
        assert_eq!(extend_seq(Some(a), 65_534), a - 1);
        assert!(parse_rtp(&[0x80, 200, 0, 1], Instant::now(), from).is_none());
        assert_eq!(
            uri_addr("<sip:x@127.0.0.1:5070;transport=udp>"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            uri_addr("sip:127.0.0.1"),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            (dtmf_event('#'), dtmf_digit(11), dtmf_event('x')),
            (Some(11), Some('#'), None)
        );
    }
}
