//! The clients' gateway: a SIP user agent that places and takes calls on
//! behalf of browser and app clients, so that a client's call is a SIP
//! call of the endpoint like any other (handlers, dial forks, queues,
//! conferences, recordings and CDRs need nothing new). Sans-IO, like the
//! endpoint: time comes in as `now`, datagrams go out through
//! [`Gateway::poll_transmit`], what the clients must hear through
//! [`Gateway::poll_event`].
//!
//! ```text
//!  client invite ─► place() ─INVITE (X-Switchyard-Tenant/-Client/-Handler/-To)─► endpoint
//!                   Ringing ◄─ 18x ─┘ Connected ◄─ 2xx (ACKed) ─┘ Ended ◄─ 3xx-6xx/timeout
//!  endpoint dial fork ─INVITE sip:DV7@gateway─► Incoming (180 sent) ─► accept() ─► 200 + SDP
//!                                                                    └► reject() ─► 603
//!  hangup() ─► BYE (up) / CANCEL (ringing out) / 603 (ringing in);  dtmf() ─► INFO per digit
//!  endpoint BYE / CANCEL ─► Ended
//! ```
//!
//! Only the endpoint (and, for regional gateways, the runtimes in
//! `trusted`) may ring clients: an INVITE from anyone else gets 403. The
//! endpoint in turn believes the X-Switchyard-* headers of INVITEs only
//! from this gateway's address, so a client's tenant, identity and
//! handler come from its checked token, never from the wire.
//!
//! Media never passes through here: the edge relays each call's WebRTC
//! audio to the RTP address the SDP names ([`GatewayEvent::Connected`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::endpoint::dial::cancel_for;
use crate::endpoint::dialog::Dialog;
use crate::endpoint::wire::{self, Ids, Local, RequestText};
use crate::message;
use crate::sdp::{self, Negotiated};
use crate::transaction::{TimerConfig, Transactions, TxEvent, TxKey};
use crate::{Peer, Rng, Transmit, Transport};

/// Headers the endpoint believes only from the gateway.
pub const TENANT_HEADER: &str = "X-Switchyard-Tenant";
pub const CLIENT_HEADER: &str = "X-Switchyard-Client";
pub const HANDLER_HEADER: &str = "X-Switchyard-Handler";
pub const TO_HEADER: &str = "X-Switchyard-To";
/// On a call ringing a client: the label its caller's screening gave
/// ("verified", "unverified", "likely-spoofed"), shown on the device.
pub const LABEL_HEADER: &str = "X-Switchyard-Label";

/// Where a tenant's clients can be rung: the presence registry answers it
/// for the endpoint (`dial client:alice`).
pub trait ClientLocator: Send + Sync {
    /// The devices of `identity` to ring now (Request-URI and next hop of
    /// each), or why none can be.
    fn ring(&self, tenant: &str, identity: &str) -> Result<Vec<(String, Peer)>, Unreachable>;
}

/// Why `dial client:…` rang nobody; the handler hears `status`, the
/// decision log the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub status: switchyard_contract::DialStatus,
    pub reason: String,
}

/// The gateway's name for one client call.
pub type CallKey = u64;

/// A call a client places: who it is (from its token) and what it dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub tenant: String,
    pub identity: String,
    /// The handler of the token's grant.
    pub handler: String,
    /// The grant's parameters, as X- headers the handler sees.
    pub params: Vec<(String, String)>,
    /// What the client dialled (handed to the handler as `to`).
    pub to: String,
    /// Where the edge takes the call's RTP.
    pub rtp: SocketAddr,
}

/// Why a client call ended, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Hangup,
    Busy,
    NoAnswer,
    Rejected,
    Cancelled,
    Failed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Busy => "busy",
            EndReason::NoAnswer => "no-answer",
            EndReason::Rejected => "rejected",
            EndReason::Cancelled => "cancelled",
            EndReason::Failed => "failed",
        }
    }

    fn of_status(status: u16) -> Self {
        match status {
            486 | 600 => EndReason::Busy,
            408 | 480 => EndReason::NoAnswer,
            603 => EndReason::Rejected,
            487 => EndReason::Cancelled,
            _ => EndReason::Failed,
        }
    }
}

/// What the edge must do or tell a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// The far end rings (an outgoing call).
    Ringing(CallKey),
    /// The call is up (or its media changed): relay RTP with `remote`.
    Connected { call: CallKey, remote: Negotiated },
    /// A call for device `device` (the Request-URI user): tell the client.
    /// `local`: from this runtime's endpoint, not a peer region's.
    Incoming {
        call: CallKey,
        device: String,
        from: String,
        local: bool,
        /// The caller's screening label ([`LABEL_HEADER`]).
        label: Option<String>,
    },
    /// The call is over; the gateway forgot it.
    Ended {
        call: CallKey,
        reason: EndReason,
        status: Option<u16>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Our INVITE is out; `provisional` once a 1xx came (CANCEL allowed).
    Calling {
        provisional: bool,
        cancel: bool,
    },
    /// Their INVITE rings the client.
    RingingIn,
    Up,
}

struct GwCall {
    state: State,
    /// Our INVITE's transaction (outgoing) or theirs (incoming).
    invite: TxKey,
    invite_request: rsip::Request,
    dialog: Option<Dialog>,
    rtp: Option<SocketAddr>,
    /// Their SDP offer (incoming).
    offer: Vec<u8>,
    /// Our SDP's o= session id and version (+1 on every new SDP of ours,
    /// RFC 3264 §8).
    session: u64,
    version: u64,
}

pub struct Gateway {
    local: Local,
    endpoint: Peer,
    trusted: Vec<SocketAddr>,
    tx: Transactions,
    ids: Ids,
    calls: HashMap<CallKey, GwCall>,
    /// Transactions (ours and theirs) → the call they belong to.
    keys: HashMap<TxKey, CallKey>,
    /// Call-ID → call, for in-dialog requests.
    dialogs: HashMap<String, CallKey>,
    next: CallKey,
    events: VecDeque<GatewayEvent>,
}

impl Gateway {
    /// A gateway on UDP `local` placing calls into the endpoint at
    /// `endpoint`; INVITEs are taken from the endpoint and `trusted`.
    pub fn new(
        local: SocketAddr,
        endpoint: SocketAddr,
        trusted: Vec<SocketAddr>,
        rng: Rng,
    ) -> Self {
        Self {
            local: Local {
                addrs: vec![(Transport::Udp, local)],
                user_agent: format!("Switchyard-gateway/{}", env!("CARGO_PKG_VERSION")),
            },
            endpoint: Peer::new(Transport::Udp, endpoint),
            trusted,
            tx: Transactions::new(TimerConfig::default()),
            ids: Ids::new(rng),
            calls: HashMap::new(),
            keys: HashMap::new(),
            dialogs: HashMap::new(),
            next: 1,
            events: VecDeque::new(),
        }
    }

    /// Takes INVITEs from `endpoint` too (another region's runtime).
    pub fn trust(&mut self, endpoint: SocketAddr) {
        if !self.trusted.contains(&endpoint) {
            self.trusted.push(endpoint);
        }
    }

    /// The SIP URI a device is rung at (a dial fork's Request-URI).
    pub fn device_uri(&self, device: &str) -> String {
        format!("sip:{device}@{}", self.local.addr(Transport::Udp))
    }

    pub fn addr(&self) -> SocketAddr {
        self.local.addr(Transport::Udp)
    }

    /// Places a client's call: an INVITE to the endpoint offering the
    /// edge's RTP address.
    pub fn place(&mut self, now: Instant, placement: &Placement) -> Result<CallKey, String> {
        let values = [
            &placement.tenant,
            &placement.identity,
            &placement.handler,
            &placement.to,
        ];
        let params = placement.params.iter().flat_map(|(n, v)| [n, v]);
        if let Some(bad) = values.into_iter().chain(params).find(|v| !header_safe(v)) {
            return Err(format!(
                "{bad:?} cannot go into a SIP header (control characters)"
            ));
        }
        let key = self.next;
        self.next += 1;
        let local_addr = self.addr();
        let endpoint = self.endpoint.addr;
        let session = self.ids.session();
        let offer = sdp::offer(placement.rtp, session, 1, sdp::Direction::SendRecv);
        let call_id = format!("{}@gateway", self.ids.token());
        let tag = self.ids.token();
        let local = format!(
            "<sip:{}@client.invalid>;tag={tag}",
            uri_user(&placement.identity)
        );
        let mut text = RequestText::new("INVITE", &format!("sip:client@{endpoint}"))
            .header("Via", self.local.via(Transport::Udp, &self.ids.branch()))
            .header("Max-Forwards", 70)
            .header("From", &local)
            .header("To", format!("<sip:client@{endpoint}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", format!("<sip:gateway@{local_addr}>"))
            .header(TENANT_HEADER, &placement.tenant)
            .header(CLIENT_HEADER, &placement.identity)
            .header(HANDLER_HEADER, &placement.handler)
            .header(TO_HEADER, &placement.to)
            .header("User-Agent", &self.local.user_agent);
        for (name, value) in &placement.params {
            text = text.header(name, value);
        }
        let invite = text.build(Some("application/sdp"), offer.as_bytes())?;
        let tx = self.tx.send_request(now, self.endpoint, invite.clone());
        self.keys.insert(tx.clone(), key);
        self.dialogs.insert(call_id.clone(), key);
        self.calls.insert(
            key,
            GwCall {
                state: State::Calling {
                    provisional: false,
                    cancel: false,
                },
                invite: tx,
                invite_request: invite,
                dialog: Some(Dialog {
                    call_id,
                    local,
                    remote: format!("<sip:client@{endpoint}>"),
                    remote_target: format!("sip:client@{endpoint}"),
                    route_set: Vec::new(),
                    local_cseq: 1,
                    peer: self.endpoint,
                }),
                rtp: Some(placement.rtp),
                offer: Vec::new(),
                session,
                version: 1,
            },
        );
        Ok(key)
    }

    /// The client took an incoming call; its RTP is relayed at `rtp`.
    pub fn accept(&mut self, now: Instant, key: CallKey, rtp: SocketAddr) -> Result<(), String> {
        let call = self.calls.get_mut(&key).ok_or("no such call")?;
        if call.state != State::RingingIn {
            return Err("the call is not ringing".into());
        }
        call.version += 1;
        let (answer, remote) = match sdp::answer(&call.offer, rtp, call.session, call.version) {
            Ok(answered) => answered,
            Err(e) => {
                let reason = format!("Not Acceptable Here ({e})");
                self.end_incoming(now, key, 488, &reason, EndReason::Failed);
                return Err(format!("the caller's media cannot be bridged: {e}"));
            }
        };
        let tag = call
            .dialog
            .as_ref()
            .map(|d| d.local.clone())
            .unwrap_or_default();
        let mut ok = message::response(&call.invite_request, 200, "OK", Some(tag_of(&tag)));
        let contact = format!("<sip:gateway@{}>", self.local.addr(Transport::Udp));
        ok.headers
            .push(rsip::Header::Contact(rsip::headers::Contact::from(contact)));
        wire::set_body(&mut ok.headers, "application/sdp", answer.as_bytes());
        ok.body = answer.into_bytes();
        call.state = State::Up;
        call.rtp = Some(rtp);
        let invite = call.invite.clone();
        if let Err(e) = self.tx.send_response(now, &invite, ok) {
            self.forget(key);
            return Err(format!("the caller is gone: {e}"));
        }
        self.events
            .push_back(GatewayEvent::Connected { call: key, remote });
        Ok(())
    }

    /// The client declined an incoming call.
    pub fn reject(&mut self, now: Instant, key: CallKey) {
        self.end_incoming(now, key, 603, "Decline", EndReason::Rejected);
    }

    /// The client hangs up (or goes away): BYE, CANCEL or 603 as the call
    /// stands. No `Ended` follows for it.
    pub fn hangup(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        match call.state {
            State::Up => {
                if let Some(dialog) = call.dialog.as_mut() {
                    match dialog
                        .request(&mut self.ids, &self.local, "BYE")
                        .build(None, b"")
                    {
                        Ok(bye) => {
                            self.tx.send_request(now, dialog.peer, bye);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot build a BYE"),
                    }
                }
                self.forget(key);
            }
            State::Calling { provisional, .. } => {
                if provisional {
                    self.cancel(now, key);
                } else {
                    // CANCEL waits for a provisional response (§9.1).
                    call.state = State::Calling {
                        provisional,
                        cancel: true,
                    };
                }
            }
            State::RingingIn => {
                self.refuse(now, key, 603, "Decline");
                self.forget(key);
            }
        }
    }

    /// Sends `digits` as SIP INFO (application/dtmf-relay), one per digit.
    pub fn dtmf(&mut self, now: Instant, key: CallKey, digits: &str) -> Result<(), String> {
        let call = self.calls.get_mut(&key).ok_or("no such call")?;
        if call.state != State::Up {
            return Err("the call is not answered yet".into());
        }
        let dialog = call.dialog.as_mut().ok_or("no dialog")?;
        for digit in digits.chars() {
            let body = format!("Signal={digit}\r\nDuration=160\r\n");
            let info = dialog
                .request(&mut self.ids, &self.local, "INFO")
                .build(Some("application/dtmf-relay"), body.as_bytes())?;
            self.tx.send_request(now, dialog.peer, info);
        }
        Ok(())
    }

    /// A datagram from the network.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(message::Inbound::Message(inbound)) =
            message::parse_datagram(bytes, &message::Limits::default())
        else {
            return;
        };
        self.tx
            .handle_message(now, Peer::new(Transport::Udp, from), inbound);
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.drain(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tx.poll_timeout()
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    fn drain(&mut self, now: Instant) {
        while let Some(event) = self.tx.poll_event() {
            match event {
                TxEvent::Response { key, response } => self.on_response(now, &key, response),
                TxEvent::Request { key, peer, request } => self.on_request(now, key, peer, request),
                TxEvent::Timeout { key } => {
                    if let Some(&call) = self.keys.get(&key)
                        && self.calls.get(&call).is_some_and(|c| c.invite == key)
                    {
                        self.end(call, EndReason::Failed, Some(408));
                    }
                }
                TxEvent::Terminated { key } => {
                    self.keys.remove(&key);
                }
                TxEvent::Ack { .. } | TxEvent::NoAck { .. } => {}
            }
        }
    }

    fn on_response(&mut self, now: Instant, tx: &TxKey, response: rsip::Response) {
        let Some(&key) = self.keys.get(tx) else {
            return;
        };
        let status = response.status_code.code();
        let Some(call) = self.calls.get_mut(&key) else {
            // A 2xx after we gave up (a CANCEL crossed it): ACK and BYE.
            if (200..300).contains(&status) {
                self.ack_and_bye(now, &response);
            }
            return;
        };
        if call.invite != *tx {
            return; // BYE, INFO, CANCEL: nothing to do with the answer
        }
        let State::Calling {
            provisional,
            cancel,
        } = call.state
        else {
            return; // a retransmitted 2xx: the ACK went with the first
        };
        match status {
            100 => {}
            101..=199 => {
                if !provisional {
                    call.state = State::Calling {
                        provisional: true,
                        cancel,
                    };
                    if cancel {
                        return self.cancel(now, key);
                    }
                    if status == 180 || status == 183 {
                        self.events.push_back(GatewayEvent::Ringing(key));
                    }
                }
            }
            200..=299 => {
                let Some(dialog) = call.dialog.as_mut() else {
                    return;
                };
                dialog.remote = wire::header_value(&response.headers, "To").unwrap_or_default();
                if let Some(target) = wire::contact_uri(&response) {
                    dialog.remote_target = target;
                }
                if let Ok(ack) = dialog.ack(&mut self.ids, &self.local, 1).build(None, b"") {
                    self.tx.send_stateless(dialog.peer, ack);
                }
                call.state = State::Up;
                if cancel {
                    return self.hangup(now, key);
                }
                let body = wire::sdp_body(&response.headers, &response.body).unwrap_or_default();
                match sdp::parse_answer(&body) {
                    Ok(remote) => self
                        .events
                        .push_back(GatewayEvent::Connected { call: key, remote }),
                    Err(e) => {
                        tracing::warn!(error = %e, "the runtime's answer has no usable audio");
                        self.hangup(now, key);
                        self.end(key, EndReason::Failed, Some(status));
                    }
                }
            }
            _ => self.end(key, EndReason::of_status(status), Some(status)),
        }
    }

    fn on_request(&mut self, now: Instant, key: TxKey, peer: Peer, request: rsip::Request) {
        let call_id = wire::call_id(&request).unwrap_or_default();
        let known = self.dialogs.get(&call_id).copied();
        let reply = |gw: &mut Self, status: u16, reason: &str| {
            let response = message::response(&request, status, reason, None);
            let _ = gw.tx.send_response(now, &key, response);
        };
        match (&request.method, known) {
            (rsip::Method::Invite, None) => self.on_invite(now, key, peer, request),
            (rsip::Method::Invite, Some(call)) => self.on_reinvite(now, key, call, &request),
            (rsip::Method::Bye, Some(call)) => {
                reply(self, 200, "OK");
                self.end(call, EndReason::Hangup, None);
            }
            (rsip::Method::Cancel, _) => {
                reply(self, 200, "OK");
                let invite = self.tx.find_invite(&key);
                let call = invite.as_ref().and_then(|k| self.keys.get(k)).copied();
                if let Some(call) = call
                    && self
                        .calls
                        .get(&call)
                        .is_some_and(|c| c.state == State::RingingIn)
                {
                    self.end_incoming(now, call, 487, "Request Terminated", EndReason::Cancelled);
                }
            }
            (rsip::Method::Ack, _) => {}
            (_, Some(_)) | (rsip::Method::Options, None) => reply(self, 200, "OK"),
            (_, None) => reply(self, 481, "Call/Transaction Does Not Exist"),
        }
    }

    fn on_invite(&mut self, now: Instant, tx: TxKey, peer: Peer, request: rsip::Request) {
        let reply = |gw: &mut Self, status: u16, reason: &str| {
            let response = message::response(&request, status, reason, None);
            let _ = gw.tx.send_response(now, &tx, response);
        };
        if peer.addr != self.endpoint.addr && !self.trusted.contains(&peer.addr) {
            return reply(self, 403, "Forbidden (only the runtime rings clients)");
        }
        let Some(offer) = wire::sdp_body(&request.headers, &request.body) else {
            return reply(self, 488, "Not Acceptable Here (an offer is needed)");
        };
        let Some(device) = request.uri.user().map(str::to_string) else {
            return reply(self, 404, "Not Found");
        };
        let call_id = wire::call_id(&request).unwrap_or_default();
        let key = self.next;
        self.next += 1;
        let tag = self.ids.token();
        let to = wire::header_value(&request.headers, "To").unwrap_or_default();
        let dialog = Dialog {
            call_id: call_id.clone(),
            local: format!("{to};tag={tag}"),
            remote: wire::header_value(&request.headers, "From").unwrap_or_default(),
            remote_target: wire::contact_uri(&request)
                .unwrap_or_else(|| format!("sip:{}", peer.addr)),
            route_set: wire::record_routes(&request.headers),
            local_cseq: 0,
            peer,
        };
        let from = message::from_uri(&request)
            .and_then(|u| rsip::Uri::try_from(u).ok())
            .and_then(|u| u.user().map(str::to_string))
            .unwrap_or_else(|| "anonymous".into());
        let label = wire::header_value(&request.headers, LABEL_HEADER);
        let ringing = message::response(&request, 180, "Ringing", Some(&tag));
        let _ = self.tx.send_response(now, &tx, ringing);
        self.keys.insert(tx.clone(), key);
        self.dialogs.insert(call_id, key);
        self.calls.insert(
            key,
            GwCall {
                state: State::RingingIn,
                invite: tx,
                invite_request: request,
                dialog: Some(dialog),
                rtp: None,
                offer,
                session: self.ids.session(),
                version: 0,
            },
        );
        self.events.push_back(GatewayEvent::Incoming {
            call: key,
            device,
            from,
            local: peer.addr == self.endpoint.addr,
            label,
        });
    }

    /// A new offer in the dialog (the endpoint re-anchors media): answered
    /// from the same RTP address; the edge relays to the new remote.
    fn on_reinvite(&mut self, now: Instant, tx: TxKey, key: CallKey, request: &rsip::Request) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let (Some(rtp), Some(offer)) = (call.rtp, wire::sdp_body(&request.headers, &request.body))
        else {
            let response = message::response(request, 488, "Not Acceptable Here", None);
            let _ = self.tx.send_response(now, &tx, response);
            return;
        };
        call.version += 1;
        match sdp::answer(&offer, rtp, call.session, call.version) {
            Ok((answer, remote)) => {
                let mut ok = message::response(request, 200, "OK", None);
                wire::set_body(&mut ok.headers, "application/sdp", answer.as_bytes());
                ok.body = answer.into_bytes();
                let _ = self.tx.send_response(now, &tx, ok);
                self.events
                    .push_back(GatewayEvent::Connected { call: key, remote });
            }
            Err(e) => {
                let reason = format!("Not Acceptable Here ({e})");
                let response = message::response(request, 488, &reason, None);
                let _ = self.tx.send_response(now, &tx, response);
            }
        }
    }

    fn cancel(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if let Some(cancel) = cancel_for(&call.invite_request) {
            self.tx.send_request(now, self.endpoint, cancel);
        }
        self.forget(key);
    }

    /// A 2xx for a call we no longer have.
    fn ack_and_bye(&mut self, now: Instant, response: &rsip::Response) {
        let remote = wire::header_value(&response.headers, "To").unwrap_or_default();
        let local = wire::header_value(&response.headers, "From").unwrap_or_default();
        let mut dialog = Dialog {
            call_id: wire::call_id(response).unwrap_or_default(),
            local,
            remote,
            remote_target: wire::contact_uri(response)
                .unwrap_or_else(|| format!("sip:client@{}", self.endpoint.addr)),
            route_set: Vec::new(),
            local_cseq: 1,
            peer: self.endpoint,
        };
        if let Ok(ack) = dialog.ack(&mut self.ids, &self.local, 1).build(None, b"") {
            self.tx.send_stateless(self.endpoint, ack);
        }
        if let Ok(bye) = dialog
            .request(&mut self.ids, &self.local, "BYE")
            .build(None, b"")
        {
            self.tx.send_request(now, self.endpoint, bye);
        }
    }

    /// Ends a ringing incoming call with `status` and tells the edge why.
    fn end_incoming(
        &mut self,
        now: Instant,
        key: CallKey,
        status: u16,
        reason: &str,
        why: EndReason,
    ) {
        self.refuse(now, key, status, reason);
        self.end(key, why, Some(status));
    }

    /// The final response to an incoming call's INVITE.
    fn refuse(&mut self, now: Instant, key: CallKey, status: u16, reason: &str) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let tag = call.dialog.as_ref().map(|d| tag_of(&d.local).to_string());
        let response = message::response(&call.invite_request, status, reason, tag.as_deref());
        let invite = call.invite.clone();
        let _ = self.tx.send_response(now, &invite, response);
    }

    fn end(&mut self, key: CallKey, reason: EndReason, status: Option<u16>) {
        if self.forget(key) {
            self.events.push_back(GatewayEvent::Ended {
                call: key,
                reason,
                status,
            });
        }
    }

    fn forget(&mut self, key: CallKey) -> bool {
        let Some(call) = self.calls.remove(&key) else {
            return false;
        };
        if let Some(dialog) = &call.dialog {
            self.dialogs.remove(&dialog.call_id);
        }
        true
    }
}

/// Whether `value` can be a SIP header value as it is: no control
/// characters (CR/LF would start a header of its own), at most 1 KiB.
fn header_safe(value: &str) -> bool {
    value.len() <= 1024 && !value.chars().any(char::is_control)
}

/// The tag parameter of a name-addr we built (`…;tag=abc`).
fn tag_of(value: &str) -> &str {
    value.rsplit_once(";tag=").map_or("", |(_, tag)| tag)
}

/// A client identity as the user part of a SIP URI: unreserved characters
/// pass, everything else is percent-encoded (RFC 3261 §25.1).
fn uri_user(identity: &str) -> String {
    identity
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const GATEWAY: &str = "127.0.0.1:5070";
    const ENDPOINT: &str = "127.0.0.1:5060";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn gateway() -> Gateway {
        let rng = Rng::seed_from_u64(7);
        Gateway::new(
            addr(GATEWAY),
            addr(ENDPOINT),
            vec![addr("127.0.0.1:6060")],
            rng,
        )
    }

    /// Every datagram the gateway wants sent, parsed.
    fn sent(gw: &mut Gateway) -> Vec<(SocketAddr, rsip::SipMessage)> {
        std::iter::from_fn(|| gw.poll_transmit())
            .map(|t| {
                (
                    t.peer.addr,
                    rsip::SipMessage::try_from(t.bytes.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn events(gw: &mut Gateway) -> Vec<GatewayEvent> {
        std::iter::from_fn(|| gw.poll_event()).collect()
    }

    fn deliver(gw: &mut Gateway, now: Instant, from: &str, message: impl Into<rsip::SipMessage>) {
        let bytes = message.into().to_string();
        gw.handle_datagram(now, addr(from), bytes.as_bytes());
    }

    fn with_sdp(mut response: rsip::Response, sdp: &str) -> rsip::Response {
        wire::set_body(&mut response.headers, "application/sdp", sdp.as_bytes());
        response.body = sdp.as_bytes().to_vec();
        response
    }

    fn request(message: &rsip::SipMessage) -> rsip::Request {
        match message {
            rsip::SipMessage::Request(r) => r.clone(),
            rsip::SipMessage::Response(r) => panic!("a response: {r}"),
        }
    }

    fn status(message: &rsip::SipMessage) -> u16 {
        match message {
            rsip::SipMessage::Response(r) => r.status_code.code(),
            rsip::SipMessage::Request(r) => panic!("a request: {r}"),
        }
    }

    fn placement(to: &str) -> Placement {
        Placement {
            tenant: "acme".into(),
            identity: "alice".into(),
            handler: "ivr".into(),
            params: vec![("X-Plan".into(), "gold".into())],
            to: to.into(),
            rtp: addr("127.0.0.1:40000"),
        }
    }

    fn endpoint_sdp(port: u16) -> String {
        sdp::offer(
            addr(&format!("127.0.0.1:{port}")),
            1,
            1,
            sdp::Direction::SendRecv,
        )
    }

    #[test]
    fn a_placed_call_rings_is_answered_and_hung_up_by_the_far_end() {
        let now = Instant::now();
        let mut gw = gateway();
        let call = gw.place(now, &placement("client:bob")).unwrap();
        let out = sent(&mut gw);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, addr(ENDPOINT));
        let invite = request(&out[0].1);
        let header = |name| wire::header_value(&invite.headers, name);
        assert_eq!(header(TENANT_HEADER).as_deref(), Some("acme"));
        assert_eq!(header(CLIENT_HEADER).as_deref(), Some("alice"));
        assert_eq!(header(HANDLER_HEADER).as_deref(), Some("ivr"));
        assert_eq!(header(TO_HEADER).as_deref(), Some("client:bob"));
        assert_eq!(header("X-Plan").as_deref(), Some("gold"));
        let offer = sdp::answer(&invite.body, addr("127.0.0.1:30000"), 1, 1)
            .unwrap()
            .1;
        assert_eq!(offer.remote, Some(addr("127.0.0.1:40000")));

        deliver(
            &mut gw,
            now,
            ENDPOINT,
            message::response(&invite, 180, "Ringing", Some("ep")),
        );
        assert_eq!(events(&mut gw), vec![GatewayEvent::Ringing(call)]);
        let ok = with_sdp(
            message::response(&invite, 200, "OK", Some("ep")),
            &endpoint_sdp(30000),
        );
        deliver(&mut gw, now, ENDPOINT, ok);
        let ack = sent(&mut gw);
        assert_eq!(request(&ack[0].1).method, rsip::Method::Ack);
        match events(&mut gw).as_slice() {
            [GatewayEvent::Connected { call: c, remote }] => {
                assert_eq!(*c, call);
                assert_eq!(remote.remote, Some(addr("127.0.0.1:30000")));
            }
            other => panic!("{other:?}"),
        }

        // The endpoint's BYE, in the dialog the 200 made.
        let bye = RequestText::new("BYE", &format!("sip:gateway@{GATEWAY}"))
            .header("Via", format!("SIP/2.0/UDP {ENDPOINT};branch=z9hG4bKbye1"))
            .header(
                "From",
                wire::header_value(&request(&ack[0].1).headers, "To").unwrap(),
            )
            .header("To", wire::header_value(&invite.headers, "From").unwrap())
            .header("Call-ID", wire::call_id(&invite).unwrap())
            .header("CSeq", "2 BYE")
            .build(None, b"")
            .unwrap();
        deliver(&mut gw, now, ENDPOINT, bye);
        assert_eq!(status(&sent(&mut gw)[0].1), 200);
        let ended = GatewayEvent::Ended {
            call,
            reason: EndReason::Hangup,
            status: None,
        };
        assert_eq!(events(&mut gw), vec![ended]);
        assert!(gw.is_empty());
    }

    #[test]
    fn a_refused_call_ends_with_the_reason_of_its_status() {
        let now = Instant::now();
        let mut gw = gateway();
        for (code, reason) in [
            (486, EndReason::Busy),
            (480, EndReason::NoAnswer),
            (404, EndReason::Failed),
        ] {
            let call = gw.place(now, &placement("100")).unwrap();
            let invite = request(&sent(&mut gw)[0].1);
            deliver(
                &mut gw,
                now,
                ENDPOINT,
                message::response(&invite, code, "No", Some("ep")),
            );
            let ended = GatewayEvent::Ended {
                call,
                reason,
                status: Some(code),
            };
            assert_eq!(events(&mut gw), vec![ended]);
            // The non-2xx is ACKed by the transaction layer.
            assert_eq!(request(&sent(&mut gw)[0].1).method, rsip::Method::Ack);
        }
    }

    #[test]
    fn a_hangup_before_any_answer_cancels_once_the_call_rings() {
        let now = Instant::now();
        let mut gw = gateway();
        let call = gw.place(now, &placement("100")).unwrap();
        let invite = request(&sent(&mut gw)[0].1);
        gw.hangup(now, call);
        assert!(
            sent(&mut gw).is_empty(),
            "no CANCEL before a provisional response"
        );
        deliver(
            &mut gw,
            now,
            ENDPOINT,
            message::response(&invite, 180, "Ringing", Some("ep")),
        );
        let cancel = request(&sent(&mut gw)[0].1);
        assert_eq!(cancel.method, rsip::Method::Cancel);
        assert_eq!(wire::call_id(&cancel), wire::call_id(&invite));
        assert!(
            events(&mut gw).is_empty(),
            "the client hung up: it is told nothing"
        );
        assert!(gw.is_empty());
    }

    #[test]
    fn header_injection_through_what_a_client_dials_is_refused() {
        let mut gw = gateway();
        let err = gw
            .place(Instant::now(), &placement("100\r\nX-Evil: 1"))
            .unwrap_err();
        assert!(err.contains("control characters"), "{err}");
        assert!(sent(&mut gw).is_empty());
    }

    fn endpoint_invite(branch: &str, call_id: &str, from: &str) -> rsip::Request {
        RequestText::new("INVITE", &format!("sip:DV7@{GATEWAY}"))
            .header("Via", format!("SIP/2.0/UDP {from};branch=z9hG4bK{branch}"))
            .header("Max-Forwards", 70)
            .header("From", "<sip:+15550199@switchyard>;tag=caller")
            .header("To", format!("<sip:DV7@{GATEWAY}>"))
            .header("Call-ID", call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", format!("<sip:switchyard@{from}>"))
            .build(Some("application/sdp"), endpoint_sdp(30002).as_bytes())
            .unwrap()
    }

    #[test]
    fn a_screened_calls_label_reaches_the_client() {
        let mut gw = gateway();
        let mut invite = endpoint_invite("l1", "x-label", ENDPOINT);
        let label = rsip::Header::Other(LABEL_HEADER.into(), "verified".into());
        invite.headers.push(label);
        deliver(&mut gw, Instant::now(), ENDPOINT, invite);
        match events(&mut gw).as_slice() {
            [GatewayEvent::Incoming { label, .. }] => {
                assert_eq!(label.as_deref(), Some("verified"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// The endpoint's INVITE rings a client: the call's key.
    fn rung(gw: &mut Gateway, now: Instant, invite: rsip::Request) -> CallKey {
        deliver(gw, now, ENDPOINT, invite);
        sent(gw);
        match events(gw).as_slice() {
            [GatewayEvent::Incoming { call, local, .. }] => {
                assert!(local, "the endpoint's own call");
                *call
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_runtime_rings_a_client_which_accepts_with_an_sdp_answer() {
        let now = Instant::now();
        let mut gw = gateway();
        deliver(
            &mut gw,
            now,
            "127.0.0.1:9999",
            endpoint_invite("a1", "x1", "127.0.0.1:9999"),
        );
        assert_eq!(status(&sent(&mut gw)[0].1), 403);
        assert!(events(&mut gw).is_empty());

        // A trusted peer runtime (another region) may.
        deliver(
            &mut gw,
            now,
            "127.0.0.1:6060",
            endpoint_invite("a2", "x2", "127.0.0.1:6060"),
        );
        let out = sent(&mut gw);
        assert_eq!(status(&out[0].1), 180);
        let call = match events(&mut gw).as_slice() {
            [
                GatewayEvent::Incoming {
                    call,
                    device,
                    from,
                    local,
                    label,
                },
            ] => {
                assert_eq!((device.as_str(), from.as_str()), ("DV7", "+15550199"));
                assert_eq!(label, &None, "an unscreened call has no label");
                assert!(!local, "another region's call is relayed, not attached");
                *call
            }
            other => panic!("{other:?}"),
        };
        gw.accept(now, call, addr("127.0.0.1:40002")).unwrap();
        let ok = match &sent(&mut gw)[0].1 {
            rsip::SipMessage::Response(r) => r.clone(),
            other => panic!("{other}"),
        };
        assert_eq!(ok.status_code.code(), 200);
        // The body is there, and as long as Content-Length says.
        let answer = sdp::parse_answer(&ok.body).unwrap();
        assert_eq!(answer.remote, Some(addr("127.0.0.1:40002")));
        let length = format!("Content-Length: {}\r\n", ok.body.len());
        assert!(ok.to_string().contains(&length), "{ok}");
        match events(&mut gw).as_slice() {
            [GatewayEvent::Connected { remote, .. }] => {
                assert_eq!(remote.remote, Some(addr("127.0.0.1:30002")));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            gw.accept(now, call, addr("127.0.0.1:40002")).is_err(),
            "twice"
        );
    }

    #[test]
    fn a_client_hanging_up_a_ringing_call_declines_it_and_hears_nothing_more() {
        let now = Instant::now();
        let mut gw = gateway();
        let call = rung(&mut gw, now, endpoint_invite("h1", "z1", ENDPOINT));
        gw.hangup(now, call);
        let statuses: Vec<u16> = sent(&mut gw).iter().map(|(_, m)| status(m)).collect();
        assert_eq!(statuses, vec![603]);
        assert!(events(&mut gw).is_empty());
        assert!(gw.is_empty());
    }

    #[test]
    fn a_ringing_client_call_cancelled_by_the_runtime_ends_cancelled() {
        let now = Instant::now();
        let mut gw = gateway();
        let invite = endpoint_invite("c1", "y1", ENDPOINT);
        let call = rung(&mut gw, now, invite.clone());
        let cancel = cancel_for(&invite).unwrap();
        deliver(&mut gw, now, ENDPOINT, cancel);
        let statuses: Vec<u16> = sent(&mut gw).iter().map(|(_, m)| status(m)).collect();
        assert_eq!(statuses, vec![200, 487]);
        let ended = GatewayEvent::Ended {
            call,
            reason: EndReason::Cancelled,
            status: Some(487),
        };
        assert_eq!(events(&mut gw), vec![ended]);
        assert!(gw.accept(now, call, addr("127.0.0.1:40002")).is_err());
    }
}
