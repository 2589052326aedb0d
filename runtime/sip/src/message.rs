//! The wire edge of SIP: bytes in, an [`rsip::SipMessage`] or a ready answer
//! out. Sans-IO; untrusted input never panics and never allocates beyond
//! [`Limits`].
//!
//! ```text
//!  UDP datagram ─► parse_datagram ─┐
//!  TCP/TLS bytes ─► StreamFramer::push, then next() until None
//!                                  ▼
//!        Ok(Inbound::Message)  → transaction layer → check_request (UAS, §8.2)
//!        Ok(Inbound::KeepAlive)→ stream: answer "\r\n" (RFC 5626 §3.5.1)
//!        Err(Rejection::Reply) → send `response` back to the source as is
//!        Err(Rejection::Drop)  → log and forget
//!        Err(StreamError::Fatal) → close the connection
//! ```
//!
//! Order of calls for a request: [`parse_datagram`] (or the framer), then the
//! transaction layer, then [`check_request`]; on a [`Refusal`] the UA sends
//! [`refuse`], otherwise it handles the request and answers with
//! [`response`]. The accessors ([`call_id`], [`cseq`], [`from_tag`],
//! [`to_tag`], [`top_via_branch`]) read the few values the transaction and
//! dialog layers key on, without `rsip`'s typed parsers.
//!
//! `rsip` 0.4 is lenient and loses information (no line folding, no compact
//! header names, `sip:j.user@host` parses `j.user@host` as the host, unknown
//! methods do not exist), so this module scans the message itself: it
//! unfolds and checks every header field against the RFC 3261 §25 grammar,
//! writes Via, From, To, Contact, Route and Record-Route values back in a
//! canonical form (one value per header, no optional whitespace) and builds
//! the `rsip` values from those. The Request-URI is parsed here as well.
//!
//! What the RFC 4475 torture messages get is asserted in the tests below;
//! two choices are worth knowing: a well-formed request with a method `rsip`
//! cannot represent (RFC 4475 3.1.1.2 `intmeth`, 3.1.1.5 `esc02`) is
//! answered `501 Not Implemented` here (RFC 3261 §21.5.2), and headers in a
//! Request-URI (3.1.2.11 `escruri`) are accepted and ignored.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use bytes::{Buf, Bytes, BytesMut};
use rsip::headers::UntypedHeader;
use rsip::message::HasHeaders;
use rsip::{Header, Method, Request, Response, SipMessage};

/// Size limits for inbound messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (start line, headers and body) in bytes. Default
    /// 65 535, the largest UDP payload; bigger datagrams get `513`, bigger
    /// stream messages close the connection.
    pub max_message: usize,
    /// Most header fields in one message (after unfolding). Default 128.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 65_535,
            max_headers: 128,
        }
    }
}

/// What came in.
// Boxing the message would cost an allocation per message to save space
// only on keep-alives.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    Message(SipMessage),
    /// A CRLF keep-alive (RFC 5626 §3.5.1): "\r\n\r\n" on a stream, to be
    /// answered with a single "\r\n"; a datagram of only CRLFs, not answered.
    KeepAlive,
}

/// Why a message was not passed on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// An invalid request that can be answered: `response` is a complete
    /// serialized response (Via, From, To, Call-ID and CSeq copied from the
    /// raw request, a To tag, a `Warning: 399` naming the problem,
    /// `Content-Length: 0`) for the edge to send back to the source.
    #[error("answered {status}: {reason}")]
    Reply {
        status: u16,
        reason: String,
        response: Bytes,
    },
    /// Invalid responses, ACKs, and anything without a Via and CSeq to answer.
    #[error("dropped: {reason}")]
    Drop { reason: String },
}

/// Errors of [`StreamFramer::next`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The message was framed and rejected; the connection can go on.
    #[error(transparent)]
    Rejected(Rejection),
    /// The stream cannot be framed any more (no or bad Content-Length,
    /// oversize): the edge closes the connection.
    #[error("stream closed: {0}")]
    Fatal(String),
}

/// Parses one UDP datagram: one message per datagram (RFC 3261 §18.3).
///
/// Octets after Content-Length bytes of body are ignored (RFC 4475
/// 3.1.1.8); without Content-Length the body is the rest of the datagram; a
/// Content-Length larger than what arrived is a 400 (RFC 4475 3.1.2.2).
pub fn parse_datagram(bytes: &[u8], limits: &Limits) -> Result<Inbound, Rejection> {
    if bytes.is_empty() {
        return Err(drop("empty datagram"));
    }
    if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        return Ok(Inbound::KeepAlive);
    }
    // RFC 3261 §7.5 lets streams carry CRLFs before a start line; be as
    // lenient on datagrams.
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let msg = bytes.get(start..).unwrap_or_default();
    if msg.len() > limits.max_message {
        let head = Head::split(msg);
        let fields = head.fields(limits);
        let reason = format!(
            "message of {} bytes exceeds {}",
            msg.len(),
            limits.max_message
        );
        return Err(head.reject(&fields.fields, 513, reason));
    }
    parse_message(msg, Framing::Datagram, limits).map(Inbound::Message)
}

/// Frames SIP messages on a TCP or TLS byte stream by the end of the header
/// section and Content-Length, which streams must carry (RFC 3261 §18.3).
///
/// Call [`push`](Self::push) with every read, then [`next`](Self::next)
/// until it returns `None`. CRLFs between messages are skipped (RFC 3261
/// §7.5); a "\r\n\r\n" there is a keep-alive ping.
#[derive(Debug)]
pub struct StreamFramer {
    limits: Limits,
    buf: BytesMut,
    /// Length of the message at the front of `buf`, once its header is in.
    frame: Option<usize>,
    /// More was pushed than a message can be: the stream is unusable.
    overflow: bool,
    /// `Fatal` was reported; nothing more comes out.
    closed: bool,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            frame: None,
            overflow: false,
            closed: false,
        }
    }

    /// Appends bytes read from the stream. The buffer never grows past two
    /// messages' worth; beyond that [`next`](Self::next) reports `Fatal`.
    pub fn push(&mut self, data: &[u8]) {
        if self.overflow || self.closed {
            return;
        }
        if self.buf.len().saturating_add(data.len()) > self.limits.max_message.saturating_mul(2) {
            self.overflow = true;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, keep-alive or error; `None` when more
    /// bytes are needed. `Fatal` comes once; after it the framer is closed
    /// and returns `None`, so a drain loop cannot spin.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Inbound, StreamError>> {
        if self.closed {
            return None;
        }
        if self.overflow {
            let reason = format!(
                "more than {} bytes buffered without a complete message",
                self.limits.max_message.saturating_mul(2)
            );
            return Some(Err(self.fatal(reason)));
        }
        let total = match self.frame {
            Some(total) => total,
            None => {
                loop {
                    if self.buf.starts_with(b"\r\n\r\n") {
                        self.buf.advance(4);
                        return Some(Ok(Inbound::KeepAlive));
                    }
                    if self.buf.starts_with(b"\r\n") {
                        // Wait: "\r\n" or "\r\n\r" may still become a ping.
                        if b"\r\n\r".starts_with(&self.buf) {
                            return None;
                        }
                        self.buf.advance(2);
                        continue;
                    }
                    break;
                }
                let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                    if self.buf.len() > self.limits.max_message {
                        return Some(Err(self.fatal(format!(
                            "no end of header within {} bytes",
                            self.limits.max_message
                        ))));
                    }
                    return None;
                };
                let head_len = end + 4;
                let head = Head::split(self.buf.get(..head_len).unwrap_or_default());
                let total = match head.content_length() {
                    Ok(body) => head_len.saturating_add(body),
                    Err(e) => return Some(Err(self.fatal(e))),
                };
                if total > self.limits.max_message {
                    return Some(Err(self.fatal(format!(
                        "message of {total} bytes exceeds {}",
                        self.limits.max_message
                    ))));
                }
                self.frame = Some(total);
                total
            }
        };
        if self.buf.len() < total {
            return None;
        }
        self.frame = None;
        let msg = self.buf.split_to(total);
        Some(
            parse_message(&msg, Framing::Stream, &self.limits)
                .map(Inbound::Message)
                .map_err(StreamError::Rejected),
        )
    }

    fn fatal(&mut self, reason: String) -> StreamError {
        self.closed = true;
        self.buf = BytesMut::new();
        StreamError::Fatal(reason)
    }
}

/// A request a UAS must not process, with the answer to send
/// (RFC 3261 §8.2): build the response with [`refuse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The reason phrase; it names the problem.
    pub reason: String,
    /// Headers the status requires (`Unsupported`, `Accept`, ...).
    pub headers: Vec<Header>,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }
}

/// The UAS checks of RFC 3261 §8.2 on a request that parsed, in the RFC's
/// order: required headers (400), Request-URI scheme (416), `Require` (420),
/// body type and encoding on INVITE (415), INVITE `Accept` (406).
///
/// `supported` lists the option tags we implement (compared without case).
/// `Max-Forwards: 0` is not refused: we are an endpoint (RFC 4475 3.3.11).
/// ACK and CANCEL are never refused for extensions (RFC 3261 §8.2.2.3); a
/// refused ACK must be dropped by the caller, not answered.
pub fn check_request(req: &Request, supported: &[&str]) -> Result<(), Refusal> {
    let mut vias = 0;
    let mut counts = [0usize; 5];
    const SINGLE: [&str; 5] = ["From", "To", "Call-ID", "CSeq", "Max-Forwards"];
    for h in req.headers.iter() {
        match h {
            Header::Via(_) => vias += 1,
            Header::From(_) => counts[0] += 1,
            Header::To(_) => counts[1] += 1,
            Header::CallId(_) => counts[2] += 1,
            Header::CSeq(_) => counts[3] += 1,
            Header::MaxForwards(_) => counts[4] += 1,
            _ => {}
        }
    }
    if vias == 0 {
        return Err(Refusal::new(400, "Missing Via header"));
    }
    for (name, count) in SINGLE.iter().zip(counts) {
        // Max-Forwards may be absent (RFC 2543 clients, RFC 4475 3.4.1).
        if count == 0 && *name != "Max-Forwards" {
            return Err(Refusal::new(400, format!("Missing {name} header")));
        }
        if count > 1 {
            return Err(Refusal::new(400, format!("Multiple {name} header fields")));
        }
    }
    let Some((_, cseq_method)) = first(req, |h| match h {
        Header::CSeq(v) => Some(v.value()),
        _ => None,
    })
    .and_then(parse_cseq) else {
        return Err(Refusal::new(400, "Malformed CSeq header"));
    };
    if cseq_method != method_name(req.method) {
        // RFC 3261 §8.1.1.5; RFC 4475 3.1.2.17.
        return Err(Refusal::new(
            400,
            "CSeq method does not match the request method",
        ));
    }
    match &req.uri.scheme {
        None | Some(rsip::Scheme::Sip) | Some(rsip::Scheme::Sips) => {}
        Some(rsip::Scheme::Other(s)) if s.eq_ignore_ascii_case("tel") => {}
        Some(_) => return Err(Refusal::new(416, "Unsupported URI Scheme")),
    }
    if !matches!(req.method, Method::Ack | Method::Cancel) {
        check_require(req, supported)?;
    }
    if req.method == Method::Invite {
        check_invite_body(req)?;
        check_invite_accept(req)?;
    }
    Ok(())
}

/// A response to `req` per RFC 3261 §8.2.6: all Vias in order, From, To
/// (with `to_tag` added when given and To has none), Call-ID, CSeq and
/// `Content-Length: 0`.
///
/// The status is `StatusCode::Other(status, reason)` so that `reason` is the
/// reason phrase on the wire; compare statuses with `status_code.code()`.
pub fn response(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    respond(req, status, reason, to_tag, &[])
}

/// The response for a [`Refusal`]: [`response`] plus the refusal's headers.
pub fn refuse(req: &Request, refusal: &Refusal, to_tag: Option<&str>) -> Response {
    respond(
        req,
        refusal.status,
        &refusal.reason,
        to_tag,
        &refusal.headers,
    )
}

/// The Call-ID value.
pub fn call_id<M: HasHeaders>(msg: &M) -> Option<&str> {
    first(msg, |h| match h {
        Header::CallId(v) => Some(v.value()),
        _ => None,
    })
}

/// The CSeq number and method; `None` when absent or malformed.
pub fn cseq<M: HasHeaders>(msg: &M) -> Option<(u32, Method)> {
    let value = first(msg, |h| match h {
        Header::CSeq(v) => Some(v.value()),
        _ => None,
    })?;
    let (seq, method) = parse_cseq(value)?;
    Some((seq, known_method(method)?))
}

/// The `tag` parameter of From.
pub fn from_tag<M: HasHeaders>(msg: &M) -> Option<&str> {
    let value = first(msg, |h| match h {
        Header::From(v) => Some(v.value()),
        _ => None,
    })?;
    name_addr_param(value, "tag")
}

/// The `tag` parameter of To.
pub fn to_tag<M: HasHeaders>(msg: &M) -> Option<&str> {
    let value = first(msg, |h| match h {
        Header::To(v) => Some(v.value()),
        _ => None,
    })?;
    name_addr_param(value, "tag")
}

/// The URI of From, without display name or header parameters.
pub fn from_uri<M: HasHeaders>(msg: &M) -> Option<&str> {
    let value = first(msg, |h| match h {
        Header::From(v) => Some(v.value()),
        _ => None,
    })?;
    addr_uri(value)
}

/// The URI of the first Contact, without display name or header parameters.
pub fn contact_uri<M: HasHeaders>(msg: &M) -> Option<&str> {
    let value = first(msg, |h| match h {
        Header::Contact(v) => Some(v.value()),
        _ => None,
    })?;
    addr_uri(value)
}

/// The URI of a name-addr or addr-spec value. Read with the validator's
/// own grammar rather than rsip's typed headers: those build every part
/// and format error strings while trying alternatives, 4 % of a refused
/// call's CPU for From and Contact (BENCHMARKS.md, `sip`, issue 14).
fn addr_uri(value: &str) -> Option<&str> {
    let mut c = Cursor::new(value);
    let uri = name_addr_uri(&mut c, &mut String::new(), &mut |_, _| {}).ok()?;
    c.ws();
    c.eof().then_some(uri)
}

/// The `branch` parameter of the topmost Via.
pub fn top_via_branch<M: HasHeaders>(msg: &M) -> Option<&str> {
    let value = first(msg, |h| match h {
        Header::Via(v) => Some(v.value()),
        _ => None,
    })?;
    let mut c = Cursor::new(value);
    let mut branch = None;
    via_element(&mut c, &mut String::new(), &mut |name, v| {
        if branch.is_none() && name.eq_ignore_ascii_case("branch") {
            branch = v;
        }
    })
    .ok()?;
    branch
}

// ---------------------------------------------------------------------------
// Message assembly

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Datagram,
    Stream,
}

fn drop(reason: impl Into<String>) -> Rejection {
    Rejection::Drop {
        reason: reason.into(),
    }
}

/// A message split at its first CRLF and at the empty line.
struct Head<'a> {
    start: &'a [u8],
    /// Header lines, each ending in CRLF (the last one may not when the
    /// empty line is missing).
    block: &'a [u8],
    /// Everything after the empty line; `None` when there is none.
    rest: Option<&'a [u8]>,
}

/// Fields collected from a header block, and the first problem seen.
struct Collected<'a> {
    fields: Vec<RawField<'a>>,
    error: Option<String>,
}

impl<'a> Head<'a> {
    fn split(msg: &'a [u8]) -> Self {
        let start_end = find(msg, b"\r\n").unwrap_or(msg.len());
        let start = msg.get(..start_end).unwrap_or_default();
        let after_start = msg.get(start_end.saturating_add(2)..).unwrap_or_default();
        if after_start.starts_with(b"\r\n") {
            // No header fields at all.
            return Self {
                start,
                block: &[],
                rest: after_start.get(2..),
            };
        }
        match find(after_start, b"\r\n\r\n") {
            Some(end) => Self {
                start,
                block: after_start.get(..end + 2).unwrap_or_default(),
                rest: after_start.get(end + 4..),
            },
            None => Self {
                start,
                block: after_start,
                rest: None,
            },
        }
    }

    fn is_response(&self) -> bool {
        self.start
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    }

    /// The request's method token, for deciding whether to answer.
    fn method(&self) -> &'a str {
        let token = self.start.split(|b| *b == b' ').next().unwrap_or_default();
        std::str::from_utf8(token).unwrap_or_default()
    }

    fn fields(&self, limits: &Limits) -> Collected<'a> {
        let mut fields = Vec::with_capacity(16);
        let mut error = None;
        for item in (Fields { rest: self.block }) {
            if fields.len() >= limits.max_headers {
                error = Some(format!("more than {} header fields", limits.max_headers));
                break;
            }
            match item {
                Ok(f) => fields.push(f),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        Collected { fields, error }
    }

    /// The body length a stream message declares (RFC 3261 §18.3).
    fn content_length(&self) -> Result<usize, String> {
        let mut found = None;
        for f in (Fields { rest: self.block }).flatten() {
            if f.kind != Kind::ContentLength {
                continue;
            }
            if found.is_some() {
                return Err("multiple Content-Length header fields".into());
            }
            let n = f
                .value
                .as_deref()
                .and_then(parse_content_length)
                .ok_or_else(|| "malformed Content-Length".to_string())?;
            found = Some(n);
        }
        found.ok_or_else(|| "no Content-Length on a stream (RFC 3261 §18.3)".into())
    }

    /// The rejection for an invalid message: a stateless answer to a
    /// request, a drop for anything else.
    fn reject(&self, fields: &[RawField<'_>], status: u16, reason: String) -> Rejection {
        if self.is_response() {
            return drop(format!("invalid response: {reason}"));
        }
        stateless_reply(self.method(), fields, status, reason)
    }
}

fn parse_message(msg: &[u8], framing: Framing, limits: &Limits) -> Result<SipMessage, Rejection> {
    let head = Head::split(msg);
    let Collected { fields, error } = head.fields(limits);
    let fail = |status: u16, reason: String| head.reject(&fields, status, reason);

    let start = start_line(head.start, head.is_response()).map_err(|(s, r)| fail(s, r))?;
    if let Some(e) = error {
        return Err(fail(400, e));
    }
    let Some(rest) = head.rest else {
        return Err(fail(400, "no empty line after the header fields".into()));
    };

    let mut headers = Vec::with_capacity(fields.len() + 4);
    let mut facts = Facts::default();
    for f in &fields {
        validate(f, &mut headers, &mut facts).map_err(|e| fail(400, e))?;
    }
    let body = match (facts.content_lengths, facts.content_length) {
        (0, _) if framing == Framing::Datagram => rest,
        (0, _) => return Err(fail(400, "no Content-Length on a stream".into())),
        (1, n) => match rest.get(..n) {
            Some(body) => body,
            None => {
                let why = format!(
                    "Content-Length {n} is larger than the {} body bytes received",
                    rest.len()
                );
                return Err(fail(400, why));
            }
        },
        _ => return Err(fail(400, "multiple Content-Length header fields".into())),
    };

    match start {
        Start::Response { code, reason } => Ok(SipMessage::Response(Response {
            status_code: status_code(code, reason),
            version: rsip::Version::V2,
            headers: headers.into(),
            body: body.to_vec(),
        })),
        Start::Request { method, uri } => {
            let Some(known) = known_method(method) else {
                if facts.cseq_method.is_some_and(|m| m != method) {
                    return Err(fail(
                        400,
                        "CSeq method does not match the request method".into(),
                    ));
                }
                // rsip 0.4 has no variant for extension methods.
                return Err(fail(501, format!("method {method} is not implemented")));
            };
            Ok(SipMessage::Request(Request {
                method: known,
                uri,
                version: rsip::Version::V2,
                headers: headers.into(),
                body: body.to_vec(),
            }))
        }
    }
}

enum Start<'a> {
    Request { method: &'a str, uri: rsip::Uri },
    Response { code: u16, reason: &'a str },
}

/// Parses the start line (RFC 3261 §7.1, §7.2); errors carry the status to
/// answer a request with.
fn start_line(line: &[u8], is_response: bool) -> Result<Start<'_>, (u16, String)> {
    let bad = |why: &str| (400, why.to_string());
    let line = std::str::from_utf8(line).map_err(|_| bad("start line is not UTF-8"))?;
    if is_response {
        let (version, rest) = line
            .split_once(' ')
            .ok_or_else(|| bad("malformed status line"))?;
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(bad("unsupported SIP version in status line"));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| code.parse::<u16>().ok())
            .flatten()
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| bad("status code is not 100-699"))?;
        check_text(reason).map_err(|_| bad("control character in reason phrase"))?;
        return Ok(Start::Response { code, reason });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        // RFC 4475 3.1.2.8-10: extra or trailing SP, LWS in the URI.
        return Err(bad(
            "request line is not Method SP Request-URI SP SIP-Version",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(bad("malformed method"));
    }
    match sip_version(version) {
        Some(true) => {}
        Some(false) => return Err((505, format!("SIP version {version} is not supported"))),
        None => return Err(bad("malformed SIP version")),
    }
    let uri = request_uri(uri).map_err(|why| (400, format!("malformed Request-URI: {why}")))?;
    Ok(Start::Request { method, uri })
}

/// `Some(true)` for SIP/2.0 (case-insensitive, RFC 3261 §7.1), `Some(false)`
/// for another well-formed version, `None` for garbage.
fn sip_version(v: &str) -> Option<bool> {
    let rest = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and(v.get(4..))?;
    let (major, minor) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then_some(major == "2" && minor == "0")
}

fn status_code(code: u16, reason: &str) -> rsip::StatusCode {
    // The same mapping rsip's own parser makes: named variants for the
    // codes it knows, the reason phrase kept for the others.
    match rsip::StatusCode::from(code) {
        rsip::StatusCode::Other(code, _) => rsip::StatusCode::Other(code, reason.to_string()),
        known => known,
    }
}

const METHODS: [(&str, Method); 14] = [
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("INFO", Method::Info),
    ("INVITE", Method::Invite),
    ("MESSAGE", Method::Message),
    ("NOTIFY", Method::Notify),
    ("OPTIONS", Method::Options),
    ("PRACK", Method::PRack),
    ("PUBLISH", Method::Publish),
    ("REFER", Method::Refer),
    ("REGISTER", Method::Register),
    ("SUBSCRIBE", Method::Subscribe),
    ("UPDATE", Method::Update),
];

/// Methods are case-sensitive (RFC 3261 §7.1): `invite` is not INVITE.
fn known_method(token: &str) -> Option<Method> {
    METHODS
        .iter()
        .find(|(name, _)| *name == token)
        .map(|(_, m)| *m)
}

fn method_name(method: Method) -> &'static str {
    METHODS
        .iter()
        .find(|(_, m)| *m == method)
        .map_or("", |(name, _)| name)
}

fn first<'m, M: HasHeaders>(
    msg: &'m M,
    pick: impl Fn(&'m Header) -> Option<&'m str>,
) -> Option<&'m str> {
    msg.headers().iter().find_map(pick)
}

// ---------------------------------------------------------------------------
// Header fields

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
    Other,
}

/// One logical header field, unfolded (RFC 3261 §7.3.1).
struct RawField<'a> {
    name: &'a str,
    kind: Kind,
    /// Trimmed and unfolded; `None` when not UTF-8.
    value: Option<Cow<'a, str>>,
}

/// Long names for the compact forms (RFC 3261 §7.3.3 and the IANA
/// registry), so `rsip` files them under the right variant.
const COMPACT: [(&str, &str); 20] = [
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("n", "Identity-Info"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

fn long_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    COMPACT
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map_or(name, |(_, long)| long)
}

fn kind_of(name: &str) -> Kind {
    const KINDS: [(&str, Kind); 11] = [
        ("Via", Kind::Via),
        ("From", Kind::From),
        ("To", Kind::To),
        ("Call-ID", Kind::CallId),
        ("CSeq", Kind::CSeq),
        ("Max-Forwards", Kind::MaxForwards),
        ("Content-Length", Kind::ContentLength),
        ("Content-Type", Kind::ContentType),
        ("Contact", Kind::Contact),
        ("Route", Kind::Route),
        ("Record-Route", Kind::RecordRoute),
    ];
    let name = long_name(name);
    KINDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(Kind::Other, |(_, k)| *k)
}

/// Iterates the logical fields of a header block. Keeps going after a bad
/// line, so an answer can still copy the fields that are readable.
struct Fields<'a> {
    rest: &'a [u8],
}

fn split_line(s: &[u8]) -> (&[u8], &[u8]) {
    match find(s, b"\r\n") {
        Some(i) => (
            s.get(..i).unwrap_or_default(),
            s.get(i + 2..).unwrap_or_default(),
        ),
        None => (s, &[]),
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_wsp(*b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_wsp(*b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<RawField<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, mut after) = split_line(self.rest);
        let mut folded = false;
        while after.first().is_some_and(|b| is_wsp(*b)) {
            after = split_line(after).1;
            folded = true;
        }
        let span = self
            .rest
            .get(..self.rest.len() - after.len())
            .unwrap_or_default();
        self.rest = after;

        if line.first().is_some_and(|b| is_wsp(*b)) {
            return Some(Err("continuation line without a header field".into()));
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Some(Err("header line without a colon".into()));
        };
        // HCOLON allows whitespace before the colon (RFC 3261 §25.1).
        let name = trim_wsp(line.get(..colon).unwrap_or_default());
        if name.is_empty()
            || name.first().is_some_and(|b| is_wsp(*b))
            || !name.iter().all(|b| is_token(*b))
        {
            return Some(Err("malformed header name".into()));
        }
        let name = std::str::from_utf8(name).unwrap_or_default();
        let region = span.get(colon + 1..).unwrap_or_default();
        let value = if folded {
            let mut joined = Vec::with_capacity(region.len());
            let mut rest = region;
            while !rest.is_empty() {
                let (part, next) = split_line(rest);
                let part = trim_wsp(part);
                if !part.is_empty() {
                    if !joined.is_empty() {
                        joined.push(b' ');
                    }
                    joined.extend_from_slice(part);
                }
                rest = next;
            }
            String::from_utf8(joined).ok().map(Cow::Owned)
        } else {
            let (value, _) = split_line(region);
            std::str::from_utf8(trim_wsp(value)).ok().map(Cow::Borrowed)
        };
        Some(Ok(RawField {
            name,
            kind: kind_of(name),
            value,
        }))
    }
}

/// What validation learns that the message as a whole needs.
#[derive(Default)]
struct Facts<'a> {
    content_lengths: usize,
    content_length: usize,
    cseq_method: Option<&'a str>,
}

/// Checks one field against its grammar and appends the `rsip` header(s):
/// list headers become one header per value.
fn validate<'a>(
    f: &'a RawField<'a>,
    out: &mut Vec<Header>,
    facts: &mut Facts<'a>,
) -> Result<(), String> {
    let name = long_name(f.name);
    let bad = |why: &str| format!("malformed {name} header: {why}");
    let Some(value) = f.value.as_deref() else {
        return Err(format!("{name} header is not UTF-8"));
    };
    match f.kind {
        Kind::Via => list(value, via_element, |v| {
            out.push(Header::Via(rsip::headers::Via::new(v)))
        })
        .map_err(bad)?,
        Kind::From => out.push(Header::From(rsip::headers::From::new(
            single_name_addr(value).map_err(bad)?,
        ))),
        Kind::To => out.push(Header::To(rsip::headers::To::new(
            single_name_addr(value).map_err(bad)?,
        ))),
        Kind::Contact if value == "*" => {
            out.push(Header::Contact(rsip::headers::Contact::new("*")))
        }
        Kind::Contact => list(value, name_addr, |v| {
            out.push(Header::Contact(rsip::headers::Contact::new(v)))
        })
        .map_err(bad)?,
        Kind::Route => list(value, name_addr, |v| {
            out.push(Header::Route(rsip::headers::Route::new(v)))
        })
        .map_err(bad)?,
        Kind::RecordRoute => list(value, name_addr, |v| {
            out.push(Header::RecordRoute(rsip::headers::RecordRoute::new(v)))
        })
        .map_err(bad)?,
        Kind::CallId => {
            if !is_call_id(value) {
                return Err(bad("not word[@word]"));
            }
            out.push(Header::CallId(rsip::headers::CallId::new(value)));
        }
        Kind::CSeq => {
            // RFC 4475 3.1.2.4: a number beyond 2**32-1 is a 400.
            let (seq, method) =
                parse_cseq(value).ok_or_else(|| bad("not a 32-bit number and a method"))?;
            facts.cseq_method.get_or_insert(method);
            out.push(Header::CSeq(rsip::headers::CSeq::new(format!(
                "{seq} {method}"
            ))));
        }
        Kind::MaxForwards => {
            let hops = digits(value)
                .filter(|n| *n <= 255)
                .ok_or_else(|| bad("not 0-255"))?;
            out.push(Header::MaxForwards(rsip::headers::MaxForwards::new(
                hops.to_string(),
            )));
        }
        Kind::ContentLength => {
            // RFC 4475 3.1.2.3: a negative length is a 400.
            let n = parse_content_length(value).ok_or_else(|| bad("not a number"))?;
            facts.content_lengths += 1;
            facts.content_length = n;
            out.push(Header::ContentLength(rsip::headers::ContentLength::new(
                n.to_string(),
            )));
        }
        Kind::ContentType => {
            media_type(value, &mut |_, _| {}).map_err(bad)?;
            out.push(Header::ContentType(rsip::headers::ContentType::new(value)));
        }
        Kind::Other => {
            check_text(value).map_err(bad)?;
            let tokens = rsip::headers::header::Tokenizer {
                name: name.as_bytes(),
                value: value.as_bytes(),
            };
            let header: Result<Header, rsip::Error> = tokens.try_into();
            out.push(header.map_err(|e| bad(&e.to_string()))?);
        }
    }
    Ok(())
}

fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_content_length(s: &str) -> Option<usize> {
    digits(s).and_then(|n| usize::try_from(n).ok())
}

/// `CSeq = 1*DIGIT LWS Method` with the number in 32 bits (RFC 3261 §20.16).
fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let mut c = Cursor::new(value);
    c.ws();
    let seq = c.take_while(|b| b.is_ascii_digit());
    let seq = u32::try_from(digits(seq)?).ok()?;
    if !c.ws() {
        return None;
    }
    let method = c.take_while(is_token);
    c.ws();
    (!method.is_empty() && c.eof()).then_some((seq, method))
}

/// `callid = word [ "@" word ]` (RFC 3261 §25.1).
fn is_call_id(value: &str) -> bool {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| is_token(b) || b"()<>:\\\"/[]?{}".contains(&b))
    };
    match value.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(value),
    }
}

/// `header-value` of an extension header: text without control characters
/// outside quoted pairs.
fn check_text(value: &str) -> Result<(), &'static str> {
    let mut quoted = false;
    let mut escaped = false;
    for b in value.bytes() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted => escaped = true,
            b'\t' => {}
            0..=0x1f | 0x7f => return Err("control character"),
            _ => {}
        }
    }
    Ok(())
}

/// Parses one list element into canonical form, reporting its parameters.
type Element<'a> = fn(
    &mut Cursor<'a>,
    &mut String,
    &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<(), &'static str>;

/// A comma-separated list of one element kind; `push` gets each element in
/// canonical form. Empty elements are errors (RFC 4475 3.1.2.1).
fn list<'a>(
    value: &'a str,
    element: Element<'a>,
    mut push: impl FnMut(String),
) -> Result<(), &'static str> {
    let mut c = Cursor::new(value);
    loop {
        let mut out = String::with_capacity(value.len());
        element(&mut c, &mut out, &mut |_, _| {})?;
        push(out);
        c.ws();
        if c.eof() {
            return Ok(());
        }
        if !c.eat(b',') {
            return Err("unexpected character after a value");
        }
    }
}

fn single_name_addr(value: &str) -> Result<String, &'static str> {
    let mut c = Cursor::new(value);
    let mut out = String::with_capacity(value.len());
    name_addr(&mut c, &mut out, &mut |_, _| {})?;
    c.ws();
    if !c.eof() {
        return Err("more than one value");
    }
    Ok(out)
}

fn name_addr_param<'a>(value: &'a str, want: &str) -> Option<&'a str> {
    let mut c = Cursor::new(value);
    let mut found = None;
    name_addr(&mut c, &mut String::new(), &mut |name, v| {
        if found.is_none() && name.eq_ignore_ascii_case(want) {
            found = v;
        }
    })
    .ok()?;
    found
}

/// `(name-addr / addr-spec) *(SEMI generic-param)` (RFC 3261 §20.10, §25.1).
fn name_addr<'a>(
    c: &mut Cursor<'a>,
    out: &mut String,
    on_param: &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<(), &'static str> {
    name_addr_uri(c, out, on_param).map(|_| ())
}

/// [`name_addr`], returning the URI.
fn name_addr_uri<'a>(
    c: &mut Cursor<'a>,
    out: &mut String,
    on_param: &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<&'a str, &'static str> {
    c.ws();
    let mut display = None;
    let angle = if c.peek() == Some(b'"') {
        display = Some(c.quoted()?);
        c.ws();
        if !c.eat(b'<') {
            return Err("quoted display name without <URI>");
        }
        true
    } else {
        let save = c.i;
        let words = c.take_while(|b| is_token(b) || is_wsp(b));
        if c.eat(b'<') {
            let words = words.trim_matches([' ', '\t']);
            display = (!words.is_empty()).then_some(words);
            true
        } else {
            c.i = save;
            false
        }
    };
    if let Some(d) = display {
        out.push_str(d);
        out.push(' ');
    }
    if angle {
        // RAQUOT/LAQUOT allow no whitespace inside the brackets (RFC 4475 3.1.2.14).
        let uri = c.take_while(|b| b > b' ' && !b"<>\"".contains(&b) && b != 0x7f);
        if !c.eat(b'>') {
            return Err("<URI> not closed or contains whitespace");
        }
        any_uri(uri)?;
        out.push('<');
        out.push_str(uri);
        out.push('>');
        params(c, out, on_param)?;
        Ok(uri)
    } else {
        let uri = c.take_while(|b| b > b' ' && !b";,<>\"".contains(&b) && b != 0x7f);
        if uri.contains('?') {
            // RFC 3261 §20: such URIs must be in <> (RFC 4475 3.1.2.13).
            return Err("URI with headers outside <>");
        }
        any_uri(uri)?;
        out.push_str(uri);
        params(c, out, on_param)?;
        Ok(uri)
    }
}

/// `sent-protocol LWS sent-by *(SEMI via-params)` (RFC 3261 §20.42), written
/// out as `SIP/2.0/UDP host:port;param=value`.
fn via_element<'a>(
    c: &mut Cursor<'a>,
    out: &mut String,
    on_param: &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<(), &'static str> {
    c.ws();
    let mut protocol = [""; 3];
    for (i, part) in protocol.iter_mut().enumerate() {
        if i > 0 {
            c.ws();
            if !c.eat(b'/') {
                return Err("malformed sent-protocol");
            }
            c.ws();
        }
        *part = c.take_while(is_token);
        if part.is_empty() {
            return Err("malformed sent-protocol");
        }
    }
    if !c.ws() {
        return Err("no space before sent-by");
    }
    let host = host(c)?;
    let save = c.i;
    c.ws();
    let port = if c.eat(b':') {
        c.ws();
        let port = c.take_while(|b| b.is_ascii_digit());
        digits(port).filter(|p| *p <= 65_535).ok_or("bad port")?;
        Some(port)
    } else {
        c.i = save;
        None
    };
    let [name, version, transport] = protocol;
    let _ = write!(out, "{name}/{version}/{transport} {host}");
    if let Some(port) = port {
        out.push(':');
        out.push_str(port);
    }
    params(c, out, on_param)
}

/// `host = hostname / IPv4address / IPv6reference`.
fn host<'a>(c: &mut Cursor<'a>) -> Result<&'a str, &'static str> {
    let host = if c.peek() == Some(b'[') {
        let h = c.take_while(|b| b.is_ascii_hexdigit() || b"[:.".contains(&b));
        if !c.eat(b']') {
            return Err("bad IPv6 reference");
        }
        c.s.get(c.i - h.len() - 1..c.i).unwrap_or_default()
    } else {
        c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if host.is_empty() {
        return Err("missing host");
    }
    Ok(host)
}

/// `*( SEMI generic-param )`, written out as `;name=value`.
fn params<'a>(
    c: &mut Cursor<'a>,
    out: &mut String,
    on_param: &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<(), &'static str> {
    loop {
        let save = c.i;
        c.ws();
        if !c.eat(b';') {
            c.i = save;
            return Ok(());
        }
        c.ws();
        let name = c.take_while(is_token);
        if name.is_empty() {
            return Err("empty parameter");
        }
        let save = c.i;
        c.ws();
        let value = if c.eat(b'=') {
            c.ws();
            let v = if c.peek() == Some(b'"') {
                c.quoted()?
            } else {
                c.take_while(|b| is_token(b) || b"[]:".contains(&b))
            };
            if v.is_empty() {
                return Err("empty parameter value");
            }
            Some(v)
        } else {
            c.i = save;
            None
        };
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
        on_param(name, value);
    }
}

/// `m-type SLASH m-subtype *(SEMI m-parameter)` (RFC 3261 §20.15).
fn media_type<'a>(
    value: &'a str,
    on_param: &mut dyn FnMut(&'a str, Option<&'a str>),
) -> Result<(&'a str, &'a str), &'static str> {
    let mut c = Cursor::new(value);
    c.ws();
    let kind = c.take_while(is_token);
    c.ws();
    if kind.is_empty() || !c.eat(b'/') {
        return Err("not type/subtype");
    }
    c.ws();
    let sub = c.take_while(is_token);
    if sub.is_empty() {
        return Err("not type/subtype");
    }
    params(&mut c, &mut String::new(), on_param)?;
    c.ws();
    if !c.eof() {
        return Err("unexpected character");
    }
    Ok((kind, sub))
}

// ---------------------------------------------------------------------------
// URIs

/// Checks a URI in a header: SIP and SIPS URIs against RFC 3261 §25.1, other
/// schemes as an RFC 2396 absoluteURI.
fn any_uri(uri: &str) -> Result<(), &'static str> {
    match split_scheme(uri)? {
        (scheme, rest) if is_sip_scheme(scheme) => sip_uri(rest).map(|_| ()),
        (_, rest) => absolute_uri(rest),
    }
}

fn is_sip_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` then ":".
fn split_scheme(uri: &str) -> Result<(&str, &str), &'static str> {
    let (scheme, rest) = uri.split_once(':').ok_or("no scheme")?;
    let ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !ok {
        return Err("bad scheme");
    }
    Ok((scheme, rest))
}

fn absolute_uri(rest: &str) -> Result<(), &'static str> {
    if rest.is_empty() || !uri_chars(rest, b";/?:@&=+$,[]#") {
        return Err("bad characters in URI");
    }
    Ok(())
}

struct SipUri<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    /// `;name[=value]...`, without the leading ';'.
    params: Option<&'a str>,
}

/// `SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]`,
/// after the scheme.
fn sip_uri(rest: &str) -> Result<SipUri<'_>, &'static str> {
    // '@' cannot appear unescaped after the userinfo.
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(u) => {
            let (user, password) = match u.split_once(':') {
                Some((user, pw)) => (user, Some(pw)),
                None => (u, None),
            };
            if user.is_empty() || !uri_chars(user, b"&=+$,;?/") {
                return Err("bad user part");
            }
            if password.is_some_and(|p| !uri_chars(p, b"&=+$,")) {
                return Err("bad password");
            }
            (Some(user), password)
        }
        None => (None, None),
    };
    let (before_headers, headers) = match hostpart.split_once('?') {
        Some((a, h)) => (a, Some(h)),
        None => (hostpart, None),
    };
    let (hostport, params) = match before_headers.split_once(';') {
        Some((hp, p)) => (hp, Some(p)),
        None => (before_headers, None),
    };
    let mut c = Cursor::new(hostport);
    let host = host(&mut c)?;
    let port = if c.eat(b':') {
        let p = c.take_while(|b| b.is_ascii_digit());
        Some(
            digits(p)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("bad port")?,
        )
    } else {
        None
    };
    if !c.eof() {
        return Err("bad host");
    }
    if let Some(p) = params {
        for param in p.split(';') {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.is_empty() || !uri_chars(name, b"[]/:&+$") || !uri_chars(value, b"[]/:&+$") {
                return Err("bad URI parameter");
            }
        }
    }
    if let Some(h) = headers {
        for header in h.split('&') {
            let (name, value) = header.split_once('=').ok_or("bad URI header")?;
            if name.is_empty() || !uri_chars(name, b"[]/?:+$") || !uri_chars(value, b"[]/?:+$") {
                return Err("bad URI header");
            }
        }
    }
    Ok(SipUri {
        user,
        password,
        host,
        port,
        params,
    })
}

/// `unreserved / escaped / extra`, with escapes checked.
fn uri_chars(s: &str, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(|h| h.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c) || extra.contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

/// The Request-URI as an `rsip::Uri`, built from our own parse because
/// rsip's misreads users with dots and URIs with headers. Headers in a
/// Request-URI are meaningless to a UAS and are dropped (RFC 4475 3.1.2.11
/// lets an element accept them). Other schemes keep their text as the host,
/// which is all `check_request` needs to answer 416.
fn request_uri(text: &str) -> Result<rsip::Uri, &'static str> {
    let (scheme, rest) = split_scheme(text)?;
    if !is_sip_scheme(scheme) {
        absolute_uri(rest)?;
        return Ok(rsip::Uri {
            scheme: Some(rsip::Scheme::Other(scheme.to_string())),
            host_with_port: rsip::Host::Domain(rest.into()).into(),
            ..Default::default()
        });
    }
    let uri = sip_uri(rest)?;
    let host = match uri.host.parse::<std::net::IpAddr>() {
        Ok(ip) => rsip::Host::IpAddr(ip),
        Err(_) => rsip::Host::Domain(uri.host.into()),
    };
    let params = uri
        .params
        .into_iter()
        .flat_map(|p| p.split(';'))
        .map(|p| {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            rsip::Param::try_from((name, value))
                .unwrap_or_else(|_| rsip::Param::Other(name.into(), value.map(Into::into)))
        })
        .collect();
    Ok(rsip::Uri {
        scheme: Some(if scheme.eq_ignore_ascii_case("sips") {
            rsip::Scheme::Sips
        } else {
            rsip::Scheme::Sip
        }),
        auth: uri.user.map(|user| rsip::Auth {
            user: user.to_string(),
            password: uri.password.map(str::to_string),
        }),
        host_with_port: rsip::HostWithPort {
            host,
            port: uri.port.map(Into::into),
        },
        params,
        headers: Vec::new(),
    })
}

// ---------------------------------------------------------------------------
// Lexing

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A position in a header value. Slices only at ASCII bytes, so every
/// slice is on a char boundary; `get` keeps it panic-free regardless.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// Skips SP and HTAB; true if there were any.
    fn ws(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(is_wsp) {
            self.i += 1;
        }
        self.i > start
    }

    /// `pred` must reject bytes >= 0x80 so the slice ends on a char boundary.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|b| b < 0x80 && pred(b)) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }

    /// A quoted-string with its quotes (RFC 3261 §25.1); quoted pairs may
    /// escape any ASCII byte but CR and LF.
    fn quoted(&mut self) -> Result<&'a str, &'static str> {
        let start = self.i;
        if !self.eat(b'"') {
            return Err("expected a quoted string");
        }
        let b = self.s.as_bytes();
        loop {
            match b.get(self.i) {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return self.s.get(start..self.i).ok_or("bad quoted string");
                }
                Some(b'\\') => match b.get(self.i + 1) {
                    Some(&c) if c < 0x80 && c != b'\r' && c != b'\n' => self.i += 2,
                    _ => return Err("bad quoted pair"),
                },
                Some(&c) if (c < 0x20 && c != b'\t') || c == 0x7f => {
                    return Err("control character in quoted string");
                }
                Some(_) => self.i += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Answers

fn phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        406 => "Not Acceptable",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        501 => "Not Implemented",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Error",
    }
}

/// A stateless answer to a request that did not parse, from the raw fields
/// (RFC 3261 §8.2.6.1). The To tag is a hash of the request's identity, so
/// a retransmission gets the same tag (§8.2.6.2).
fn stateless_reply(
    method: &str,
    fields: &[RawField<'_>],
    status: u16,
    reason: String,
) -> Rejection {
    if method == "ACK" {
        return drop(format!(
            "ACK is never answered (RFC 3261 §17.2.1): {reason}"
        ));
    }
    // Only values that cannot break the answer's framing are copied.
    let values = |kind: Kind| {
        fields
            .iter()
            .filter(move |f| f.kind == kind)
            .filter_map(|f| f.value.as_deref())
            .filter(|v| !v.bytes().any(|b| b == b'\r' || b == b'\n'))
    };
    let cseq = values(Kind::CSeq).next();
    if values(Kind::Via).next().is_none() || cseq.is_none() {
        return drop(format!("{reason}; no Via and CSeq to answer with"));
    }
    let from = values(Kind::From).next();
    let to = values(Kind::To).next();
    let call_id = values(Kind::CallId).next();

    let mut hasher = std::hash::DefaultHasher::new();
    (call_id, cseq, from).hash(&mut hasher);
    values(Kind::Via).for_each(|v| v.hash(&mut hasher));

    let mut s = String::with_capacity(512);
    let _ = write!(s, "SIP/2.0 {status} {}\r\n", phrase(status));
    values(Kind::Via).for_each(|v| {
        let _ = write!(s, "Via: {v}\r\n");
    });
    if let Some(v) = from {
        let _ = write!(s, "From: {v}\r\n");
    }
    if let Some(v) = to {
        let _ = write!(s, "To: {v}");
        if name_addr_param(v, "tag").is_none() {
            let _ = write!(s, ";tag={:016x}", hasher.finish());
        }
        s.push_str("\r\n");
    }
    if let Some(v) = call_id {
        let _ = write!(s, "Call-ID: {v}\r\n");
    }
    if let Some(v) = cseq {
        let _ = write!(s, "CSeq: {v}\r\n");
    }
    s.push_str("Warning: 399 switchyard \"");
    for ch in reason.chars().filter(|c| !c.is_control()) {
        if ch == '"' || ch == '\\' {
            s.push('\\');
        }
        s.push(ch);
    }
    s.push_str("\"\r\nContent-Length: 0\r\n\r\n");
    Rejection::Reply {
        status,
        reason,
        response: Bytes::from(s),
    }
}

fn respond(
    req: &Request,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[Header],
) -> Response {
    let mut headers: Vec<Header> = Vec::with_capacity(8 + extra.len());
    headers.extend(
        req.headers
            .iter()
            .filter(|h| matches!(h, Header::Via(_)))
            .cloned(),
    );
    let single = |pick: fn(&Header) -> bool| req.headers.iter().find(|h| pick(h)).cloned();
    headers.extend(single(|h| matches!(h, Header::From(_))));
    match (single(|h| matches!(h, Header::To(_))), to_tag) {
        (Some(Header::To(to)), Some(tag)) if name_addr_param(to.value(), "tag").is_none() => {
            headers.push(Header::To(rsip::headers::To::new(format!(
                "{};tag={tag}",
                to.value()
            ))));
        }
        (to, _) => headers.extend(to),
    }
    headers.extend(single(|h| matches!(h, Header::CallId(_))));
    headers.extend(single(|h| matches!(h, Header::CSeq(_))));
    headers.extend(extra.iter().cloned());
    headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
        "0",
    )));
    Response {
        status_code: rsip::StatusCode::Other(status, reason.to_string()),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

fn check_require(req: &Request, supported: &[&str]) -> Result<(), Refusal> {
    // A UAS answers Require only; Proxy-Require is for proxies (RFC 3261
    // §8.2.2.3, RFC 4475 3.3.5 "depending on the role").
    let unsupported: Vec<&str> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Require(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty() && !supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    let mut refusal = Refusal::new(420, "Bad Extension");
    refusal
        .headers
        .push(Header::Unsupported(rsip::headers::Unsupported::new(
            unsupported.join(", "),
        )));
    Err(refusal)
}

/// RFC 3261 §8.2.3: we understand SDP, alone or in multipart/mixed.
fn check_invite_body(req: &Request) -> Result<(), Refusal> {
    let header = |pick: fn(&Header) -> Option<&str>| req.headers.iter().find_map(pick);
    let encoding = header(|h| match h {
        Header::ContentEncoding(v) => Some(v.value()),
        _ => None,
    });
    if encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        let mut refusal = Refusal::new(415, "Unsupported Content-Encoding");
        refusal
            .headers
            .push(Header::AcceptEncoding(rsip::headers::AcceptEncoding::new(
                "identity",
            )));
        return Err(refusal);
    }
    let content_type = header(|h| match h {
        Header::ContentType(v) => Some(v.value()),
        _ => None,
    });
    let Some(content_type) = content_type else {
        if req.body.is_empty() {
            return Ok(());
        }
        return Err(Refusal::new(400, "Missing Content-Type"));
    };
    let mut boundary = None;
    let understood = match media_type(content_type, &mut |name, value| {
        if name.eq_ignore_ascii_case("boundary") {
            boundary = value.map(|v| v.trim_matches('"'));
        }
    }) {
        Ok((t, s)) if t.eq_ignore_ascii_case("application") && s.eq_ignore_ascii_case("sdp") => {
            true
        }
        Ok((t, s)) if t.eq_ignore_ascii_case("multipart") && s.eq_ignore_ascii_case("mixed") => {
            boundary.is_some_and(|b| multipart_has_sdp(&req.body, b))
        }
        _ => false,
    };
    if understood {
        return Ok(());
    }
    let mut refusal = Refusal::new(415, "Unsupported Media Type");
    refusal
        .headers
        .push(Header::Accept(rsip::headers::Accept::new(
            "application/sdp",
        )));
    Err(refusal)
}

/// Whether a multipart body has an application/sdp part (RFC 2046 §5.1).
fn multipart_has_sdp(body: &[u8], boundary: &str) -> bool {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());
    let mut rest = body;
    while let Some(at) = find(rest, &delimiter) {
        rest = rest.get(at + delimiter.len()..).unwrap_or_default();
        let part_head = match find(rest, b"\r\n\r\n") {
            Some(end) => rest.get(..end).unwrap_or_default(),
            None => rest,
        };
        let sdp = part_head.split(|b| *b == b'\n').any(|line| {
            let line = std::str::from_utf8(trim_wsp(line))
                .unwrap_or_default()
                .trim_end();
            line.split_once(':').is_some_and(|(name, value)| {
                (name.trim().eq_ignore_ascii_case("content-type")
                    || name.trim().eq_ignore_ascii_case("c"))
                    && media_type(value, &mut |_, _| {}).is_ok_and(|(t, s)| {
                        t.eq_ignore_ascii_case("application") && s.eq_ignore_ascii_case("sdp")
                    })
            })
        });
        if sdp {
            return true;
        }
    }
    false
}

/// An INVITE's answer carries SDP; an Accept without it is a 406
/// (RFC 3261 §20.1, RFC 4475 3.3.15). No Accept means application/sdp.
fn check_invite_accept(req: &Request) -> Result<(), Refusal> {
    let mut accepts = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Accept(v) => Some(v.value()),
            _ => None,
        })
        .peekable();
    if accepts.peek().is_none() {
        return Ok(());
    }
    let sdp_ok = accepts.flat_map(|v| v.split(',')).any(|range| {
        let mut q_zero = false;
        let Ok((t, s)) = media_type(range, &mut |name, value| {
            if name.eq_ignore_ascii_case("q") {
                q_zero = value.and_then(|q| q.parse::<f32>().ok()) == Some(0.0);
            }
        }) else {
            return false;
        };
        !q_zero
            && (t == "*" || t.eq_ignore_ascii_case("application"))
            && (s == "*" || s.eq_ignore_ascii_case("sdp"))
    });
    if sdp_ok {
        Ok(())
    } else {
        Err(Refusal::new(406, "Not Acceptable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::prelude::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/rfc4475/");

    fn torture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{CORPUS}{name}.dat")).unwrap()
    }

    /// What the stack as a whole does with a message: the edge's verdict,
    /// then `check_request` on requests.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Verdict {
        Processed,
        Status(u16),
        Dropped,
        /// Stream only: the connection is closed.
        Closed,
        /// Stream only: waiting for more bytes.
        Pending,
    }
    use Verdict::*;

    /// RFC 4475 messages and what we do with them. Where the RFC leaves a
    /// choice, the comment says which and why.
    const TABLE: [(&str, Verdict); 49] = [
        // 3.1.1 valid messages.
        ("wsinv", Processed),
        // 3.1.1.2: well-formed; the method is unknown, so RFC 3261 §8.2.1
        // processing is a 501 (rsip cannot represent the method either).
        ("intmeth", Status(501)),
        ("esc01", Processed),
        ("escnull", Processed),
        // 3.1.1.5: RE%47IST%45R is an unknown method, not REGISTER: 501.
        ("esc02", Status(501)),
        ("lwsdisp", Processed),
        ("longreq", Processed),
        ("dblreq", Processed),
        ("semiuri", Processed),
        ("transports", Processed),
        ("mpart01", Processed),
        ("unreason", Processed),
        ("noreason", Processed),
        // 3.1.2 invalid messages.
        ("badinv01", Status(400)),
        ("clerr", Status(400)),
        ("ncl", Status(400)),
        ("scalar02", Status(400)),
        ("scalarlg", Dropped),
        ("quotbal", Status(400)),
        ("ltgtruri", Status(400)),
        ("lwsruri", Status(400)),
        ("lwsstart", Status(400)),
        ("trws", Status(400)),
        // 3.1.2.11 allows accepting; a UAS has no use for URI headers, so
        // they are dropped and the INVITE is processed.
        ("escruri", Processed),
        // 3.1.2.12: the Date is not needed, so the request is accepted.
        ("baddate", Processed),
        // 3.1.2.13: a '?' in an addr-spec outside <> is a 400.
        ("regbadct", Status(400)),
        ("badaspec", Status(400)),
        ("baddn", Status(400)),
        ("badvers", Status(505)),
        ("mismatch01", Status(400)),
        ("mismatch02", Status(400)),
        ("bigcode", Dropped),
        // 3.2 and 3.3: transaction and application layer.
        ("badbranch", Processed),
        ("insuf", Status(400)),
        ("unkscm", Status(416)),
        ("novelsc", Status(416)),
        ("unksm2", Processed),
        ("bext01", Status(420)),
        ("invut", Status(415)),
        // 3.3.7: the registrar challenges the unknown scheme later.
        ("regaut01", Processed),
        ("multi01", Status(400)),
        ("mcl01", Status(400)),
        // 3.3.10: the transaction layer drops it (it matches nothing).
        ("bcast", Processed),
        ("zeromf", Processed),
        ("cparam01", Processed),
        ("cparam02", Processed),
        ("regescrt", Processed),
        ("sdp01", Status(406)),
        ("inv2543", Processed),
    ];

    /// Where a stream differs from a datagram.
    fn stream_expectation(name: &str, datagram: Verdict) -> Verdict {
        match name {
            // The declared body never arrives: wait (the edge times out).
            "clerr" => Pending,
            // No usable Content-Length: the stream cannot be framed.
            "inv2543" | "ncl" | "mcl01" => Closed,
            _ => datagram,
        }
    }

    fn judge(result: Result<Inbound, Rejection>, raw: &[u8]) -> Verdict {
        match result {
            Ok(Inbound::KeepAlive) => panic!("not a keep-alive"),
            Ok(Inbound::Message(SipMessage::Response(_))) => Processed,
            Ok(Inbound::Message(SipMessage::Request(req))) => match check_request(&req, &[]) {
                Ok(()) => Processed,
                Err(refusal) => {
                    let resp = refuse(&req, &refusal, Some("t1"));
                    assert_answers(&SipMessage::Response(resp).to_string(), raw, refusal.status);
                    Status(refusal.status)
                }
            },
            Err(Rejection::Reply {
                status, response, ..
            }) => {
                assert_answers(std::str::from_utf8(&response).unwrap(), raw, status);
                Status(status)
            }
            Err(Rejection::Drop { .. }) => Dropped,
        }
    }

    /// The answer parses with rsip and carries the request's Call-ID and
    /// CSeq, a To tag and Content-Length 0.
    fn assert_answers(text: &str, raw: &[u8], status: u16) {
        let resp = Response::try_from(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(resp.status_code.code(), status);
        let raw = String::from_utf8_lossy(raw);
        let raw_value = |names: &[&str]| {
            raw.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                names
                    .iter()
                    .any(|x| n.trim().eq_ignore_ascii_case(x))
                    .then(|| v.trim().to_string())
            })
        };
        if let Some(id) = raw_value(&["Call-ID", "i"]) {
            assert_eq!(resp.call_id_header().unwrap().value(), id, "{text}");
        }
        if raw_value(&["CSeq"]).is_some() {
            assert!(resp.cseq_header().is_ok(), "{text}");
        }
        if raw_value(&["To", "t"]).is_some() {
            assert!(
                to_tag(&resp).is_some() || resp.to_header().is_ok(),
                "{text}"
            );
        }
        assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    }

    fn stream_verdict(raw: &[u8], split: usize) -> Vec<Verdict> {
        let mut framer = StreamFramer::new(Limits::default());
        let (a, b) = raw.split_at(split.min(raw.len()));
        let mut out = Vec::new();
        for piece in [a, b] {
            framer.push(piece);
            while let Some(item) = framer.next() {
                out.push(match item {
                    Ok(inbound) => judge(Ok(inbound), raw),
                    Err(StreamError::Rejected(r)) => judge(Err(r), raw),
                    Err(StreamError::Fatal(_)) => Closed,
                });
                if out.last() == Some(&Closed) {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn every_torture_message_gets_its_verdict_on_udp_and_tcp() {
        let mut files: Vec<String> = std::fs::read_dir(CORPUS)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
            .collect();
        files.sort();
        let mut listed: Vec<String> = TABLE.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed, "every corpus file has a verdict");

        let mut wrong = Vec::new();
        for (name, expected) in TABLE {
            let raw = torture(name);
            let got = judge(parse_datagram(&raw, &Limits::default()), &raw);
            if got != expected {
                wrong.push(format!("{name} on UDP: expected {expected:?}, got {got:?}"));
            }
            let want = stream_expectation(name, expected);
            for split in [raw.len(), 1, raw.len() / 2] {
                let mut got = stream_verdict(&raw, split);
                if name == "dblreq" {
                    // On a stream: the REGISTER, the INVITE, then the five
                    // octets beyond the INVITE's Content-Length, which
                    // cannot start a message.
                    assert_eq!(
                        got,
                        [Processed, Processed, Closed],
                        "dblreq split at {split}"
                    );
                    got.truncate(1);
                }
                let got = got.first().copied().unwrap_or(Pending);
                if got != want {
                    wrong.push(format!(
                        "{name} on TCP split at {split}: expected {want:?}, got {got:?}"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn content_length_larger_than_datagram_is_400() {
        let raw = torture("clerr");
        let Err(Rejection::Reply {
            status,
            reason,
            response,
        }) = parse_datagram(&raw, &Limits::default())
        else {
            panic!("clerr must be answered")
        };
        assert_eq!(status, 400);
        assert!(reason.contains("Content-Length"), "{reason}");
        let text = std::str::from_utf8(&response).unwrap();
        assert!(
            text.contains("Call-ID: clerr.0ha0isndaksdjweiafasdk3\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 8 INVITE\r\n"), "{text}");
        assert!(text.contains(";tag="), "{text}");
        assert!(
            text.contains("Warning: 399 switchyard \"Content-Length 9999"),
            "{text}"
        );
    }

    #[test]
    fn octets_after_content_length_are_ignored_on_udp() {
        let raw = torture("dblreq");
        let Ok(Inbound::Message(SipMessage::Request(req))) =
            parse_datagram(&raw, &Limits::default())
        else {
            panic!("dblreq parses")
        };
        assert_eq!(req.method, Method::Register);
        assert!(req.body.is_empty());
    }

    #[test]
    fn missing_content_length_on_udp_takes_the_rest_of_the_datagram() {
        let raw = torture("inv2543");
        let Ok(Inbound::Message(SipMessage::Request(req))) =
            parse_datagram(&raw, &Limits::default())
        else {
            panic!("inv2543 parses")
        };
        assert!(req.body.starts_with(b"v=0\r\n"));
        assert!(req.body.ends_with(b"RTP/AVP 0\r\n"));
    }

    #[test]
    fn from_and_contact_uris_drop_display_names_and_header_params() {
        let raw = b"INVITE sip:bob@b.example SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
            From: \"Alice <A>\" <sip:alice@a.example;transport=udp>;tag=9\r\n\
            To: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
            m: sip:alice@192.0.2.1:5062;expires=60, <sip:other@192.0.2.2>\r\n\
            Content-Length: 0\r\n\r\n";
        let Ok(Inbound::Message(SipMessage::Request(req))) =
            parse_datagram(raw, &Limits::default())
        else {
            panic!("parses")
        };
        assert_eq!(from_uri(&req), Some("sip:alice@a.example;transport=udp"));
        // rsip's typed From, which this replaced, cannot read a quoted
        // display name holding `<`; the caller's From was lost.
        assert_eq!(contact_uri(&req), Some("sip:alice@192.0.2.1:5062"));
    }

    #[test]
    fn folded_compact_and_spaced_headers_come_out_canonical() {
        let raw = torture("wsinv");
        let Ok(Inbound::Message(msg)) = parse_datagram(&raw, &Limits::default()) else {
            panic!("wsinv parses")
        };
        let vias: Vec<&str> = msg
            .headers()
            .iter()
            .filter_map(|h| match h {
                Header::Via(v) => Some(v.value()),
                _ => None,
            })
            .collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw",
                "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8",
                "SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239",
            ]
        );
        assert_eq!(cseq(&msg), Some((9, Method::Invite)));
        assert_eq!(call_id(&msg), Some("wsinv.ndaksdj@192.0.2.1"));
        assert_eq!(from_tag(&msg), Some("98asjd8"));
        assert_eq!(to_tag(&msg), Some("1918181833n"));
        assert_eq!(top_via_branch(&msg), Some("390skdjuw"));
        assert_eq!(msg.max_forwards_header().unwrap().value(), "68");
        assert_eq!(
            msg.from_header().unwrap().value(),
            "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8"
        );
        assert_eq!(msg.body().len(), 150);
    }

    #[test]
    fn request_uri_keeps_a_dotted_user() {
        let raw = torture("cparam01").replace_range_str(
            "sip:example.com",
            "sip:j.user@example.com:5070;transport=tcp",
        );
        let Ok(Inbound::Message(SipMessage::Request(req))) =
            parse_datagram(&raw, &Limits::default())
        else {
            panic!("parses")
        };
        assert_eq!(req.uri.user(), Some("j.user"));
        assert_eq!(req.uri.host().to_string(), "example.com");
        assert_eq!(req.uri.port().map(|p| *p.value()), Some(5070));
        assert_eq!(req.uri.transport(), Some(&rsip::Transport::Tcp));
    }

    trait ReplaceStr {
        fn replace_range_str(&self, from: &str, to: &str) -> Vec<u8>;
    }
    impl ReplaceStr for Vec<u8> {
        fn replace_range_str(&self, from: &str, to: &str) -> Vec<u8> {
            String::from_utf8(self.clone())
                .unwrap()
                .replacen(from, to, 1)
                .into_bytes()
        }
    }

    #[test]
    fn crlf_datagram_is_a_keep_alive() {
        assert_eq!(
            parse_datagram(b"\r\n\r\n", &Limits::default()),
            Ok(Inbound::KeepAlive)
        );
        assert_eq!(
            parse_datagram(b"\r\n", &Limits::default()),
            Ok(Inbound::KeepAlive)
        );
        assert!(matches!(
            parse_datagram(b"", &Limits::default()),
            Err(Rejection::Drop { .. })
        ));
    }

    #[test]
    fn stream_ping_is_a_keep_alive_and_crlfs_between_messages_are_skipped() {
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(b"\r\n");
        assert_eq!(framer.next(), None, "may still become a ping");
        framer.push(b"\r\n");
        assert_eq!(framer.next(), Some(Ok(Inbound::KeepAlive)));
        framer.push(b"\r\n");
        framer.push(&torture("zeromf"));
        assert!(matches!(framer.next(), Some(Ok(Inbound::Message(_)))));
        assert_eq!(framer.next(), None);
    }

    #[test]
    fn stream_frames_messages_split_anywhere() {
        let mut both = torture("cparam01");
        both.extend_from_slice(&torture("unreason"));
        for split in 0..both.len() {
            let mut framer = StreamFramer::new(Limits::default());
            let mut got = 0;
            for piece in [&both[..split], &both[split..]] {
                framer.push(piece);
                while let Some(item) = framer.next() {
                    assert!(
                        matches!(item, Ok(Inbound::Message(_))),
                        "split {split}: {item:?}"
                    );
                    got += 1;
                }
            }
            assert_eq!(got, 2, "split {split}");
        }
    }

    #[test]
    fn stream_without_content_length_or_oversize_is_fatal() {
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(&torture("inv2543"));
        assert!(matches!(framer.next(), Some(Err(StreamError::Fatal(_)))));

        let limits = Limits {
            max_message: 100,
            ..Limits::default()
        };
        let mut framer = StreamFramer::new(limits);
        framer.push(&torture("zeromf"));
        assert!(matches!(framer.next(), Some(Err(StreamError::Fatal(_)))));
        let mut framer = StreamFramer::new(limits);
        framer.push(&[b'a'; 300]);
        assert!(matches!(framer.next(), Some(Err(StreamError::Fatal(_)))));
        assert_eq!(framer.next(), None, "fatal is reported once");
        framer.push(&torture("zeromf"));
        assert_eq!(framer.next(), None, "a closed framer stays closed");
    }

    #[test]
    fn oversize_datagram_request_is_513() {
        let limits = Limits {
            max_message: 100,
            ..Limits::default()
        };
        let got = parse_datagram(&torture("zeromf"), &limits);
        assert!(
            matches!(got, Err(Rejection::Reply { status: 513, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn too_many_headers_is_400() {
        let limits = Limits {
            max_headers: 4,
            ..Limits::default()
        };
        let got = parse_datagram(&torture("zeromf"), &limits);
        assert!(
            matches!(
                got,
                Err(Rejection::Drop { .. }) | Err(Rejection::Reply { status: 400, .. })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn bad_extension_is_420_naming_it() {
        let raw = torture("bext01");
        let Ok(Inbound::Message(SipMessage::Request(req))) =
            parse_datagram(&raw, &Limits::default())
        else {
            panic!("parses")
        };
        let refusal = check_request(&req, &["timer"]).unwrap_err();
        assert_eq!(refusal.status, 420);
        let text = refuse(&req, &refusal, Some("abc")).to_string();
        assert!(
            text.contains("Unsupported: nothingSupportsThis, nothingSupportsThisEither\r\n"),
            "{text}"
        );
        assert!(!text.contains("noProxiesSupportThis"), "{text}");
        assert!(
            text.contains("To: sip:j_user@example.com;tag=abc\r\n"),
            "{text}"
        );
    }

    #[test]
    fn response_copies_vias_in_order_and_adds_the_to_tag() {
        let raw = torture("transports");
        let Ok(Inbound::Message(SipMessage::Request(req))) =
            parse_datagram(&raw, &Limits::default())
        else {
            panic!("parses")
        };
        let resp = response(&req, 200, "OK", Some("xyz"));
        let text = resp.to_string();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        let vias: Vec<&str> = text.lines().filter(|l| l.starts_with("Via:")).collect();
        assert_eq!(vias.len(), 5);
        assert!(vias[0].contains("t1.example.com") && vias[4].contains("t5.example.com"));
        assert_eq!(to_tag(&resp), Some("xyz"));
        assert_eq!(cseq(&resp), Some((60, Method::Options)));
        let back = SipMessage::try_from(text.as_str()).unwrap();
        assert_eq!(call_id(&back), Some("transports.kijh4akdnaqjkwendsasfdj"));
    }

    #[test]
    fn unsupported_version_is_505_and_bad_responses_are_dropped() {
        let raw = torture("badvers");
        assert!(matches!(
            parse_datagram(&raw, &Limits::default()),
            Err(Rejection::Reply { status: 505, .. })
        ));
        for name in ["scalarlg", "bigcode"] {
            assert!(matches!(
                parse_datagram(&torture(name), &Limits::default()),
                Err(Rejection::Drop { .. })
            ));
        }
    }

    #[test]
    fn garbage_without_via_and_cseq_is_dropped() {
        for junk in [
            &b"hello"[..],
            b"INVITE sip:a@b SIP/2.0\r\nFoo\r\n\r\n",
            b"\x00\xff\r\n\r\n",
            b"SIP/2.0 200 OK\r\n",
        ] {
            let got = parse_datagram(junk, &Limits::default());
            assert!(
                matches!(got, Err(Rejection::Drop { .. })),
                "{junk:?}: {got:?}"
            );
        }
    }

    #[test]
    fn invalid_ack_is_dropped_not_answered() {
        let raw =
            b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: x ACK\r\n\r\n";
        assert!(matches!(
            parse_datagram(raw, &Limits::default()),
            Err(Rejection::Drop { .. })
        ));
    }
}
