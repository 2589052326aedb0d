//! Blind transfer (RFC 3515 REFER, RFC 5589 §6): the bridged callee asks
//! the call to be sent elsewhere. The endpoint rings the Refer-To target;
//! when it answers, the caller is bridged to it (a re-INVITE carries the
//! new party's SDP to the caller), the transferor hears NOTIFY 200 and is
//! hung up. If the target fails, the transferor hears the failure and the
//! original bridge stays.
//!
//! The Refer-To target is named by the far end, so it passes the egress
//! policy ([`Purpose::Transfer`], as a dial would): a loopback or private
//! address that is not one of the tenant's trunks is answered 403 unless
//! `[sip] private_destinations = true`, and the bridge stays.

use std::time::Instant;

use crate::transaction::TxKey;
use switchyard_contract::DialTarget;
use switchyard_egress::Purpose;

use super::Endpoint;
use super::call::{CallState, LegRef};
use super::dial::{Ringing, allowed_peer};
use super::wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The fork that sent the REFER.
    pub from: usize,
    /// The fork ringing the transfer target, once started.
    pub to: Option<usize>,
}

/// The URI inside a Refer-To value (`<sip:carol@10.0.0.3>;x=y` → `sip:carol@10.0.0.3`).
fn refer_to_uri(value: &str) -> &str {
    let value = value.trim();
    match (value.find('<'), value.find('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value.split(';').next().unwrap_or(value),
    }
}

impl Endpoint {
    pub(super) fn on_refer(
        &mut self,
        now: Instant,
        call: &mut CallState,
        index: usize,
        key: &TxKey,
        req: &rsip::Request,
    ) {
        let bridged = call
            .dial
            .as_ref()
            .is_some_and(|d| d.winner == Some(index) && d.transfer.is_none());
        if !bridged {
            return self.reply(
                now,
                key,
                req,
                403,
                "Forbidden (only a bridged callee may transfer)",
            );
        }
        let Some(refer_to) = wire::header_value(&req.headers, "Refer-To")
            .or_else(|| wire::header_value(&req.headers, "r"))
        else {
            return self.reply(now, key, req, 400, "Missing Refer-To");
        };
        let uri = refer_to_uri(&refer_to).to_string();
        let peer = match wire::uri_peer(&uri) {
            Ok(peer) => peer,
            Err(reason) => {
                tracing::info!(call = %call.id, %reason, "transfer refused");
                return self.reply(
                    now,
                    key,
                    req,
                    488,
                    "Not Acceptable Here (Refer-To unreachable)",
                );
            }
        };
        let tenant = self.directory.tenant(call.tenant);
        if let Err(refused) = allowed_peer(tenant, peer, self.config.egress, Purpose::Transfer) {
            tracing::warn!(
                call = %call.id,
                tenant = %tenant.id,
                target = %uri,
                "transfer refused: {refused}"
            );
            return self.reply(
                now,
                key,
                req,
                403,
                "Forbidden (Refer-To is not a public address)",
            );
        }
        self.reply(now, key, req, 202, "Accepted");
        if let Some(dial) = call.dial.as_mut() {
            dial.transfer = Some(Transfer {
                from: index,
                to: None,
            });
        }
        self.notify(now, call, index, "SIP/2.0 100 Trying", false);
        let fork = Ringing {
            target: DialTarget::Sip(uri.clone()),
            uri,
            peer,
            // Never the trunk's credentials, even at its address: the
            // transferor may be anyone the call reached, and must not place
            // calls on the tenant's account.
            credentials: None,
            // Outside every ring round: dial timeouts never cancel it.
            round: usize::MAX,
        };
        match self.start_fork(now, call, fork, &[]) {
            Some(to) => {
                if let Some(transfer) = call.dial.as_mut().and_then(|d| d.transfer.as_mut()) {
                    transfer.to = Some(to);
                }
            }
            None => self.fail_transfer(now, call, 500),
        }
    }

    /// The transfer target answered: it becomes the bridged party.
    pub(super) fn complete_transfer(
        &mut self,
        now: Instant,
        call: &mut CallState,
        to: usize,
        sdp: Option<Vec<u8>>,
    ) {
        let Some(dial) = call.dial.as_mut() else {
            return;
        };
        let Some(transfer) = dial.transfer.take() else {
            return;
        };
        dial.winner = Some(to);
        let anchored = dial.anchored;
        self.notify(now, call, transfer.from, "SIP/2.0 200 OK", true);
        self.bye_fork(now, call, transfer.from);
        match sdp {
            // Our fork-side stream now faces the new party; the caller
            // hears no change.
            Some(sdp) if anchored => self.restart_dial_media(call, &sdp),
            Some(sdp) => self.reinvite_caller(now, call, &sdp),
            None => {}
        }
    }

    pub(super) fn fail_transfer(&mut self, now: Instant, call: &mut CallState, status: u16) {
        let Some(transfer) = call.dial.as_mut().and_then(|d| d.transfer.take()) else {
            return;
        };
        let reason = rsip::StatusCode::from(status).to_string();
        let line = format!("SIP/2.0 {reason}");
        self.notify(now, call, transfer.from, &line, true);
    }

    /// NOTIFY of the implicit refer subscription (RFC 3515 §2.4.5).
    fn notify(&mut self, now: Instant, call: &mut CallState, fork: usize, line: &str, last: bool) {
        let local = self.config.local.clone();
        let Some(dialog) = call
            .dial
            .as_mut()
            .and_then(|d| d.forks.get_mut(fork))
            .and_then(|f| f.dialog.as_mut())
        else {
            return;
        };
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let body = format!("{line}\r\n");
        let request = dialog
            .request(&mut self.ids, &local, "NOTIFY")
            .header("Event", "refer")
            .header("Subscription-State", state)
            .header(
                "Contact",
                local.contact(dialog.peer.transport, "switchyard"),
            )
            .build(Some("message/sipfrag;version=2.0"), body.as_bytes());
        match request {
            Ok(notify) => {
                self.tx.send_request(now, dialog.peer, notify);
            }
            Err(e) => tracing::warn!(call = %call.id, error = %e, "cannot build NOTIFY"),
        }
    }

    /// A re-INVITE to the caller carrying the new party's SDP, so media
    /// follows the transfer (its 2xx is ACKed in `on_caller_response`).
    fn reinvite_caller(&mut self, now: Instant, call: &mut CallState, sdp: &[u8]) {
        let local = self.config.local.clone();
        let contact = local.contact(call.dialog.peer.transport, "switchyard");
        let request = call
            .dialog
            .request(&mut self.ids, &local, "INVITE")
            .header("Contact", contact)
            .build(Some("application/sdp"), sdp);
        match request {
            Ok(invite) => {
                let key = self.tx.send_request(now, call.dialog.peer, invite);
                self.clients
                    .insert(key.clone(), (call.reference, LegRef::Caller));
                call.client_keys.push(key);
            }
            Err(e) => tracing::warn!(call = %call.id, error = %e, "cannot build re-INVITE"),
        }
    }

    /// Responses to our requests on the caller's dialog (the transfer re-INVITE).
    pub(super) fn on_caller_response(&mut self, call: &mut CallState, response: &rsip::Response) {
        if !(200..300).contains(&response.status_code.code()) {
            return;
        }
        let Some((cseq, _)) = crate::message::cseq(response) else {
            return;
        };
        if let Ok(ack) = call
            .dialog
            .ack(&mut self.ids, &self.config.local, cseq)
            .build(None, &[])
        {
            self.tx.send_stateless(call.dialog.peer, ack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refer_to_uri;

    #[test]
    fn refer_to_values_give_their_uri() {
        assert_eq!(
            refer_to_uri("<sip:carol@127.0.0.1:5090>"),
            "sip:carol@127.0.0.1:5090"
        );
        assert_eq!(refer_to_uri(" <sip:c@h>;method=INVITE"), "sip:c@h");
        assert_eq!(refer_to_uri("sip:c@h;x=y"), "sip:c@h");
    }
}
