//! `dial`: outbound forks of a call, rung in sequence or all at once; the
//! first to answer is bridged and the rest are cancelled.
//!
//! Media is passed through when it can be: while the caller is still
//! unanswered, its SDP offer goes to the forks and the winner's answer
//! comes back, so the two phones exchange RTP directly. It is anchored
//! (the forks get an offer of a stream of ours, bridged to the caller's
//! stream) when the caller was answered already or the dial records.
//!
//! `answer-on-bridge` decides when an unanswered caller is answered:
//! * a pass-through dial keeps it unanswered until the bridge whatever the
//!   flag says (its media goes phone to phone, so answering it earlier
//!   would leave it nothing to hear); ringing and early media are relayed;
//! * an anchored dial (one that records) answers it when the dial starts,
//!   unless the flag is set: then it stays unanswered, hears `180 Ringing`
//!   (the callee's early SDP answers our stream, not the caller's, so it
//!   is not relayed) and is answered at the bridge;
//! * a caller answered already is unaffected.

use std::time::{Duration, Instant};

use crate::gateway::Unreachable;
use crate::transaction::TxKey;
use crate::{Peer, digest, sdp};
use switchyard_contract::{
    CallStatus, Dial, DialResult, DialStatus, DialTarget, Event, RingStrategy,
};
use switchyard_egress::{EgressError, EgressPolicy, Purpose};
use switchyard_router::{self as router, LegEvent};

use super::call::{CallState, CallerState, DISCARD_PORT, LegRef, TimerKind};
use super::dialog::Dialog;
use super::wire::{self, RequestText};
use super::{Endpoint, EndpointEvent, Placement, secs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ForkState {
    Calling,
    /// A provisional response came: CANCEL is allowed now (§9.1).
    Ringing,
    Answered,
    Done,
}

pub struct Fork {
    pub(super) target: DialTarget,
    pub(super) invite: rsip::Request,
    pub(super) key: TxKey,
    pub(super) peer: Peer,
    pub(super) state: ForkState,
    /// Cancelled before any provisional response: CANCEL goes on the first.
    pub(super) cancel_pending: bool,
    pub(super) credentials: Option<(String, String)>,
    pub(super) auth_tried: bool,
    pub(super) dialog: Option<Dialog>,
    /// Sequential ring round (target index) this fork belongs to.
    pub(super) round: usize,
}

/// Where one fork rings.
pub struct Ringing {
    pub target: DialTarget,
    pub uri: String,
    pub peer: Peer,
    pub credentials: Option<(String, String)>,
    pub round: usize,
}

pub struct DialRun {
    pub(super) spec: Dial,
    /// A blind transfer (REFER) of the bridged callee in progress.
    pub(super) transfer: Option<super::transfer::Transfer>,
    /// Sequential: the next target to ring.
    pub(super) next_target: usize,
    pub(super) forks: Vec<Fork>,
    pub(super) winner: Option<usize>,
    pub(super) bridged_at: Option<Instant>,
    pub(super) last_failure: DialStatus,
    pub(super) ringing_reported: bool,
    /// Media runs through our streams (see the module doc).
    pub(super) anchored: bool,
    /// The id the bridge's recording comes back with.
    pub(super) record_id: Option<u64>,
}

/// Where a call rings: (Request-URI, next hop, the credentials of the
/// trunk it goes through).
pub(super) type Destination = (String, Peer, Option<(String, String)>);

/// A failed fork's SIP status as a dial outcome.
fn failure(status: u16) -> DialStatus {
    match status {
        486 | 600 | 603 => DialStatus::Busy,
        408 | 480 | 487 => DialStatus::NoAnswer,
        _ => DialStatus::Failed,
    }
}

impl Endpoint {
    pub(super) fn start_dial(&mut self, now: Instant, call: &mut CallState, spec: Dial) {
        let anchored = spec.record || call.caller == CallerState::Answered;
        let answer_now = anchored && !spec.answer_on_bridge && call.caller == CallerState::Early;
        if answer_now && !self.answer(now, call) {
            return; // no media port: the caller was refused and hung up
        }
        if anchored && call.dial_media.is_none() {
            call.dial_media = self.open_stream(call);
            if call.dial_media.is_none() {
                tracing::error!(call = %call.id, "no free media port for the dial");
                call.pending
                    .push_back(LegEvent::Result(Event::DialComplete(DialResult {
                        status: DialStatus::Failed,
                        answered: None,
                        duration_secs: 0,
                        recording_id: None,
                    })));
                return;
            }
        }
        let record_id = spec.record.then_some(call.generation);
        let simultaneous = spec.strategy == RingStrategy::Simultaneous;
        let timeout = Duration::from_secs(u64::from(spec.timeout_secs.max(1)));
        call.dial = Some(DialRun {
            spec,
            next_target: 0,
            forks: Vec::new(),
            winner: None,
            bridged_at: None,
            last_failure: DialStatus::Failed,
            ringing_reported: false,
            transfer: None,
            anchored,
            record_id,
        });
        if simultaneous {
            let targets = call.dial.as_ref().map_or(0, |d| d.spec.targets.len());
            for index in 0..targets {
                self.ring_target(now, call, index, 0);
            }
            self.schedule(call, now + timeout, TimerKind::DialTimeout(0));
            self.settle_dial(now, call);
        } else {
            self.ring_next(now, call);
        }
    }

    /// Sequential ringing: the next target that yields a fork.
    fn ring_next(&mut self, now: Instant, call: &mut CallState) {
        loop {
            let Some(dial) = call.dial.as_mut() else {
                return;
            };
            let index = dial.next_target;
            if index >= dial.spec.targets.len() {
                let status = dial.last_failure;
                return self.finish_dial(now, call, status);
            }
            dial.next_target += 1;
            let timeout = Duration::from_secs(u64::from(dial.spec.timeout_secs.max(1)));
            if self.ring_target(now, call, index, index) > 0 {
                return self.schedule(call, now + timeout, TimerKind::DialTimeout(index));
            }
        }
    }

    /// Starts the forks of one target; returns how many started.
    fn ring_target(
        &mut self,
        now: Instant,
        call: &mut CallState,
        index: usize,
        round: usize,
    ) -> usize {
        let Some(leg) = call
            .dial
            .as_ref()
            .and_then(|d| d.spec.targets.get(index))
            .cloned()
        else {
            return 0;
        };
        let destinations = match self.destinations(now, call, &leg.target) {
            Ok(found) => found,
            Err(Unreachable { status, reason }) => {
                tracing::warn!(call = %call.id, target = ?leg.target, %reason, "dial target unreachable");
                let target = router::describe::target(&leg.target);
                call.router.unreachable(now, target, reason);
                if let Some(dial) = call.dial.as_mut() {
                    dial.last_failure = status;
                }
                return 0;
            }
        };
        let mut headers = leg.headers;
        if let (DialTarget::Client(_), Some(label)) = (&leg.target, &call.label) {
            headers.push(switchyard_contract::Header {
                name: crate::gateway::LABEL_HEADER.into(),
                value: label.clone(),
            });
        }
        let mut started = 0;
        for (uri, peer, credentials) in destinations {
            let fork = Ringing {
                target: leg.target.clone(),
                uri,
                peer,
                credentials,
                round,
            };
            if self.start_fork(now, call, fork, &headers).is_some() {
                started += 1;
            }
        }
        if started == 0
            && let Some(dial) = call.dial.as_mut()
        {
            dial.last_failure = DialStatus::NoAnswer;
        }
        started
    }

    /// Sends one fork's INVITE; returns its index.
    pub(super) fn start_fork(
        &mut self,
        now: Instant,
        call: &mut CallState,
        fork: Ringing,
        headers: &[switchyard_contract::Header],
    ) -> Option<usize> {
        let invite = match self.fork_invite(now, call, &fork.uri, fork.peer, headers, None) {
            Ok(invite) => invite,
            Err(e) => {
                tracing::error!(call = %call.id, error = %e, "cannot build a dial INVITE");
                return None;
            }
        };
        let key = self.tx.send_request(now, fork.peer, invite.clone());
        self.placed(now, &call.tenant_id, &invite);
        let dial = call.dial.as_mut()?;
        let index = dial.forks.len();
        dial.forks.push(Fork {
            target: fork.target,
            invite,
            key: key.clone(),
            peer: fork.peer,
            state: ForkState::Calling,
            cancel_pending: false,
            credentials: fork.credentials,
            auth_tried: false,
            dialog: None,
            round: fork.round,
        });
        self.clients
            .insert(key.clone(), (call.reference, LegRef::Fork(index)));
        call.client_keys.push(key);
        Some(index)
    }

    /// Tells the edge that `invite`, a new attempt of a call of `tenant`
    /// (not the authenticated retry of one), went out: the provider's
    /// placement records (C11).
    pub(super) fn placed(&mut self, now: Instant, tenant: &str, invite: &rsip::Request) {
        let from = wire::header_str(&invite.headers, "From").unwrap_or_default();
        let from = (from.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map_or(from, |(uri, _)| uri);
        let uri = invite.uri.to_string();
        let placement = Placement {
            tenant: tenant.to_owned(),
            caller: crate::registrar::uri_user(from).unwrap_or_default(),
            callee: crate::registrar::uri_user(&uri).unwrap_or(uri),
            call_id: wire::call_id(invite).unwrap_or_default(),
            at_ms: self.unix_ms(now),
        };
        self.events.push_back(EndpointEvent::Placed(placement));
    }

    /// Where a dial target rings: (Request-URI, next hop, credentials).
    fn destinations(
        &self,
        now: Instant,
        call: &CallState,
        target: &DialTarget,
    ) -> Result<Vec<Destination>, Unreachable> {
        if let DialTarget::Client(identity) = target {
            return self.client_devices(now, call, identity);
        }
        self.sip_destinations(now, call, target)
            .map_err(|reason| Unreachable {
                status: DialStatus::Failed,
                reason,
            })
    }

    /// Every device of a client identity: its browser and app clients
    /// that may take a call now, and SIP phones registered as the user.
    fn client_devices(
        &self,
        now: Instant,
        call: &CallState,
        identity: &str,
    ) -> Result<Vec<Destination>, Unreachable> {
        let tenant = &self.directory.tenant(call.tenant).id;
        // No registered phone is no error here: clients may still ring.
        let mut found = self.registered(now, tenant, identity).unwrap_or_default();
        let clients = match &self.gateway {
            Some((_, locator)) => locator.ring(tenant, identity),
            None => Err(Unreachable {
                status: DialStatus::Failed,
                reason: format!("{identity} is not registered"),
            }),
        };
        match clients {
            Ok(devices) => found.extend(devices.into_iter().map(|(uri, peer)| (uri, peer, None))),
            // A phone registered as the user still rings.
            Err(why) if found.is_empty() => return Err(why),
            Err(_) => {}
        }
        Ok(found)
    }

    fn sip_destinations(
        &self,
        now: Instant,
        call: &CallState,
        target: &DialTarget,
    ) -> Result<Vec<Destination>, String> {
        let tenant = self.directory.tenant(call.tenant);
        match target {
            DialTarget::Number(number) => {
                let trunk = tenant
                    .trunks
                    .first()
                    .ok_or_else(|| format!("tenant {} has no trunk to dial numbers", tenant.id))?;
                let (uri, peer) = trunk_uri(trunk, number);
                self.config
                    .egress
                    .check(Purpose::Trunk, peer.addr.ip())
                    .map_err(|e| e.to_string())?;
                Ok(vec![(uri, peer, trunk.credentials.clone())])
            }
            DialTarget::Sip(uri) => {
                // An address of the tenant's own domain is a registered user.
                let parsed = rsip::Uri::try_from(uri.as_str()).ok();
                let local_user = parsed.as_ref().and_then(|u| {
                    let host = u.host_with_port.host.to_string();
                    let ours = tenant.domains.iter().any(|d| d.eq_ignore_ascii_case(&host));
                    ours.then(|| u.user().map(str::to_string)).flatten()
                });
                match local_user {
                    Some(user) => self.registered(now, &tenant.id, &user),
                    None => Ok(vec![sip_destination(
                        tenant,
                        uri,
                        self.config.egress,
                        Purpose::Dial,
                    )?]),
                }
            }
            // Refused by plan validation before a dial starts; the same
            // table gives the message should one get here.
            DialTarget::Client(_)
            | DialTarget::Conference(_)
            | DialTarget::Queue(_)
            | DialTarget::QueueMember(_) => Err(match router::target_support(target) {
                Err(refusal) => refusal.to_string(),
                Ok(()) => "the SIP leg cannot ring conference and queue targets".into(),
            }),
        }
    }

    /// The location service: every live contact of a tenant's user.
    fn registered(
        &self,
        now: Instant,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<Destination>, String> {
        let bindings = self.registrar.lookup(now, tenant, user);
        if bindings.is_empty() {
            return Err(format!("{user} is not registered"));
        }
        Ok(bindings
            .into_iter()
            .map(|b| (b.contact.to_string(), b.source, None))
            .collect())
    }

    /// The `Identity` header of a call through one of the tenant's trunks
    /// (at `peer`), when the tenant signs: `caller_id` calls the user of
    /// `uri`, now.
    fn identity(
        &self,
        now: Instant,
        call: &CallState,
        peer: Peer,
        caller_id: &str,
        uri: &str,
    ) -> Option<String> {
        let tenant = self.directory.tenant(call.tenant);
        let signing = tenant.signing.as_ref()?;
        let trunk = tenant.trunk_at(peer)?;
        let dest = rsip::Uri::try_from(uri).ok()?.user()?.to_owned();
        let claims = switchyard_shaken::Claims {
            attest: signing.attest_for(caller_id, trunk.attest),
            orig: caller_id.to_owned(),
            dest: vec![dest],
            iat: (self.unix_ms(now) / 1000) as i64,
            origid: call.id.clone(),
        };
        Some(signing.signer.sign(&claims))
    }

    fn fork_invite(
        &mut self,
        now: Instant,
        call: &CallState,
        uri: &str,
        peer: Peer,
        headers: &[switchyard_contract::Header],
        authorization: Option<(&str, String, u32)>,
    ) -> Result<rsip::Request, String> {
        let dial = call.dial.as_ref().ok_or("no dial running")?;
        let local = &self.config.local;
        let caller_id = dial
            .spec
            .caller_id
            .clone()
            .or_else(|| {
                rsip::Uri::try_from(call.from.as_str())
                    .ok()
                    .and_then(|u| u.user().map(str::to_string))
            })
            .unwrap_or_else(|| "anonymous".into());
        let (call_id, from_tag, cseq) = match authorization {
            // An authenticated retry stays in the same dialog attempt (§22.2).
            Some((_, _, cseq)) => (String::new(), String::new(), cseq),
            None => (
                format!("{}@switchyard", self.ids.token()),
                self.ids.token(),
                1,
            ),
        };
        let (call_id, from_tag) = if call_id.is_empty() {
            let prior = dial
                .forks
                .iter()
                .find(|f| f.invite.uri.to_string() == uri)
                .ok_or("no INVITE to retry")?;
            (
                wire::call_id(&prior.invite).unwrap_or_default(),
                wire::from_tag(&prior.invite).unwrap_or_default(),
            )
        } else {
            (call_id, from_tag)
        };
        let mut text = RequestText::new("INVITE", uri)
            .header("Via", local.via(peer.transport, &self.ids.branch()))
            .header("Max-Forwards", 70)
            .header(
                "From",
                format!(
                    "<sip:{caller_id}@{}>;tag={from_tag}",
                    local.addr(peer.transport)
                ),
            )
            .header("To", format!("<{uri}>"))
            .header("Call-ID", call_id)
            .header("CSeq", format!("{cseq} INVITE"))
            .header("Contact", local.contact(peer.transport, "switchyard"))
            .header("Allow", super::ALLOW)
            .header("User-Agent", &local.user_agent);
        for header in headers {
            text = text.header(&header.name, &header.value);
        }
        if let Some(identity) = self.identity(now, call, peer, &caller_id, uri) {
            text = text.header("Identity", identity);
        }
        if let Some((name, value, _)) = authorization {
            text = text.header(name, value);
        }
        // Pass the caller's offer through while it waits unanswered.
        let transferring = dial.transfer.is_some();
        let offer = match (&call.offer, call.caller, &call.dial_media) {
            (_, _, Some(leg)) if dial.anchored => {
                let local = self.media_addr(leg.port);
                sdp::offer(local, leg.session, leg.version, sdp::Direction::SendRecv).into_bytes()
            }
            (Some(offer), CallerState::Early, _) => offer.clone(),
            (Some(offer), _, _) if transferring => offer.clone(),
            _ => {
                let media = std::net::SocketAddr::new(self.config.media_ip, DISCARD_PORT);
                sdp::offer(media, self.ids.session(), 1, sdp::Direction::SendRecv).into_bytes()
            }
        };
        text.build(Some("application/sdp"), &offer)
    }

    pub(super) fn on_fork_response(
        &mut self,
        now: Instant,
        call: &mut CallState,
        leg: LegRef,
        key: &TxKey,
        response: rsip::Response,
    ) {
        let LegRef::Fork(index) = leg else {
            if Self::is_outbound_invite(call, key) {
                return self.on_outbound_response(now, call, &response);
            }
            return self.on_caller_response(call, &response);
        };
        let code = response.status_code.code();
        match code {
            100 => {}
            101..=199 => self.on_fork_ringing(now, call, index, &response),
            200..=299 => self.on_fork_answer(now, call, index, &response),
            401 | 407 => {
                if !self.retry_with_auth(now, call, index, key, &response) {
                    self.on_fork_failed(now, call, leg, code);
                }
            }
            _ => self.on_fork_failed(now, call, leg, code),
        }
    }

    fn on_fork_ringing(
        &mut self,
        now: Instant,
        call: &mut CallState,
        index: usize,
        response: &rsip::Response,
    ) {
        let Some(dial) = call.dial.as_mut() else {
            return;
        };
        let Some(fork) = dial.forks.get_mut(index) else {
            return;
        };
        if fork.state == ForkState::Calling {
            fork.state = ForkState::Ringing;
        }
        if fork.cancel_pending {
            fork.cancel_pending = false;
            let cancel = cancel_for(&fork.invite);
            let peer = fork.peer;
            fork.state = ForkState::Done;
            if let Some(cancel) = cancel {
                self.tx.send_request(now, peer, cancel);
            }
            return;
        }
        let first = !dial.ringing_reported;
        dial.ringing_reported = true;
        let anchored = dial.anchored;
        if call.caller == CallerState::Early && first {
            // Early media: a 183 with the callee's SDP (when it answers the
            // caller's own offer, passed through), else plain ringing.
            let early = wire::sdp_body(&response.headers, &response.body);
            let (status, reason) = if early.is_some() && call.offer.is_some() && !anchored {
                (183, "Session Progress")
            } else {
                (180, "Ringing")
            };
            let tag = call.dialog_keys[0].1.clone();
            let mut ringing = crate::message::response(&call.invite, status, reason, Some(&tag));
            if status == 183 {
                let body = early.unwrap_or_default();
                wire::set_body(&mut ringing.headers, "application/sdp", &body);
                ringing.body = body;
            }
            self.respond(now, &call.invite_key.clone(), ringing);
            self.report_progress(now, call, super::status::CallProgress::Ringing, None);
        }
        if first {
            self.report_status(call, CallStatus::Ringing);
        }
    }

    fn on_fork_answer(
        &mut self,
        now: Instant,
        call: &mut CallState,
        index: usize,
        response: &rsip::Response,
    ) {
        let local = self.config.local.clone();
        let Some(dial) = call.dial.as_mut() else {
            // The dial is over (caller gone): take the late answer down.
            // Only reachable while the dial is being torn down in this
            // same step: finished dials forget their forks' transactions.
            tracing::debug!(call = %call.id, "2xx for a dial that has ended; not answered");
            return;
        };
        let Some(fork) = dial.forks.get_mut(index) else {
            return;
        };
        let invite_cseq = crate::message::cseq(&fork.invite).map_or(1, |(n, _)| n);
        let dialog = fork.dialog.clone().unwrap_or_else(|| Dialog {
            call_id: wire::call_id(&fork.invite).unwrap_or_default(),
            local: from_value(&fork.invite).unwrap_or_default(),
            remote: response_to(response),
            remote_target: wire::contact_uri(response)
                .unwrap_or_else(|| fork.invite.uri.to_string()),
            route_set: wire::record_routes(&response.headers)
                .into_iter()
                .rev()
                .collect(),
            local_cseq: invite_cseq,
            peer: fork.peer,
        });
        // ACK every 2xx, retransmissions included (§13.2.2.4).
        if let Ok(ack) = dialog
            .ack(&mut self.ids, &local, invite_cseq)
            .build(None, &[])
        {
            self.tx.send_stateless(dialog.peer, ack);
        }
        if fork.dialog.is_none() {
            if let Some(tag) = wire::from_tag(&fork.invite) {
                let key = (dialog.call_id.clone(), tag);
                self.dialogs
                    .insert(key.clone(), (call.reference, LegRef::Fork(index)));
                call.dialog_keys.push(key);
            }
            fork.dialog = Some(dialog.clone());
        }
        let lost = dial.winner.is_some_and(|w| w != index) || fork.state == ForkState::Done;
        if dial.winner == Some(index) {
            return; // a retransmitted 2xx
        }
        if dial.transfer.as_ref().is_some_and(|t| t.to == Some(index)) {
            fork.state = ForkState::Answered;
            let body = wire::sdp_body(&response.headers, &response.body);
            return self.complete_transfer(now, call, index, body);
        }
        if lost {
            fork.state = ForkState::Done;
            return self.bye_fork(now, call, index);
        }
        fork.state = ForkState::Answered;
        dial.winner = Some(index);
        dial.bridged_at = Some(now);
        let limit = dial.spec.time_limit_secs;
        self.cancel_forks(now, call, Some(index));
        let body = wire::sdp_body(&response.headers, &response.body);
        if call.dial.as_ref().is_some_and(|d| d.anchored) {
            self.bridge(now, call, body.as_deref());
        } else if call.caller == CallerState::Early {
            let answer = body.unwrap_or_else(|| call.local_sdp.clone().into_bytes());
            self.answer_with(now, call, &answer);
        }
        self.report_status(call, CallStatus::InProgress);
        if let Some(limit) = limit {
            self.schedule(
                call,
                now + Duration::from_secs(u64::from(limit)),
                TimerKind::DialLimit,
            );
        }
    }

    /// Answers a 401/407 from a trunk once with its credentials (RFC 3261 §22.2).
    fn retry_with_auth(
        &mut self,
        now: Instant,
        call: &mut CallState,
        index: usize,
        key: &TxKey,
        response: &rsip::Response,
    ) -> bool {
        let Some(fork) = call.dial.as_ref().and_then(|d| d.forks.get(index)) else {
            return false;
        };
        let Some((username, password)) = fork.credentials.clone().filter(|_| !fork.auth_tried)
        else {
            return false;
        };
        let uri = fork.invite.uri.to_string();
        let (answer_name, value) = match authorization(
            response,
            &uri,
            &username,
            &password,
            &self.ids.token(),
        ) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(call = %call.id, error = %e, "cannot answer the trunk's challenge");
                return false;
            }
        };
        let peer = fork.peer;
        let headers: Vec<switchyard_contract::Header> = Vec::new();
        let invite = match self.fork_invite(
            now,
            call,
            &uri,
            peer,
            &headers,
            Some((answer_name, value, 2)),
        ) {
            Ok(invite) => invite,
            Err(e) => {
                tracing::warn!(call = %call.id, error = %e, "cannot build the authenticated INVITE");
                return false;
            }
        };
        let new_key = self.tx.send_request(now, peer, invite.clone());
        self.clients.remove(key);
        self.clients
            .insert(new_key.clone(), (call.reference, LegRef::Fork(index)));
        call.client_keys.push(new_key.clone());
        if let Some(fork) = call.dial.as_mut().and_then(|d| d.forks.get_mut(index)) {
            fork.invite = invite;
            fork.key = new_key;
            fork.auth_tried = true;
        }
        true
    }

    pub(super) fn on_fork_failed(
        &mut self,
        now: Instant,
        call: &mut CallState,
        leg: LegRef,
        status: u16,
    ) {
        let LegRef::Fork(index) = leg else {
            // Our outbound INVITE got no response (a caller-leg re-INVITE
            // only happens once it is answered, which this ignores).
            return self.on_outbound_failed(call, status);
        };
        let Some(dial) = call.dial.as_mut() else {
            return;
        };
        let Some(fork) = dial.forks.get_mut(index) else {
            return;
        };
        if fork.state == ForkState::Done || fork.state == ForkState::Answered {
            return;
        }
        fork.state = ForkState::Done;
        if dial.transfer.as_ref().is_some_and(|t| t.to == Some(index)) {
            return self.fail_transfer(now, call, status);
        }
        dial.last_failure = failure(status);
        self.settle_dial(now, call);
    }

    /// Moves on when every fork of the current round has failed.
    fn settle_dial(&mut self, now: Instant, call: &mut CallState) {
        let Some(dial) = call.dial.as_ref() else {
            return;
        };
        if dial.winner.is_some() || dial.forks.iter().any(|f| f.state != ForkState::Done) {
            return;
        }
        if dial.spec.strategy == RingStrategy::Sequential {
            call.generation += 1; // the round's timeout is moot
            self.ring_next(now, call);
        } else {
            let status = dial.last_failure;
            self.finish_dial(now, call, status);
        }
    }

    pub(super) fn on_dial_timeout(&mut self, now: Instant, call: &mut CallState, round: usize) {
        let Some(dial) = call.dial.as_mut() else {
            return;
        };
        if dial.winner.is_some() {
            return;
        }
        dial.last_failure = DialStatus::NoAnswer;
        let sequential = dial.spec.strategy == RingStrategy::Sequential;
        let live: Vec<usize> = dial
            .forks
            .iter()
            .enumerate()
            .filter(|(_, f)| f.round == round || !sequential)
            .map(|(i, _)| i)
            .collect();
        for index in live {
            self.cancel_fork(now, call, index);
        }
        if sequential {
            self.ring_next(now, call);
        } else {
            self.finish_dial(now, call, DialStatus::NoAnswer);
        }
    }

    pub(super) fn on_dial_limit(&mut self, now: Instant, call: &mut CallState) {
        if let Some(winner) = call.dial.as_ref().and_then(|d| d.winner) {
            self.bye_fork(now, call, winner);
            self.finish_dial(now, call, DialStatus::Completed);
        }
    }

    pub(super) fn on_fork_bye(&mut self, now: Instant, call: &mut CallState, index: usize) {
        let Some(dial) = call.dial.as_mut() else {
            return;
        };
        if dial.winner != Some(index) {
            return;
        }
        if let Some(fork) = dial.forks.get_mut(index) {
            fork.state = ForkState::Done;
        }
        self.finish_dial(now, call, DialStatus::Completed);
    }

    /// The dial's result goes to the router; forks still ringing are cancelled.
    fn finish_dial(&mut self, now: Instant, call: &mut CallState, status: DialStatus) {
        self.cancel_forks(now, call, None);
        let Some(dial) = call.dial.take() else {
            return;
        };
        self.forget_forks(&dial);
        call.generation += 1;
        let answered = dial
            .winner
            .and_then(|w| dial.forks.get(w))
            .map(|f| f.target.clone());
        let duration_secs = dial.bridged_at.map_or(0, |at| secs(now - at));
        let status = if dial.winner.is_some() {
            DialStatus::Completed
        } else {
            status
        };
        let result = DialResult {
            status,
            answered,
            duration_secs,
            recording_id: None,
        };
        match dial.record_id.filter(|_| dial.winner.is_some()) {
            // The result waits for the recording to be stored.
            Some(id) => {
                self.unbridge(call);
                call.dial_waiting = Some((id, result));
            }
            None => {
                self.unbridge(call);
                call.pending
                    .push_back(LegEvent::Result(Event::DialComplete(result)));
            }
        }
    }

    /// The caller is gone or the call ends: cancel ringing forks, hang up
    /// the bridged one.
    pub(super) fn stop_dial(&mut self, now: Instant, call: &mut CallState) {
        let Some(winner) = call.dial.as_ref().map(|d| d.winner) else {
            return;
        };
        self.cancel_forks(now, call, None);
        if let Some(winner) = winner
            && call
                .dial
                .as_ref()
                .and_then(|d| d.forks.get(winner))
                .is_some_and(|f| f.state == ForkState::Answered)
        {
            self.bye_fork(now, call, winner);
        }
        if let Some(dial) = call.dial.take() {
            self.forget_forks(&dial);
        }
    }

    /// A dial's forks stop receiving responses once it is over: fork
    /// indices restart with the next dial, so a late response must not be
    /// taken for a fork of that one. (The transaction layer still ACKs a
    /// late non-2xx; a late 2xx is not answered yet, see `on_fork_answer`.)
    fn forget_forks(&mut self, dial: &DialRun) {
        for fork in &dial.forks {
            self.clients.remove(&fork.key);
        }
    }

    fn cancel_forks(&mut self, now: Instant, call: &mut CallState, except: Option<usize>) {
        let count = call.dial.as_ref().map_or(0, |d| d.forks.len());
        for index in (0..count).filter(|i| Some(*i) != except) {
            self.cancel_fork(now, call, index);
        }
    }

    /// CANCEL a ringing fork (§9.1); one still without a provisional
    /// response is cancelled when its first one arrives.
    fn cancel_fork(&mut self, now: Instant, call: &mut CallState, index: usize) {
        let Some(fork) = call.dial.as_mut().and_then(|d| d.forks.get_mut(index)) else {
            return;
        };
        match fork.state {
            ForkState::Calling => fork.cancel_pending = true,
            ForkState::Ringing => {
                fork.state = ForkState::Done;
                let peer = fork.peer;
                if let Some(cancel) = cancel_for(&fork.invite) {
                    self.tx.send_request(now, peer, cancel);
                }
            }
            ForkState::Answered | ForkState::Done => {}
        }
    }

    pub(super) fn bye_fork(&mut self, now: Instant, call: &mut CallState, index: usize) {
        let local = self.config.local.clone();
        let Some(fork) = call.dial.as_mut().and_then(|d| d.forks.get_mut(index)) else {
            return;
        };
        fork.state = ForkState::Done;
        if let Some(dialog) = fork.dialog.as_mut()
            && let Ok(bye) = dialog
                .request(&mut self.ids, &local, "BYE")
                .build(None, &[])
        {
            self.tx.send_request(now, dialog.peer, bye);
        }
    }
}

/// The CANCEL for an INVITE we sent: same Request-URI, Call-ID, From, To,
/// CSeq number and top Via (§9.1).
pub(crate) fn cancel_for(invite: &rsip::Request) -> Option<rsip::Request> {
    let via = wire::header_value(&invite.headers, "Via")?;
    let (cseq, _) = crate::message::cseq(invite)?;
    RequestText::new("CANCEL", &invite.uri.to_string())
        .header("Via", via)
        .header("Max-Forwards", 70)
        .header("From", from_value(invite)?)
        .header("To", wire::header_value(&invite.headers, "To")?)
        .header("Call-ID", wire::call_id(invite)?)
        .header("CSeq", format!("{cseq} CANCEL"))
        .build(None, &[])
        .ok()
}

pub(super) fn response_to(response: &rsip::Response) -> String {
    wire::header_value(&response.headers, "To").unwrap_or_default()
}

fn from_value(request: &rsip::Request) -> Option<String> {
    wire::header_value(&request.headers, "From")
}

/// Where a `sip:` URI outside the tenant's domains rings: straight to its
/// host, with the credentials of the tenant's trunk at that address if
/// there is one. Tenants name these addresses, so the egress policy
/// decides whether they may be reached ([`allowed_peer`]).
pub(super) fn sip_destination(
    tenant: &crate::directory::Tenant,
    uri: &str,
    egress: EgressPolicy,
    purpose: Purpose,
) -> Result<Destination, String> {
    let peer = wire::uri_peer(uri)?;
    let trunk = allowed_peer(tenant, peer, egress, purpose).map_err(|e| e.to_string())?;
    Ok((
        uri.to_owned(),
        peer,
        trunk.and_then(|t| t.credentials.clone()),
    ))
}

/// Whether a tenant's call may reach `peer` for `purpose`, and the
/// tenant's trunk there if there is one. A trunk is always reachable (the
/// operator configured it); any other address is up to the egress policy,
/// so that the runtime is not a tenant's way into the operator's network.
pub(super) fn allowed_peer(
    tenant: &crate::directory::Tenant,
    peer: Peer,
    egress: EgressPolicy,
    purpose: Purpose,
) -> Result<Option<&crate::directory::Trunk>, EgressError> {
    let trunk = tenant.trunk_at(peer);
    let purpose = if trunk.is_some() {
        Purpose::Trunk
    } else {
        purpose
    };
    egress.check(purpose, peer.addr.ip())?;
    Ok(trunk)
}

/// The Request-URI and next hop of `number` through `trunk`.
pub(super) fn trunk_uri(trunk: &crate::directory::Trunk, number: &str) -> (String, Peer) {
    let param = match trunk.transport {
        crate::Transport::Udp => "",
        crate::Transport::Tcp => ";transport=tcp",
        crate::Transport::Tls => ";transport=tls",
    };
    let uri = format!("sip:{number}@{}{param}", trunk.address);
    (uri, Peer::new(trunk.transport, trunk.address))
}

/// The header that answers a 401/407 to our INVITE of `uri` with
/// `username`/`password` (RFC 3261 §22.2), with our `cnonce`: (header
/// name, value).
pub(super) fn authorization(
    response: &rsip::Response,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Result<(&'static str, String), String> {
    let (header, answer_name) = if response.status_code.code() == 407 {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let challenges: Vec<String> = response
        .headers
        .iter()
        .filter_map(|h| {
            let text = h.to_string();
            let (name, value) = text.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(header)
                .then(|| value.trim().to_string())
        })
        .collect();
    let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
    let challenge = digest::pick(&refs).ok_or_else(|| format!("no usable {header}"))?;
    let value = digest::answer(challenge, "INVITE", uri, username, password, 1, cnonce)
        .map_err(|e| e.to_string())?;
    Ok((answer_name, value))
}
