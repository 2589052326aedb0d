//! Virtual-clock tests: a client and a server `Transactions` driven against
//! each other by a `Pair`, with optional loss. No sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;
use rsip::{Header, Method, SipMessage};

use super::*;
use crate::{Peer, Transport};

/// A branch from the thread RNG (tests only: the core takes its RNG).
fn make_branch() -> String {
    super::make_branch(&mut rand::rng())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client_addr() -> SocketAddr {
    addr("192.0.2.1:5060")
}

fn server_addr() -> SocketAddr {
    addr("192.0.2.2:5060")
}

fn request(method: &str, branch: &str, transport: Transport, cseq: u32) -> rsip::Request {
    let text = format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\r\n\
         Via: SIP/2.0/{} 192.0.2.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@192.0.2.1>;tag=from1\r\n\
         To: <sip:bob@192.0.2.2>\r\n\
         Call-ID: call-{branch}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        transport.via_token()
    );
    rsip::Request::try_from(text.as_str()).unwrap()
}

fn invite(branch: &str, transport: Transport) -> rsip::Request {
    request("INVITE", branch, transport, 1)
}

/// What a UAS core would send: Via, From, To (+tag), Call-ID, CSeq copied.
fn response_to(request: &rsip::Request, status: u16) -> rsip::Response {
    let headers: Vec<Header> = request
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                Some(h.clone())
            }
            Header::To(to) if status > 100 => Some(Header::To(rsip::headers::To::new(format!(
                "{};tag=to1",
                to.value()
            )))),
            Header::To(_) => Some(h.clone()),
            _ => None,
        })
        .chain([Header::ContentLength(0.into())])
        .collect();
    rsip::Response {
        status_code: status.into(),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// The UAC core's ACK for a 2xx (§13.2.2.4): a new branch, CSeq number of
/// the INVITE.
fn ack_for_2xx(response: &rsip::Response, transport: Transport) -> rsip::Request {
    let (cseq, _) = key::cseq(&response.headers).unwrap();
    let call_id = key::call_id(&response.headers).unwrap();
    let text = format!(
        "ACK sip:bob@192.0.2.2 SIP/2.0\r\n\
         Via: SIP/2.0/{} 192.0.2.1:5060;branch={}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@192.0.2.1>;tag=from1\r\n\
         To: <sip:bob@192.0.2.2>;tag=to1\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} ACK\r\n\
         Content-Length: 0\r\n\r\n",
        transport.via_token(),
        make_branch()
    );
    rsip::Request::try_from(text.as_str()).unwrap()
}

fn parse(bytes: &[u8]) -> SipMessage {
    SipMessage::try_from(bytes).expect("we serialise parseable messages")
}

fn first_line(message: &SipMessage) -> String {
    match message {
        SipMessage::Request(r) => format!("{} {}", r.method, key::cseq(&r.headers).unwrap().1),
        SipMessage::Response(r) => format!(
            "{} {}",
            r.status_code.code(),
            key::cseq(&r.headers).unwrap().1
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

#[derive(Debug)]
struct Sent {
    at: Duration,
    from: Side,
    line: String,
    message: SipMessage,
}

/// A client and a server `Transactions` joined by a lossy, zero-latency
/// wire and a virtual clock.
struct Pair {
    start: Instant,
    now: Instant,
    client: Transactions,
    server: Transactions,
    transport: Transport,
    /// Indices (in sending order, both directions) of datagrams to lose.
    lose: Vec<usize>,
    /// Lose everything the server sends.
    server_mute: bool,
    sent: Vec<Sent>,
    client_events: Vec<(Duration, TxEvent)>,
    server_events: Vec<(Duration, TxEvent)>,
    /// The client TU ACKs every 2xx to an INVITE.
    ack_2xx: bool,
}

impl Pair {
    fn new(transport: Transport) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            client: Transactions::new(TimerConfig::default()),
            server: Transactions::new(TimerConfig::default()),
            transport,
            lose: Vec::new(),
            server_mute: false,
            sent: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            ack_2xx: true,
        }
    }

    fn losing(mut self, indices: &[usize]) -> Self {
        self.lose = indices.to_vec();
        self
    }

    fn peer(&self, side: Side) -> Peer {
        match side {
            Side::Client => Peer::new(self.transport, client_addr()),
            Side::Server => Peer::new(self.transport, server_addr()),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Delivers every pending transmit and collects events until quiet.
    fn progress(&mut self) {
        loop {
            let mut moved = false;
            while let Some(transmit) = self.client.poll_transmit() {
                moved = true;
                assert_eq!(transmit.peer, self.peer(Side::Server));
                self.deliver(Side::Client, transmit.bytes);
            }
            while let Some(transmit) = self.server.poll_transmit() {
                moved = true;
                assert_eq!(transmit.peer, self.peer(Side::Client));
                self.deliver(Side::Server, transmit.bytes);
            }
            while let Some(event) = self.client.poll_event() {
                if let TxEvent::Response { key, response } = &event
                    && self.ack_2xx
                    && *key.method() == Method::Invite
                    && (200..300).contains(&response.status_code.code())
                {
                    let ack = ack_for_2xx(response, self.transport);
                    self.client.send_stateless(self.peer(Side::Server), ack);
                    moved = true;
                }
                self.client_events.push((self.elapsed(), event));
            }
            while let Some(event) = self.server.poll_event() {
                self.server_events.push((self.elapsed(), event));
            }
            if !moved {
                break;
            }
        }
    }

    fn deliver(&mut self, from: Side, bytes: bytes::Bytes) {
        let index = self.sent.len();
        let message = parse(&bytes);
        self.sent.push(Sent {
            at: self.elapsed(),
            from,
            line: first_line(&message),
            message: message.clone(),
        });
        if self.lose.contains(&index) || (from == Side::Server && self.server_mute) {
            return;
        }
        let source = self.peer(from);
        let to = match from {
            Side::Client => &mut self.server,
            Side::Server => &mut self.client,
        };
        to.handle_message(self.now, source, message);
    }

    /// Advances the clock to the next timer of either side and fires it.
    fn advance(&mut self) -> bool {
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { return false };
        assert!(next >= self.now, "timers never go back in time");
        self.now = next;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.progress();
        true
    }

    fn run_to_quiet(&mut self) {
        while self.advance() {}
    }

    fn send_request(&mut self, request: rsip::Request) -> TxKey {
        let key = self
            .client
            .try_send_request(self.now, self.peer(Side::Server), request)
            .unwrap();
        self.progress();
        key
    }

    /// The server TU answers the last request it was given.
    fn answer(&mut self, status: u16) -> TxKey {
        let (key, request) = self
            .server_events
            .iter()
            .rev()
            .find_map(|(_, e)| match e {
                TxEvent::Request { key, request, .. } => Some((key.clone(), request.clone())),
                _ => None,
            })
            .expect("the server saw a request");
        self.server
            .send_response(self.now, &key, response_to(&request, status))
            .unwrap();
        self.progress();
        key
    }

    fn lines(&self, from: Side, line: &str) -> Vec<Duration> {
        self.sent
            .iter()
            .filter(|s| s.from == from && s.line == line)
            .map(|s| s.at)
            .collect()
    }

    fn server_requests(&self) -> usize {
        self.server_events
            .iter()
            .filter(|(_, e)| matches!(e, TxEvent::Request { .. }))
            .count()
    }

    fn both_empty(&self) -> bool {
        self.client.is_empty() && self.server.is_empty()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn invite_with_lost_200_is_retransmitted_until_ack() {
    // 0: INVITE, 1: the first 200 (lost).
    let mut pair = Pair::new(Transport::Udp).losing(&[1]);
    pair.send_request(invite(&make_branch(), Transport::Udp));
    let invite_key = pair.answer(200);
    pair.run_to_quiet();

    assert_eq!(
        pair.lines(Side::Server, "200 INVITE"),
        vec![secs(0.0), secs(0.5)]
    );
    assert_eq!(pair.lines(Side::Client, "ACK ACK").len(), 1);
    let acks: Vec<_> = pair
        .server_events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Ack { .. }))
        .collect();
    assert_eq!(acks.len(), 1, "the ACK for 2xx reaches the TU");
    assert!(
        !pair
            .server_events
            .iter()
            .any(|(_, e)| matches!(e, TxEvent::NoAck { .. })),
    );
    // Timer L ends the server transaction 64·T1 after the 200.
    assert!(
        pair.server_events
            .contains(&(secs(32.0), TxEvent::Terminated { key: invite_key }))
    );
    assert!(pair.both_empty());
}

#[test]
fn two_hundred_retransmission_stops_on_ack() {
    let mut pair = Pair::new(Transport::Udp);
    pair.send_request(invite(&make_branch(), Transport::Udp));
    pair.answer(200);
    pair.run_to_quiet();
    assert_eq!(pair.lines(Side::Server, "200 INVITE"), vec![Duration::ZERO]);
    // No 100 Trying either: the TU answered within 200 ms.
    assert!(pair.lines(Side::Server, "100 INVITE").is_empty());
    assert!(pair.both_empty());
}

#[test]
fn two_hundred_is_retransmitted_doubling_to_t2_and_timer_l_reports_no_ack() {
    let mut pair = Pair::new(Transport::Udp);
    pair.ack_2xx = false;
    pair.send_request(invite(&make_branch(), Transport::Udp));
    let key = pair.answer(200);
    pair.run_to_quiet();
    let expected: Vec<Duration> = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(pair.lines(Side::Server, "200 INVITE"), expected);
    assert!(
        pair.server_events
            .contains(&(secs(32.0), TxEvent::NoAck { key }))
    );
    // The client passed every retransmitted 2xx to its TU (RFC 6026).
    let responses = pair
        .client_events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Response { .. }))
        .count();
    assert_eq!(responses, expected.len());
}

#[test]
fn lost_invite_is_retransmitted_by_timer_a() {
    let mut pair = Pair::new(Transport::Udp).losing(&[0]);
    pair.send_request(invite(&make_branch(), Transport::Udp));
    assert_eq!(pair.server_requests(), 0);
    pair.advance();
    assert_eq!(pair.elapsed(), secs(0.5));
    assert_eq!(pair.server_requests(), 1);
    pair.answer(486);
    pair.run_to_quiet();
    assert_eq!(
        pair.lines(Side::Client, "INVITE INVITE"),
        vec![secs(0.0), secs(0.5)]
    );
    assert_eq!(
        pair.server_requests(),
        1,
        "retransmissions create no new transaction"
    );
    assert!(pair.both_empty());
}

#[test]
fn unanswered_invite_is_retransmitted_by_timer_a_and_times_out_by_timer_b() {
    let mut pair = Pair::new(Transport::Udp);
    pair.server_mute = true;
    pair.server.config.trying_after = None;
    let key = pair.send_request(invite(&make_branch(), Transport::Udp));
    pair.run_to_quiet();
    let expected: Vec<Duration> = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(pair.lines(Side::Client, "INVITE INVITE"), expected);
    assert_eq!(
        pair.client_events,
        vec![
            (secs(32.0), TxEvent::Timeout { key: key.clone() }),
            (secs(32.0), TxEvent::Terminated { key }),
        ]
    );
    assert!(pair.client.is_empty());
}

#[test]
fn non_invite_timer_e_doubles_capped_at_t2_and_timer_f_times_out() {
    let mut pair = Pair::new(Transport::Udp);
    pair.server_mute = true;
    let key = pair.send_request(request("OPTIONS", &make_branch(), Transport::Udp, 1));
    pair.run_to_quiet();
    let expected: Vec<Duration> = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(pair.lines(Side::Client, "OPTIONS OPTIONS"), expected);
    assert_eq!(
        pair.client_events[0],
        (secs(32.0), TxEvent::Timeout { key })
    );
    assert!(pair.client.is_empty());
}

#[test]
fn non_invite_timer_e_uses_t2_once_proceeding() {
    let mut pair = Pair::new(Transport::Udp).losing(&[2, 3, 4, 5, 6, 7]);
    pair.send_request(request("OPTIONS", &make_branch(), Transport::Udp, 1));
    pair.answer(180); // datagram 1
    pair.advance(); // E at 0.5: retransmission (lost) → interval T2
    pair.advance();
    assert_eq!(
        pair.lines(Side::Client, "OPTIONS OPTIONS"),
        vec![secs(0.0), secs(0.5), secs(4.5)]
    );
}

#[test]
fn non_2xx_final_is_acked_with_the_invite_branch_and_a_retransmitted_final_is_acked_again() {
    // 0: INVITE, 1: 486, 2: ACK (lost), 3: 486 by Timer G, 4: ACK.
    let mut pair = Pair::new(Transport::Udp).losing(&[2]);
    let branch = make_branch();
    let client_key = pair.send_request(invite(&branch, Transport::Udp));
    let server_key = pair.answer(486);
    pair.run_to_quiet();

    assert_eq!(
        pair.lines(Side::Server, "486 INVITE"),
        vec![secs(0.0), secs(0.5)]
    );
    assert_eq!(
        pair.lines(Side::Client, "ACK ACK"),
        vec![secs(0.0), secs(0.5)]
    );
    for sent in pair.sent.iter().filter(|s| s.line == "ACK ACK") {
        let SipMessage::Request(ack) = &sent.message else {
            panic!()
        };
        assert_eq!(
            key::top_via(&ack.headers).unwrap().branch.as_deref(),
            Some(branch.as_str())
        );
        assert_eq!(
            key::to_tag(&ack.headers),
            Some("to1"),
            "To carries the response's tag"
        );
        assert_eq!(key::from_tag(&ack.headers), Some("from1"));
        assert_eq!(key::cseq(&ack.headers), Some((1, Method::Ack)));
        assert_eq!(ack.uri.to_string(), "sip:bob@192.0.2.2");
        let vias = ack
            .headers
            .iter()
            .filter(|h| matches!(h, Header::Via(_)))
            .count();
        assert_eq!(vias, 1);
    }
    // The client TU saw the 486 once; the server TU saw no ACK (absorbed).
    let finals = pair
        .client_events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Response { .. }))
        .count();
    assert_eq!(finals, 1);
    assert!(
        !pair
            .server_events
            .iter()
            .any(|(_, e)| matches!(e, TxEvent::Ack { .. }))
    );
    // Timer I = T4 after the ACK; Timer D = 32 s after the 486.
    assert!(
        pair.server_events
            .contains(&(secs(5.5), TxEvent::Terminated { key: server_key }))
    );
    assert!(
        pair.client_events
            .contains(&(secs(32.0), TxEvent::Terminated { key: client_key }))
    );
}

#[test]
fn an_acknowledged_refusal_leaves_no_timer_h_behind() {
    let mut pair = Pair::new(Transport::Udp);
    pair.send_request(invite(&make_branch(), Transport::Udp));
    pair.answer(486);
    assert_eq!(pair.lines(Side::Client, "ACK ACK").len(), 1);
    // The ACK came before Timer G fired: Timer I (T4) is the furthest
    // deadline queued, not a stale 64·T1 Timer H.
    let latest = pair.server.timers.latest().unwrap();
    assert!(
        latest <= pair.now + Duration::from_secs(5),
        "{:?}",
        latest - pair.now
    );
}

#[test]
fn timer_h_reports_no_ack_after_g_retransmissions() {
    let mut pair = Pair::new(Transport::Udp);
    pair.send_request(invite(&make_branch(), Transport::Udp));
    // Lose every ACK the client sends from now on.
    pair.lose = (2..100).collect();
    let key = pair.answer(486);
    pair.run_to_quiet();
    let expected: Vec<Duration> = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(pair.lines(Side::Server, "486 INVITE"), expected);
    assert!(
        pair.server_events
            .contains(&(secs(32.0), TxEvent::NoAck { key: key.clone() }))
    );
    assert!(
        pair.server_events
            .contains(&(secs(32.0), TxEvent::Terminated { key }))
    );
}

#[test]
fn reliable_transport_sends_no_retransmissions_and_terminates_at_once() {
    let mut pair = Pair::new(Transport::Tcp);
    pair.send_request(invite(&make_branch(), Transport::Tcp));
    pair.answer(486);
    assert_eq!(pair.lines(Side::Client, "ACK ACK").len(), 1);
    assert!(pair.both_empty(), "Timers D and I are zero on TCP");

    pair.send_request(request("OPTIONS", &make_branch(), Transport::Tcp, 2));
    pair.answer(200);
    assert!(pair.both_empty(), "Timers J and K are zero on TCP");

    pair.send_request(request("OPTIONS", &make_branch(), Transport::Tcp, 3));
    pair.run_to_quiet(); // never answered: Timer F only
    assert_eq!(pair.elapsed(), secs(32.0));
    assert_eq!(
        pair.sent
            .iter()
            .filter(|s| s.line.starts_with("OPTIONS"))
            .count(),
        2
    );
    assert_eq!(
        pair.sent
            .iter()
            .filter(|s| s.line.starts_with("INVITE"))
            .count(),
        1
    );
    assert_eq!(
        pair.sent
            .iter()
            .filter(|s| s.line.starts_with("486"))
            .count(),
        1
    );
}

#[test]
fn reliable_2xx_is_sent_once_and_acked() {
    let mut pair = Pair::new(Transport::Tls);
    pair.send_request(invite(&make_branch(), Transport::Tls));
    pair.answer(200);
    pair.run_to_quiet();
    assert_eq!(pair.lines(Side::Server, "200 INVITE").len(), 1);
    assert!(pair.both_empty());
}

#[test]
fn slow_tu_gets_100_trying_sent_for_it_and_retransmitted_invites_get_it_again() {
    let mut pair = Pair::new(Transport::Udp);
    let key = pair.send_request(invite(&make_branch(), Transport::Udp));
    pair.advance(); // 200 ms: 100 Trying
    assert_eq!(pair.lines(Side::Server, "100 INVITE"), vec![secs(0.2)]);
    assert!(matches!(&pair.client_events[0].1, TxEvent::Response { key: k, .. } if *k == key));
    pair.answer(180);
    // The 100 stopped Timers A and B; the server has no timer in Proceeding.
    assert!(!pair.advance());
    assert_eq!(pair.lines(Side::Client, "INVITE INVITE"), vec![secs(0.0)]);
    // A retransmitted INVITE gets the last provisional (180).
    pair.server.handle_message(
        pair.now,
        pair.peer(Side::Client),
        invite_with_same_branch(&pair).into(),
    );
    pair.progress();
    assert_eq!(pair.lines(Side::Server, "180 INVITE").len(), 2);
}

fn invite_with_same_branch(pair: &Pair) -> rsip::Request {
    pair.sent
        .iter()
        .find_map(|s| match &s.message {
            SipMessage::Request(r) if r.method == Method::Invite => Some(r.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn retransmitted_invite_in_accepted_is_absorbed() {
    let mut pair = Pair::new(Transport::Udp);
    pair.send_request(invite(&make_branch(), Transport::Udp));
    pair.answer(200);
    let invite = invite_with_same_branch(&pair);
    pair.server
        .handle_message(pair.now, pair.peer(Side::Client), invite.into());
    pair.progress();
    assert_eq!(pair.lines(Side::Server, "200 INVITE").len(), 1);
    assert_eq!(pair.server_requests(), 1);
}

#[test]
fn cancel_finds_its_invite() {
    let mut pair = Pair::new(Transport::Udp);
    let branch = make_branch();
    let client_invite = pair.send_request(invite(&branch, Transport::Udp));
    let server_invite = pair.answer(180);
    let mut cancel = request("CANCEL", &branch, Transport::Udp, 1);
    cancel.headers.retain(|h| !matches!(h, Header::Via(_)));
    cancel
        .headers
        .push(Header::Via(rsip::headers::Via::new(format!(
            "SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"
        ))));
    let client_cancel = pair.send_request(cancel);
    let cancel_key = pair.answer(200);
    assert_ne!(cancel_key, server_invite);
    assert_eq!(*cancel_key.method(), Method::Cancel);
    assert_eq!(
        pair.server.find_invite(&cancel_key),
        Some(server_invite.clone())
    );
    assert_eq!(pair.server.find_invite(&server_invite), None);
    assert_eq!(
        pair.client.find_invite(&client_cancel),
        None,
        "only server CANCELs"
    );

    // The UAS answers the INVITE with 487; everything ends.
    let request = invite_with_same_branch(&pair);
    pair.server
        .send_response(pair.now, &server_invite, response_to(&request, 487))
        .unwrap();
    pair.progress();
    pair.run_to_quiet();
    assert!(
        pair.client_events
            .iter()
            .any(|(_, e)| matches!(e, TxEvent::Response { key, response }
        if *key == client_invite && response.status_code.code() == 487))
    );
    assert!(pair.both_empty());
}

#[test]
fn cancelled_invite_without_final_response_times_out_64_t1_after_the_cancel() {
    let mut pair = Pair::new(Transport::Udp);
    let branch = make_branch();
    let invite_key = pair.send_request(invite(&branch, Transport::Udp));
    pair.answer(180);
    pair.now += secs(10.0);
    pair.send_request(request("CANCEL", &branch, Transport::Udp, 1));
    pair.server_mute = true;
    pair.run_to_quiet();
    assert!(
        pair.client_events
            .contains(&(secs(42.0), TxEvent::Timeout { key: invite_key }))
    );
}

/// RFC 4475 §3.4.1 (inv2543): no branch, no From tag, no Max-Forwards.
const INV2543: &str = "INVITE sip:UserB@example.com SIP/2.0\r\n\
To: <sip:UserB@example.com>\r\n\
From: <sip:UserA@example.com>\r\n\
Call-ID: 1c3d-rf4\r\n\
CSeq: 8 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.15\r\n\
Content-Length: 0\r\n\r\n";

/// RFC 4475 §3.2.1 (badbranch): the branch is only the magic cookie.
const BADBRANCH: &str = "OPTIONS sip:user@example.com SIP/2.0\r\n\
To: sip:user@example.com\r\n\
From: sip:caller@example.org;tag=33242\r\n\
Max-Forwards: 3\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n\
Accept: application/sdp\r\n\
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\r\n\
CSeq: 8 OPTIONS\r\n\
l: 0\r\n\r\n";

#[test]
fn rfc2543_invite_without_branch_is_matched_and_its_retransmissions_absorbed() {
    let now = Instant::now();
    let peer = Peer::new(Transport::Udp, addr("192.0.2.15:5060"));
    let mut server = Transactions::new(TimerConfig {
        trying_after: None,
        ..TimerConfig::default()
    });
    let invite = rsip::Request::try_from(INV2543).unwrap();
    server.handle_message(now, peer, invite.clone().into());
    server.handle_message(now, peer, invite.clone().into());
    let Some(TxEvent::Request { key, .. }) = server.poll_event() else {
        panic!()
    };
    assert_eq!(server.poll_event(), None, "the retransmission is absorbed");
    assert_eq!(key.branch(), None);

    server
        .send_response(now, &key, response_to(&invite, 180))
        .unwrap();
    server.poll_transmit().unwrap();
    server.handle_message(now, peer, invite.clone().into());
    let resent = server
        .poll_transmit()
        .expect("the last provisional is resent");
    assert!(resent.bytes.starts_with(b"SIP/2.0 180"));

    server
        .send_response(now, &key, response_to(&invite, 486))
        .unwrap();
    server.poll_transmit().unwrap();
    // The RFC 2543 ACK: same Request-URI, Via, Call-ID, CSeq number; our To tag.
    let ack = INV2543
        .replace("INVITE sip", "ACK sip")
        .replace("8 INVITE", "8 ACK")
        .replace(
            "<sip:UserB@example.com>\r\n",
            "<sip:UserB@example.com>;tag=to1\r\n",
        );
    server.handle_message(
        now,
        peer,
        rsip::Request::try_from(ack.as_str()).unwrap().into(),
    );
    assert_eq!(server.poll_event(), None, "the ACK for the 486 is absorbed");
    server.handle_timeout(now + secs(5.0));
    assert_eq!(server.poll_transmit(), None, "Timer G stopped by the ACK");
    assert_eq!(server.poll_event(), Some(TxEvent::Terminated { key }));
    assert!(server.is_empty());
}

#[test]
fn bare_magic_cookie_branch_falls_back_to_rfc2543_matching() {
    let now = Instant::now();
    let peer = Peer::new(Transport::Udp, addr("192.0.2.1:5060"));
    let mut server = Transactions::default();
    let options = rsip::Request::try_from(BADBRANCH).unwrap();
    server.handle_message(now, peer, options.clone().into());
    server.handle_message(now, peer, options.clone().into());
    let Some(TxEvent::Request { key, .. }) = server.poll_event() else {
        panic!()
    };
    assert_eq!(server.poll_event(), None);
    assert_eq!(key.branch(), None, "not an RFC 3261 branch");
    server
        .send_response(now, &key, response_to(&options, 200))
        .unwrap();
    server.handle_message(now, peer, options.into());
    assert_eq!(
        server.poll_transmit().unwrap().bytes,
        server.poll_transmit().unwrap().bytes
    );
}

#[test]
fn response_matching_no_transaction_is_dropped() {
    let now = Instant::now();
    let mut client = Transactions::default();
    let stray = response_to(&invite(&make_branch(), Transport::Udp), 200);
    client.handle_message(
        now,
        Peer::new(Transport::Udp, addr("255.255.255.255:5060")),
        stray.into(),
    );
    assert_eq!(client.poll_transmit(), None);
    assert_eq!(client.poll_event(), None);
    assert!(client.is_empty());
}

#[test]
fn messages_without_via_or_cseq_are_dropped_without_panicking() {
    let now = Instant::now();
    let peer = Peer::new(Transport::Udp, client_addr());
    let mut layer = Transactions::default();
    let mut no_via = invite("z9hG4bKx", Transport::Udp);
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    let mut no_cseq = invite("z9hG4bKy", Transport::Udp);
    no_cseq.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    let mut bad_via = invite("z9hG4bKz", Transport::Udp);
    bad_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    bad_via
        .headers
        .push(Header::Via(rsip::headers::Via::new("garbage")));
    for request in [no_via.clone(), no_cseq.clone(), bad_via] {
        layer.handle_message(now, peer, request.clone().into());
        layer.handle_message(now, peer, response_to(&request, 200).into());
    }
    assert_eq!(layer.poll_event(), None);
    assert!(layer.is_empty());
    assert_eq!(
        layer.try_send_request(now, peer, no_via.clone()),
        Err(TxError::MissingHeader("Via"))
    );
    assert_eq!(
        layer.try_send_request(
            now,
            peer,
            ack_for_2xx(
                &response_to(&invite("z9hG4bKw", Transport::Udp), 200),
                Transport::Udp
            )
        ),
        Err(TxError::AckIsStateless)
    );
    // The infallible form reports the failure as a timeout.
    let key = layer.send_request(now, peer, no_via);
    assert_eq!(layer.poll_transmit(), None);
    assert_eq!(
        layer.poll_event(),
        Some(TxEvent::Timeout { key: key.clone() })
    );
    assert_eq!(layer.poll_event(), Some(TxEvent::Terminated { key }));
}

#[test]
fn compact_header_forms_are_matched() {
    let now = Instant::now();
    let peer = Peer::new(Transport::Udp, client_addr());
    let mut server = Transactions::default();
    let text = "OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcompact\r\n\
        f: <sip:alice@192.0.2.1>;tag=1\r\n\
        t: <sip:bob@192.0.2.2>\r\n\
        i: compact-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        l: 0\r\n\r\n";
    let options = rsip::Request::try_from(text).unwrap();
    server.handle_message(now, peer, options.clone().into());
    server.handle_message(now, peer, options.into());
    let Some(TxEvent::Request { key, .. }) = server.poll_event() else {
        panic!()
    };
    assert_eq!(key.branch(), Some("z9hG4bKcompact"));
    assert_eq!(server.poll_event(), None);
}

#[test]
fn second_final_response_is_refused() {
    let mut pair = Pair::new(Transport::Udp);
    pair.send_request(request("OPTIONS", &make_branch(), Transport::Udp, 1));
    let key = pair.answer(200);
    let request = request("OPTIONS", "z9hG4bKother", Transport::Udp, 1);
    assert_eq!(
        pair.server
            .send_response(pair.now, &key, response_to(&request, 500)),
        Err(TxError::InvalidState {
            state: "Completed",
            status: 500
        })
    );
    assert_eq!(
        pair.server
            .send_response(pair.now, &key, response_to(&request, 99)),
        Err(TxError::InvalidStatus(99))
    );
}

#[test]
fn transport_error_fails_pending_client_transactions_to_that_peer() {
    let mut pair = Pair::new(Transport::Udp);
    pair.server_mute = true;
    let key = pair.send_request(invite(&make_branch(), Transport::Udp));
    let peer = pair.peer(Side::Server);
    pair.client
        .handle_transport_error(pair.now, Peer::new(Transport::Udp, addr("192.0.2.99:5060")));
    assert_eq!(pair.client.poll_event(), None, "other peers are unaffected");
    pair.client.handle_transport_error(pair.now, peer);
    assert_eq!(
        pair.client.poll_event(),
        Some(TxEvent::Timeout { key: key.clone() })
    );
    assert_eq!(pair.client.poll_event(), Some(TxEvent::Terminated { key }));
    assert!(pair.client.is_empty());
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn ten_thousand_transactions_expire_and_nothing_leaks() {
    let mut pair = Pair::new(Transport::Udp);
    pair.server.config.trying_after = None;
    for i in 0..10_000u32 {
        let invite = i % 2 == 0;
        let method = if invite { "INVITE" } else { "OPTIONS" };
        pair.send_request(request(method, &make_branch(), Transport::Udp, i));
        let status = match i % 4 {
            0 => 200,
            1 => 200,
            2 => 486,
            _ => 404,
        };
        pair.answer(status);
    }
    assert_eq!(pair.client.len(), 10_000);
    assert_eq!(pair.server.len(), 10_000);
    pair.run_to_quiet();
    assert_eq!(pair.client.len(), 0);
    assert_eq!(pair.server.len(), 0);
    assert_eq!(pair.client.poll_timeout(), None);
    assert_eq!(pair.server.timers.len(), 0, "no stale timer entries left");
    assert!(pair.server.accepted.is_empty());
    assert!(pair.client.clients_by_peer.is_empty());
    let terminated = pair
        .server_events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Terminated { .. }))
        .count();
    assert_eq!(terminated, 10_000);
}

#[test]
fn serialisation_keeps_binary_bodies_intact() {
    let mut request = invite("z9hG4bKbody", Transport::Udp);
    request.body = vec![0xff, 0x00, 0x80];
    let bytes = serialize(&request.into());
    assert!(bytes.ends_with(&[b'\r', b'\n', 0xff, 0x00, 0x80]));
}

#[test]
fn branches_are_unique_and_carry_the_magic_cookie() {
    let (a, b) = (make_branch(), make_branch());
    assert_ne!(a, b);
    assert!(a.starts_with("z9hG4bK") && a.len() > 7);
}
