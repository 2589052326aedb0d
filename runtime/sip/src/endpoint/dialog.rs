//! A SIP dialog (RFC 3261 §12): what in-dialog requests are built from.

use crate::Peer;

use super::wire::{Ids, Local, RequestText};

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our From (UAC) or To (UAS) header value, with our tag.
    pub local: String,
    /// The other side's header value, with its tag.
    pub remote: String,
    /// Request-URI of in-dialog requests: the far end's Contact.
    pub remote_target: String,
    /// Route headers, in the order they are sent (§12.1.1 / §12.1.2).
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    /// Where in-dialog requests go: the address the far end used
    /// (symmetric signalling works through NAT without DNS).
    pub peer: Peer,
}

impl Dialog {
    /// A request in this dialog with the next CSeq (§12.2.1.1).
    pub fn request(&mut self, ids: &mut Ids, local: &Local, method: &str) -> RequestText {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        self.request_with_cseq(ids, local, method, cseq)
    }

    /// The ACK for a 2xx: same CSeq number as the INVITE, new branch (§13.2.2.4).
    pub fn ack(&self, ids: &mut Ids, local: &Local, invite_cseq: u32) -> RequestText {
        self.request_with_cseq(ids, local, "ACK", invite_cseq)
    }

    fn request_with_cseq(
        &self,
        ids: &mut Ids,
        local: &Local,
        method: &str,
        cseq: u32,
    ) -> RequestText {
        let branch = ids.branch();
        let mut text = RequestText::new(method, &self.remote_target)
            .header("Via", local.via(self.peer.transport, &branch))
            .header("Max-Forwards", 70)
            .header("From", &self.local)
            .header("To", &self.remote)
            .header("Call-ID", &self.call_id)
            .header("CSeq", format!("{cseq} {method}"));
        for route in &self.route_set {
            text = text.header("Route", route);
        }
        text.header("User-Agent", &local.user_agent)
    }
}
