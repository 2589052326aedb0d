//! One call: its router, the caller's leg, and the verbs it runs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::prelude::*;

use crate::cdr::Cdr;
use crate::directory::{Binding, Route, TenantIdx};
use crate::transaction::TxKey;
use crate::{Peer, message, sdp};
use switchyard_contract::guest::hears_notices;
use switchyard_contract::{
    CallStatus, DialTarget, Event, Gather, GatherEnd, GatherResult, HangupCause, IncomingCall,
    Prompt, RejectReason, Verb, Verification, VerificationStatus,
};

/// The caller's number a PASSporT's `orig` must match (RFC 8224 §5.1):
/// the P-Asserted-Identity a carrier put there, else the From user; a
/// `tel:` URI's number, or a `sip:` URI's user.
fn caller_number(req: &rsip::Request) -> String {
    let asserted = wire::header_value(&req.headers, "P-Asserted-Identity");
    let uri = match &asserted {
        // `"Name" <sip:…>;params` or a bare URI; the first identity.
        Some(value) => {
            let first = value.split(',').next().unwrap_or_default();
            let inner = first.split_once('<').and_then(|(_, r)| r.split_once('>'));
            inner.map_or(first.trim(), |(uri, _)| uri).to_owned()
        }
        None => message::from_uri(req).unwrap_or_default().to_owned(),
    };
    match uri.strip_prefix("tel:") {
        Some(number) => number.split(';').next().unwrap_or_default().to_owned(),
        None => crate::registrar::uri_user(&uri).unwrap_or_default(),
    }
}

/// The INVITE's headers as a verification policy sees them: every one
/// but credentials.
fn attempt_headers(req: &rsip::Request) -> Vec<switchyard_contract::Header> {
    let secret = |name: &str| {
        name.eq_ignore_ascii_case("Authorization")
            || name.eq_ignore_ascii_case("Proxy-Authorization")
    };
    (req.headers.iter())
        .filter_map(|h| {
            let text = h.to_string();
            let (name, value) = text.split_once(':')?;
            let name = name.trim();
            (!secret(name)).then(|| switchyard_contract::Header {
                name: name.into(),
                value: value.trim().into(),
            })
        })
        .collect()
}

/// A verification status as the WIT names it.
fn status_name(status: VerificationStatus) -> &'static str {
    match status {
        VerificationStatus::NotChecked => "not-checked",
        VerificationStatus::NoEvidence => "no-evidence",
        VerificationStatus::Passed => "passed",
        VerificationStatus::Failed => "failed",
    }
}

/// A verification outcome with no attestation or label.
pub fn verification(status: VerificationStatus) -> Verification {
    Verification {
        status,
        attestation: None,
        label: None,
    }
}
use switchyard_router::{self as router, LegEvent, Output};

use super::dial::DialRun;
use super::dialog::Dialog;
use super::media::{ConferenceRun, LegMedia, RecordRun};
use super::status::CallProgress;
use super::wire;
use super::{Endpoint, EndpointEvent};

pub type CallRef = u64;

/// Which leg of a call a dialog or transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegRef {
    Caller,
    /// The n-th fork of the call's dial.
    Fork(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// The verb generation it was set for; later verbs make it stale.
    pub generation: u64,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// A gather waited `timeout` after its prompts or the last digit.
    GatherCheck,
    /// Send the next digit of `send-digits`.
    SendDigit,
    /// The targets of this ring round (sequential: the target index) rang too long.
    DialTimeout(usize),
    /// The bridged call reached `time-limit-secs`.
    DialLimit,
    /// An outbound call rang too long, or its CANCEL got no final answer.
    OutboundTimeout,
    /// A queued caller waited its `max-wait-secs`.
    QueueTimeout,
    /// A queued caller's handler is due a `queue-wait`.
    QueueWait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerState {
    /// No final response sent yet.
    Early,
    Answered,
    Ended,
}

pub(super) struct GatherRun {
    spec: Gather,
    digits: String,
    /// When the prompts ended (a digit ends them early); `None` while
    /// they play.
    prompts_ended: Option<Instant>,
    last_input: Instant,
}

pub struct CallState {
    pub reference: CallRef,
    /// The runtime's id for the call (what guests, logs and CDRs see).
    pub id: String,
    pub tenant: TenantIdx,
    pub tenant_id: String,
    pub binding: Binding,
    pub router: router::Call,
    pub started: Instant,
    pub answered_at: Option<Instant>,
    pub from: String,
    pub to: String,
    /// The label the caller's screening gave (`incoming.verification`),
    /// told to the client devices the call rings.
    pub label: Option<String>,
    /// The caller's INVITE and its server transaction.
    pub invite: rsip::Request,
    pub invite_key: TxKey,
    pub peer: Peer,
    pub caller: CallerState,
    pub dialog: Dialog,
    pub acked: bool,
    pub offer: Option<Vec<u8>>,
    /// Our SDP for the caller when it must be answered without a stream
    /// of ours (a callee that answered without SDP).
    pub local_sdp: String,
    /// The caller's RTP stream, once we answered it ourselves.
    pub media: Option<LegMedia>,
    /// The stream facing the forks when a dial anchors media (the caller
    /// was answered already, or the dial records).
    pub dial_media: Option<LegMedia>,
    pub recording: Option<RecordRun>,
    /// The conference the caller is in.
    pub conference: Option<ConferenceRun>,
    /// The queue the caller waits in.
    pub queued: Option<super::queue::QueueRun>,
    /// The other call of a `dial queue:` bridge.
    pub pairing: Option<super::queue::Pairing>,
    /// A finished dial's result, waiting for its recording (by id).
    pub dial_waiting: Option<(u64, switchyard_contract::DialResult)>,
    pub final_status: Option<u16>,
    pub generation: u64,
    pub dial: Option<DialRun>,
    pub(super) gather: Option<GatherRun>,
    pub(super) digits_to_send: VecDeque<char>,
    /// Leg events produced while the router's output was being drained.
    pub pending: VecDeque<LegEvent>,
    pub finished: bool,
    pub dialog_keys: Vec<(String, String)>,
    pub client_keys: Vec<TxKey>,
    /// Status callback events sent so far (the next one's sequence number).
    pub status_sequence: u32,
    /// A call we placed (`POST /v1/calls`): its leg is ours as the UAC.
    pub outbound: Option<super::outbound::Outbound>,
}

impl CallState {
    /// Forgets the verb the leg runs (gather, digits, record): a redirect
    /// from outside replaces it. Late media notices are stale by generation.
    pub(super) fn stop_verbs(&mut self) {
        self.generation += 1;
        self.gather = None;
        self.digits_to_send.clear();
        self.recording = None;
    }

    pub fn cdr(&self, started_ms: u64, ended_ms: u64, at_ms: impl Fn(Instant) -> u64) -> Cdr {
        let answered_ms = self.answered_at.map(&at_ms);
        let outcome = if self.answered_at.is_some() {
            "completed"
        } else {
            match self.final_status {
                Some(486) | Some(600) => "busy",
                Some(408) | Some(480) if self.outbound.is_some() => "no-answer",
                Some(487) => "canceled",
                Some(403) | Some(603) | Some(608) => "rejected",
                _ => "failed",
            }
        };
        Cdr {
            call_id: self.id.clone(),
            tenant: self.tenant_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            started_ms,
            answered_ms,
            ended_ms,
            duration_secs: answered_ms.map_or(0, |a| ended_ms.saturating_sub(a) / 1000),
            outcome: outcome.into(),
            sip_status: self.final_status,
            handler: self.binding.handler.clone(),
            handler_version: self.binding.version.clone(),
        }
    }
}

/// What an IncomingCall exposes of the INVITE's headers.
fn visible_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.starts_with("x-") && !lower.starts_with("x-switchyard-")) || lower == "user-to-user"
}

/// A call a client placed through the gateway: who placed it (`from`,
/// `client:alice`) and what it dialled (`to`).
pub(super) struct ClientCall {
    pub from: String,
    pub to: String,
}

/// A routed INVITE on its way through admission (it may wait there).
pub(super) struct NewCall {
    pub key: TxKey,
    pub peer: Peer,
    pub req: rsip::Request,
    pub route: Route,
    /// The Request-URI user (the number dialled).
    pub user: Option<String>,
    pub call_id: String,
    pub offer: Option<Vec<u8>>,
    pub local_sdp: String,
    pub client: Option<ClientCall>,
    /// What the edge's screening decided, once done.
    pub verification: Option<Screened>,
}

/// The edge's answer to [`EndpointEvent::Verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Screened {
    /// What the handler sees in `incoming.verification`.
    pub verification: Verification,
    /// Why, in one line (the decision log's `reason`).
    pub reason: String,
    pub outcome: Outcome,
    /// The findings and the ruling, for the decision log.
    pub screening: Option<router::Screening>,
}

/// What becomes of a screened call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// On to the number's handler.
    Admit,
    /// On to this handler of the account instead (a policy's challenge).
    Challenge(String),
    /// Refused with this status (403, 608, 603) and Reason text.
    Reject { status: u16, reason: String },
}

impl Screened {
    /// A call let through with `verification`, and why.
    pub fn admit(verification: Verification, reason: impl Into<String>) -> Self {
        Self {
            verification,
            reason: reason.into(),
            outcome: Outcome::Admit,
            screening: None,
        }
    }
}

impl Endpoint {
    /// A new INVITE: route it to a tenant and start its router.
    pub(super) fn start_call(&mut self, now: Instant, key: TxKey, peer: Peer, req: rsip::Request) {
        let user = req.uri.user().map(str::to_string);
        let host = req.uri.host_with_port.host.to_string();
        let roll = self.ids.percent();
        let (route, client) = match self.client_route(peer, &req) {
            Some(Ok((route, client))) => (route, Some(client)),
            Some(Err(reason)) => return self.reply(now, &key, &req, 404, &reason),
            None => match self.directory.route(user.as_deref(), &host, roll) {
                Some(route) => (route, None),
                None => return self.reply(now, &key, &req, 404, "Not Found"),
            },
        };
        if self.directory.tenant(route.tenant).suspended {
            return self.reply(now, &key, &req, 403, "Forbidden (account suspended)");
        }
        let Some(call_id) = wire::call_id(&req) else {
            return self.reply(now, &key, &req, 400, "Missing Call-ID");
        };
        let offer = wire::sdp_body(&req.headers, &req.body);
        let media = std::net::SocketAddr::new(self.config.media_ip, DISCARD_PORT);
        let session = self.ids.session();
        let local_sdp = match &offer {
            Some(offer) => match sdp::answer(offer, media, session, 1) {
                Ok((answer, _)) => answer,
                Err(e) => {
                    let reason = format!("Not Acceptable Here ({e})");
                    return self.reply(now, &key, &req, 488, &reason);
                }
            },
            None => sdp::offer(media, session, 1, sdp::Direction::SendRecv),
        };
        // Checked last, so every admitted call reaches `forget`, which
        // gives its place back.
        let new = NewCall {
            key,
            peer,
            req,
            route,
            user,
            call_id,
            offer,
            local_sdp,
            client,
            verification: None,
        };
        self.admit(now, new);
    }

    /// The edge's answer to an [`EndpointEvent::Verify`]: the call starts
    /// (or is refused, as `screened` says), its handler seeing
    /// `screened.verification`, its decision log saying
    /// `reason`. A call cancelled meanwhile is gone already.
    pub fn handle_verified(&mut self, now: Instant, invite: &TxKey, screened: Screened) {
        if let Some(mut new) = self.verifying.remove(invite) {
            new.verification = Some(screened);
            self.begin_call(now, new);
        }
    }

    /// The route of an INVITE the clients' gateway placed: the tenant and
    /// handler its headers name (from the client's checked token). `None`
    /// for every other INVITE, whatever headers it carries.
    fn client_route(
        &self,
        peer: Peer,
        req: &rsip::Request,
    ) -> Option<Result<(Route, ClientCall), String>> {
        use crate::gateway::{CLIENT_HEADER, HANDLER_HEADER, TENANT_HEADER, TO_HEADER};
        let (gateway, _) = self.gateway.as_ref()?;
        if peer.addr != *gateway {
            return None;
        }
        let header = |name| wire::header_value(&req.headers, name).unwrap_or_default();
        let tenant_id = wire::header_value(&req.headers, TENANT_HEADER)?;
        let Some(tenant) = (self.directory.tenants().iter()).position(|t| t.id == tenant_id) else {
            return Some(Err(format!("Not Found (no account {tenant_id})")));
        };
        let handler = header(HANDLER_HEADER);
        let owner = self.directory.tenant(tenant);
        if !owner.handlers.contains_key(&handler) {
            return Some(Err(format!("Not Found (no handler {handler:?})")));
        }
        let version = owner.versions.get(&handler).cloned().unwrap_or_default();
        let route = Route {
            tenant,
            binding: Binding::new(handler, version),
        };
        let client = ClientCall {
            from: format!("client:{}", header(CLIENT_HEADER)),
            to: header(TO_HEADER),
        };
        Some(Ok((route, client)))
    }

    /// Starts a call admission let in (at once, or after it waited); one
    /// with an Identity header to check waits for the edge's answer first
    /// ([`EndpointEvent::Verify`], [`Endpoint::handle_verified`]).
    pub(super) fn begin_call(&mut self, now: Instant, new: NewCall) {
        if self.config.screen_calls && new.client.is_none() && new.verification.is_none() {
            self.events.push_back(EndpointEvent::Verify {
                invite: new.key.clone(),
                tenant: new.route.tenant,
                identity: wire::header_value(&new.req.headers, "Identity"),
                from: caller_number(&new.req),
                to: new.user.clone().unwrap_or_default(),
                call_id: new.call_id.clone(),
                headers: attempt_headers(&new.req),
            });
            self.verifying.insert(new.key.clone(), new);
            return;
        }
        let NewCall {
            key,
            peer,
            req,
            route,
            user,
            call_id,
            offer,
            local_sdp,
            client,
            verification,
        } = new;
        // No 100 Trying here: the transaction layer sends one if no answer
        // is out within 200 ms (RFC 3261 §17.2.1), and a guest's decision
        // is usually out long before, so most calls save a datagram.

        let local_tag = self.ids.token();
        let tenant = self.directory.tenant(route.tenant);
        let from = message::from_uri(&req).unwrap_or_default().to_string();
        // What was dialled: the number (Request-URI user), or the whole
        // URI for a user-less address; `from` is the caller's From URI.
        let to = user.clone().unwrap_or_else(|| req.uri.to_string());
        let (caller, to) = match client {
            Some(client) => (client.from, client.to),
            None => (from.clone(), to),
        };
        let mut incoming = IncomingCall::inbound(&caller, &to, &self.config.region);
        let mut route = route;
        let mut rejection = None;
        let checked = verification.map(|screened| {
            let status = status_name(screened.verification.status).to_owned();
            incoming.verification = screened.verification;
            match screened.outcome {
                Outcome::Admit => {}
                Outcome::Challenge(handler) => match tenant.handlers.contains_key(&handler) {
                    true => {
                        let version = tenant.versions.get(&handler).cloned().unwrap_or_default();
                        route.binding = Binding::new(handler, version);
                    }
                    false => tracing::warn!(
                        tenant = %tenant.id, %handler,
                        "the verification policy's challenge names no handler of the account; the number's handler runs"
                    ),
                },
                Outcome::Reject { status, reason } => rejection = Some((status, reason)),
            }
            (status, screened.reason, screened.screening)
        });
        // X-* and User-to-User are not rsip header types: they are `Other`.
        incoming.headers = req
            .headers
            .iter()
            .filter_map(|h| match h {
                rsip::Header::Other(name, value) if visible_header(name.trim()) => {
                    Some(switchyard_contract::Header {
                        name: name.trim().into(),
                        value: value.trim().into(),
                    })
                }
                _ => None,
            })
            .collect();
        let id = self.ids.call_id(self.unix_ms(now));
        let handler = &route.binding.handler;
        let label = incoming.verification.label.clone();
        let router = match (checked, rejection.is_some()) {
            (Some(screened), true) => {
                router::Call::refused(now, &id, &tenant.id, handler, screened)
            }
            (checked, _) => {
                let config = self.config.router.clone();
                let mut router = router::Call::new(now, &id, &tenant.id, handler, incoming, config);
                router.set_fallback_handler(route.binding.fallback.clone());
                if let Some((status, reason, screening)) = checked {
                    router.verified(now, status, reason, screening);
                }
                router
            }
        };
        let to_header = wire::header_str(&req.headers, "To").unwrap_or_default();
        let dialog = Dialog {
            call_id: call_id.clone(),
            local: format!("{to_header};tag={local_tag}"),
            remote: wire::header_value(&req.headers, "From").unwrap_or_default(),
            remote_target: wire::contact_uri(&req).unwrap_or_else(|| from.clone()),
            route_set: wire::record_routes(&req.headers),
            local_cseq: 0,
            peer,
        };
        let reference = self.next_call;
        self.next_call += 1;
        let dialog_key = (call_id, local_tag);
        self.dialogs
            .insert(dialog_key.clone(), (reference, LegRef::Caller));
        self.invites.insert(key.clone(), reference);
        let mut call = CallState {
            reference,
            id,
            tenant: route.tenant,
            tenant_id: tenant.id.clone(),
            binding: route.binding,
            router,
            started: now,
            answered_at: None,
            from,
            to,
            label,
            invite: req,
            invite_key: key,
            peer,
            caller: CallerState::Early,
            dialog,
            acked: false,
            offer,
            local_sdp,
            media: None,
            dial_media: None,
            recording: None,
            conference: None,
            queued: None,
            pairing: None,
            dial_waiting: None,
            final_status: None,
            generation: 0,
            dial: None,
            gather: None,
            digits_to_send: VecDeque::new(),
            pending: VecDeque::new(),
            finished: false,
            dialog_keys: vec![dialog_key],
            client_keys: Vec::new(),
            status_sequence: 0,
            outbound: None,
        };
        self.report_progress(now, &mut call, CallProgress::Initiated, None);
        if let Some((status, reason)) = rejection {
            self.screen_out(now, &mut call, status, &reason);
            return self.forget(now, call);
        }
        self.pump(now, &mut call);
        if call.finished {
            self.forget(now, call);
        } else {
            self.calls.insert(reference, call);
        }
    }

    /// Drains the router's output and feeds back what the leg produced,
    /// until both are quiet.
    pub(super) fn pump(&mut self, now: Instant, call: &mut CallState) {
        if call.outbound.as_ref().is_some_and(|o| o.holds_router()) {
            return; // no plan runs on an outbound call until it is answered
        }
        loop {
            while let Some(output) = call.router.poll_output() {
                match output {
                    Output::Invoke(request) => {
                        let handlers = &self.directory.tenant(call.tenant).handlers;
                        call.router
                            .set_notices(hears_notices(handlers, &request.ctx.handler));
                        self.events.push_back(EndpointEvent::Invoke {
                            call: call.reference,
                            tenant: call.tenant,
                            request,
                        })
                    }
                    Output::Execute(verb) => self.execute(now, call, verb),
                    Output::Wait(plan) => self.wait_plan(now, call, plan),
                    Output::Finished(_) => call.finished = true,
                }
            }
            let Some(event) = call.pending.pop_front() else {
                break;
            };
            if let Err(e) = call.router.handle_leg(now, event) {
                tracing::error!(call = %call.id, error = %e, "router refused a leg event");
            }
        }
    }

    fn execute(&mut self, now: Instant, call: &mut CallState, verb: Verb) {
        call.generation += 1;
        if let Err(refusal) = router::leg_support(&verb) {
            return self.refuse_not_built(now, call, &verb, Some(refusal));
        }
        match verb {
            Verb::Say(say) => self.play_verb(now, call, Prompt::Say(say)),
            Verb::Play(play) => self.play_verb(now, call, Prompt::Play(play)),
            Verb::Pause(pause) => self.play_verb(now, call, Prompt::Pause(pause)),
            Verb::Gather(spec) => {
                if !self.answer(now, call) {
                    return;
                }
                let prompts = spec.prompts.clone();
                let playing = !prompts.is_empty() && self.play(call, prompts);
                call.gather = Some(GatherRun {
                    prompts_ended: (!playing).then_some(now),
                    spec,
                    digits: String::new(),
                    last_input: now,
                });
                if !playing {
                    self.gather_check(now, call);
                }
            }
            Verb::SendDigits(digits) => {
                if !self.answer(now, call) {
                    return;
                }
                if !self.send_rtp_digits(call, &digits) {
                    call.digits_to_send = digits.chars().collect();
                    self.schedule(call, now, TimerKind::SendDigit);
                }
            }
            Verb::Record(options) => {
                if self.answer(now, call) {
                    self.start_record(call, &options);
                }
            }
            Verb::Conference(options) => {
                if self.answer(now, call) {
                    self.join_conference(now, call, options, false);
                }
            }
            Verb::Enqueue(spec) => {
                if self.answer(now, call) {
                    self.enqueue(now, call, spec);
                }
            }
            Verb::LeaveQueue => call.pending.push_back(LegEvent::Done),
            // Plan validation makes a queue the dial's only target.
            Verb::Dial(dial) => match dial.targets.first().map(|t| &t.target) {
                Some(DialTarget::Queue(name)) => {
                    let name = name.clone();
                    self.dial_queue(now, call, name, None, dial.record)
                }
                Some(DialTarget::QueueMember(m)) => {
                    let (name, member) = (m.queue.clone(), Some(m.call_id.clone()));
                    self.dial_queue(now, call, name, member, dial.record)
                }
                Some(DialTarget::Conference(name)) => {
                    if self.answer(now, call) {
                        let options = super::media::dialled_conference(name, dial.record);
                        self.join_conference(now, call, options, true);
                    }
                }
                _ => self.start_dial(now, call, dial),
            },
            Verb::Hangup => self.end_caller(now, call, 480, "Temporarily Unavailable"),
            Verb::Reject(RejectReason::Busy) => self.end_caller(now, call, 486, "Busy Here"),
            Verb::Reject(RejectReason::Rejected) => self.end_caller(now, call, 603, "Decline"),
            // Plan validation refuses these (`router::LEG_SUPPORT`), so a
            // call never gets here; should one, it ends as not built.
            Verb::Pay(_) => {
                let refusal = router::leg_support(&verb).err();
                self.refuse_not_built(now, call, &verb, refusal);
            }
            // The router runs these itself; they never reach the leg.
            Verb::SetVar(_) | Verb::Redirect(_) => call.pending.push_back(LegEvent::Done),
        }
    }

    /// Refuses a call its account's verification policy rejected, before
    /// any handler ran: 403, 608 (RFC 8688) or 603, with a Reason header
    /// (RFC 3326) carrying the policy's text.
    fn screen_out(&mut self, now: Instant, call: &mut CallState, status: u16, reason: &str) {
        let (status, phrase) = match status {
            403 => (403, "Forbidden"),
            608 => (608, "Rejected"),
            _ => (603, "Decline"),
        };
        let tag = call.dialog_keys[0].1.clone();
        let mut response = message::response(&call.invite, status, phrase, Some(&tag));
        let text = reason.replace(['"', '\\', '\r', '\n'], " ");
        response.headers.push(rsip::Header::Other(
            "Reason".into(),
            format!("SIP ;cause={status} ;text=\"{text}\""),
        ));
        self.respond(now, &call.invite_key.clone(), response);
        call.final_status = Some(status);
        call.caller = CallerState::Ended;
        call.generation += 1;
    }

    /// Ends the call on a verb this leg cannot execute (plan validation
    /// normally refuses it first, with the same message).
    fn refuse_not_built(
        &mut self,
        now: Instant,
        call: &mut CallState,
        verb: &Verb,
        refusal: Option<router::NotBuilt>,
    ) {
        match refusal {
            Some(refusal) => tracing::error!(call = %call.id, %refusal, "ending the call"),
            None => tracing::error!(
                call = %call.id,
                verb = router::verb_name(verb),
                "LEG_SUPPORT says this verb runs, but the SIP leg has no executor for it; ending the call"
            ),
        }
        self.end_caller(
            now,
            call,
            503,
            "Service Unavailable (verb not available yet)",
        );
        call.pending
            .push_back(LegEvent::Hangup(HangupCause::System));
    }

    pub(super) fn on_timer(&mut self, now: Instant, call: &mut CallState, kind: TimerKind) {
        match kind {
            TimerKind::GatherCheck => self.gather_check(now, call),
            TimerKind::SendDigit => self.send_next_digit(now, call),
            TimerKind::DialTimeout(round) => self.on_dial_timeout(now, call, round),
            TimerKind::DialLimit => self.on_dial_limit(now, call),
            TimerKind::OutboundTimeout => self.on_outbound_timeout(now, call),
            TimerKind::QueueTimeout => self.on_queue_timeout(now, call),
            TimerKind::QueueWait => self.on_queue_wait(now, call),
        }
    }

    /// A verb that plays to the caller: answered first, done when the
    /// media edge says the prompt ran to its end.
    fn play_verb(&mut self, now: Instant, call: &mut CallState, prompt: Prompt) {
        if self.answer(now, call) && !self.play(call, vec![prompt]) {
            call.pending.push_back(LegEvent::Done);
        }
    }

    /// Sends the caller a 200 with our SDP and its stream, unless it is
    /// answered already. `false` when the call cannot go on (it ended, or
    /// no media port was free: the caller gets a 503).
    pub(super) fn answer(&mut self, now: Instant, call: &mut CallState) -> bool {
        match call.caller {
            CallerState::Answered => return true,
            CallerState::Ended => return false,
            CallerState::Early => {}
        }
        let Some(sdp) = self.caller_sdp(call) else {
            tracing::error!(call = %call.id, "no free media port; refusing the call");
            self.end_caller(now, call, 503, "Service Unavailable (no media ports)");
            call.pending
                .push_back(LegEvent::Hangup(HangupCause::System));
            return false;
        };
        self.answer_with(now, call, sdp.as_bytes());
        true
    }

    /// A play, digit run or gather prompt `id` ended.
    pub(super) fn on_media_done(&mut self, now: Instant, call: &mut CallState, id: u64) {
        if id != call.generation {
            return; // a verb that was superseded
        }
        match call.gather.as_mut() {
            Some(gather) => {
                gather.prompts_ended.get_or_insert(now);
                self.gather_check(now, call);
            }
            None => {
                if !self.wait_played(now, call) {
                    call.pending.push_back(LegEvent::Done);
                }
            }
        }
    }

    pub(super) fn answer_with(&mut self, now: Instant, call: &mut CallState, sdp: &[u8]) {
        if call.caller != CallerState::Early {
            return;
        }
        let tag = call.dialog_keys[0].1.clone();
        let mut ok = message::response(&call.invite, 200, "OK", Some(&tag));
        let contact = self.config.local.contact(call.peer.transport, "switchyard");
        ok.headers.push(rsip::headers::Contact::new(contact).into());
        ok.headers
            .push(rsip::headers::Allow::new(super::ALLOW).into());
        wire::set_body(&mut ok.headers, "application/sdp", sdp);
        ok.body = sdp.to_vec();
        self.respond(now, &call.invite_key.clone(), ok);
        call.caller = CallerState::Answered;
        call.answered_at = Some(now);
        call.final_status = Some(200);
        self.report_progress(now, call, CallProgress::Answered, None);
    }

    /// Ends the caller's leg from our side: a final response while it is
    /// early, a BYE once answered.
    pub(super) fn end_caller(
        &mut self,
        now: Instant,
        call: &mut CallState,
        status: u16,
        reason: &str,
    ) {
        self.stop_dial(now, call);
        match call.caller {
            // Our own INVITE: CANCEL it (the CDR says canceled).
            CallerState::Early if call.outbound.is_some() => {
                call.caller = CallerState::Ended;
                call.generation += 1;
                return self.cancel_outbound(now, call, 487);
            }
            CallerState::Early => {
                let tag = call.dialog_keys[0].1.clone();
                let response = message::response(&call.invite, status, reason, Some(&tag));
                self.respond(now, &call.invite_key.clone(), response);
                call.final_status = Some(status);
            }
            CallerState::Answered => {
                match call
                    .dialog
                    .request(&mut self.ids, &self.config.local, "BYE")
                    .build(None, &[])
                {
                    Ok(bye) => {
                        self.tx.send_request(now, call.dialog.peer, bye);
                    }
                    Err(e) => tracing::error!(call = %call.id, error = %e, "cannot build BYE"),
                }
            }
            CallerState::Ended => {}
        }
        call.caller = CallerState::Ended;
        call.generation += 1;
    }

    pub(super) fn on_caller_cancel(&mut self, now: Instant, call: &mut CallState) {
        if call.caller != CallerState::Early {
            return;
        }
        self.end_caller(now, call, 487, "Request Terminated");
        call.pending
            .push_back(LegEvent::Hangup(HangupCause::Caller));
    }

    pub(super) fn on_no_ack(&mut self, now: Instant, call: &mut CallState) {
        if call.acked || call.caller != CallerState::Answered {
            return;
        }
        tracing::warn!(call = %call.id, "the caller never acknowledged our 200; hanging up");
        self.end_caller(now, call, 408, "Request Timeout");
        call.pending
            .push_back(LegEvent::Hangup(HangupCause::System));
    }

    /// A request inside one of the call's dialogs.
    pub(super) fn on_in_dialog(
        &mut self,
        now: Instant,
        call: &mut CallState,
        leg: LegRef,
        key: &TxKey,
        req: &rsip::Request,
    ) {
        match (&req.method, leg) {
            (rsip::Method::Bye, LegRef::Caller) => {
                self.reply(now, key, req, 200, "OK");
                if call.caller != CallerState::Ended {
                    call.caller = CallerState::Ended;
                    call.generation += 1;
                    self.stop_dial(now, call);
                    call.pending
                        .push_back(LegEvent::Hangup(HangupCause::Caller));
                }
            }
            (rsip::Method::Bye, LegRef::Fork(fork)) => {
                self.reply(now, key, req, 200, "OK");
                self.on_fork_bye(now, call, fork);
            }
            (rsip::Method::Info, LegRef::Caller) => {
                self.reply(now, key, req, 200, "OK");
                if let Some(digit) = dtmf_digit(req) {
                    self.on_digit(now, call, digit);
                }
            }
            (rsip::Method::Invite, _) => self.on_reinvite(now, call, leg, key, req),
            (rsip::Method::Refer, LegRef::Fork(fork)) => self.on_refer(now, call, fork, key, req),
            (
                rsip::Method::Options
                | rsip::Method::Info
                | rsip::Method::Update
                | rsip::Method::Notify,
                _,
            ) => self.reply(now, key, req, 200, "OK"),
            _ => self.reply(now, key, req, 501, "Not Implemented"),
        }
    }

    /// Hold, unhold and session refresh (RFC 3264 §8, RFC 4028): answered
    /// here, mirroring the offer's direction.
    fn on_reinvite(
        &mut self,
        now: Instant,
        call: &mut CallState,
        leg: LegRef,
        key: &TxKey,
        req: &rsip::Request,
    ) {
        let tag = match leg {
            LegRef::Caller => call.dialog_keys[0].1.clone(),
            LegRef::Fork(_) => wire::to_tag(req).unwrap_or_default(),
        };
        let offer = wire::sdp_body(&req.headers, &req.body);
        if leg == LegRef::Caller
            && let Some(offer) = &offer
            && let Some(answer) = self.caller_reoffer(call, offer)
        {
            let body = match answer {
                Ok(body) => body,
                Err(e) => {
                    let reason = format!("Not Acceptable Here ({e})");
                    let response = message::response(req, 488, &reason, Some(&tag));
                    return self.respond(now, key, response);
                }
            };
            return self.ok_with_sdp(now, call, key, req, &tag, body);
        }
        let media = std::net::SocketAddr::new(self.config.media_ip, DISCARD_PORT);
        let body = match offer {
            Some(offer) => match sdp::answer(&offer, media, 1, 2) {
                Ok((answer, _)) => answer,
                Err(e) => {
                    let reason = format!("Not Acceptable Here ({e})");
                    let response = message::response(req, 488, &reason, Some(&tag));
                    return self.respond(now, key, response);
                }
            },
            None => call.local_sdp.clone(),
        };
        self.ok_with_sdp(now, call, key, req, &tag, body);
    }

    fn ok_with_sdp(
        &mut self,
        now: Instant,
        call: &CallState,
        key: &TxKey,
        req: &rsip::Request,
        tag: &str,
        body: String,
    ) {
        let mut ok = message::response(req, 200, "OK", Some(tag));
        let contact = self.config.local.contact(call.peer.transport, "switchyard");
        ok.headers.push(rsip::headers::Contact::new(contact).into());
        wire::set_body(&mut ok.headers, "application/sdp", body.as_bytes());
        ok.body = body.into_bytes();
        self.respond(now, key, ok);
    }

    pub(super) fn on_digit(&mut self, now: Instant, call: &mut CallState, digit: char) {
        if self.record_digit(call, digit) {
            return;
        }
        let Some(gather) = call.gather.as_mut() else {
            return;
        };
        gather.last_input = now;
        // The first digit interrupts the prompts (TwiML).
        let interrupted = gather.prompts_ended.is_none();
        gather.prompts_ended.get_or_insert(now);
        if interrupted {
            self.stop_play(call);
        }
        let Some(gather) = call.gather.as_mut() else {
            return;
        };
        if gather.spec.finish_on_key == Some(digit) {
            return self.finish_gather(call, GatherEnd::FinishKey);
        }
        gather.digits.push(digit);
        if gather
            .spec
            .num_digits
            .is_some_and(|n| gather.digits.chars().count() >= n as usize)
        {
            return self.finish_gather(call, GatherEnd::NumDigits);
        }
        let timeout = Duration::from_secs(u64::from(gather.spec.timeout_secs));
        call.generation += 1;
        self.schedule(call, now + timeout, TimerKind::GatherCheck);
    }

    fn gather_check(&mut self, now: Instant, call: &mut CallState) {
        let Some(gather) = call.gather.as_ref() else {
            return;
        };
        let Some(prompts_ended) = gather.prompts_ended else {
            return; // the prompts still play; their end checks again
        };
        let timeout = Duration::from_secs(u64::from(gather.spec.timeout_secs));
        let due = prompts_ended.max(gather.last_input) + timeout;
        if due > now {
            return self.schedule(call, due, TimerKind::GatherCheck);
        }
        self.finish_gather(call, GatherEnd::Timeout);
    }

    fn finish_gather(&mut self, call: &mut CallState, ended_by: GatherEnd) {
        let Some(gather) = call.gather.take() else {
            return;
        };
        call.generation += 1;
        call.pending
            .push_back(LegEvent::Result(Event::GatherComplete(GatherResult {
                digits: gather.digits,
                ended_by,
            })));
    }

    /// One digit per INFO (RFC 2976 + application/dtmf-relay), 250 ms apart;
    /// `w` waits half a second.
    fn send_next_digit(&mut self, now: Instant, call: &mut CallState) {
        let Some(digit) = call.digits_to_send.pop_front() else {
            return call.pending.push_back(LegEvent::Done);
        };
        let wait = if digit == 'w' {
            500
        } else {
            let body = format!("Signal={digit}\r\nDuration=160\r\n");
            match call
                .dialog
                .request(&mut self.ids, &self.config.local, "INFO")
                .build(Some("application/dtmf-relay"), body.as_bytes())
            {
                Ok(info) => {
                    self.tx.send_request(now, call.dialog.peer, info);
                }
                Err(e) => tracing::warn!(call = %call.id, error = %e, "cannot send a digit"),
            }
            250
        };
        self.schedule(
            call,
            now + Duration::from_millis(wait),
            TimerKind::SendDigit,
        );
    }

    pub(super) fn report_status(&mut self, call: &mut CallState, status: CallStatus) {
        call.pending.push_back(LegEvent::Status(status));
    }
}

/// The digit of a SIP INFO: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (`5`).
fn dtmf_digit(req: &rsip::Request) -> Option<char> {
    let body = std::str::from_utf8(&req.body).ok()?;
    let value = body
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim().eq_ignore_ascii_case("signal").then_some(value)
        })
        .unwrap_or(body);
    let digit = value.trim().chars().next()?;
    matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D').then_some(digit)
}

/// RTP goes nowhere until the media engine allocates real ports: the SDP
/// names the discard port so nothing is mistaken for a media session.
pub const DISCARD_PORT: u16 = 9;
