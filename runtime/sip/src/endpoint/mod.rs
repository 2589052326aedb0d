//! The SIP endpoint: a back-to-back user agent that turns SIP into router
//! calls, sans-IO.
//!
//! ```text
//!   handle_message(now, peer, msg) ─► Transactions ─► TxEvent ─► dispatch
//!   handle_invocation(now, call, invocation)          │  new INVITE → router::Call
//!   handle_timeout(now)                               │  REGISTER → Registrar
//!                                                     │  in-dialog → the call's leg
//!   poll_transmit() ◄─ bytes for the transport edge ◄─┘
//!   poll_event()    ◄─ Invoke (run a guest) · Cdr (store a record)
//!   poll_timeout()  ◄─ earliest of transactions, registrar, call timers, admission
//! ```
//!
//! After every `handle_*`, drain `poll_transmit` and `poll_event`, then
//! sleep until `poll_timeout`. The edge runs invocations concurrently and
//! feeds each answer back with `handle_invocation`.
//!
//! A call is one inbound leg (the caller, where this endpoint is the UAS)
//! plus the outbound forks of a `dial` (where it is the UAC). A call we
//! place (`originate`, `POST /v1/calls`) has our INVITE's leg in the
//! caller's place; its handler starts when that leg answers. Verbs run
//! on the caller's leg; without the media engine they take the time they
//! would take on a real call, and DTMF arrives by SIP INFO.

mod admission;
mod call;
mod control;
pub(crate) mod dial;
pub(crate) mod dialog;
mod media;
mod outbound;
mod queue;
mod status;
mod transfer;
pub(crate) mod wire;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

// Keyed by wire values (Call-ID, tags, transaction keys); see transaction.
use foldhash::{HashMap, HashMapExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsip::prelude::*;

use crate::cdr::Cdr;
use switchyard_contract::guest::{Invocation, InvokeRequest};
use switchyard_egress::EgressPolicy;
use switchyard_media::ports::PortPool;
use switchyard_media::{Action, StreamId};
use switchyard_router::{DecisionLog, RouterConfig};

use super::directory::{Directory, TenantIdx};
use super::message;
use super::registrar::{Registrar, RegistrarConfig};
use super::transaction::{TimerConfig, Transactions, TxEvent, TxKey};
use super::{Peer, Rng, Transmit, Transport};
use rand::SeedableRng;

pub use admission::{AdmissionStats, Capacity};
pub use call::{CallRef, Outcome, Screened, verification};
use call::{CallState, LegRef, Timer};
pub use control::{CallRequest, Control, ControlError, LiveCall, Reply};
pub use outbound::{OriginateError, OriginateSpec, is_number};
pub use queue::{MemberView, QueueRequestError, QueueView};
pub use status::{CallEnd, CallProgress, CallStatusEvent};
pub use wire::{Local, uri_peer};

/// Extensions we support (Require: of anything else gets 420).
const SUPPORTED: &[&str] = &[];
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, REGISTER";

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub region: String,
    pub local: Local,
    /// Address of our RTP streams in SDP.
    pub media_ip: IpAddr,
    /// RTP ports handed out (even ones for RTP, +1 for RTCP), inclusive.
    pub media_ports: (u16, u16),
    pub router: RouterConfig,
    pub timers: TimerConfig,
    pub registrar: RegistrarConfig,
    /// The capacity across tenants (`[admission]`).
    pub admission: Capacity,
    /// Whether every routed inbound SIP call is screened by the edge
    /// ([`EndpointEvent::Verify`]: directory, Identity header, the
    /// account's policy) before its handler runs; off, every call is
    /// `not-checked`.
    pub screen_calls: bool,
    /// Which addresses a tenant's calls may reach: a `sip:` URI it dials,
    /// calls over REST or transfers to must be public unless it is one of
    /// its trunks or the policy allows the purpose (`[sip]
    /// private_destinations`). Default public only.
    pub egress: EgressPolicy,
}

impl EndpointConfig {
    pub fn new(addrs: Vec<(Transport, SocketAddr)>) -> Self {
        let media_ip = addrs
            .first()
            .map(|(_, a)| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Self {
            region: "local".into(),
            local: Local {
                addrs,
                user_agent: format!("Switchyard/{}", env!("CARGO_PKG_VERSION")),
            },
            media_ip,
            media_ports: (20000, 29999),
            router: RouterConfig::default(),
            timers: TimerConfig::default(),
            registrar: RegistrarConfig::default(),
            admission: Capacity::default(),
            screen_calls: false,
            egress: EgressPolicy::public_only(),
        }
    }
}

/// What the endpoint asks of the edge.
#[derive(Debug)]
pub enum EndpointEvent {
    /// Run `request` through the tenant's handler; answer with `handle_invocation`.
    Invoke {
        call: CallRef,
        tenant: TenantIdx,
        request: InvokeRequest,
    },
    /// A call ended: store its record and its decision log.
    Cdr(Cdr, DecisionLog),
    /// Work for the media edge on one of `call`'s streams; what comes of
    /// it returns through `handle_media`.
    Media {
        call: CallRef,
        stream: StreamId,
        action: Action,
    },
    /// A status of a call whose number has a status callback: POST it.
    Status(CallStatusEvent),
    /// An outbound call went out (a dial's fork or a REST call; not the
    /// authenticated retry of one): the provider's placement records, so
    /// that it can confirm the call to whoever receives it (C11).
    Placed(Placement),
    /// Screen the caller (directory and provider, `Identity` header,
    /// the account's policy) before the call's handler hears of it;
    /// answer with `handle_verified`.
    Verify {
        invite: TxKey,
        tenant: TenantIdx,
        /// The Identity header's value, if the INVITE has one.
        identity: Option<String>,
        /// The caller's and the called number (P-Asserted-Identity or
        /// From user, and Request-URI user).
        from: String,
        to: String,
        /// The INVITE's SIP Call-ID (names the call in logs).
        call_id: String,
        /// The INVITE's headers, credentials left out: what a policy sees.
        headers: Vec<switchyard_contract::Header>,
    },
}

/// An INVITE we sent to place a call ([`EndpointEvent::Placed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The tenant whose call it is.
    pub tenant: String,
    /// The caller id it went out with (the From user).
    pub caller: String,
    /// The user dialled (the Request-URI's), or the URI without one.
    pub callee: String,
    /// The INVITE's Call-ID.
    pub call_id: String,
    /// When it went out, Unix milliseconds.
    pub at_ms: u64,
}

pub struct Endpoint {
    config: EndpointConfig,
    directory: Arc<Directory>,
    tx: Transactions,
    registrar: Registrar,
    calls: HashMap<CallRef, CallState>,
    next_call: CallRef,
    /// (Call-ID, our tag) → the leg of a call.
    dialogs: HashMap<(String, String), (CallRef, LegRef)>,
    /// Server INVITE transactions of callers not yet answered finally.
    invites: HashMap<TxKey, CallRef>,
    /// Client transactions of forks (INVITE) → their leg.
    clients: HashMap<TxKey, (CallRef, LegRef)>,
    timers: BinaryHeap<Reverse<(Instant, u64, CallRef, Timer)>>,
    ports: PortPool,
    admission: admission::Admission<TxKey>,
    /// INVITEs waiting for admission, by server transaction.
    waiting: HashMap<TxKey, call::NewCall>,
    /// Admitted INVITEs whose Identity header the edge is checking.
    verifying: HashMap<TxKey, call::NewCall>,
    /// Admission outcomes are being acted on (a call ending meanwhile
    /// leaves its outcomes to that loop).
    admitting: bool,
    /// Open media streams → their call.
    streams: HashMap<StreamId, CallRef>,
    next_stream: StreamId,
    timer_seq: u64,
    events: VecDeque<EndpointEvent>,
    /// Wall-clock anchor for CDR times (the core itself never reads a clock).
    epoch: (Instant, u64),
    ids: wire::Ids,
    queues: queue::Queues,
    /// The clients' gateway: its address (whose X-Switchyard-* headers
    /// name a client call's tenant and handler) and where clients are.
    gateway: Option<(SocketAddr, Arc<dyn crate::gateway::ClientLocator>)>,
}

impl Endpoint {
    /// Media ports are promised in SDP only once `reserve` (the IO edge)
    /// holds them, so a port another process has is skipped, not a call
    /// that fails after its 200 OK.
    pub fn set_port_reserve(&mut self, reserve: switchyard_media::ports::Reserve) {
        self.ports.set_reserve(reserve);
    }

    /// An endpoint whose clock reads `now` at wall time `unix_ms`, drawing
    /// tags, branches, ids and nonces from `rng`: the edge seeds it from the
    /// OS, a test from a constant (the core reads neither clock nor OS RNG).
    pub fn new(
        now: Instant,
        unix_ms: u64,
        mut rng: Rng,
        config: EndpointConfig,
        directory: Arc<Directory>,
    ) -> Self {
        let media_ports = config.media_ports;
        let capacity = config.admission;
        let registrar_rng = Rng::from_rng(&mut rng);
        Self {
            tx: Transactions::new(config.timers.clone()),
            registrar: Registrar::new(config.registrar.clone(), registrar_rng),
            config,
            directory,
            calls: HashMap::new(),
            next_call: 1,
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            clients: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            ports: PortPool::new(media_ports.0, media_ports.1),
            admission: admission::Admission::new(now, capacity),
            waiting: HashMap::new(),
            verifying: HashMap::new(),
            admitting: false,
            streams: HashMap::new(),
            next_stream: 0,
            events: VecDeque::new(),
            epoch: (now, unix_ms),
            ids: wire::Ids::new(rng),
            queues: queue::Queues::default(),
            gateway: None,
        }
    }

    /// Takes client calls from the gateway at `addr` and rings clients
    /// where `locator` says.
    pub fn set_gateway(
        &mut self,
        addr: SocketAddr,
        locator: Arc<dyn crate::gateway::ClientLocator>,
    ) {
        self.gateway = Some((addr, locator));
    }

    // ------------------------------------------------------------ getters

    /// Calls in progress.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Calls in progress as (not answered yet, answered); a scrape of
    /// `/metrics` asks, so it costs one pass over the calls then only.
    pub fn call_counts(&self) -> (usize, usize) {
        let early = self
            .calls
            .values()
            .filter(|c| c.caller == call::CallerState::Early)
            .count();
        (early, self.calls.len() - early)
    }

    /// Calls whose final response or BYE is out and which are finishing
    /// (an ACK, the hangup notice): their records are about to be written.
    pub fn ending_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.caller == call::CallerState::Ended)
            .count()
    }

    /// Admission figures: refusals by reason, calls admitted after a
    /// wait, calls waiting by tenant.
    pub fn admission_stats(&self) -> AdmissionStats {
        let tenants = self.directory.tenants().iter().enumerate();
        self.admission
            .stats(tenants.map(|(idx, t)| (idx, t.id.as_str())))
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Replaces the directory (a REST change of accounts or numbers).
    /// Calls in progress keep their tenant index: a new directory must
    /// keep every tenant of the old one at its place.
    pub fn set_directory(&mut self, directory: Arc<Directory>) {
        debug_assert!(directory.tenants().len() >= self.directory.tenants().len());
        self.directory = directory;
    }

    // ------------------------------------------------------------ input

    /// A message from the network (already parsed and syntax-checked).
    pub fn handle_message(&mut self, now: Instant, peer: Peer, msg: rsip::SipMessage) {
        self.tx.handle_message(now, peer, msg);
        self.drain_transactions(now);
    }

    /// A connection-oriented transport to `peer` failed.
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        self.tx.handle_transport_error(now, peer);
        self.drain_transactions(now);
    }

    /// The answer to an [`EndpointEvent::Invoke`].
    pub fn handle_invocation(&mut self, now: Instant, call: CallRef, invocation: Invocation) {
        self.with_call(now, call, |ep, call| {
            if let Err(e) = call.router.handle_invocation(now, invocation) {
                tracing::error!(call = %call.id, error = %e, "router refused an invocation");
            }
            ep.pump(now, call);
        });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.drain_transactions(now);
        self.registrar.expire(now);
        self.admission.handle_timeout(now);
        self.drain_admission(now);
        while let Some(Reverse((at, _, call, timer))) = self.timers.peek().cloned() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.with_call(now, call, |ep, call| {
                if timer.generation == call.generation {
                    ep.on_timer(now, call, timer.kind);
                }
                ep.pump(now, call);
            });
        }
        self.drain_transactions(now);
    }

    // ------------------------------------------------------------ output

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.timers.peek().map(|Reverse((at, ..))| *at);
        let admission = self.admission.poll_timeout();
        let tx = self.tx.poll_timeout();
        [tx, self.registrar.poll_timeout(), calls, admission]
            .into_iter()
            .flatten()
            .min()
    }

    // ------------------------------------------------------------ internals

    /// Runs `f` on a call taken out of the map (so `f` may borrow the
    /// endpoint mutably), and puts it back unless it finished.
    fn with_call(&mut self, now: Instant, id: CallRef, f: impl FnOnce(&mut Self, &mut CallState)) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        f(self, &mut call);
        if call.finished {
            self.forget(now, call);
        } else {
            self.calls.insert(id, call);
        }
    }

    fn schedule(&mut self, call: &CallState, at: Instant, kind: call::TimerKind) {
        self.timer_seq += 1;
        let timer = Timer {
            generation: call.generation,
            kind,
        };
        self.timers
            .push(Reverse((at, self.timer_seq, call.reference, timer)));
    }

    fn unix_ms(&self, at: Instant) -> u64 {
        self.epoch.1 + at.saturating_duration_since(self.epoch.0).as_millis() as u64
    }

    fn drain_transactions(&mut self, now: Instant) {
        while let Some(event) = self.tx.poll_event() {
            match event {
                TxEvent::Request { key, peer, request } => self.on_request(now, key, peer, request),
                TxEvent::Response { key, response } => {
                    if let Some(&(call, leg)) = self.clients.get(&key) {
                        self.with_call(now, call, |ep, call| {
                            ep.on_fork_response(now, call, leg, &key, response);
                            ep.pump(now, call);
                        });
                    }
                }
                TxEvent::Ack { request, .. } => self.on_ack(now, request),
                TxEvent::Timeout { key } => {
                    if let Some((call, leg)) = self.clients.remove(&key) {
                        self.with_call(now, call, |ep, call| {
                            ep.on_fork_failed(now, call, leg, 408);
                            ep.pump(now, call);
                        });
                    }
                }
                TxEvent::NoAck { key } => {
                    if let Some(call) = self.invites.remove(&key) {
                        self.with_call(now, call, |ep, call| {
                            ep.on_no_ack(now, call);
                            ep.pump(now, call);
                        });
                    }
                }
                TxEvent::Terminated { key } => {
                    self.drop_waiting(&key);
                    self.drop_verifying(now, &key);
                    self.invites.remove(&key);
                    self.clients.remove(&key);
                }
            }
        }
    }

    fn respond(&mut self, now: Instant, key: &TxKey, response: rsip::Response) {
        if let Err(e) = self.tx.send_response(now, key, response) {
            tracing::debug!(error = %e, "response not sent");
        }
    }

    fn reply(&mut self, now: Instant, key: &TxKey, req: &rsip::Request, status: u16, reason: &str) {
        let tag = self.ids.token();
        let response = message::response(req, status, reason, Some(&tag));
        self.respond(now, key, response);
    }

    fn on_request(&mut self, now: Instant, key: TxKey, peer: Peer, req: rsip::Request) {
        if let Err(refusal) = message::check_request(&req, SUPPORTED) {
            let tag = self.ids.token();
            let response = message::refuse(&req, &refusal, Some(&tag));
            return self.respond(now, &key, response);
        }
        if let Some(tag) = wire::to_tag(&req) {
            let Some(call_id) = wire::call_id(&req) else {
                return self.reply(now, &key, &req, 400, "Missing Call-ID");
            };
            return match self.dialogs.get(&(call_id, tag)).copied() {
                Some((call, leg)) => self.with_call(now, call, |ep, call| {
                    ep.on_in_dialog(now, call, leg, &key, &req);
                    ep.pump(now, call);
                }),
                None if req.method == rsip::Method::Options => self.options(now, &key, &req),
                None => self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist"),
            };
        }
        match req.method {
            rsip::Method::Invite => self.start_call(now, key, peer, req),
            rsip::Method::Cancel => self.on_cancel(now, &key, &req),
            rsip::Method::Options => self.options(now, &key, &req),
            rsip::Method::Register => self.on_register(now, &key, peer, &req),
            rsip::Method::Bye | rsip::Method::Info | rsip::Method::Update => {
                self.reply(now, &key, &req, 481, "Call/Transaction Does Not Exist")
            }
            _ => {
                let tag = self.ids.token();
                let mut response = message::response(&req, 405, "Method Not Allowed", Some(&tag));
                response
                    .headers
                    .push(rsip::headers::Allow::new(ALLOW).into());
                self.respond(now, &key, response);
            }
        }
    }

    fn options(&mut self, now: Instant, key: &TxKey, req: &rsip::Request) {
        let tag = self.ids.token();
        let mut response = message::response(req, 200, "OK", Some(&tag));
        response
            .headers
            .push(rsip::headers::Allow::new(ALLOW).into());
        response
            .headers
            .push(rsip::headers::Accept::new("application/sdp").into());
        self.respond(now, key, response);
    }

    fn on_register(&mut self, now: Instant, key: &TxKey, peer: Peer, req: &rsip::Request) {
        let host = req
            .to_header()
            .ok()
            .and_then(|to| to.uri().ok())
            .map(|uri| uri.host_with_port.host.to_string())
            .unwrap_or_else(|| req.uri.host_with_port.host.to_string());
        let Some(tenant) = self.directory.registrar_tenant(&host) else {
            return self.reply(now, key, req, 404, "Not Found (no tenant for this domain)");
        };
        let directory = Arc::clone(&self.directory);
        let tenant = directory.tenant(tenant);
        let realm = tenant.domains.first().unwrap_or(&tenant.id).clone();
        let response = self
            .registrar
            .handle_register(now, &tenant.id, &realm, peer, req, |user| {
                tenant.password(user)
            });
        self.respond(now, key, response);
    }

    fn on_cancel(&mut self, now: Instant, key: &TxKey, req: &rsip::Request) {
        if self.cancel_waiting(now, key, req) {
            return;
        }
        let call = self
            .tx
            .find_invite(key)
            .and_then(|invite| self.invites.get(&invite).copied());
        let Some(call) = call else {
            return self.reply(now, key, req, 481, "Call/Transaction Does Not Exist");
        };
        self.reply(now, key, req, 200, "OK");
        self.with_call(now, call, |ep, call| {
            ep.on_caller_cancel(now, call);
            ep.pump(now, call);
        });
    }

    fn on_ack(&mut self, now: Instant, ack: rsip::Request) {
        let (Some(call_id), Some(tag)) = (wire::call_id(&ack), wire::to_tag(&ack)) else {
            return;
        };
        if let Some((call, LegRef::Caller)) = self.dialogs.get(&(call_id, tag)).copied() {
            self.with_call(now, call, |ep, call| {
                call.acked = true;
                ep.invites.remove(&call.invite_key);
                if let Some(answer) = wire::sdp_body(&ack.headers, &ack.body) {
                    ep.caller_late_answer(call, &answer);
                }
            });
        }
    }

    /// A finished call leaves no trace but its CDR and decision log.
    fn forget(&mut self, now: Instant, mut call: CallState) {
        self.leave_queues(now, &mut call);
        self.close_call_media(&mut call);
        self.admission.ended(now, call.tenant);
        self.drain_admission(now);
        for key in &call.dialog_keys {
            self.dialogs.remove(key);
        }
        for key in &call.client_keys {
            self.clients.remove(key);
        }
        self.invites.remove(&call.invite_key);
        let cdr = call.cdr(self.unix_ms(call.started), self.unix_ms(now), |at| {
            self.unix_ms(at)
        });
        self.report_progress(now, &mut call, status::CallProgress::Completed, Some(&cdr));
        let log = call.router.take_log();
        self.events.push_back(EndpointEvent::Cdr(cdr, log));
    }
}

/// A duration as whole seconds, rounded.
fn secs(d: Duration) -> u32 {
    ((d.as_millis() + 500) / 1000) as u32
}

#[cfg(test)]
mod tests;
