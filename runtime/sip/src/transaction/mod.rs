//! The RFC 3261 §17 transaction layer, sans-IO: matching, retransmission and
//! the timers of client and server transactions (with RFC 6026's Accepted
//! state for INVITE).
//!
//! ```text
//!          parsed rsip::SipMessage + Peer                 commands from the TU
//!   handle_message(now, ..) / handle_timeout(now)   send_request / send_response
//!   handle_transport_error(now, peer)               send_stateless / find_invite
//!                    │                                        │
//!                    ▼                                        ▼
//!      ┌───────────────────────── Transactions ─────────────────────────┐
//!      │ HashMap<TxKey, Transaction>    one timer heap (deadline, seq) │
//!      └─────────────────────────────────────────────────────────────────┘
//!           │ poll_transmit            │ poll_event          │ poll_timeout
//!           ▼                          ▼                     ▼
//!      bytes to the socket       TxEvent to the TU     next wake-up instant
//! ```
//!
//! # Driving it
//!
//! After every `handle_*` call or command, drain the outputs in this order:
//! [`Transactions::poll_transmit`] until `None` (send them), then
//! [`Transactions::poll_event`] until `None` (the TU may issue commands while
//! handling events; drain transmits again after those), then re-read
//! [`Transactions::poll_timeout`] and call [`Transactions::handle_timeout`]
//! when that instant is reached. Nothing reads the clock: `now` comes in.
//!
//! # What the layer does
//!
//! * Client INVITE (§17.1.1 + RFC 6026): Calling (Timer A on UDP, Timer B =
//!   64·T1 → [`TxEvent::Timeout`]) → Proceeding on 1xx → on 3xx–6xx the layer
//!   sends the ACK itself (§17.1.1.3) and lingers in Completed for Timer D,
//!   re-sending that ACK for each retransmitted final; on 2xx → Accepted for
//!   Timer M = 64·T1, passing every 2xx (forks, retransmissions) to the TU,
//!   which sends the ACK for 2xx with [`Transactions::send_stateless`].
//! * Client non-INVITE (§17.1.2): Trying/Proceeding with Timer E (T1
//!   doubling to T2, T2 once Proceeding) and Timer F = 64·T1 → `Timeout`;
//!   Completed for Timer K = T4.
//! * Server INVITE (§17.2.1 + RFC 6026): Proceeding (a retransmitted INVITE
//!   gets the last provisional; a 100 Trying is sent if the TU sends nothing
//!   within [`TimerConfig::trying_after`]); 3xx–6xx → Completed with Timer G
//!   retransmitting and Timer H = 64·T1 → [`TxEvent::NoAck`]; ACK → Confirmed
//!   for Timer I = T4; 2xx → Accepted, see below.
//! * Server non-INVITE (§17.2.2): Trying/Proceeding/Completed, retransmitted
//!   requests get the last response, Timer J = 64·T1.
//! * On a reliable transport nothing is retransmitted and Timers D, I, J, K
//!   are zero: those transactions end at once.
//! * A response matching no client transaction is dropped (never answered:
//!   the RFC 4475 "bcast" case); an ACK matching no transaction goes to the
//!   TU as [`TxEvent::Ack`] (the ACK for 2xx belongs to the dialog layer).
//!
//! The 2xx to an INVITE is retransmitted here, in the Accepted state, until an
//! ACK with the same Call-ID and CSeq number arrives (T1 doubling to T2, UDP
//! only), and Timer L = 64·T1 ends the transaction. RFC 3261 §13.3.1.4 gives
//! this job to the UAS core; doing it in the transaction layer, which already
//! owns the retransmission timers, keeps the dialog layer free of timers.
//!
//! Matching follows §17.1.3 (client: branch + CSeq method) and §17.2.3
//! (server: branch + sent-by + method, ACK → its INVITE, CANCEL is its own
//! transaction), falling back to RFC 2543 matching when the branch lacks the
//! magic cookie (RFC 4475 §3.2.1 badbranch, §3.4.1 inv2543).
//!
//! Every message is serialised once, and the bytes are kept for
//! retransmission. Odd input (no Via, no CSeq, …) is dropped with a
//! `tracing::debug!`, never a panic. Timers live in one binary heap with lazy
//! deletion: O(log n) per timer event, [`Transactions::poll_timeout`] is a
//! peek.

mod key;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

// Keys come from the wire (branch, Call-ID): foldhash is seeded per map,
// resistant enough to flooding, and SipHash on these maps was 2.4 % of a
// refused call's CPU (BENCHMARKS.md, `sip`, issue 14).
use foldhash::{HashMap, HashMapExt, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, SipMessage};
use tracing::{debug, warn};

use super::{Peer, Transmit};
pub use key::TxKey;
use key::{Role, TopVia};
use timers::{Slot, TimerQueue};

/// Transaction timer values (RFC 3261 §17.1.1.1 and Table 4). The default
/// is the RFC's.
// Not `Copy`, so it can grow non-`Copy` settings without breaking callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; first retransmission interval, and 64·T1 is the
    /// transaction timeout (Timers B, F, H, J, L, M). Default 500 ms.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses. Default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network (Timers I and K).
    /// Default 5 s.
    pub t4: Duration,
    /// Timer D, how long a client INVITE absorbs retransmitted final
    /// responses on UDP ("at least 32 s", Table 4). Default 32 s.
    pub timer_d: Duration,
    /// The server INVITE sends 100 Trying if the TU has sent no response
    /// this long after the INVITE arrived (§17.2.1: "within 200 ms").
    /// `None` leaves 100 Trying to the TU. Default 200 ms.
    pub trying_after: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            trying_after: Some(Duration::from_millis(200)),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// The first retransmission interval; never zero, so a zero T1 cannot
    /// make `handle_timeout` spin.
    fn first_interval(&self) -> Duration {
        self.t1.max(Duration::from_millis(1))
    }
}

/// What the transaction layer tells the TU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// A new server transaction (never a retransmission). Answer it with
    /// [`Transactions::send_response`]; a CANCEL's INVITE is found with
    /// [`Transactions::find_invite`].
    Request {
        key: TxKey,
        peer: Peer,
        request: rsip::Request,
    },
    /// A response for a client transaction: 1xx, the final, and for INVITE
    /// every 2xx that follows (forks, retransmissions: RFC 6026), each of
    /// which the TU ACKs with [`Transactions::send_stateless`].
    Response {
        key: TxKey,
        response: rsip::Response,
    },
    /// An ACK that belongs to no server transaction or that acknowledges a
    /// 2xx (it also stopped that 2xx's retransmission): the dialog's.
    Ack { peer: Peer, request: rsip::Request },
    /// The client transaction failed: Timer B or F fired, the transport
    /// reported an error, or no final response came 64·T1 after a CANCEL
    /// (§9.1). The TU treats it as a 408.
    Timeout { key: TxKey },
    /// A server INVITE transaction sent a final response but no ACK came
    /// (Timer H for 3xx–6xx, Timer L for 2xx).
    NoAck { key: TxKey },
    /// The transaction is gone; the last event for every key.
    Terminated { key: TxKey },
}

/// Errors of the TU's commands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError {
    /// No live server transaction has this key (ended, or a client key).
    #[error("no server transaction with this key")]
    UnknownTransaction,
    /// The transaction cannot send this response in its state, e.g. a
    /// second final response.
    #[error("a {status} response is not allowed in the {state} state")]
    InvalidState { state: &'static str, status: u16 },
    /// A status code outside 100–699.
    #[error("status code {0} is not a valid response code")]
    InvalidStatus(u16),
    /// The request lacks a header the layer needs (Via with branch, CSeq).
    #[error("the request has no {0}")]
    MissingHeader(&'static str),
    /// ACK creates no transaction: send it with `send_stateless`.
    #[error("ACK is not a transaction; use send_stateless")]
    AckIsStateless,
    /// A client transaction with this branch and method is already live.
    #[error("a client transaction with this branch and method exists")]
    DuplicateTransaction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Calling => "Calling",
            State::Trying => "Trying",
            State::Proceeding => "Proceeding",
            State::Completed => "Completed",
            State::Confirmed => "Confirmed",
            State::Accepted => "Accepted",
        }
    }

    /// Still waiting for a final response (client) or for the TU's (server).
    fn is_pending(self) -> bool {
        matches!(self, State::Calling | State::Trying | State::Proceeding)
    }
}

/// The parts of a client INVITE its ACK for a non-2xx copies (§17.1.1.3).
#[derive(Debug)]
struct AckTemplate {
    uri: rsip::Uri,
    via: Header,
    from: Option<Header>,
    to: Option<Header>,
    call_id: Option<Header>,
    cseq: u32,
    routes: Vec<Header>,
}

#[derive(Debug)]
struct Transaction {
    peer: Peer,
    state: State,
    /// Client: the request, resent by Timers A/E. Server: the last response
    /// sent, resent on retransmitted requests and by Timer G / 2xx timer.
    last: Option<Bytes>,
    /// Client INVITE: the ACK for a non-2xx final, resent in Completed.
    ack: Option<Bytes>,
    /// Client INVITE until its final response.
    ack_template: Option<Box<AckTemplate>>,
    /// Server INVITE: the 100 Trying sent if the TU is slow.
    trying: Option<Bytes>,
    /// Current retransmission interval.
    interval: Duration,
    /// `seq` of the armed timer per [`Slot`].
    timers: [Option<u64>; 2],
    /// Server INVITE: Call-ID and CSeq number the ACK for its 2xx carries.
    ack_match: Option<(Box<str>, u32)>,
    /// Server INVITE: the To tag of the final response (RFC 2543 ACK match).
    response_to_tag: Option<Box<str>>,
    /// Server INVITE in Accepted: an ACK came.
    acked: bool,
    /// Client INVITE: a CANCEL was sent (§9.1 guard armed).
    cancelled: bool,
    /// Server INVITE after a 3xx-6xx on UDP: when Timer H is due. It goes
    /// into the queue only when Timer G first fires: an ACK almost always
    /// comes before, and a 32 s entry per refused call left stale in the
    /// heap made every timer operation slower (at 4,000 calls/s the heap
    /// held 130,000 of them; popping was 2.5 % of a call's CPU).
    timer_h: Option<Instant>,
}

impl Transaction {
    fn new(peer: Peer, state: State, interval: Duration) -> Self {
        Self {
            peer,
            state,
            last: None,
            ack: None,
            ack_template: None,
            trying: None,
            interval,
            timers: [None; 2],
            ack_match: None,
            response_to_tag: None,
            acked: false,
            cancelled: false,
            timer_h: None,
        }
    }

    fn stop(&mut self, slot: Slot) {
        self.timers[slot as usize] = None;
    }
}

/// Arms `slot` of `tx` at `at`, replacing whatever was armed there.
fn arm(timers: &mut TimerQueue, key: &TxKey, tx: &mut Transaction, slot: Slot, at: Instant) {
    tx.timers[slot as usize] = Some(timers.arm(at, key, slot));
}

/// Arms the retransmission slot `tx.interval` after `now`.
fn retransmit_after_interval(
    timers: &mut TimerQueue,
    key: &TxKey,
    tx: &mut Transaction,
    now: Instant,
) {
    let at = now + tx.interval;
    arm(timers, key, tx, Slot::Retransmit, at);
}

/// The RFC 3261 §17 transaction layer for one SIP endpoint. See the module
/// documentation for the order in which to drain its outputs.
#[derive(Debug)]
pub struct Transactions {
    config: TimerConfig,
    txs: HashMap<TxKey, Transaction>,
    timers: TimerQueue,
    /// Server INVITEs in Accepted by (Call-ID, CSeq number): the ACK for a
    /// 2xx carries a new branch and is found here.
    accepted: HashMap<(Box<str>, u32), TxKey>,
    /// Client transactions per destination, for transport errors.
    clients_by_peer: HashMap<Peer, HashSet<TxKey>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    /// Requests that could not be sent, for their made-up keys.
    unsent: u64,
}

impl Default for Transactions {
    fn default() -> Self {
        Self::new(TimerConfig::default())
    }
}

/// A new random branch: the RFC 3261 magic cookie and 16 random
/// alphanumerics (§8.1.1.7). Put it in the top Via of every new request.
pub fn make_branch(rng: &mut impl rand::RngCore) -> String {
    use rand::Rng;
    let random: String = rng
        .sample_iter(rand::distr::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    format!("{}{random}", key::MAGIC_COOKIE)
}

/// Serialises a message once; the body is appended as raw bytes (rsip's
/// `Display` would replace non-UTF-8 body bytes).
///
/// Each header is written straight into one buffer: rsip's `Display` for
/// the header list makes a `String` per header, collects them and joins
/// them (~3 % of a refused call's CPU, benches/sip).
fn serialize(message: &SipMessage) -> Bytes {
    use std::fmt::Write;
    let body = message.body();
    let mut head = String::with_capacity(512);
    // Writing into a String cannot fail.
    let _ = match message {
        SipMessage::Request(r) => write!(head, "{} {} {}\r\n", r.method, r.uri, r.version),
        SipMessage::Response(r) => write!(head, "{} {}\r\n", r.version, r.status_code),
    };
    for header in rsip::message::HasHeaders::headers(message).iter() {
        let _ = write!(head, "{header}\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes.into()
}

fn is_header(header: &Header, long: &str, short: &str) -> bool {
    match header {
        Header::Other(name, _) => {
            let name = name.trim();
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        }
        _ => false,
    }
}

fn find_header(
    headers: &rsip::Headers,
    typed: fn(&Header) -> bool,
    long: &str,
    short: &str,
) -> Option<Header> {
    headers
        .iter()
        .find(|h| typed(h) || is_header(h, long, short))
        .cloned()
}

fn is_from(h: &Header) -> bool {
    matches!(h, Header::From(_))
}
fn is_to(h: &Header) -> bool {
    matches!(h, Header::To(_))
}
fn is_call_id(h: &Header) -> bool {
    matches!(h, Header::CallId(_))
}
fn is_via(h: &Header) -> bool {
    matches!(h, Header::Via(_))
}
fn is_cseq(h: &Header) -> bool {
    matches!(h, Header::CSeq(_))
}

impl AckTemplate {
    fn new(invite: &rsip::Request, via: &TopVia, cseq: u32) -> Self {
        let headers = &invite.headers;
        Self {
            uri: invite.uri.clone(),
            // Only the INVITE's top Via (one value, even if the line had more).
            via: Header::Via(rsip::headers::Via::new(via.raw.clone())),
            from: find_header(headers, is_from, "from", "f"),
            to: find_header(headers, is_to, "to", "t"),
            call_id: find_header(headers, is_call_id, "call-id", "i"),
            cseq,
            routes: headers
                .iter()
                .filter(|h| matches!(h, Header::Route(_)) || is_header(h, "route", "route"))
                .cloned()
                .collect(),
        }
    }

    /// The ACK for a non-2xx final (§17.1.1.3): the INVITE's Request-URI,
    /// top Via, Route, From, Call-ID and CSeq number; the response's To.
    fn ack_for(&self, response: &rsip::Response) -> rsip::Request {
        let mut headers = vec![self.via.clone()];
        headers.extend(self.routes.iter().cloned());
        headers.push(Header::MaxForwards(70.into()));
        headers.extend(self.from.clone());
        headers
            .extend(find_header(&response.headers, is_to, "to", "t").or_else(|| self.to.clone()));
        headers.extend(self.call_id.clone());
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{} ACK",
            self.cseq
        ))));
        headers.push(Header::ContentLength(0.into()));
        rsip::Request {
            method: Method::Ack,
            uri: self.uri.clone(),
            version: rsip::Version::V2,
            headers: headers.into(),
            body: Vec::new(),
        }
    }
}

/// The 100 Trying a server INVITE sends on the TU's behalf (§8.2.6.1):
/// Via, From, To (no tag added), Call-ID and CSeq copied.
fn trying_for(invite: &rsip::Request) -> rsip::Response {
    let headers: Vec<Header> = invite
        .headers
        .iter()
        .filter(|h| {
            is_via(h)
                || is_from(h)
                || is_to(h)
                || is_call_id(h)
                || is_cseq(h)
                || is_header(h, "via", "v")
                || is_header(h, "from", "f")
                || is_header(h, "to", "t")
                || is_header(h, "call-id", "i")
                || is_header(h, "cseq", "cseq")
        })
        .cloned()
        .chain([Header::ContentLength(0.into())])
        .collect();
    rsip::Response {
        status_code: 100.into(),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

impl Transactions {
    pub fn new(config: TimerConfig) -> Self {
        Self {
            config,
            txs: HashMap::new(),
            timers: TimerQueue::default(),
            accepted: HashMap::new(),
            clients_by_peer: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            unsent: 0,
        }
    }

    // ---- getters ----------------------------------------------------------

    /// Live transactions (all states before Terminated).
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    // ---- inputs -----------------------------------------------------------

    /// A parsed message from `peer`: requests go to server transactions,
    /// responses to client transactions.
    pub fn handle_message(&mut self, now: Instant, peer: Peer, message: SipMessage) {
        match message {
            SipMessage::Request(request) => self.on_request(now, peer, request),
            SipMessage::Response(response) => self.on_response(now, response),
        }
        self.prune_timers();
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.peek() {
            if entry.at > now {
                break;
            }
            let Some(entry) = self.timers.pop() else {
                break;
            };
            let Some(tx) = self.txs.get_mut(&entry.key) else {
                continue;
            };
            if tx.timers[entry.slot as usize] != Some(entry.seq) {
                continue; // stopped or re-armed: lazily deleted
            }
            tx.stop(entry.slot);
            self.fire(now, &entry.key, entry.slot);
        }
        self.prune_timers();
    }

    /// The transport could not reach `peer` (ICMP error, connection refused
    /// or reset): every client transaction to it still waiting for a final
    /// response fails with [`TxEvent::Timeout`] (§17.1.4).
    pub fn handle_transport_error(&mut self, _now: Instant, peer: Peer) {
        let Some(keys) = self.clients_by_peer.get(&peer) else {
            return;
        };
        let failing: Vec<TxKey> = keys
            .iter()
            .filter(|key| self.txs.get(*key).is_some_and(|tx| tx.state.is_pending()))
            .cloned()
            .collect();
        for key in failing {
            self.events.push_back(TxEvent::Timeout { key: key.clone() });
            self.terminate(&key);
        }
        self.prune_timers();
    }

    // ---- commands ---------------------------------------------------------

    /// Starts a client transaction and sends `request` to `peer`. The request
    /// must carry its own top Via with a branch ([`make_branch`]); a CANCEL
    /// carries the branch of the INVITE it cancels (§9.1), which arms that
    /// INVITE's 64·T1 guard.
    ///
    /// A request that cannot start a transaction (see
    /// [`Transactions::try_send_request`]) is not sent: it is logged, and the
    /// returned key gets [`TxEvent::Timeout`] then [`TxEvent::Terminated`] at
    /// once, so the TU's usual failure path runs.
    pub fn send_request(&mut self, now: Instant, peer: Peer, request: rsip::Request) -> TxKey {
        let method = request.method;
        match self.try_send_request(now, peer, request) {
            Ok(key) => key,
            Err(error) => {
                warn!(%peer, %method, %error, "request not sent; reported as a timeout");
                // A key no request carries: never random, just unique.
                self.unsent += 1;
                let branch = format!("{}-unsent-{}", key::MAGIC_COOKIE, self.unsent);
                let key = key::client_key(&branch, method);
                self.events.push_back(TxEvent::Timeout { key: key.clone() });
                self.events
                    .push_back(TxEvent::Terminated { key: key.clone() });
                key
            }
        }
    }

    /// [`Transactions::send_request`], with an error instead of the failure
    /// events when the request has no Via with a branch or no CSeq, is an
    /// ACK (use [`Transactions::send_stateless`]), or reuses the branch and
    /// method of a live client transaction.
    pub fn try_send_request(
        &mut self,
        now: Instant,
        peer: Peer,
        request: rsip::Request,
    ) -> Result<TxKey, TxError> {
        if request.method == Method::Ack {
            return Err(TxError::AckIsStateless);
        }
        let via = key::top_via(&request.headers).ok_or(TxError::MissingHeader("Via"))?;
        let branch = via
            .branch
            .as_deref()
            .ok_or(TxError::MissingHeader("Via branch"))?;
        let (cseq, _) = key::cseq(&request.headers).ok_or(TxError::MissingHeader("CSeq"))?;
        let method = request.method;
        let key = key::client_key(branch, method);
        if self.txs.contains_key(&key) {
            return Err(TxError::DuplicateTransaction);
        }

        let invite = method == Method::Invite;
        let state = if invite {
            State::Calling
        } else {
            State::Trying
        };
        let mut tx = Transaction::new(peer, state, self.config.first_interval());
        if invite {
            tx.ack_template = Some(Box::new(AckTemplate::new(&request, &via, cseq)));
        }
        let bytes = serialize(&SipMessage::Request(request));
        self.transmits.push_back(Transmit {
            peer,
            bytes: bytes.clone(),
        });
        tx.last = Some(bytes);
        if !peer.transport.is_reliable() {
            retransmit_after_interval(&mut self.timers, &key, &mut tx, now);
        }
        // Timer B (INVITE) or F (non-INVITE).
        arm(
            &mut self.timers,
            &key,
            &mut tx,
            Slot::Expire,
            now + self.config.timeout(),
        );
        self.txs.insert(key.clone(), tx);
        self.clients_by_peer
            .entry(peer)
            .or_default()
            .insert(key.clone());

        if method == Method::Cancel {
            self.guard_cancelled_invite(now, branch);
        }
        self.prune_timers();
        Ok(key)
    }

    /// §9.1: with no final response 64·T1 after the CANCEL, the INVITE
    /// client transaction is given up (reported as `Timeout`).
    fn guard_cancelled_invite(&mut self, now: Instant, branch: &str) {
        let invite = key::client_key(branch, Method::Invite);
        let Some(tx) = self.txs.get_mut(&invite) else {
            return;
        };
        if tx.state.is_pending() && !tx.cancelled {
            tx.cancelled = true;
            if tx.timers[Slot::Expire as usize].is_none() {
                arm(
                    &mut self.timers,
                    &invite,
                    tx,
                    Slot::Expire,
                    now + self.config.timeout(),
                );
            }
        }
    }

    /// Sends a response on the server transaction `key` (to the address the
    /// request came from).
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        response: rsip::Response,
    ) -> Result<(), TxError> {
        let tx = self
            .txs
            .get_mut(key)
            .filter(|_| key.role() == Role::Server)
            .ok_or(TxError::UnknownTransaction)?;
        let status = response.status_code.code();
        if !(100..700).contains(&status) {
            return Err(TxError::InvalidStatus(status));
        }
        let invite = *key.method() == Method::Invite;
        let allowed = match tx.state {
            State::Trying | State::Proceeding => true,
            // RFC 6026 §8.6: 2xx retransmissions from the TU pass through.
            State::Accepted => (200..300).contains(&status),
            _ => false,
        };
        if !allowed {
            return Err(TxError::InvalidState {
                state: tx.state.name(),
                status,
            });
        }
        let to_tag = key::to_tag(&response.headers).map(Box::<str>::from);
        let bytes = serialize(&SipMessage::Response(response));
        self.transmits.push_back(Transmit {
            peer: tx.peer,
            bytes: bytes.clone(),
        });
        if tx.state == State::Accepted {
            return Ok(());
        }
        tx.trying = None;
        tx.last = Some(bytes);
        let reliable = tx.peer.transport.is_reliable();
        let config = &self.config;
        let mut end = false;
        match (invite, status) {
            (true, 100..=199) => tx.stop(Slot::Retransmit), // no 100 Trying needed
            (true, _) => {
                if status < 300 {
                    tx.state = State::Accepted;
                    if let Some(ack_match) = tx.ack_match.clone() {
                        self.accepted.insert(ack_match, key.clone());
                    }
                } else {
                    tx.state = State::Completed;
                    tx.response_to_tag = to_tag;
                }
                // On unreliable transports either final is retransmitted
                // until the ACK comes (for 3xx-6xx, Timer G); the
                // transaction ends 64·T1 later: Timer L after a 2xx, Timer H
                // after 3xx-6xx.
                tx.interval = config.first_interval();
                tx.stop(Slot::Retransmit);
                if !reliable {
                    retransmit_after_interval(&mut self.timers, key, tx, now);
                }
                let expire = now + config.timeout();
                if !reliable && tx.state == State::Completed {
                    tx.timer_h = Some(expire);
                } else {
                    arm(&mut self.timers, key, tx, Slot::Expire, expire);
                }
            }
            (false, 100..=199) => tx.state = State::Proceeding,
            (false, _) => {
                tx.state = State::Completed;
                // Timer J: 64·T1 on UDP, zero on reliable transports.
                if reliable {
                    end = true;
                } else {
                    let expire = now + config.timeout();
                    arm(&mut self.timers, key, tx, Slot::Expire, expire);
                }
            }
        }
        if end {
            self.terminate(key);
        }
        self.prune_timers();
        Ok(())
    }

    /// Sends a message outside any transaction: the ACK for a 2xx
    /// (§13.2.2.4), or a stateless reply.
    pub fn send_stateless(&mut self, peer: Peer, message: impl Into<SipMessage>) {
        let bytes = serialize(&message.into());
        self.transmits.push_back(Transmit { peer, bytes });
    }

    /// The INVITE server transaction a CANCEL server transaction targets
    /// (§9.2: same branch and sent-by, or the same RFC 2543 fields), if it
    /// is still live.
    pub fn find_invite(&self, cancel: &TxKey) -> Option<TxKey> {
        if cancel.role() != Role::Server || *cancel.method() != Method::Cancel {
            return None;
        }
        let invite = cancel.with_method(Method::Invite);
        self.txs.contains_key(&invite).then_some(invite)
    }

    // ---- outputs ----------------------------------------------------------

    /// The next datagram or stream write for the transport edge.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// When to call [`Transactions::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|entry| entry.at)
    }

    // ---- internals --------------------------------------------------------

    fn on_request(&mut self, now: Instant, peer: Peer, request: rsip::Request) {
        let Some(via) = key::top_via(&request.headers) else {
            debug!(%peer, method = %request.method, "request without a usable Via dropped");
            return;
        };
        let Some((cseq, cseq_method)) = key::cseq(&request.headers) else {
            debug!(%peer, method = %request.method, "request without a usable CSeq dropped");
            return;
        };
        if request.method == Method::Ack {
            self.on_ack(now, peer, request, &via, cseq);
            return;
        }
        if cseq_method != request.method {
            // Still a transaction, keyed by the request line's method, so
            // the TU can answer it 400 (RFC 4475 §3.1.2.17-18).
            debug!(%peer, method = %request.method, %cseq_method, "CSeq method differs");
        }
        let Some(key) = key::server_key(&request, &via, cseq, key::to_tag(&request.headers)) else {
            debug!(%peer, method = %request.method, "request without Call-ID dropped");
            return;
        };

        if let Some(tx) = self.txs.get(&key) {
            // A retransmission: resend the last response where one is due.
            let resend = match tx.state {
                State::Proceeding | State::Completed => tx.last.clone(),
                // Trying: nothing sent yet. Confirmed/Accepted: absorbed
                // (RFC 6026 §8.7: the 2xx is retransmitted by its timer).
                _ => None,
            };
            if let Some(bytes) = resend {
                self.transmits.push_back(Transmit {
                    peer: tx.peer,
                    bytes,
                });
            }
            return;
        }

        let invite = request.method == Method::Invite;
        let state = if invite {
            State::Proceeding
        } else {
            State::Trying
        };
        let mut tx = Transaction::new(peer, state, self.config.first_interval());
        if invite {
            tx.ack_match = key::call_id(&request.headers).map(|id| (id.into(), cseq));
            if let Some(delay) = self.config.trying_after {
                let trying = serialize(&SipMessage::Response(trying_for(&request)));
                if delay.is_zero() {
                    self.transmits.push_back(Transmit {
                        peer,
                        bytes: trying.clone(),
                    });
                    tx.last = Some(trying);
                } else {
                    tx.trying = Some(trying);
                    arm(
                        &mut self.timers,
                        &key,
                        &mut tx,
                        Slot::Retransmit,
                        now + delay,
                    );
                }
            }
        }
        self.txs.insert(key.clone(), tx);
        self.events
            .push_back(TxEvent::Request { key, peer, request });
    }

    fn on_ack(
        &mut self,
        now: Instant,
        peer: Peer,
        request: rsip::Request,
        via: &TopVia,
        cseq: u32,
    ) {
        let matched = if via.rfc3261_branch().is_some() {
            key::server_key(&request, via, cseq, None).filter(|k| self.txs.contains_key(k))
        } else {
            // RFC 2543 (§17.2.3): the ACK's To tag is the one our response
            // added; a re-INVITE already carried it in its request.
            let ack_to_tag = key::to_tag(&request.headers);
            key::server_key(&request, via, cseq, ack_to_tag)
                .filter(|k| self.txs.contains_key(k))
                .or_else(|| {
                    key::server_key(&request, via, cseq, None).filter(|k| {
                        self.txs
                            .get(k)
                            .is_some_and(|tx| tx.response_to_tag.as_deref() == ack_to_tag)
                    })
                })
        };
        // The ACK for a 2xx has its own branch: match Call-ID + CSeq number.
        let matched = matched.or_else(|| {
            let call_id = key::call_id(&request.headers)?;
            self.accepted.get(&(call_id.into(), cseq)).cloned()
        });
        let Some((key, tx)) = matched.and_then(|k| self.txs.get_mut(&k).map(|tx| (k, tx))) else {
            self.events.push_back(TxEvent::Ack { peer, request });
            return;
        };
        match tx.state {
            State::Completed => {
                tx.state = State::Confirmed;
                tx.stop(Slot::Retransmit); // Timer G
                tx.timer_h = None;
                // Timer I: T4 on UDP, zero on reliable transports.
                if tx.peer.transport.is_reliable() {
                    self.terminate(&key);
                } else {
                    arm(
                        &mut self.timers,
                        &key,
                        tx,
                        Slot::Expire,
                        now + self.config.t4,
                    );
                }
            }
            State::Accepted => {
                tx.acked = true;
                tx.stop(Slot::Retransmit);
                self.events.push_back(TxEvent::Ack { peer, request });
            }
            State::Confirmed => {} // retransmitted ACK absorbed
            _ => debug!(%peer, "ACK before any final response dropped"),
        }
    }

    fn on_response(&mut self, now: Instant, response: rsip::Response) {
        let status = response.status_code.code();
        let Some(via) = key::top_via(&response.headers) else {
            debug!(status, "response without a usable Via dropped");
            return;
        };
        let Some((_, method)) = key::cseq(&response.headers) else {
            debug!(status, "response without a usable CSeq dropped");
            return;
        };
        let Some(branch) = via.branch.as_deref() else {
            debug!(
                status,
                "response without a branch matches no transaction; dropped"
            );
            return;
        };
        let key = key::client_key(branch, method);
        let Some(tx) = self.txs.get_mut(&key) else {
            debug!(status, %method, "response matches no client transaction; dropped");
            return;
        };
        if !(100..700).contains(&status) {
            debug!(status, "response with an invalid status code dropped");
            return;
        }
        let config = &self.config;
        let reliable = tx.peer.transport.is_reliable();
        let provisional = status < 200;
        let mut end = false;
        let mut deliver = true;
        match (method == Method::Invite, tx.state) {
            (true, State::Calling | State::Proceeding) if provisional => {
                if tx.state == State::Calling {
                    tx.state = State::Proceeding;
                    tx.stop(Slot::Retransmit); // Timer A
                    if !tx.cancelled {
                        tx.stop(Slot::Expire); // Timer B
                    }
                }
            }
            (true, State::Calling | State::Proceeding) if status < 300 => {
                tx.state = State::Accepted;
                tx.ack_template = None;
                tx.stop(Slot::Retransmit);
                // Timer M.
                arm(
                    &mut self.timers,
                    &key,
                    tx,
                    Slot::Expire,
                    now + config.timeout(),
                );
            }
            (true, State::Calling | State::Proceeding) => {
                tx.state = State::Completed;
                tx.stop(Slot::Retransmit);
                if let Some(template) = tx.ack_template.take() {
                    let ack = serialize(&SipMessage::Request(template.ack_for(&response)));
                    self.transmits.push_back(Transmit {
                        peer: tx.peer,
                        bytes: ack.clone(),
                    });
                    tx.ack = Some(ack);
                }
                // Timer D: 32 s on UDP, zero on reliable transports.
                if reliable {
                    end = true;
                } else {
                    arm(
                        &mut self.timers,
                        &key,
                        tx,
                        Slot::Expire,
                        now + config.timer_d,
                    );
                }
            }
            // RFC 6026: every 2xx (other forks, retransmissions) to the TU.
            (true, State::Accepted) => deliver = (200..300).contains(&status),
            (true, State::Completed) => {
                deliver = false;
                if status >= 300
                    && let Some(ack) = tx.ack.clone()
                {
                    self.transmits.push_back(Transmit {
                        peer: tx.peer,
                        bytes: ack,
                    });
                }
            }
            (false, State::Trying | State::Proceeding) if provisional => {
                tx.state = State::Proceeding;
            }
            (false, State::Trying | State::Proceeding) => {
                tx.state = State::Completed;
                tx.stop(Slot::Retransmit); // Timer E
                // Timer K: T4 on UDP, zero on reliable transports.
                if reliable {
                    end = true;
                } else {
                    arm(&mut self.timers, &key, tx, Slot::Expire, now + config.t4);
                }
            }
            _ => deliver = false,
        }
        if deliver {
            self.events.push_back(TxEvent::Response {
                key: key.clone(),
                response,
            });
        }
        if end {
            self.terminate(&key);
        }
    }

    /// A timer of `key` fired at `now` (its slot is already cleared).
    fn fire(&mut self, now: Instant, key: &TxKey, slot: Slot) {
        let config = &self.config;
        let Some(tx) = self.txs.get_mut(key) else {
            return;
        };
        let invite = *key.method() == Method::Invite;
        let capped =
            |interval: Duration| (interval * 2).min(config.t2).max(config.first_interval());
        let mut resend = None;
        let mut end = false;
        match (key.role(), invite, slot, tx.state) {
            // Timer A: doubles without cap until Timer B.
            (Role::Client, true, Slot::Retransmit, State::Calling) => {
                resend = tx.last.clone();
                tx.interval *= 2;
                retransmit_after_interval(&mut self.timers, key, tx, now);
            }
            // Timer E: doubles up to T2; T2 once Proceeding.
            (Role::Client, false, Slot::Retransmit, State::Trying | State::Proceeding) => {
                resend = tx.last.clone();
                tx.interval = if tx.state == State::Proceeding {
                    config.t2.max(config.first_interval())
                } else {
                    capped(tx.interval)
                };
                retransmit_after_interval(&mut self.timers, key, tx, now);
            }
            // Timer B, Timer F, or the §9.1 CANCEL guard.
            (Role::Client, _, Slot::Expire, state) if state.is_pending() => {
                self.events.push_back(TxEvent::Timeout { key: key.clone() });
                end = true;
            }
            // The TU was slow: send 100 Trying (§17.2.1).
            (Role::Server, true, Slot::Retransmit, State::Proceeding) => {
                if let Some(trying) = tx.trying.take() {
                    resend = Some(trying.clone());
                    tx.last = Some(trying);
                }
            }
            // Timer G, and the 2xx retransmission of the Accepted state.
            (Role::Server, true, Slot::Retransmit, State::Completed | State::Accepted)
                if !tx.acked =>
            {
                resend = tx.last.clone();
                tx.interval = capped(tx.interval);
                retransmit_after_interval(&mut self.timers, key, tx, now);
                if let Some(at) = tx.timer_h.take() {
                    arm(&mut self.timers, key, tx, Slot::Expire, at);
                }
            }
            // Timer H, or Timer L without an ACK.
            (Role::Server, true, Slot::Expire, State::Completed | State::Accepted) => {
                if !tx.acked {
                    self.events.push_back(TxEvent::NoAck { key: key.clone() });
                }
                end = true;
            }
            // Timers D, K, M (client) and I, J (server).
            (_, _, Slot::Expire, _) => end = true,
            _ => {}
        }
        if let Some(bytes) = resend {
            self.transmits.push_back(Transmit {
                peer: tx.peer,
                bytes,
            });
        }
        if end {
            self.terminate(key);
        }
    }

    fn terminate(&mut self, key: &TxKey) {
        let Some(tx) = self.txs.remove(key) else {
            return;
        };
        if key.role() == Role::Client
            && let Some(keys) = self.clients_by_peer.get_mut(&tx.peer)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.clients_by_peer.remove(&tx.peer);
            }
        }
        if let Some(ack_match) = tx.ack_match
            && self.accepted.get(&ack_match) == Some(key)
        {
            self.accepted.remove(&ack_match);
        }
        self.events
            .push_back(TxEvent::Terminated { key: key.clone() });
    }

    /// Drops lazily deleted entries from the top of the timer heap, so
    /// `poll_timeout` reports a live deadline.
    fn prune_timers(&mut self) {
        while let Some(entry) = self.timers.peek() {
            let live = self
                .txs
                .get(&entry.key)
                .is_some_and(|tx| tx.timers[entry.slot as usize] == Some(entry.seq));
            if live {
                break;
            }
            self.timers.pop();
        }
    }
}
