//! Registrar (RFC 3261 §10.3) and location service: REGISTER binds a user's
//! address-of-record to contact URIs; calls to that user are sent to
//! [`Registrar::lookup`]'s bindings.
//!
//! Sans-IO, in the order a caller uses it:
//!
//! ```text
//!  REGISTER ──► handle_register(now, tenant, realm, source, req, lookup) ──► response
//!  INVITE   ──► authenticate(now, realm, req, lookup) ──► Ok(username) | Err(407)
//!  call to user ──► lookup(now, tenant, user) ──► bindings, best first
//!  timer at poll_timeout() ──► expire(now)   (bindings and used nonces go)
//! ```
//!
//! Credentials are per tenant: every call passes a `password_lookup`
//! closure for the tenant's users, and bindings are keyed by tenant, so one
//! tenant never sees another's even for the same username. A binding only
//! exists after digest authentication, so memory is bounded by the tenants'
//! user lists times [`RegistrarConfig::max_contacts_per_user`].
//!
//! Choices where RFC 3261 leaves room, documented once here:
//! - Request-URI domain (step 1): the caller maps domain → tenant and realm.
//! - A REGISTER whose Call-ID matches a binding with a CSeq not higher is
//!   answered 500 and changes nothing (step 7 "the request fails"); genuine
//!   retransmissions are absorbed by the transaction layer before this.
//! - More contacts than allowed: 403 (a policy refusal, not overload; 503
//!   would invite the phone to retry the same request).
//! - Contacts are matched by exact URI text, not the §19.1.4 comparison:
//!   phones refresh with the Contact they registered.
//! - Malformed expires values count as absent, hence the default
//!   (§20.19: "Malformed values SHOULD be treated as equivalent to 3600").
//! - A contact without `q` ranks as q=1.0.
//! - The 200 carries no Date header: there is no wall clock in a sans-IO core.

use rand::SeedableRng as _;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use rsip::Header;
use rsip::headers::UntypedHeader;

use super::Peer;
use super::digest::{NonceBook, Verdict};
use super::message::response;

/// A SIP account of a tenant: what a phone authenticates with.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SipUser {
    pub username: String,
    pub password: String,
}

impl SipUser {
    /// A password lookup over a tenant's user list, for
    /// [`Registrar::handle_register`] and [`Registrar::authenticate`].
    pub fn lookup(users: &[SipUser]) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| {
            users
                .iter()
                .find(|u| u.username == name)
                .map(|u| u.password.clone())
        }
    }
}

impl fmt::Debug for SipUser {
    /// The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Registrar limits; [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Offer the MD5 challenge before SHA-256, for UAs that read only the
    /// first one (see `NonceBook::offer_order`). Default false.
    pub md5_first: bool,
    /// Shorter requested intervals get 423 with this as Min-Expires
    /// (RFC 3261 §10.3 step 7). Default 60 s.
    pub min_expires: u32,
    /// Longer requested intervals are shortened to this. Default 3600 s.
    pub max_expires: u32,
    /// Interval for a contact with neither an `expires` parameter nor an
    /// Expires header (§10.2.1.1). Default 3600 s.
    pub default_expires: u32,
    /// Bindings one user may hold; more → 403. Default 10.
    pub max_contacts_per_user: usize,
    /// Digest nonce lifetime; older nonces get `stale=true`. Default 300 s.
    pub nonce_ttl: Duration,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts_per_user: 10,
            nonce_ttl: NonceBook::DEFAULT_TTL,
            md5_first: false,
        }
    }
}

impl RegistrarConfig {
    /// Checks the limits, naming the first bad field; for the start-up edge
    /// that loads configuration ([`Registrar::new`] itself repairs instead).
    pub fn validate(&self) -> Result<(), RegistrarError> {
        let bad = |what: &'static str| Err(RegistrarError::InvalidConfig(what));
        if self.min_expires == 0 {
            return bad("min_expires must be at least 1 s");
        }
        if self.min_expires > self.max_expires {
            return bad("min_expires must not exceed max_expires");
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return bad("default_expires must lie within min_expires..=max_expires");
        }
        if self.max_contacts_per_user == 0 {
            return bad("max_contacts_per_user must be at least 1");
        }
        if self.nonce_ttl.is_zero() {
            return bad("nonce_ttl must be positive");
        }
        Ok(())
    }

    /// The nearest valid config: every bound at least 1, and
    /// `min_expires <= default_expires <= max_expires`.
    fn repaired(mut self) -> Self {
        self.min_expires = self.min_expires.max(1);
        self.max_expires = self.max_expires.max(self.min_expires);
        self.default_expires = self
            .default_expires
            .clamp(self.min_expires, self.max_expires);
        self.max_contacts_per_user = self.max_contacts_per_user.max(1);
        if self.nonce_ttl.is_zero() {
            self.nonce_ttl = NonceBook::DEFAULT_TTL;
        }
        self
    }
}

/// Why a REGISTER was refused, or a configuration rejected. Each request
/// variant maps to one SIP status in [`RegistrarError::status`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrarError {
    /// A [`RegistrarConfig`] value is out of range; the text names it.
    #[error("invalid registrar config: {0}")]
    InvalidConfig(&'static str),
    /// A header §8.1.1 requires is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header cannot be read.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// `Contact: *` with other contacts or a nonzero Expires (§10.3 step 6).
    #[error("wildcard Contact needs Expires: 0 and no other contact")]
    BadWildcard,
    /// A requested interval below the minimum (§10.3 step 7).
    #[error("interval too brief, minimum {min_expires} s")]
    IntervalTooBrief { min_expires: u32 },
    /// The To user is not the authenticated user (§10.3 step 4).
    #[error("authenticated user may not register this address-of-record")]
    ToUserMismatch,
    /// The user would hold more bindings than allowed.
    #[error("more than {max} contacts")]
    TooManyContacts { max: usize },
    /// Same Call-ID with a CSeq not above the stored one (§10.3 step 7).
    #[error("REGISTER out of order for its Call-ID")]
    OutOfOrder,
    /// Require names extensions this registrar lacks (§8.2.2.3).
    #[error("unsupported extensions: {0}")]
    BadExtension(String),
}

impl RegistrarError {
    /// The one place request errors become SIP statuses.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegistrarError::MissingHeader(_)
            | RegistrarError::BadHeader(_)
            | RegistrarError::BadWildcard => (400, "Bad Request"),
            RegistrarError::ToUserMismatch | RegistrarError::TooManyContacts { .. } => {
                (403, "Forbidden")
            }
            RegistrarError::BadExtension(_) => (420, "Bad Extension"),
            RegistrarError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegistrarError::OutOfOrder | RegistrarError::InvalidConfig(_) => {
                (500, "Server Internal Error")
            }
        }
    }
}

/// One registered contact of a user.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The contact URI as registered, escapes kept (RFC 4475 §3.3.14).
    pub contact: String,
    /// Where the REGISTER came from: requests for this binding go there,
    /// which works through NAT (the RFC 5626 idea).
    pub source: Peer,
    /// The binding is live while `now < expires_at`.
    pub expires_at: Instant,
    /// Preference among the user's contacts, 0.0..=1.0.
    pub q: f32,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    /// When this binding was last added or refreshed.
    pub updated_at: Instant,
}

impl Binding {
    /// The contact as an rsip URI, for building requests to it.
    pub fn uri(&self) -> Result<rsip::Uri, rsip::Error> {
        rsip::Uri::try_from(self.contact.as_str())
    }

    /// Whole seconds left, rounded up (what the 200 OK reports).
    fn remaining_secs(&self, now: Instant) -> u64 {
        let left = self.expires_at.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

/// A tenant's address-of-record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Aor {
    tenant: String,
    user: String,
}

/// Registrar and location service for all tenants.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    nonces: NonceBook,
    /// For To-tags.
    rng: crate::Rng,
    bindings: HashMap<Aor, Vec<Binding>>,
    /// Earliest binding expiry per AOR, so `poll_timeout` and `expire` need
    /// not scan every binding.
    deadlines: BTreeSet<(Instant, Aor)>,
    len: usize,
}

/// §10.3 step 7: the 423 test applies only below one hour.
const ONE_HOUR: u32 = 3600;

impl Registrar {
    /// A registrar with `config`; out-of-range values are repaired to the
    /// nearest valid ones and logged (check them first with
    /// [`RegistrarConfig::validate`] to refuse them instead).
    /// `rng` (seeded by the edge) gives the nonce secret and the tags.
    pub fn new(config: RegistrarConfig, mut rng: crate::Rng) -> Self {
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "registrar config repaired");
        }
        let config = config.repaired();
        let book = crate::Rng::from_rng(&mut rng);
        Self {
            nonces: NonceBook::new(config.nonce_ttl, book).offer_order(config.md5_first),
            rng,
            config,
            bindings: HashMap::new(),
            deadlines: BTreeSet::new(),
            len: 0,
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Bindings held, counting expired ones until [`Self::expire`] runs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Answers a REGISTER from `source` for `tenant`, challenging in `realm`
    /// (RFC 3261 §10.3). Never fails: every outcome is a response.
    pub fn handle_register(
        &mut self,
        now: Instant,
        tenant: &str,
        realm: &str,
        source: Peer,
        req: &rsip::Request,
        password_lookup: impl Fn(&str) -> Option<String>,
    ) -> rsip::Response {
        let to_tag = new_tag(&mut self.rng);
        // Step 2: Require before anything else (§8.2.2.3).
        let required: Vec<&str> = fields(req, Field::Require)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if !required.is_empty() {
            return self.refusal(
                req,
                &to_tag,
                RegistrarError::BadExtension(required.join(", ")),
            );
        }
        // Step 3: authenticate.
        let username = match self.authenticate(now, realm, req, password_lookup) {
            Ok(username) => username,
            Err(challenge) => return challenge,
        };
        match self.update(now, tenant, &username, source, req) {
            Ok(bindings) => {
                let mut resp = response(req, 200, "OK", Some(&to_tag));
                // Step 8: every current binding with its remaining time.
                for b in &bindings {
                    let mut value = format!("<{}>;expires={}", b.contact, b.remaining_secs(now));
                    if b.q < 1.0 {
                        value.push_str(&format!(";q={}", format_q(b.q)));
                    }
                    push_header(
                        &mut resp,
                        Header::Contact(rsip::headers::Contact::new(value)),
                    );
                }
                resp
            }
            Err(e) => self.refusal(req, &to_tag, e),
        }
    }

    /// Digest-authenticates any request in `realm`: `Ok(username)`, or the
    /// challenge to send back: 401 with WWW-Authenticate for REGISTER, 407
    /// with Proxy-Authenticate for everything else (RFC 3261 §22.2, §22.3),
    /// `stale=true` when only the nonce was at fault.
    pub fn authenticate(
        &mut self,
        now: Instant,
        realm: &str,
        req: &rsip::Request,
        password_lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, rsip::Response> {
        let register = req.method == rsip::Method::Register;
        let field = if register {
            Field::Authorization
        } else {
            Field::ProxyAuthorization
        };
        let mut stale = false;
        // Several credentials may come, one per realm (§22.3): any good one wins.
        for value in fields(req, field) {
            match self.nonces.verify(
                now,
                realm,
                req.method.to_string().as_str(),
                value,
                &password_lookup,
            ) {
                Verdict::Ok { username } => return Ok(username),
                Verdict::Stale => stale = true,
                Verdict::Refused(why) => {
                    tracing::debug!(realm, reason = %why, "digest credentials refused");
                }
            }
        }
        let (status, reason) = if register {
            (401, "Unauthorized")
        } else {
            (407, "Proxy Authentication Required")
        };
        let mut resp = response(req, status, reason, Some(&new_tag(&mut self.rng)));
        for challenge in self.nonces.challenge(now, realm, stale) {
            push_header(
                &mut resp,
                if register {
                    Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(challenge))
                } else {
                    Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(challenge))
                },
            );
        }
        Err(resp)
    }

    /// Live bindings of `user` in `tenant`: highest q first, then the most
    /// recently refreshed.
    pub fn lookup(&self, now: Instant, tenant: &str, user: &str) -> Vec<Binding> {
        let key = Aor {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
        };
        let mut live = self.live(&key, now);
        live.sort_by(|a, b| {
            b.q.total_cmp(&a.q)
                .then_with(|| b.updated_at.cmp(&a.updated_at))
        });
        live
    }

    /// Drops bindings whose time is over and forgets expired nonces.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, key.clone()));
            let live = self.live(&key, now);
            self.commit(key, live);
        }
        self.nonces.expire(now);
    }

    /// When [`Self::expire`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let bindings = self.deadlines.first().map(|(at, _)| *at);
        match (bindings, self.nonces.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Steps 4–7 for an authenticated request; the bindings after it.
    /// All-or-nothing: the new set is built aside and committed only when
    /// every contact was accepted (§10.3 step 7).
    fn update(
        &mut self,
        now: Instant,
        tenant: &str,
        username: &str,
        source: Peer,
        req: &rsip::Request,
    ) -> Result<Vec<Binding>, RegistrarError> {
        // Step 4: the authenticated user may only bind its own AOR.
        let to = fields(req, Field::To)
            .next()
            .ok_or(RegistrarError::MissingHeader("To"))?;
        let to = NameAddr::parse(to).map_err(|_| RegistrarError::BadHeader("To"))?;
        if uri_user(&to.uri).as_deref() != Some(username) {
            return Err(RegistrarError::ToUserMismatch);
        }
        let key = Aor {
            tenant: tenant.to_owned(),
            user: username.to_owned(),
        };
        let contacts = Contacts::of(req)?;
        let mut working = self.live(&key, now);
        if matches!(contacts, Contacts::Query) {
            return Ok(working);
        }
        let call_id = fields(req, Field::CallId)
            .next()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(RegistrarError::MissingHeader("Call-ID"))?
            .to_owned();
        let cseq = fields(req, Field::CSeq)
            .next()
            .ok_or(RegistrarError::MissingHeader("CSeq"))?;
        let cseq = cseq
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or(RegistrarError::BadHeader("CSeq"))?;
        let header_expires = fields(req, Field::Expires).next().and_then(parse_delta);
        let user_agent = fields(req, Field::UserAgent).next().map(str::to_owned);
        // Step 7: a binding from the same Call-ID may only move forward.
        let in_order = |b: &Binding| b.call_id != call_id || cseq > b.cseq;
        match contacts {
            Contacts::Query => {}
            Contacts::Wildcard => {
                // Step 6: `*` needs Expires: 0 and removes every binding.
                if header_expires != Some(0) {
                    return Err(RegistrarError::BadWildcard);
                }
                if !working.iter().all(in_order) {
                    return Err(RegistrarError::OutOfOrder);
                }
                working.clear();
            }
            Contacts::List(list) => {
                // Bounds the work below: no honest request needs more than
                // removing every binding and adding the maximum.
                let max = self.config.max_contacts_per_user;
                if list.len() > max.saturating_mul(2) {
                    return Err(RegistrarError::TooManyContacts { max });
                }
                for spec in list {
                    let requested = spec
                        .expires
                        .or(header_expires)
                        .unwrap_or(self.config.default_expires);
                    if requested > 0 && requested < self.config.min_expires && requested < ONE_HOUR
                    {
                        return Err(RegistrarError::IntervalTooBrief {
                            min_expires: self.config.min_expires,
                        });
                    }
                    let granted = requested.min(self.config.max_expires);
                    let existing = working.iter().position(|b| b.contact == spec.uri);
                    if let Some(b) = existing.and_then(|i| working.get(i))
                        && !in_order(b)
                    {
                        return Err(RegistrarError::OutOfOrder);
                    }
                    if let Some(i) = existing {
                        working.remove(i);
                    }
                    if granted > 0 {
                        working.push(Binding {
                            contact: spec.uri,
                            source,
                            expires_at: now + Duration::from_secs(u64::from(granted)),
                            q: spec.q.unwrap_or(1.0),
                            call_id: call_id.clone(),
                            cseq,
                            user_agent: user_agent.clone(),
                            updated_at: now,
                        });
                    }
                }
                if working.len() > max {
                    return Err(RegistrarError::TooManyContacts { max });
                }
            }
        }
        self.commit(key, working.clone());
        Ok(working)
    }

    fn live(&self, key: &Aor, now: Instant) -> Vec<Binding> {
        self.bindings
            .get(key)
            .map(|bs| bs.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces an AOR's bindings, keeping `len` and `deadlines` in step.
    fn commit(&mut self, key: Aor, bindings: Vec<Binding>) {
        if let Some(old) = self.bindings.remove(&key) {
            self.len -= old.len();
            if let Some(at) = earliest(&old) {
                self.deadlines.remove(&(at, key.clone()));
            }
        }
        if let Some(at) = earliest(&bindings) {
            self.len += bindings.len();
            self.deadlines.insert((at, key.clone()));
            self.bindings.insert(key, bindings);
        }
    }

    fn refusal(&self, req: &rsip::Request, to_tag: &str, err: RegistrarError) -> rsip::Response {
        let (status, reason) = err.status();
        let mut resp = response(req, status, reason, Some(to_tag));
        match &err {
            // §10.3 step 7: a 423 names the minimum.
            RegistrarError::IntervalTooBrief { min_expires } => push_header(
                &mut resp,
                Header::MinExpires(rsip::headers::MinExpires::new(min_expires.to_string())),
            ),
            // §8.2.2.3: a 420 lists what was not understood.
            RegistrarError::BadExtension(names) => push_header(
                &mut resp,
                Header::Unsupported(rsip::headers::Unsupported::new(names.clone())),
            ),
            _ => {}
        }
        tracing::debug!(status, reason = %err, "REGISTER refused");
        resp
    }
}

fn earliest(bindings: &[Binding]) -> Option<Instant> {
    bindings.iter().map(|b| b.expires_at).min()
}

/// What a REGISTER asks for (§10.2).
enum Contacts {
    /// No Contact: list the bindings (§10.2.3).
    Query,
    /// `Contact: *` (§10.2.2).
    Wildcard,
    List(Vec<ContactSpec>),
}

struct ContactSpec {
    uri: String,
    expires: Option<u32>,
    q: Option<f32>,
}

impl Contacts {
    fn of(req: &rsip::Request) -> Result<Self, RegistrarError> {
        let elements: Vec<&str> = fields(req, Field::Contact)
            .flat_map(split_top_level_commas)
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if elements.is_empty() {
            return Ok(Contacts::Query);
        }
        if elements.contains(&"*") {
            return if elements.len() == 1 {
                Ok(Contacts::Wildcard)
            } else {
                Err(RegistrarError::BadWildcard)
            };
        }
        let mut list = Vec::with_capacity(elements.len());
        for element in elements {
            let addr =
                NameAddr::parse(element).map_err(|_| RegistrarError::BadHeader("Contact"))?;
            let q = match addr.param("q") {
                Some(v) => Some(parse_q(v).ok_or(RegistrarError::BadHeader("Contact"))?),
                None => None,
            };
            list.push(ContactSpec {
                expires: addr.param("expires").and_then(parse_delta),
                q,
                uri: addr.uri,
            });
        }
        Ok(Contacts::List(list))
    }
}

/// `name-addr / addr-spec` followed by header parameters (RFC 3261 §20.10).
/// Written here rather than taken from rsip 0.4, whose Contact tokenizer
/// refuses quoted parameter values such as RFC 5626's
/// `+sip.instance="<urn:uuid:…>"`.
struct NameAddr {
    uri: String,
    /// Lowercased names; values unquoted.
    params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    fn parse(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        let (uri, rest) = match name_addr_brackets(s) {
            Some((open, close)) => (
                s.get(open + 1..close).ok_or(())?,
                s.get(close + 1..).ok_or(())?,
            ),
            // §20: without brackets, `;` starts the header parameters.
            None => match s.find(';') {
                Some(i) => (s.get(..i).ok_or(())?, s.get(i..).ok_or(())?),
                None => (s, ""),
            },
        };
        let uri = uri.trim();
        if !is_absolute_uri(uri) {
            return Err(());
        }
        let mut params = Vec::new();
        let rest = rest.trim();
        if !rest.is_empty() {
            let rest = rest.strip_prefix(';').ok_or(())?;
            for param in split_outside_quotes(rest, b';') {
                let param = param.trim();
                let (name, value) = match param.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                    None => (param, None),
                };
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err(());
                }
                params.push((name.to_ascii_lowercase(), value));
            }
        }
        Ok(Self {
            uri: uri.to_owned(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Byte offsets of `<` and `>` when `s` is in name-addr form: an optional
/// display name (quoted, or tokens and spaces) and then `<`.
fn name_addr_brackets(s: &str) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    if bytes.first() == Some(&b'"') {
        i = 1;
        loop {
            match bytes.get(i)? {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        i += 1;
    }
    while bytes
        .get(i)
        .is_some_and(|&b| is_token_byte(b) || b == b' ' || b == b'\t')
    {
        i += 1;
    }
    if bytes.get(i) != Some(&b'<') {
        return None;
    }
    let close = i + s.get(i..)?.find('>')?;
    Some((i, close))
}

/// `scheme ":" something`, no white space or controls (RFC 3986 §3.1).
fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The user of a `sip:`/`sips:` URI, %-escapes decoded (§19.1.4 compares
/// users unescaped); `None` for other schemes or no user part.
pub(crate) fn uri_user(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    // userinfo = user [":" password] (§25.1).
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    if user.is_empty() {
        return None;
    }
    Some(percent_decode(user))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// delta-seconds (§25.1); values past 2^32-1 saturate (§20.19); `None`
/// when malformed.
fn parse_delta(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) (§25.1).
fn parse_q(s: &str) -> Option<f32> {
    let s = s.trim();
    let valid_syntax = s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let q = s.parse::<f32>().ok()?;
    (valid_syntax && (0.0..=1.0).contains(&q)).then_some(q)
}

fn format_q(q: f32) -> String {
    let s = format!("{q:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.extend(chars.next());
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// Splits a header value at top-level commas: not inside quotes or `<…>`
/// (§7.3.1: a comma-separated list is equivalent to repeated headers).
fn split_top_level_commas(s: &str) -> Vec<&str> {
    split_outside_quotes(s, b',')
}

/// Splits at `sep` outside quoted strings and angle brackets.
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            _ if b == sep && !in_quotes && !in_angle => {
                parts.push(s.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s.get(start..).unwrap_or(""));
    parts
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// The headers this module reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    To,
    CallId,
    CSeq,
    Contact,
    Expires,
    Authorization,
    ProxyAuthorization,
    UserAgent,
    Require,
}

/// Values of one header, long or compact form (§7.3.3): rsip 0.4 leaves
/// compact names (`m:`, `t:`, `i:`) as `Header::Other`.
fn fields(req: &rsip::Request, field: Field) -> impl Iterator<Item = &str> {
    req.headers.iter().filter_map(move |h| {
        let (f, value) = match h {
            Header::To(h) => (Field::To, h.value()),
            Header::CallId(h) => (Field::CallId, h.value()),
            Header::CSeq(h) => (Field::CSeq, h.value()),
            Header::Contact(h) => (Field::Contact, h.value()),
            Header::Expires(h) => (Field::Expires, h.value()),
            Header::Authorization(h) => (Field::Authorization, h.value()),
            Header::ProxyAuthorization(h) => (Field::ProxyAuthorization, h.value()),
            Header::UserAgent(h) => (Field::UserAgent, h.value()),
            Header::Require(h) => (Field::Require, h.value()),
            Header::Other(name, value) => (compact(name)?, value.as_str()),
            _ => return None,
        };
        (f == field).then_some(value)
    })
}

fn compact(name: &str) -> Option<Field> {
    match name.trim() {
        "t" | "T" => Some(Field::To),
        "i" | "I" => Some(Field::CallId),
        "m" | "M" => Some(Field::Contact),
        _ => None,
    }
}

/// A To-tag: 64 random bits (§19.3 asks for at least 32).
fn new_tag(rng: &mut crate::Rng) -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(rng, &mut bytes);
    hex::encode(bytes)
}

/// Adds a header to a built response, keeping Content-Length last.
fn push_header(resp: &mut rsip::Response, header: Header) {
    resp.headers
        .retain(|h| !matches!(h, Header::ContentLength(_)));
    resp.headers.push(header);
    resp.headers.push(Header::ContentLength(
        rsip::headers::ContentLength::default(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_rng() -> crate::Rng {
        rand::SeedableRng::seed_from_u64(1)
    }
    use crate::Transport;
    use crate::digest;

    const TENANT: &str = "acme";
    const REALM: &str = "acme.switchyard.test";

    fn t0() -> Instant {
        Instant::now()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn users() -> Vec<SipUser> {
        vec![
            SipUser {
                username: "alice".into(),
                password: "wonderland".into(),
            },
            SipUser {
                username: "bob".into(),
                password: "builder".into(),
            },
        ]
    }

    fn registrar() -> Registrar {
        Registrar::new(RegistrarConfig::default(), test_rng())
    }

    fn peer(last: u8) -> Peer {
        Peer::new(Transport::Udp, ([192, 0, 2, last], 5060).into())
    }

    fn status(resp: &rsip::Response) -> u16 {
        resp.status_code.code()
    }

    /// (name, value) of every header of a response, in order.
    fn headers_named(resp: &rsip::Response, name: &str) -> Vec<String> {
        resp.headers
            .iter()
            .filter_map(|h| {
                let line = h.to_string();
                let (n, v) = line.split_once(": ")?;
                n.eq_ignore_ascii_case(name).then(|| v.to_owned())
            })
            .collect()
    }

    /// A phone: builds REGISTERs with rsip and answers challenges.
    struct Phone {
        user: String,
        password: String,
        call_id: String,
        cseq: u32,
        nc: u32,
        challenge: Option<String>,
        prefer_md5: bool,
        tenant: &'static str,
        realm: &'static str,
        lookup: fn(&str) -> Option<String>,
        /// Where its requests come from.
        source: Peer,
    }

    impl Phone {
        fn new(user: &str, password: &str) -> Self {
            Self {
                user: user.into(),
                password: password.into(),
                call_id: format!("{user}-call-id@192.0.2.10"),
                cseq: 0,
                nc: 0,
                challenge: None,
                prefer_md5: false,
                tenant: TENANT,
                realm: REALM,
                lookup: users_lookup,
                source: peer(10),
            }
        }

        fn request(&mut self, contacts: &[&str], expires: Option<u32>) -> rsip::Request {
            self.cseq += 1;
            let mut headers = rsip::Headers::default();
            let mut push = |h: Header| headers.push(h);
            push(Header::Via(rsip::headers::Via::new(format!(
                "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{}",
                self.cseq
            ))));
            push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
            push(Header::From(rsip::headers::From::new(format!(
                "<sip:{}@{}>;tag=f{}",
                self.user, self.realm, self.cseq
            ))));
            push(Header::To(rsip::headers::To::new(format!(
                "<sip:{}@{}>",
                self.user, self.realm
            ))));
            push(Header::CallId(rsip::headers::CallId::new(
                self.call_id.clone(),
            )));
            push(Header::CSeq(rsip::headers::CSeq::new(format!(
                "{} REGISTER",
                self.cseq
            ))));
            for c in contacts {
                push(Header::Contact(rsip::headers::Contact::new(*c)));
            }
            if let Some(e) = expires {
                push(Header::Expires(rsip::headers::Expires::new(e.to_string())));
            }
            push(Header::UserAgent(rsip::headers::UserAgent::new(
                "TestPhone/1.0",
            )));
            if let Some(challenge) = &self.challenge {
                self.nc += 1;
                let creds = digest::answer(
                    challenge,
                    "REGISTER",
                    &format!("sip:{}", self.realm),
                    &self.user,
                    &self.password,
                    self.nc,
                    "0a4f113b",
                )
                .expect("answer");
                push(Header::Authorization(rsip::headers::Authorization::new(
                    creds,
                )));
            }
            rsip::Request {
                method: rsip::Method::Register,
                uri: rsip::Uri::try_from(format!("sip:{}", self.realm)).expect("uri"),
                version: rsip::Version::V2,
                headers,
                body: Vec::new(),
            }
        }

        fn take_challenge(&mut self, resp: &rsip::Response) {
            let offered = headers_named(resp, "WWW-Authenticate");
            let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
            let chosen = if self.prefer_md5 {
                offered.iter().copied().find(|c| c.contains("MD5"))
            } else {
                digest::pick(&offered)
            };
            self.challenge = chosen.map(str::to_owned);
            self.nc = 0;
        }

        /// Sends `req` as it is to the phone's tenant and realm.
        fn send(&self, reg: &mut Registrar, now: Instant, req: &rsip::Request) -> rsip::Response {
            reg.handle_register(now, self.tenant, self.realm, self.source, req, self.lookup)
        }

        /// Sends a REGISTER, answering one 401 the way a phone does.
        fn register(
            &mut self,
            reg: &mut Registrar,
            now: Instant,
            contacts: &[&str],
            expires: Option<u32>,
        ) -> rsip::Response {
            let req = self.request(contacts, expires);
            let resp = self.send(reg, now, &req);
            if status(&resp) != 401 {
                return resp;
            }
            self.take_challenge(&resp);
            let req = self.request(contacts, expires);
            self.send(reg, now, &req)
        }
    }

    /// The start of most tests: now, a fresh registrar, and alice's phone
    /// with her right password.
    fn alice() -> (Instant, Registrar, Phone) {
        (t0(), registrar(), Phone::new("alice", "wonderland"))
    }

    fn users_lookup(name: &str) -> Option<String> {
        SipUser::lookup(&users())(name)
    }

    fn contacts_of(reg: &Registrar, now: Instant, user: &str) -> Vec<String> {
        reg.lookup(now, TENANT, user)
            .into_iter()
            .map(|b| b.contact)
            .collect()
    }

    #[test]
    fn register_is_challenged_then_accepted_with_sha256() {
        let (now, mut reg, mut phone) = alice();
        let req = phone.request(&["<sip:alice@192.0.2.10:5060>"], Some(600));
        let first = phone.send(&mut reg, now, &req);
        assert_eq!(status(&first), 401);
        let offered = headers_named(&first, "WWW-Authenticate");
        assert_eq!(offered.len(), 2);
        assert!(offered[0].contains("algorithm=SHA-256"));
        assert!(headers_named(&first, "To")[0].contains(";tag="));
        assert!(reg.is_empty(), "nothing is bound before authentication");

        phone.take_challenge(&first);
        let req = phone.request(&["<sip:alice@192.0.2.10:5060>"], Some(600));
        let ok = phone.send(&mut reg, now, &req);
        assert_eq!(status(&ok), 200);
        assert_eq!(
            headers_named(&ok, "Contact"),
            vec!["<sip:alice@192.0.2.10:5060>;expires=600"]
        );
        assert!(headers_named(&ok, "To")[0].contains(";tag="));
        let bindings = reg.lookup(now, TENANT, "alice");
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].source, peer(10));
        assert_eq!(bindings[0].expires_at, now + secs(600));
        assert_eq!(bindings[0].cseq, 2);
        assert_eq!(bindings[0].user_agent.as_deref(), Some("TestPhone/1.0"));
    }

    #[test]
    fn register_is_accepted_with_md5() {
        let now = t0();
        let mut reg = registrar();
        let mut phone = Phone::new("bob", "builder");
        phone.prefer_md5 = true;
        let ok = phone.register(&mut reg, now, &["<sip:bob@192.0.2.11>"], None);
        assert_eq!(status(&ok), 200);
        assert!(
            phone
                .challenge
                .as_deref()
                .is_some_and(|c| c.contains("MD5"))
        );
        assert_eq!(contacts_of(&reg, now, "bob"), vec!["sip:bob@192.0.2.11"]);
    }

    #[test]
    fn wrong_password_gets_a_fresh_401() {
        let now = t0();
        let mut reg = registrar();
        let mut phone = Phone::new("alice", "looking-glass");
        let resp = phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], None);
        assert_eq!(status(&resp), 401);
        assert!(
            headers_named(&resp, "WWW-Authenticate")
                .iter()
                .all(|c| !c.contains("stale"))
        );
        assert!(reg.is_empty());
    }

    #[test]
    fn replayed_nonce_count_is_challenged_again() {
        let (now, mut reg, mut phone) = alice();
        assert_eq!(
            status(&phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], None)),
            200
        );
        // Same credentials again (nc stays 1), with a higher CSeq, from
        // elsewhere.
        phone.nc = 0;
        phone.source = peer(66);
        let replay = phone.request(&["<sip:evil@203.0.113.9>"], None);
        let resp = phone.send(&mut reg, now, &replay);
        assert_eq!(status(&resp), 401);
        assert_eq!(
            contacts_of(&reg, now, "alice"),
            vec!["sip:alice@192.0.2.10"]
        );
    }

    #[test]
    fn expired_nonce_is_challenged_with_stale_true() {
        let (now, mut reg, mut phone) = alice();
        assert_eq!(
            status(&phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], Some(3600))),
            200
        );
        let later = now + reg.config().nonce_ttl;
        let req = phone.request(&["<sip:alice@192.0.2.10>"], Some(3600));
        let resp = phone.send(&mut reg, later, &req);
        assert_eq!(status(&resp), 401);
        assert!(
            headers_named(&resp, "WWW-Authenticate")
                .iter()
                .all(|c| c.contains("stale=true"))
        );
        // The phone retries with the new nonce and refreshes.
        phone.take_challenge(&resp);
        let req = phone.request(&["<sip:alice@192.0.2.10>"], Some(3600));
        let resp = phone.send(&mut reg, later, &req);
        assert_eq!(status(&resp), 200);
        assert_eq!(
            reg.lookup(later, TENANT, "alice")[0].expires_at,
            later + secs(3600)
        );
    }

    #[test]
    fn to_user_other_than_the_authenticated_user_is_forbidden() {
        let now = t0();
        let mut reg = registrar();
        // bob's credentials, alice's address-of-record.
        let mut phone = Phone::new("bob", "builder");
        phone.source = peer(11);
        let first = phone.request(&["<sip:bob@192.0.2.11>"], None);
        let challenge = phone.send(&mut reg, now, &first);
        phone.take_challenge(&challenge);
        let mut req = phone.request(&["<sip:bob@192.0.2.11>"], None);
        for h in req.headers.iter_mut() {
            if let Header::To(to) = h {
                *to = rsip::headers::To::new(format!("<sip:alice@{REALM}>"));
            }
        }
        let resp = phone.send(&mut reg, now, &req);
        assert_eq!(status(&resp), 403);
        assert!(reg.is_empty());
    }

    #[test]
    fn several_contacts_are_bound_and_listed_best_first() {
        let (now, mut reg, mut phone) = alice();
        let resp = phone.register(
            &mut reg,
            now,
            &[
                "<sip:alice@192.0.2.10>;q=0.5",
                "\"Desk, Phone\" <sip:alice@192.0.2.20;transport=tcp>;q=1.0, <sip:alice@192.0.2.30>;q=0.1",
            ],
            Some(1200),
        );
        assert_eq!(status(&resp), 200);
        assert_eq!(headers_named(&resp, "Contact").len(), 3);
        assert_eq!(
            contacts_of(&reg, now, "alice"),
            vec![
                "sip:alice@192.0.2.20;transport=tcp",
                "sip:alice@192.0.2.10",
                "sip:alice@192.0.2.30",
            ]
        );
        assert_eq!(reg.len(), 3);
    }

    #[test]
    fn equal_q_puts_the_most_recent_registration_first() {
        let (now, mut reg, mut phone) = alice();
        phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], None);
        phone.register(&mut reg, now + secs(5), &["<sip:alice@192.0.2.20>"], None);
        assert_eq!(
            contacts_of(&reg, now + secs(6), "alice"),
            vec!["sip:alice@192.0.2.20", "sip:alice@192.0.2.10"]
        );
    }

    #[test]
    fn per_contact_expires_overrides_the_expires_header_and_max_is_clamped() {
        let (now, mut reg, mut phone) = alice();
        let resp = phone.register(
            &mut reg,
            now,
            &[
                "<sip:alice@192.0.2.10>;expires=120",
                "<sip:alice@192.0.2.20>",
                "<sip:alice@192.0.2.30>;expires=999999",
            ],
            Some(300),
        );
        assert_eq!(status(&resp), 200);
        let listed = headers_named(&resp, "Contact");
        assert!(listed.contains(&"<sip:alice@192.0.2.10>;expires=120".to_owned()));
        assert!(listed.contains(&"<sip:alice@192.0.2.20>;expires=300".to_owned()));
        assert!(listed.contains(&"<sip:alice@192.0.2.30>;expires=3600".to_owned()));
    }

    #[test]
    fn contact_with_expires_zero_removes_only_that_binding() {
        let (now, mut reg, mut phone) = alice();
        phone.register(
            &mut reg,
            now,
            &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.20>"],
            None,
        );
        let resp = phone.register(
            &mut reg,
            now + secs(1),
            &["<sip:alice@192.0.2.10>;expires=0"],
            None,
        );
        assert_eq!(status(&resp), 200);
        assert_eq!(headers_named(&resp, "Contact").len(), 1);
        assert_eq!(
            contacts_of(&reg, now + secs(1), "alice"),
            vec!["sip:alice@192.0.2.20"]
        );
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn wildcard_with_expires_zero_removes_all_bindings() {
        let (now, mut reg, mut phone) = alice();
        phone.register(
            &mut reg,
            now,
            &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.20>"],
            None,
        );
        let resp = phone.register(&mut reg, now + secs(1), &["*"], Some(0));
        assert_eq!(status(&resp), 200);
        assert!(headers_named(&resp, "Contact").is_empty());
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), reg.nonces.poll_timeout());
    }

    #[test]
    fn wildcard_misuse_is_a_bad_request() {
        let (now, mut reg, mut phone) = alice();
        let with_other = phone.register(&mut reg, now, &["*, <sip:alice@192.0.2.10>"], Some(0));
        assert_eq!(status(&with_other), 400);
        let nonzero = phone.register(&mut reg, now, &["*"], Some(60));
        assert_eq!(status(&nonzero), 400);
        let no_expires = phone.register(&mut reg, now, &["*"], None);
        assert_eq!(status(&no_expires), 400);
    }

    #[test]
    fn too_brief_interval_gets_423_with_min_expires_and_changes_nothing() {
        let (now, mut reg, mut phone) = alice();
        let resp = phone.register(
            &mut reg,
            now,
            &[
                "<sip:alice@192.0.2.10>",
                "<sip:alice@192.0.2.20>;expires=30",
            ],
            None,
        );
        assert_eq!(status(&resp), 423);
        assert_eq!(headers_named(&resp, "Min-Expires"), vec!["60"]);
        assert!(reg.is_empty(), "the request is all or nothing");
    }

    #[test]
    fn bindings_expire_at_exactly_their_virtual_instant() {
        let (now, mut reg, mut phone) = alice();
        phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], Some(60));
        phone.register(&mut reg, now, &["<sip:alice@192.0.2.20>"], Some(120));
        assert_eq!(reg.len(), 2);
        // Nonce memory (300 s) outlives both bindings here.
        assert_eq!(reg.poll_timeout(), Some(now + secs(60)));
        let almost = now + secs(60) - Duration::from_millis(1);
        reg.expire(almost);
        assert_eq!(contacts_of(&reg, almost, "alice").len(), 2);
        reg.expire(now + secs(60));
        assert_eq!(reg.len(), 1);
        assert_eq!(
            contacts_of(&reg, now + secs(60), "alice"),
            vec!["sip:alice@192.0.2.20"]
        );
        assert_eq!(reg.poll_timeout(), Some(now + secs(120)));
        reg.expire(now + secs(120));
        assert!(reg.is_empty());
        assert!(reg.bindings.is_empty() && reg.deadlines.is_empty());
        // Then the used nonce is forgotten as well.
        let last = reg.poll_timeout().expect("nonce memory");
        reg.expire(last);
        assert_eq!(reg.poll_timeout(), None);
        assert_eq!(reg.nonces.tracked(), 0);
    }

    #[test]
    fn lookup_ignores_bindings_past_expiry_before_expire_runs() {
        let (now, mut reg, mut phone) = alice();
        phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], Some(60));
        assert!(reg.lookup(now + secs(60), TENANT, "alice").is_empty());
    }

    #[test]
    fn tenants_are_isolated_even_for_the_same_username() {
        let (now, mut reg, mut acme_alice) = alice();
        acme_alice.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], None);
        assert!(reg.lookup(now, "globex", "alice").is_empty());

        let mut globex_alice = Phone::new("alice", "globex-secret");
        globex_alice.tenant = "globex";
        globex_alice.realm = "globex.test";
        globex_alice.lookup = |u| (u == "alice").then(|| "globex-secret".to_owned());
        let resp = globex_alice.register(&mut reg, now, &["<sip:alice@198.51.100.7>"], None);
        assert_eq!(status(&resp), 200);
        // Each tenant's 200 and lookup show only its own binding.
        assert_eq!(
            headers_named(&resp, "Contact"),
            vec!["<sip:alice@198.51.100.7>;expires=3600"]
        );
        assert_eq!(
            contacts_of(&reg, now, "alice"),
            vec!["sip:alice@192.0.2.10"]
        );
        assert_eq!(
            reg.lookup(now, "globex", "alice")
                .into_iter()
                .map(|b| b.contact)
                .collect::<Vec<_>>(),
            vec!["sip:alice@198.51.100.7"]
        );
        // acme's credentials are no good in globex's realm.
        let req = acme_alice.request(&[], None);
        let resp = reg.handle_register(now, "globex", "globex.test", peer(10), &req, users_lookup);
        assert_eq!(status(&resp), 401);
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn register_without_contact_lists_the_bindings() {
        let (now, mut reg, mut phone) = alice();
        phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], Some(600));
        let resp = phone.register(&mut reg, now + secs(100), &[], None);
        assert_eq!(status(&resp), 200);
        assert_eq!(
            headers_named(&resp, "Contact"),
            vec!["<sip:alice@192.0.2.10>;expires=500"]
        );
    }

    #[test]
    fn same_call_id_with_an_old_cseq_is_refused() {
        let (now, mut reg, mut phone) = alice();
        phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>"], Some(600));
        phone.cseq = 0;
        let resp = phone.register(&mut reg, now, &["<sip:alice@192.0.2.10>;expires=0"], None);
        assert_eq!(status(&resp), 500);
        assert_eq!(reg.len(), 1);
        // A different Call-ID (a rebooted phone) may replace it.
        let mut rebooted = Phone::new("alice", "wonderland");
        rebooted.call_id = "after-reboot".into();
        let resp = rebooted.register(&mut reg, now, &["<sip:alice@192.0.2.10>;expires=0"], None);
        assert_eq!(status(&resp), 200);
        assert!(reg.is_empty());
    }

    #[test]
    fn too_many_contacts_are_forbidden() {
        let now = t0();
        let mut reg = Registrar::new(
            RegistrarConfig {
                max_contacts_per_user: 2,
                ..RegistrarConfig::default()
            },
            test_rng(),
        );
        let mut phone = Phone::new("alice", "wonderland");
        phone.register(
            &mut reg,
            now,
            &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.20>"],
            None,
        );
        let resp = phone.register(&mut reg, now, &["<sip:alice@192.0.2.30>"], None);
        assert_eq!(status(&resp), 403);
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn unknown_required_extension_gets_420() {
        let (now, mut reg, mut phone) = alice();
        let mut req = phone.request(&["<sip:alice@192.0.2.10>"], None);
        req.headers
            .push(Header::Require(rsip::headers::Require::new("teleport")));
        let resp = phone.send(&mut reg, now, &req);
        assert_eq!(status(&resp), 420);
        assert_eq!(headers_named(&resp, "Unsupported"), vec!["teleport"]);
    }

    #[test]
    fn invite_is_challenged_with_407_and_then_authenticated() {
        let now = t0();
        let mut reg = registrar();
        let raw = format!(
            "INVITE sip:bob@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
             From: <sip:alice@{REALM}>;tag=1\r\nTo: <sip:bob@{REALM}>\r\nCall-ID: inv1\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let mut invite = rsip::Request::try_from(raw.as_str()).expect("invite");
        let challenge = reg
            .authenticate(now, REALM, &invite, users_lookup)
            .expect_err("challenge");
        assert_eq!(status(&challenge), 407);
        let offered = headers_named(&challenge, "Proxy-Authenticate");
        let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
        let chosen = digest::pick(&offered).expect("usable challenge");
        let creds = digest::answer(
            chosen,
            "INVITE",
            &format!("sip:bob@{REALM}"),
            "alice",
            "wonderland",
            1,
            "abc",
        )
        .expect("answer");
        invite.headers.push(Header::ProxyAuthorization(
            rsip::headers::ProxyAuthorization::new(creds),
        ));
        assert_eq!(
            reg.authenticate(now, REALM, &invite, users_lookup),
            Ok("alice".to_owned())
        );
    }

    fn torture(name: &str) -> rsip::Request {
        let path = format!("/work/shared/corpora/rfc4475/{name}.dat");
        let bytes = std::fs::read(&path).expect("corpus file");
        rsip::Request::try_from(&bytes[..]).expect("rsip parses the torture message")
    }

    #[test]
    fn rfc4475_register_torture_messages_get_a_401_challenge() {
        let now = t0();
        for name in ["cparam01", "cparam02", "regescrt", "regaut01"] {
            let mut reg = registrar();
            let req = torture(name);
            let resp = reg.handle_register(now, TENANT, "example.com", peer(1), &req, users_lookup);
            assert_eq!(status(&resp), 401, "{name}");
            assert_eq!(headers_named(&resp, "WWW-Authenticate").len(), 2, "{name}");
            // Compact forms (`i:`) are copied back as full headers.
            assert_eq!(headers_named(&resp, "Call-ID").len(), 1, "{name}");
            assert!(headers_named(&resp, "To")[0].contains(";tag="), "{name}");
            assert!(reg.is_empty(), "{name}");
        }
    }

    #[test]
    fn rfc4475_register_contacts_are_stored_as_sent_once_authenticated() {
        // The torture messages with valid credentials added: the contact
        // forms of §3.3.12-14 bind exactly as written.
        let now = t0();
        let cases = [
            ("cparam01", "watson", "sip:+19725552222@gw1.example.net"),
            (
                "cparam02",
                "watson",
                "sip:+19725552222@gw1.example.net;unknownparam",
            ),
            (
                "regescrt",
                "user",
                "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            ),
        ];
        for (name, user, contact) in cases {
            let mut reg = registrar();
            let lookup = |u: &str| (u == user).then(|| "pw".to_owned());
            let mut req = torture(name);
            let challenge = reg
                .authenticate(now, "example.com", &req, lookup)
                .expect_err("challenge");
            let offered = headers_named(&challenge, "WWW-Authenticate");
            let creds = digest::answer(
                &offered[0],
                "REGISTER",
                "sip:example.com",
                user,
                "pw",
                1,
                "x",
            )
            .expect("answer");
            req.headers
                .push(Header::Authorization(rsip::headers::Authorization::new(
                    creds,
                )));
            let resp = reg.handle_register(now, TENANT, "example.com", peer(1), &req, lookup);
            assert_eq!(status(&resp), 200, "{name}");
            assert_eq!(contacts_of(&reg, now, user), vec![contact], "{name}");
            assert_eq!(
                headers_named(&resp, "Contact"),
                vec![format!("<{contact}>;expires=3600")],
                "{name}"
            );
        }
    }

    #[test]
    fn garbage_contacts_and_headers_never_panic() {
        let (now, mut reg, mut phone) = alice();
        phone.register(&mut reg, now, &[], None);
        let garbage = [
            "<",
            ">",
            "<>",
            "\"unterminated <sip:a@b>",
            "\"x\\",
            "<sip:a@b",
            "sip:a@b;q=2",
            "sip:a@b;q=abc",
            "sip:a@b;expires=-1",
            "sip:a@b;expires=99999999999999999999999",
            "<sip:a@b>;=x",
            "no-scheme",
            ";;;",
            ",,,",
            "é<sip:é@é>;é=é",
            "<sip:a@b>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
        ];
        for g in garbage {
            let resp = phone.register(&mut reg, now, &[g], Some(3600));
            assert!(matches!(status(&resp), 200 | 400), "{g}: {}", status(&resp));
        }
        for to in ["", "<", "sip:", "tel:+1", "<sip:@x>", "%zz@x"] {
            let _ = uri_user(to);
            let _ = NameAddr::parse(to);
        }
    }

    #[test]
    fn bad_config_is_named_by_validate_and_repaired_by_new() {
        let bad = RegistrarConfig {
            min_expires: 600,
            max_expires: 60,
            max_contacts_per_user: 0,
            ..RegistrarConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(RegistrarError::InvalidConfig(field)) if field.starts_with("min_expires")
        ));
        assert_eq!(RegistrarConfig::default().validate(), Ok(()));
        let reg = Registrar::new(bad, test_rng());
        assert_eq!(reg.config().validate(), Ok(()));
        assert_eq!(reg.config().min_expires, 600);
        assert_eq!(reg.config().max_expires, 600);
        assert_eq!(reg.config().max_contacts_per_user, 1);
    }

    #[test]
    fn sip_user_debug_hides_the_password() {
        let user = &users()[0];
        assert!(!format!("{user:?}").contains("wonderland"));
    }
}
