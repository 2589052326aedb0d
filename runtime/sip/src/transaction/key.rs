//! Transaction identity: [`TxKey`] and the header reading that builds it
//! (RFC 3261 §17.1.3, §17.2.3).
//!
//! Header values are read leniently and by hand, so compact forms (`v:`,
//! `i:`, `f:`, `t:`) that rsip keeps as `Header::Other` match too, and an odd
//! value makes the message unmatchable (dropped by the caller) rather than
//! panicking.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rsip::headers::UntypedHeader;
use rsip::{Header, Headers, Method};

/// The RFC 3261 magic cookie every compliant branch starts with (§8.1.1.7).
pub(super) const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies one transaction: which side we are, its method and the
/// matching data of §17.1.3 / §17.2.3.
///
/// Cheap to clone (one reference count). The method of a server transaction
/// created by INVITE is `INVITE`; its ACK matches the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxKey(Arc<KeyInner>);

#[derive(Debug, PartialEq, Eq)]
struct KeyInner {
    role: Role,
    method: Method,
    id: TxId,
    /// The fields' hash, taken once: a key is looked up in several maps
    /// and again for each of its timers, and hashing the branch and
    /// sent-by strings every time showed in profiles (1.3 %).
    hash: u64,
}

impl Hash for KeyInner {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Seeded once per process, so peers cannot aim keys at one bucket.
fn fields_hash(role: Role, method: Method, id: &TxId) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    // rsip's `Method` is a field-less enum without `Hash`.
    SEED.get_or_init(Default::default)
        .hash_one((role, method as u8, id))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Role {
    Client,
    Server,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum TxId {
    /// RFC 3261 matching: the branch (with the magic cookie) and, for server
    /// transactions, the sent-by of the top Via. Client keys leave `sent_by`
    /// empty: §17.1.3 matches on branch and CSeq method only.
    Branch { branch: Box<str>, sent_by: Box<str> },
    /// RFC 2543 matching (§17.2.3) for requests whose branch lacks the cookie.
    Rfc2543(Box<Rfc2543Id>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Rfc2543Id {
    pub request_uri: Box<str>,
    pub from_tag: Option<Box<str>>,
    pub to_tag: Option<Box<str>>,
    pub call_id: Box<str>,
    pub cseq: u32,
    pub top_via: Box<str>,
}

impl TxKey {
    pub(super) fn new(role: Role, method: Method, id: TxId) -> Self {
        let hash = fields_hash(role, method, &id);
        Self(Arc::new(KeyInner {
            role,
            method,
            id,
            hash,
        }))
    }

    /// The transaction's method (`INVITE` for an INVITE server transaction
    /// even when reached through its ACK).
    pub fn method(&self) -> &Method {
        &self.0.method
    }

    /// Whether we sent the request (client transaction).
    pub fn is_client(&self) -> bool {
        self.0.role == Role::Client
    }

    /// The Via branch the transaction matches on; `None` for an RFC 2543
    /// server transaction.
    pub fn branch(&self) -> Option<&str> {
        match &self.0.id {
            TxId::Branch { branch, .. } => Some(branch),
            TxId::Rfc2543(_) => None,
        }
    }

    pub(super) fn role(&self) -> Role {
        self.0.role
    }

    /// The same transaction identity with another method (CANCEL → INVITE).
    pub(super) fn with_method(&self, method: Method) -> Self {
        Self::new(self.0.role, method, self.0.id.clone())
    }
}

/// The fields of the top Via that matching needs.
#[derive(Debug)]
pub(super) struct TopVia {
    pub sent_by: String,
    pub branch: Option<String>,
    /// The top Via value as received (the first of a comma-separated line).
    pub raw: String,
}

impl TopVia {
    /// The whole top Via value without white space (RFC 2543 comparison).
    pub fn normalized(&self) -> String {
        squeezed(&self.raw)
    }

    /// A branch that RFC 3261 matching can use: the cookie plus something
    /// unique. A bare `z9hG4bK` (RFC 4475 §3.2.1) is not unique, so such a
    /// request falls back to RFC 2543 matching.
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.branch
            .as_deref()
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }
}

#[derive(Clone, Copy)]
enum Which {
    Via,
    CallId,
    From,
    To,
    CSeq,
}

impl Which {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Which::Via => ("via", "v"),
            Which::CallId => ("call-id", "i"),
            Which::From => ("from", "f"),
            Which::To => ("to", "t"),
            Which::CSeq => ("cseq", "cseq"),
        }
    }
}

fn values(headers: &Headers, which: Which) -> impl Iterator<Item = &str> {
    headers
        .iter()
        .filter_map(move |header| match (which, header) {
            (Which::Via, Header::Via(v)) => Some(v.value()),
            (Which::CallId, Header::CallId(v)) => Some(v.value()),
            (Which::From, Header::From(v)) => Some(v.value()),
            (Which::To, Header::To(v)) => Some(v.value()),
            (Which::CSeq, Header::CSeq(v)) => Some(v.value()),
            (_, Header::Other(name, v)) => {
                let (long, short) = which.names();
                let name = name.trim();
                (name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short))
                    .then_some(v.as_str())
            }
            _ => None,
        })
}

/// Splits at the first `,` outside a quoted string: the first value of a
/// comma-separated header line.
fn first_value(value: &str) -> &str {
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => return &value[..i],
            _ => {}
        }
    }
    value
}

/// `s` without white space; a copy, not a char-by-char rebuild, when it has
/// none (every Via of every message goes through here).
fn squeezed(s: &str) -> String {
    if s.contains(char::is_whitespace) {
        let mut out = String::with_capacity(s.len());
        out.extend(s.chars().filter(|c| !c.is_whitespace()));
        out
    } else {
        s.to_owned()
    }
}

pub(super) fn top_via(headers: &Headers) -> Option<TopVia> {
    let value = first_value(values(headers, Which::Via).next()?).trim();
    let mut parts = value.split(';');
    // "SIP / 2.0 / UDP host:port" — white space around the slashes is legal.
    let protocol = parts.next()?;
    let mut slashes = protocol.splitn(3, '/');
    let (_name, _version) = (slashes.next()?, slashes.next()?);
    let rest = slashes.next()?.trim();
    let (_transport, sent_by) = rest.split_once(char::is_whitespace)?;
    let mut sent_by = squeezed(sent_by);
    sent_by.make_ascii_lowercase();
    if sent_by.is_empty() {
        return None;
    }
    let branch = parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| value.trim().to_owned())
    });
    Some(TopVia {
        sent_by,
        branch,
        raw: value.to_owned(),
    })
}

pub(super) fn cseq(headers: &Headers) -> Option<(u32, Method)> {
    let value = values(headers, Which::CSeq).next()?;
    let mut words = value.split_whitespace();
    let seq = words.next()?.parse().ok()?;
    let method = words.next()?.parse().ok()?;
    Some((seq, method))
}

pub(super) fn call_id(headers: &Headers) -> Option<&str> {
    values(headers, Which::CallId)
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

pub(super) fn from_tag(headers: &Headers) -> Option<&str> {
    tag_of(values(headers, Which::From).next()?)
}

pub(super) fn to_tag(headers: &Headers) -> Option<&str> {
    tag_of(values(headers, Which::To).next()?)
}

/// The `tag` parameter of a From/To value (`"A" <sip:a@x>;tag=1` or
/// `sip:a@x;tag=1`).
fn tag_of(value: &str) -> Option<&str> {
    let mut quoted = false;
    let mut params = None;
    let mut angle = None;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted && angle.is_none() => angle = Some(i),
            '>' if !quoted && angle.is_some() => {
                params = Some(&value[i + 1..]);
                break;
            }
            _ => {}
        }
    }
    let params = match (params, angle) {
        (Some(params), _) => params,
        (None, Some(_)) => return None, // unterminated '<'
        // Without angle brackets the URI's parameters are the header's.
        (None, None) => value.split_once(';')?.1,
    };
    params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

/// The server key of a request (§17.2.3); ACK maps onto its INVITE. For RFC
/// 2543 requests `to_tag` is the one matched against (the request's own,
/// unless the caller overrides it for ACK matching).
pub(super) fn server_key(
    request: &rsip::Request,
    via: &TopVia,
    cseq: u32,
    to_tag: Option<&str>,
) -> Option<TxKey> {
    let method = match request.method {
        Method::Ack => Method::Invite,
        method => method,
    };
    let id = match via.rfc3261_branch() {
        Some(branch) => TxId::Branch {
            branch: branch.into(),
            sent_by: via.sent_by.as_str().into(),
        },
        None => TxId::Rfc2543(Box::new(Rfc2543Id {
            request_uri: request.uri.to_string().into(),
            from_tag: from_tag(&request.headers).map(Into::into),
            to_tag: to_tag.map(Into::into),
            call_id: call_id(&request.headers)?.into(),
            cseq,
            top_via: via.normalized().into(),
        })),
    };
    Some(TxKey::new(Role::Server, method, id))
}

/// The client key a request or response matches (§17.1.3): branch + method.
pub(super) fn client_key(branch: &str, method: Method) -> TxKey {
    TxKey::new(
        Role::Client,
        method,
        TxId::Branch {
            branch: branch.into(),
            sent_by: "".into(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_with_and_without_angle_brackets() {
        assert_eq!(tag_of("\"A;tag=x\" <sip:a@x;tag=no>;tag=1"), Some("1"));
        assert_eq!(tag_of("sip:a@x;tag=2"), Some("2"));
        assert_eq!(tag_of("<sip:a@x>"), None);
        assert_eq!(tag_of("<sip:a@x"), None);
    }

    #[test]
    fn top_via_tolerates_white_space_and_takes_the_first_value() {
        let headers: Headers = vec![Header::Other(
            "v".into(),
            "SIP / 2.0 / UDP Host.Example:5060 ; branch = z9hG4bKab, SIP/2.0/UDP b".into(),
        )]
        .into();
        let via = top_via(&headers).unwrap();
        assert_eq!(via.sent_by, "host.example:5060");
        assert_eq!(via.branch.as_deref(), Some("z9hG4bKab"));
        assert_eq!(via.rfc3261_branch(), Some("z9hG4bKab"));
    }
}
