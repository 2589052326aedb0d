//! Outbound calls (`POST /v1/calls`): we send the INVITE, and once the far
//! end answers, its leg is the call's "caller" leg and the handler runs
//! on it as on an inbound call (`direction: outbound`).
//!
//! ```text
//!   originate ─► INVITE ─► 1xx: ringing ─► 2xx: ACK, dialog, SDP answer,
//!        │                                     router starts (Incoming)
//!        │                 non-2xx / no answer in time (CANCEL)
//!        └─ admission: refused at once, never queued ─► CDR, no plan
//! ```
//!
//! `to` is a SIP URI, or a number that goes out through the account's
//! first trunk. A trunk's credentials answer one 401/407 challenge, for
//! a number and for a URI at the trunk's address alike (RFC 3261 §22.2).
//!
//! Until the answer the call has a router that is never pumped: no plan
//! may run on a leg nobody picked up. It is replaced by a fresh one at the
//! answer, so the decision log starts there; an unanswered call leaves an
//! empty log.

use std::time::{Duration, Instant};

use crate::directory::{Binding, Tenant};
use crate::sdp;
use crate::transaction::TxKey;
use switchyard_contract::{ConferenceOptions, Direction, IncomingCall, Plan, Verb};
use switchyard_egress::{EgressPolicy, Purpose};
use switchyard_router as router;

use super::admission::Decision;
use super::call::{CallState, CallerState, LegRef, TimerKind};
use super::dial::{
    Destination, authorization, cancel_for, response_to, sip_destination, trunk_uri,
};
use super::dialog::Dialog;
use super::status::CallProgress;
use super::wire::{self, RequestText};
use super::{CallRef, Endpoint};

/// How long a CANCELled INVITE may wait for its final response before
/// the call is given up anyway (64·T1, RFC 3261 §9.1).
const CANCEL_GRACE: Duration = Duration::from_secs(32);

/// What `POST /v1/calls` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginateSpec {
    /// The SIP URI to call, or a number (see [`is_number`]) to call
    /// through the account's first trunk.
    pub to: String,
    /// The account's handler (component name) that runs once answered.
    pub handler: String,
    /// Our From URI; the endpoint's own address when absent.
    pub from: Option<String>,
    /// How long it may ring before it is cancelled.
    pub timeout: Duration,
    /// Where this call's status events are POSTed, if anywhere.
    pub status_callback: Option<String>,
    /// Once answered, join this conference (the REST API adding a
    /// participant); `handler` then hears only its result, and may be
    /// empty: the call ends when the caller is out of the conference.
    pub join: Option<ConferenceOptions>,
}

/// Why an outbound call was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    #[error("no account {0:?} in the SIP directory")]
    UnknownTenant(String),
    #[error("the account is suspended")]
    Suspended,
    #[error("the account has no handler named {0:?}")]
    UnknownHandler(String),
    #[error("{0}")]
    BadAddress(String),
    /// At the account's (or the runtime's) call limits: try later.
    #[error("the account is at its call limits; retry in {retry_after} s")]
    Busy { retry_after: u32 },
    #[error("no free media port")]
    NoMedia,
}

/// Where our INVITE is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Calling,
    /// A provisional response came: CANCEL is allowed now (§9.1).
    Ringing,
    Answered,
}

/// The UAC side of an outbound call's leg.
pub struct Outbound {
    pub(super) progress: Progress,
    pub(super) key: TxKey,
    /// Cancelled before any provisional response: CANCEL goes on the first.
    pub(super) cancel_pending: bool,
    /// We gave up (CANCEL sent or pending): only the final response or the
    /// grace timer is awaited.
    pub(super) cancelled: bool,
    /// The first event of the handler, sent when the far end answers.
    incoming: Option<IncomingCall>,
    /// The conference to join once answered, instead of that event.
    join: Option<ConferenceOptions>,
    /// The CSeq of our current INVITE: 1, or 2 after a challenge.
    cseq: u32,
    /// The trunk's username and password, for one challenge.
    credentials: Option<(String, String)>,
    auth_tried: bool,
}

/// Whether `to` is a number rather than a URI: 1–32 of digits, `*`, `#`,
/// with an optional leading `+`, and at least one digit.
pub fn is_number(to: &str) -> bool {
    let digits = to.strip_prefix('+').unwrap_or(to);
    (1..=32).contains(&digits.len())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        && digits.bytes().any(|b| b.is_ascii_digit())
}

/// Where an outbound call to `to` goes.
fn target(tenant: &Tenant, to: &str, egress: EgressPolicy) -> Result<Destination, OriginateError> {
    if is_number(to) {
        let trunk = tenant.trunks.first().ok_or_else(|| {
            OriginateError::BadAddress(format!(
                "{to:?} is a number, and the account has no trunk to call numbers through: give a sip: URI"
            ))
        })?;
        let (uri, peer) = trunk_uri(trunk, to);
        egress
            .check(Purpose::Trunk, peer.addr.ip())
            .map_err(|e| OriginateError::BadAddress(e.to_string()))?;
        return Ok((uri, peer, trunk.credentials.clone()));
    }
    sip_destination(tenant, to, egress, Purpose::OutboundCall).map_err(OriginateError::BadAddress)
}

impl Outbound {
    /// The router must not run yet (or ever: not answered).
    pub(super) fn holds_router(&self) -> bool {
        self.progress != Progress::Answered || self.cancelled
    }
}

impl Endpoint {
    /// Starts an outbound call of tenant `tenant_id`; returns its call id.
    pub fn originate(
        &mut self,
        now: Instant,
        tenant_id: &str,
        spec: OriginateSpec,
    ) -> Result<String, OriginateError> {
        let directory = std::sync::Arc::clone(&self.directory);
        let (idx, tenant) = directory
            .tenants()
            .iter()
            .enumerate()
            .find(|(_, t)| t.id == tenant_id)
            .ok_or_else(|| OriginateError::UnknownTenant(tenant_id.into()))?;
        if tenant.suspended {
            return Err(OriginateError::Suspended);
        }
        let no_handler = spec.handler.is_empty() && spec.join.is_some();
        if !no_handler && !tenant.handlers.contains_key(&spec.handler) {
            return Err(OriginateError::UnknownHandler(spec.handler));
        }
        // Both go into our INVITE as text: nothing may break out of a header.
        for uri in std::iter::once(&spec.to).chain(&spec.from) {
            if uri
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
            {
                return Err(OriginateError::BadAddress(format!(
                    "{uri:?} is not a plain SIP URI"
                )));
            }
        }
        let (uri, peer, credentials) = target(tenant, &spec.to, self.config.egress)?;
        let from = match &spec.from {
            Some(from) => {
                let uri = rsip::Uri::try_from(from.as_str()).map_err(|e| {
                    OriginateError::BadAddress(format!("bad From URI {from:?}: {e}"))
                })?;
                uri.to_string()
            }
            None => format!("sip:switchyard@{}", self.config.local.addr(peer.transport)),
        };
        // Nobody waits on an outbound call: no room now is a refusal.
        match self.admission.try_admit(now, idx, tenant.limits) {
            Decision::Admitted => {}
            Decision::Refused { retry_after, .. } => {
                return Err(OriginateError::Busy { retry_after });
            }
            Decision::Queued => unreachable!("try_admit never queues"),
        }
        // Admitted: from here every exit gives the place back.
        let reference: CallRef = self.next_call;
        self.next_call += 1;
        let id = self.ids.call_id(self.unix_ms(now));
        let tenant_id = tenant.id.clone();
        let Some(leg) = self.open_stream_for(reference, &tenant_id, &id) else {
            self.admission.ended(now, idx);
            self.drain_admission(now);
            return Err(OriginateError::NoMedia);
        };
        let offer = sdp::offer(
            self.media_addr(leg.port),
            leg.session,
            leg.version,
            sdp::Direction::SendRecv,
        );
        let tag = self.ids.token();
        let dialog = Dialog {
            call_id: format!("{}@switchyard", self.ids.token()),
            local: format!("<{from}>;tag={tag}"),
            remote: format!("<{uri}>"),
            remote_target: uri.clone(),
            route_set: Vec::new(),
            // The INVITE is CSeq 1; in-dialog requests follow it.
            local_cseq: 1,
            peer,
        };
        let invite = match self.outbound_invite(&dialog, &uri, offer.as_bytes(), None) {
            Ok(invite) => invite,
            Err(e) => {
                self.close_stream(reference, &leg);
                self.admission.ended(now, idx);
                self.drain_admission(now);
                return Err(OriginateError::BadAddress(e));
            }
        };
        let key = self.tx.send_request(now, peer, invite.clone());
        self.placed(now, &tenant_id, &invite);
        self.clients
            .insert(key.clone(), (reference, LegRef::Caller));
        let dialog_key = (dialog.call_id.clone(), tag);
        self.dialogs
            .insert(dialog_key.clone(), (reference, LegRef::Caller));

        let mut incoming = IncomingCall::inbound(&from, &spec.to, &self.config.region);
        incoming.direction = Direction::Outbound;
        // A placeholder: it queued the Incoming event, which is never
        // polled; the real router starts at the answer.
        let mut placeholder = router::Call::new(
            now,
            &id,
            &tenant_id,
            &spec.handler,
            incoming.clone(),
            self.config.router.clone(),
        );
        placeholder.take_log();
        let version = self.directory.tenant(idx).versions.get(&spec.handler);
        let mut binding = Binding::new(&spec.handler, version.cloned().unwrap_or_default());
        binding.status_callback = spec.status_callback.clone();
        let mut call = CallState {
            reference,
            id: id.clone(),
            tenant: idx,
            tenant_id,
            binding,
            router: placeholder,
            started: now,
            answered_at: None,
            from,
            to: spec.to.clone(),
            label: None,
            invite,
            invite_key: key.clone(),
            peer,
            caller: CallerState::Early,
            dialog,
            // Nobody ACKs us: we are the UAC.
            acked: true,
            offer: None,
            local_sdp: offer,
            media: Some(leg),
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
            digits_to_send: Default::default(),
            pending: Default::default(),
            finished: false,
            dialog_keys: vec![dialog_key],
            client_keys: vec![key.clone()],
            status_sequence: 0,
            outbound: Some(Outbound {
                progress: Progress::Calling,
                key,
                cancel_pending: false,
                cancelled: false,
                incoming: Some(incoming),
                join: spec.join.clone(),
                cseq: 1,
                credentials,
                auth_tried: false,
            }),
        };
        self.schedule(&call, now + spec.timeout, TimerKind::OutboundTimeout);
        self.report_progress(now, &mut call, CallProgress::Initiated, None);
        self.calls.insert(reference, call);
        Ok(id)
    }

    /// Our INVITE at `dialog.local_cseq`, with `authorization` (header
    /// name, value) when it answers a challenge.
    fn outbound_invite(
        &mut self,
        dialog: &Dialog,
        uri: &str,
        offer: &[u8],
        authorization: Option<(&str, String)>,
    ) -> Result<rsip::Request, String> {
        let local = &self.config.local;
        let transport = dialog.peer.transport;
        let mut text = RequestText::new("INVITE", uri)
            .header("Via", local.via(transport, &self.ids.branch()))
            .header("Max-Forwards", 70)
            .header("From", &dialog.local)
            .header("To", &dialog.remote)
            .header("Call-ID", &dialog.call_id)
            .header("CSeq", format!("{} INVITE", dialog.local_cseq))
            .header("Contact", local.contact(transport, "switchyard"))
            .header("Allow", super::ALLOW)
            .header("User-Agent", &local.user_agent);
        if let Some((name, value)) = authorization {
            text = text.header(name, value);
        }
        text.build(Some("application/sdp"), offer)
    }

    /// Answers a 401/407 to our INVITE once, with the trunk's credentials:
    /// the same Call-ID and From tag, the next CSeq. `false` when it
    /// cannot (no credentials, tried already, given up).
    fn retry_outbound_auth(
        &mut self,
        now: Instant,
        call: &mut CallState,
        response: &rsip::Response,
    ) -> bool {
        let Some(out) = call.outbound.as_ref() else {
            return false;
        };
        let Some((username, password)) = out.credentials.clone() else {
            return false;
        };
        if out.auth_tried || out.cancelled {
            return false;
        }
        let uri = call.invite.uri.to_string();
        let answer = match authorization(response, &uri, &username, &password, &self.ids.token()) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(call = %call.id, error = %e, "cannot answer the trunk's challenge");
                return false;
            }
        };
        let cseq = out.cseq + 1;
        call.dialog.local_cseq = cseq;
        let invite = match self.outbound_invite(
            &call.dialog,
            &uri,
            call.local_sdp.as_bytes(),
            Some(answer),
        ) {
            Ok(invite) => invite,
            Err(e) => {
                tracing::warn!(call = %call.id, error = %e, "cannot build the authenticated INVITE");
                return false;
            }
        };
        let key = self.tx.send_request(now, call.dialog.peer, invite.clone());
        self.clients.remove(&call.invite_key);
        self.clients
            .insert(key.clone(), (call.reference, LegRef::Caller));
        call.client_keys.push(key.clone());
        call.invite = invite;
        call.invite_key = key.clone();
        if let Some(out) = call.outbound.as_mut() {
            out.key = key;
            out.cseq = cseq;
            out.auth_tried = true;
        }
        true
    }

    /// Whether `key` is the INVITE of `call`'s outbound leg.
    pub(super) fn is_outbound_invite(call: &CallState, key: &TxKey) -> bool {
        call.outbound.as_ref().is_some_and(|o| o.key == *key)
    }

    /// A response to our INVITE.
    pub(super) fn on_outbound_response(
        &mut self,
        now: Instant,
        call: &mut CallState,
        response: &rsip::Response,
    ) {
        let Some(out) = call.outbound.as_mut() else {
            return;
        };
        match response.status_code.code() {
            100 => {}
            101..=199 => {
                let first = out.progress == Progress::Calling;
                if first {
                    out.progress = Progress::Ringing;
                }
                if std::mem::take(&mut out.cancel_pending) {
                    self.send_cancel(now, call);
                } else if first && !out.cancelled {
                    self.report_progress(now, call, CallProgress::Ringing, None);
                }
            }
            200..=299 => self.on_outbound_answer(now, call, response),
            401 | 407 if self.retry_outbound_auth(now, call, response) => {}
            code => self.on_outbound_failed(call, code),
        }
    }

    /// No final response, or a final failure: the call ends unanswered.
    pub(super) fn on_outbound_failed(&mut self, call: &mut CallState, code: u16) {
        let Some(out) = call.outbound.as_mut() else {
            return;
        };
        if out.progress == Progress::Answered {
            return; // a late failure of a retransmission; the call goes on
        }
        // A cancel already chose the outcome (canceled, no-answer).
        if !out.cancelled {
            call.final_status = Some(code);
        }
        call.caller = CallerState::Ended;
        call.finished = true;
    }

    fn on_outbound_answer(
        &mut self,
        now: Instant,
        call: &mut CallState,
        response: &rsip::Response,
    ) {
        let local = self.config.local.clone();
        let answered = call
            .outbound
            .as_ref()
            .is_some_and(|o| o.progress == Progress::Answered);
        if !answered {
            call.dialog.remote = response_to(response);
            if let Some(target) = wire::contact_uri(response) {
                call.dialog.remote_target = target;
            }
            call.dialog.route_set = wire::record_routes(&response.headers)
                .into_iter()
                .rev()
                .collect();
        }
        // ACK every 2xx, retransmissions included (§13.2.2.4).
        let cseq = call.outbound.as_ref().map_or(1, |o| o.cseq);
        if let Ok(ack) = call
            .dialog
            .ack(&mut self.ids, &local, cseq)
            .build(None, &[])
        {
            self.tx.send_stateless(call.dialog.peer, ack);
        }
        if answered {
            return;
        }
        let Some(out) = call.outbound.as_mut() else {
            return;
        };
        out.progress = Progress::Answered;
        if out.cancelled {
            // The answer crossed our CANCEL: take it down at once.
            call.caller = CallerState::Answered;
            self.end_caller(now, call, 487, "Request Terminated");
            call.finished = true;
            return;
        }
        let incoming = out.incoming.take();
        let join = out.join.take();
        call.caller = CallerState::Answered;
        call.answered_at = Some(now);
        call.final_status = Some(200);
        match wire::sdp_body(&response.headers, &response.body) {
            Some(answer) => self.caller_late_answer(call, &answer),
            None => tracing::warn!(call = %call.id, "the callee answered without SDP; no audio"),
        }
        self.report_progress(now, call, CallProgress::Answered, None);
        if let Some(options) = join {
            let plan = Plan {
                verbs: vec![Verb::Conference(options)],
            };
            call.router = router::Call::with_plan(
                now,
                &call.id,
                &call.tenant_id,
                &call.binding.handler,
                plan,
                self.config.router.clone(),
            );
        } else if let Some(incoming) = incoming {
            call.router = router::Call::new(
                now,
                &call.id,
                &call.tenant_id,
                &call.binding.handler,
                incoming,
                self.config.router.clone(),
            );
        }
    }

    /// A redirect from outside before the answer: `handler` is the one
    /// that will run. `false` when the call's router runs already.
    pub(super) fn redirect_unanswered(call: &mut CallState, handler: &str) -> bool {
        if !call.outbound.as_ref().is_some_and(|o| o.holds_router()) {
            return false;
        }
        call.binding.handler = handler.to_owned();
        true
    }

    /// Gives up on an unanswered outbound call; `status` is its CDR's
    /// final status (487 canceled, 408 no answer).
    pub(super) fn cancel_outbound(&mut self, now: Instant, call: &mut CallState, status: u16) {
        let Some(out) = call.outbound.as_mut() else {
            return;
        };
        if out.cancelled || out.progress == Progress::Answered {
            return;
        }
        out.cancelled = true;
        call.final_status = Some(status);
        match out.progress {
            Progress::Calling => out.cancel_pending = true,
            _ => self.send_cancel(now, call),
        }
        call.generation += 1;
        self.schedule(call, now + CANCEL_GRACE, TimerKind::OutboundTimeout);
    }

    fn send_cancel(&mut self, now: Instant, call: &CallState) {
        if let Some(cancel) = cancel_for(&call.invite) {
            self.tx.send_request(now, call.dialog.peer, cancel);
        }
    }

    /// It rang too long (CANCEL), or a CANCEL got no final response in time.
    pub(super) fn on_outbound_timeout(&mut self, now: Instant, call: &mut CallState) {
        let Some(out) = call.outbound.as_ref() else {
            return;
        };
        if out.progress == Progress::Answered {
            return;
        }
        if out.cancelled {
            call.caller = CallerState::Ended;
            call.finished = true;
            return;
        }
        self.cancel_outbound(now, call, 408);
        call.caller = CallerState::Ended;
    }
}
