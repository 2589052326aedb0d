//! Small helpers over rsip messages: tolerant getters (bad headers give
//! `None`, never a panic) and the builders for what the endpoint sends.

use std::net::SocketAddr;

use rsip::prelude::*;

use rand::RngCore;

use crate::{Peer, Rng, Transport, message};
use rsip::message::HasHeaders;

// The getters below read the header values our parser already checked
// (message.rs) instead of rsip's typed headers, whose nom tokenizers
// allocate per parameter: `to_tag` through rsip was ~2 % of a refused
// call's CPU (benches/sip).

pub fn call_id(msg: &impl HasHeaders) -> Option<String> {
    message::call_id(msg).map(str::to_owned)
}

pub fn from_tag(msg: &impl HasHeaders) -> Option<String> {
    message::from_tag(msg).map(str::to_owned)
}

pub fn to_tag(msg: &impl HasHeaders) -> Option<String> {
    message::to_tag(msg).map(str::to_owned)
}

/// The first value of header `name` (full name, any case). Typed rsip
/// headers are read without formatting the whole header list: this runs on
/// every INVITE.
pub fn header_value(headers: &rsip::Headers, name: &str) -> Option<String> {
    header_str(headers, name).map(str::to_string)
}

/// [`header_value`], borrowed. rsip's typed accessors (`to_header()`…)
/// allocate their "missing header" error even when the header is there.
pub fn header_str<'a>(headers: &'a rsip::Headers, name: &str) -> Option<&'a str> {
    use rsip::Header as H;
    let is = |full: &str| name.eq_ignore_ascii_case(full);
    headers.iter().find_map(|h| {
        let value = match h {
            H::Via(v) if is("via") => v.value(),
            H::From(v) if is("from") => v.value(),
            H::To(v) if is("to") => v.value(),
            H::ContentType(v) if is("content-type") => v.value(),
            H::WwwAuthenticate(v) if is("www-authenticate") => v.value(),
            H::ProxyAuthenticate(v) if is("proxy-authenticate") => v.value(),
            H::Authorization(v) if is("authorization") => v.value(),
            H::ProxyAuthorization(v) if is("proxy-authorization") => v.value(),
            H::Other(n, v) if n.trim().eq_ignore_ascii_case(name) => v.as_str(),
            _ => return None,
        };
        Some(value.trim())
    })
}

/// The URI inside a Contact header, as text (`sip:alice@10.0.0.1:5062`).
pub fn contact_uri(msg: &impl HasHeaders) -> Option<String> {
    message::contact_uri(msg).map(str::to_string)
}

/// Record-Route values in order, for the dialog's route set (§12.1).
pub fn record_routes(headers: &rsip::Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            rsip::Header::RecordRoute(r) => Some(r.value().to_string()),
            _ => None,
        })
        .collect()
}

/// The body and whether it is SDP.
pub fn sdp_body(headers: &rsip::Headers, body: &[u8]) -> Option<Vec<u8>> {
    if body.is_empty() {
        return None;
    }
    let ct = header_str(headers, "Content-Type").unwrap_or_default();
    ct.get(..15)
        .is_some_and(|t| t.eq_ignore_ascii_case("application/sdp"))
        .then(|| body.to_vec())
}

/// Replaces the body, with its Content-Type and Content-Length.
pub fn set_body(headers: &mut rsip::Headers, content_type: &str, body: &[u8]) {
    headers.retain(|h| {
        !matches!(
            h,
            rsip::Header::ContentLength(_) | rsip::Header::ContentType(_)
        )
    });
    if !body.is_empty() {
        headers.push(rsip::headers::ContentType::new(content_type).into());
    }
    headers.push(rsip::headers::ContentLength::new(body.len().to_string()).into());
}

/// Where a SIP URI points, when its host is an IP address (DNS is not
/// resolved yet: a clear error instead of a guess).
pub fn uri_peer(uri: &str) -> Result<Peer, String> {
    let parsed = rsip::Uri::try_from(uri).map_err(|e| format!("bad SIP URI {uri:?}: {e}"))?;
    let transport = match parsed.transport() {
        Some(rsip::Transport::Tcp) => Transport::Tcp,
        Some(rsip::Transport::Tls) => Transport::Tls,
        _ if parsed.scheme == Some(rsip::Scheme::Sips) => Transport::Tls,
        _ => Transport::Udp,
    };
    let default_port = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    let port = parsed
        .host_with_port
        .port
        .map(|p| *p.value())
        .unwrap_or(default_port);
    let ip = match &parsed.host_with_port.host {
        rsip::Host::IpAddr(ip) => *ip,
        rsip::Host::Domain(d) if d.to_string().eq_ignore_ascii_case("localhost") => {
            std::net::Ipv4Addr::LOCALHOST.into()
        }
        rsip::Host::Domain(d) => {
            return Err(format!(
                "cannot reach {d}: DNS resolution of SIP hosts is not supported yet; use an IP address"
            ));
        }
    };
    Ok(Peer::new(transport, SocketAddr::new(ip, port)))
}

/// What the endpoint needs to build requests of its own.
#[derive(Debug, Clone)]
pub struct Local {
    /// Our address per transport (Via sent-by, Contact).
    pub addrs: Vec<(Transport, SocketAddr)>,
    pub user_agent: String,
}

impl Local {
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(t, _)| *t == transport)
            .or(self.addrs.first())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    pub fn contact(&self, transport: Transport, user: &str) -> String {
        let addr = self.addr(transport);
        match transport {
            Transport::Udp => format!("<sip:{user}@{addr}>"),
            Transport::Tcp => format!("<sip:{user}@{addr};transport=tcp>"),
            Transport::Tls => format!("<sips:{user}@{addr}>"),
        }
    }

    pub fn via(&self, transport: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.via_token(),
            self.addr(transport)
        )
    }
}

/// A request we originate, as text: rsip parses it back so every message
/// the endpoint sends went through the same parser as what it receives.
pub struct RequestText {
    text: String,
}

impl RequestText {
    pub fn new(method: &str, uri: &str) -> Self {
        Self {
            text: format!("{method} {uri} SIP/2.0\r\n"),
        }
    }

    pub fn header(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        use std::fmt::Write;
        let _ = write!(self.text, "{name}: {value}\r\n");
        self
    }

    pub fn build(self, content_type: Option<&str>, body: &[u8]) -> Result<rsip::Request, String> {
        let mut text = self.text;
        if let Some(ct) = content_type.filter(|_| !body.is_empty()) {
            text.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body);
        rsip::Request::try_from(bytes).map_err(|e| format!("cannot build request: {e}"))
    }
}

/// Tags, Call-IDs, call ids, branches and SDP session ids, from the RNG the
/// endpoint was seeded with.
pub struct Ids(Rng);

impl Ids {
    pub fn new(rng: Rng) -> Self {
        Self(rng)
    }

    /// 64 random bits in hex: tags (§19.3 asks for at least 32), Call-IDs,
    /// call ids.
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.0.next_u64())
    }

    /// A call's id: `CA`, the wall time it began (48-bit unix ms, 12 hex)
    /// and 64 random bits (16 hex). Time first so ids sort by age: the
    /// stores index rows by call id, and an id that grows with time adds
    /// to the last page of that index instead of dirtying a random page per
    /// call (at 4,000 calls/s, random ids made SQLite rewrite ~80 index
    /// pages a batch). The random half keeps ids unguessable.
    pub fn call_id(&mut self, unix_ms: u64) -> String {
        format!(
            "CA{:012x}{:016x}",
            unix_ms & 0xffff_ffff_ffff,
            self.0.next_u64()
        )
    }

    /// A new top-Via branch (§8.1.1.7).
    pub fn branch(&mut self) -> String {
        crate::transaction::make_branch(&mut self.0)
    }

    /// An SDP session id (RFC 4566 §5.2).
    pub fn session(&mut self) -> u64 {
        u64::from(self.0.next_u32())
    }

    /// A uniform draw from 0..100 (a canary's share of calls).
    pub fn percent(&mut self) -> u8 {
        crate::directory::canary_roll(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_sort_by_the_time_they_began() {
        use rand::SeedableRng;
        let mut ids = Ids::new(Rng::seed_from_u64(7));
        let earlier = ids.call_id(1_796_598_527_168);
        let later = ids.call_id(1_796_598_527_169);
        assert_eq!(earlier.len(), 30, "{earlier}");
        assert!(earlier.starts_with("CA01a2"), "{earlier}");
        assert!(earlier < later, "{earlier} {later}");
        assert_ne!(ids.call_id(5)[14..], ids.call_id(5)[14..]);
    }

    #[test]
    fn uri_peers_take_transport_and_default_ports() {
        assert_eq!(
            uri_peer("sip:bob@127.0.0.1:5070;transport=tcp").unwrap(),
            Peer::new(Transport::Tcp, "127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(uri_peer("sip:bob@127.0.0.1").unwrap().addr.port(), 5060);
        assert!(uri_peer("sip:bob@example.com").unwrap_err().contains("DNS"));
    }

    #[test]
    fn built_requests_parse_and_carry_their_body() {
        let req = RequestText::new("INVITE", "sip:bob@127.0.0.1")
            .header("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1")
            .header("From", "<sip:a@x>;tag=1")
            .header("To", "<sip:bob@127.0.0.1>")
            .header("Call-ID", "c1")
            .header("CSeq", "1 INVITE")
            .build(Some("application/sdp"), b"v=0\r\n")
            .unwrap();
        assert_eq!(call_id(&req).as_deref(), Some("c1"));
        assert_eq!(message::cseq(&req), Some((1, rsip::Method::Invite)));
        assert_eq!(from_tag(&req).as_deref(), Some("1"));
        assert_eq!(to_tag(&req), None);
        assert!(sdp_body(&req.headers, &req.body).is_some());
    }
}
