//! The RFC 4475 torture messages (runtime/tests/data/rfc4475/*.dat) sent to
//! `switchyard serve`: each over UDP as one datagram and over TCP on a
//! connection of its own. Requests must get the final status in `EXPECTED`
//! (read within 2 s; 1xx are skipped), messages marked `Drop` no response
//! within 500 ms; after every message the server still answers an OPTIONS
//! with 200 and the process is alive.
//!
//! Each message's Via branches get a per-file prefix (see
//! `unique_branches`), as the corpus reuses branches across messages.
//!
//! The server's one tenant has a domain and number that no torture message
//! uses, so a valid INVITE is processed to 404 (not 400) and a REGISTER for
//! example.com gets 404 (the domain maps to no tenant).

#[path = "common/sip.rs"]
mod sip_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sip_common::{Config, Server, Transport};

const ANSWER_WITHIN: Duration = Duration::from_secs(2);
const SILENT_FOR: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This final status.
    Status(u16),
    /// One of these final statuses (where RFC 3261/4475 allow a choice).
    OneOf(&'static [u16]),
    /// No response at all (responses nobody asked for).
    Drop,
    /// On TCP, where a framing error cannot be recovered: this status, or
    /// the connection closed / no answer (RFC 4475 3.1.2.3).
    ClosedOr(&'static [u16]),
}

use Expect::*;

/// file, on UDP, on TCP, why.
const EXPECTED: &[(&str, Expect, Expect, &str)] = &[
    // 3.1.1 valid messages: processed. INVITE -> 404 (no tenant),
    // OPTIONS -> 200, REGISTER for example.com -> 404 (no tenant).
    // wsinv's To has a tag: an in-dialog INVITE for no known dialog.
    (
        "wsinv",
        Status(481),
        Status(481),
        "valid INVITE with a To tag",
    ),
    (
        "intmeth",
        OneOf(&[405, 501]),
        OneOf(&[405, 501]),
        "valid unknown method",
    ),
    ("esc01", Status(404), Status(404), "valid INVITE"),
    (
        "escnull",
        Status(404),
        Status(404),
        "valid REGISTER, unknown domain",
    ),
    (
        "esc02",
        OneOf(&[405, 501]),
        OneOf(&[405, 501]),
        "RE%47IST%45R is an unknown method, not REGISTER",
    ),
    ("lwsdisp", Status(200), Status(200), "valid OPTIONS"),
    ("longreq", Status(404), Status(404), "valid INVITE"),
    (
        "dblreq",
        Status(404),
        Status(404),
        "valid REGISTER (trailing octets ignored), unknown domain",
    ),
    ("semiuri", Status(200), Status(200), "valid OPTIONS"),
    ("transports", Status(200), Status(200), "valid OPTIONS"),
    (
        "mpart01",
        OneOf(&[404, 405, 501]),
        OneOf(&[404, 405, 501]),
        "valid MESSAGE, not served",
    ),
    ("unreason", Drop, Drop, "response without a transaction"),
    ("noreason", Drop, Drop, "response without a transaction"),
    // 3.1.2 invalid messages: 400 for requests, responses dropped.
    (
        "badinv01",
        Status(400),
        Status(400),
        "extraneous header separators",
    ),
    // On TCP the server waits for the rest of the body: no answer, we close.
    (
        "clerr",
        Status(400),
        Drop,
        "Content-Length larger than the message",
    ),
    (
        "ncl",
        Status(400),
        ClosedOr(&[400]),
        "negative Content-Length",
    ),
    (
        "scalar02",
        Status(400),
        Status(400),
        "overlarge scalar fields",
    ),
    (
        "scalarlg",
        Drop,
        Drop,
        "response with overlarge scalar fields",
    ),
    (
        "quotbal",
        Status(400),
        Status(400),
        "unterminated quoted string",
    ),
    (
        "ltgtruri",
        Status(400),
        Status(400),
        "<> around the Request-URI",
    ),
    (
        "lwsruri",
        Status(400),
        Status(400),
        "LWS in the Request-URI",
    ),
    (
        "lwsstart",
        Status(400),
        Status(400),
        "several SP in the request line",
    ),
    (
        "trws",
        Status(400),
        Status(400),
        "SP at the end of the request line",
    ),
    (
        "escruri",
        Status(404),
        Status(404),
        "valid INVITE (escaped headers in the Request-URI)",
    ),
    (
        "baddate",
        Status(404),
        Status(404),
        "valid INVITE (bad Date is not fatal)",
    ),
    (
        "regbadct",
        Status(400),
        Status(400),
        "Contact name-addr without <>",
    ),
    (
        "badaspec",
        Status(400),
        Status(400),
        "spaces within addr-spec",
    ),
    (
        "baddn",
        Status(400),
        Status(400),
        "non-token characters in display name",
    ),
    ("badvers", Status(505), Status(505), "SIP/7.0"),
    (
        "mismatch01",
        Status(400),
        Status(400),
        "CSeq method differs from the request line",
    ),
    (
        "mismatch02",
        Status(400),
        Status(400),
        "unknown method with a CSeq mismatch",
    ),
    (
        "bigcode",
        Drop,
        Drop,
        "response with an overlarge status code",
    ),
    // 3.2-3.4 transaction and application semantics.
    (
        "badbranch",
        Status(200),
        Status(200),
        "valid OPTIONS without a branch",
    ),
    (
        "insuf",
        Status(400),
        Status(400),
        "missing required header fields",
    ),
    (
        "unkscm",
        Status(416),
        Status(416),
        "unknown Request-URI scheme",
    ),
    ("novelsc", Status(416), Status(416), "soap.beep Request-URI"),
    (
        "unksm2",
        Status(404),
        Status(404),
        "valid REGISTER (unknown schemes in headers), unknown domain",
    ),
    (
        "bext01",
        Status(420),
        Status(420),
        "Require: unknown extension",
    ),
    ("invut", Status(415), Status(415), "unknown Content-Type"),
    (
        "regaut01",
        Status(404),
        Status(404),
        "REGISTER, unknown Authorization scheme, unknown domain",
    ),
    (
        "multi01",
        Status(400),
        Status(400),
        "several values in single-value fields",
    ),
    (
        "mcl01",
        Status(400),
        ClosedOr(&[400]),
        "several Content-Length values",
    ),
    ("bcast", Drop, Drop, "200 OK with a broadcast Via"),
    (
        "zeromf",
        OneOf(&[200, 483]),
        OneOf(&[200, 483]),
        "OPTIONS with Max-Forwards 0 (a UAS answers it)",
    ),
    (
        "cparam01",
        Status(404),
        Status(404),
        "valid REGISTER, unknown domain",
    ),
    (
        "cparam02",
        Status(404),
        Status(404),
        "valid REGISTER, unknown domain",
    ),
    (
        "regescrt",
        Status(404),
        Status(404),
        "valid REGISTER, unknown domain",
    ),
    (
        "sdp01",
        Status(406),
        Status(406),
        "Accept without application/sdp",
    ),
    // No Content-Length: fine in a datagram, a framing error on TCP.
    (
        "inv2543",
        Status(404),
        ClosedOr(&[400, 404]),
        "valid RFC 2543 INVITE",
    ),
];

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("RFC4475_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475"))
        });
    assert!(
        dir.is_dir(),
        "{} is missing: the RFC 4475 corpus (*.dat) belongs there",
        dir.display()
    );
    dir
}

fn server() -> Server {
    Server::serve(
        &Config::new()
            .tenant("torture", &["torture.switchyard.test"])
            .number("+19995550000", "hold")
            .user("alice", "secret"),
    )
}

/// One SIP message read from a stream or a datagram: the start line and
/// the header lines.
#[derive(Debug)]
struct Response {
    status: u16,
    start: String,
    headers: Vec<String>,
}

impl Response {
    fn parse(head: &str) -> Option<Response> {
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let status = start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        Some(Response {
            status,
            start,
            headers: lines
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    fn header(&self, long: &str, short: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|h| {
                let name = h.split(':').next().unwrap_or("").trim();
                name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
            })
            .map(String::as_str)
            .collect()
    }
}

/// Splits complete messages off the front of a byte buffer (stream framing
/// by Content-Length).
fn next_message(buf: &mut Vec<u8>) -> Option<String> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let length: usize = head
        .split("\r\n")
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l"))
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    if buf.len() < end + length {
        return None;
    }
    buf.drain(..end + length);
    Some(head)
}

/// An ACK for a non-2xx final response to an INVITE, built from the
/// response (its Via, From, To, Call-ID and CSeq number) and the INVITE's
/// Request-URI: the server then stops retransmitting.
fn ack_for(request: &[u8], response: &Response) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(request);
    let mut words = text.split("\r\n").next()?.split(' ');
    if words.next()? != "INVITE" {
        return None;
    }
    let uri = words.next()?;
    let cseq = response
        .header("CSeq", "CSeq")
        .first()?
        .split(':')
        .nth(1)?
        .trim()
        .to_string();
    let number = cseq.split_whitespace().next()?;
    let mut ack = format!("ACK {uri} SIP/2.0\r\n");
    for h in response.header("Via", "v") {
        ack.push_str(h);
        ack.push_str("\r\n");
    }
    for (long, short) in [("From", "f"), ("To", "t"), ("Call-ID", "i")] {
        ack.push_str(response.header(long, short).first()?);
        ack.push_str("\r\n");
    }
    ack.push_str(&format!(
        "CSeq: {number} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ));
    Some(ack.into_bytes())
}

/// Many corpus messages share a Via (sent-by, branch) and method, e.g.
/// cparam01/cparam02 and escnull/regescrt: sent one after the other, the
/// second is (rightly) a retransmission of the first's transaction and its
/// answer goes to the first one's address. Each message gets a branch of
/// its own: `z9hG4bK` becomes `z9hG4bKtNN-` in the header part (the magic
/// cookie stays; bodies and Content-Length are untouched).
fn unique_branches(message: &[u8], n: usize) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let (head, body) = message.split_at(end);
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut rest = head;
    while let Some(at) = rest.windows(7).position(|w| w == b"z9hG4bK") {
        out.extend_from_slice(&rest[..at + 7]);
        out.extend_from_slice(format!("t{n:02}-").as_bytes());
        rest = &rest[at + 7..];
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(body);
    out
}

enum Outcome {
    Final(Response),
    Nothing,
}

/// Our probes name the sending port in their Via: `LOCALPORT` becomes it.
fn with_port(message: &[u8], port: u16) -> Vec<u8> {
    String::from_utf8_lossy(message)
        .replace("LOCALPORT", &port.to_string())
        .into_bytes()
}

fn send_udp(server: SocketAddr, message: &[u8], wait: Duration) -> Outcome {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let message = &if message.windows(9).any(|w| w == b"LOCALPORT") {
        with_port(message, socket.local_addr().unwrap().port())
    } else {
        message.to_vec()
    };
    socket.send_to(message, server).unwrap();
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::Nothing;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            return Outcome::Nothing;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        match Response::parse(head) {
            Some(r) if r.status < 200 => continue,
            Some(r) => {
                if let Some(ack) = ack_for(message, &r) {
                    let _ = socket.send_to(&ack, server);
                }
                return Outcome::Final(r);
            }
            // Not a response: note it as a status 0.
            None => {
                return Outcome::Final(Response {
                    status: 0,
                    start: text.lines().next().unwrap_or("").to_string(),
                    headers: vec![],
                });
            }
        }
    }
}

fn send_tcp(server: SocketAddr, message: &[u8], wait: Duration) -> Outcome {
    let mut stream = TcpStream::connect(server).unwrap();
    let message = &with_port(message, stream.local_addr().unwrap().port());
    stream.write_all(message).unwrap();
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        while let Some(head) = next_message(&mut buf) {
            match Response::parse(head.trim_end_matches("\r\n")) {
                Some(r) if r.status < 200 => continue,
                Some(r) => {
                    if let Some(ack) = ack_for(message, &r) {
                        let _ = stream.write_all(&ack);
                    }
                    return Outcome::Final(r);
                }
                None => {
                    return Outcome::Final(Response {
                        status: 0,
                        start: head.lines().next().unwrap_or("").to_string(),
                        headers: vec![],
                    });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::Nothing;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            // Closed by the server, or nothing in time.
            Ok(0) | Err(_) => return Outcome::Nothing,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn options(n: usize, transport: Transport) -> Vec<u8> {
    let t = if transport == Transport::Udp {
        "UDP"
    } else {
        "TCP"
    };
    format!(
        "OPTIONS sip:probe@torture.switchyard.test SIP/2.0\r\n\
         Via: SIP/2.0/{t} 127.0.0.1:LOCALPORT;rport;branch=z9hG4bK-probe-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe{n}\r\n\
         To: <sip:probe@torture.switchyard.test>\r\n\
         Call-ID: probe-{n}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn torture(transport: Transport) {
    let dir = corpus_dir();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".dat")?.to_string())
        })
        .collect();
    on_disk.sort();
    let mut in_table: Vec<String> = EXPECTED.iter().map(|e| e.0.to_string()).collect();
    in_table.sort();
    assert_eq!(
        on_disk,
        in_table,
        "the table must name every .dat file in {} and only those",
        dir.display()
    );

    let mut server = server();
    let addr = server.addr(transport);
    let send = |message: &[u8], wait| match transport {
        Transport::Udp => send_udp(addr, message, wait),
        Transport::Tcp => send_tcp(addr, message, wait),
    };
    let mut failures = Vec::new();
    for (i, (file, on_udp, on_tcp, why)) in EXPECTED.iter().enumerate() {
        let expect = if transport == Transport::Udp {
            *on_udp
        } else {
            *on_tcp
        };
        let message = unique_branches(&std::fs::read(dir.join(format!("{file}.dat"))).unwrap(), i);
        let wait = if matches!(expect, Drop) {
            SILENT_FOR
        } else {
            ANSWER_WITHIN
        };
        let outcome = send(&message, wait);
        let verdict = match (expect, &outcome) {
            (Drop | ClosedOr(_), Outcome::Nothing) => Ok(()),
            (ClosedOr(set), Outcome::Final(r)) if set.contains(&r.status) => Ok(()),
            (Drop, Outcome::Final(r)) => Err(format!("expected no response, got {:?}", r.start)),
            (_, Outcome::Nothing) => Err(format!(
                "expected {expect:?}, got no final response within {wait:?}"
            )),
            (Status(s), Outcome::Final(r)) if r.status == s => Ok(()),
            (OneOf(set), Outcome::Final(r)) if set.contains(&r.status) => Ok(()),
            (_, Outcome::Final(r)) => Err(format!("expected {expect:?}, got {:?}", r.start)),
        };
        if let Err(e) = verdict {
            failures.push(format!("{file}.dat ({why}) over {transport:?}: {e}"));
        }
        // The server survived the message: alive, and still answers.
        server.assert_alive();
        match send(&options(i, transport), ANSWER_WITHIN) {
            Outcome::Final(r) if r.status == 200 => {}
            Outcome::Final(r) => failures.push(format!(
                "after {file}.dat over {transport:?}: OPTIONS got {:?}, expected 200",
                r.start
            )),
            Outcome::Nothing => failures.push(format!(
                "after {file}.dat over {transport:?}: OPTIONS got no answer within {ANSWER_WITHIN:?}"
            )),
        }
    }
    server.assert_alive();
    assert!(
        failures.is_empty(),
        "{} of {} torture messages handled wrongly:\n  {}\n{}",
        failures.len(),
        EXPECTED.len(),
        failures.join("\n  "),
        server.output()
    );
}

#[test]
fn every_rfc4475_torture_message_over_udp_gets_its_expected_answer() {
    torture(Transport::Udp);
}

#[test]
fn every_rfc4475_torture_message_over_tcp_gets_its_expected_answer() {
    torture(Transport::Tcp);
}
