//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616,
//! RFC 8760): the server's nonce book and verifier, and the client's answer.
//!
//! Server side, sans-IO (time comes in as `now`, nothing reads a clock):
//!
//! ```text
//!  request without credentials ──► challenge(now, realm, false) ──► 401/407
//!  request with credentials ──► verify(now, realm, method, value, lookup)
//!      Verdict::Ok { username } ──► proceed
//!      Verdict::Stale           ──► challenge(now, realm, true)  (no re-prompt)
//!      Verdict::Refused(why)    ──► challenge(now, realm, false)
//!  timer at poll_timeout() ──► expire(now)   (forgets used nonces)
//! ```
//!
//! Nonces are stateless to verify: each carries its issue time, randomness
//! and a MAC over both and the realm, keyed by a per-process secret. The book
//! only remembers nonces that have been *used*, with the highest nonce-count
//! seen, to refuse replays; that memory is bounded and returns at expiry.
//!
//! Client side (outbound trunks answering 401/407): [`pick`] the strongest
//! challenge, then [`answer`] it with `nc` counting up from 1.
//!
//! rsip 0.4's typed `Authorization`/`WwwAuthenticate` are not used: they parse
//! `nc` as a decimal `u8` (it is 8 hex digits, RFC 2617 §3.2.2), spell the
//! algorithm `SHA256` (RFC 8760 §2.3 registers `SHA-256`) and refuse a qop
//! list, so this module parses auth-params itself (RFC 7235 §2.1 grammar).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Why credentials or a challenge were not accepted.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The header is not an auth-scheme followed by auth-params.
    #[error("malformed authentication header: {0}")]
    Malformed(&'static str),
    /// A parameter the scheme requires is absent.
    #[error("missing parameter `{0}`")]
    MissingParam(&'static str),
    /// The scheme is not `Digest` (e.g. RFC 4475 §3.3.7 `NoOneKnowsThisScheme`).
    #[error("unsupported authentication scheme `{0}`")]
    UnsupportedScheme(String),
    /// Only `MD5` and `SHA-256` are spoken; `-sess` variants are refused.
    #[error("unsupported digest algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// Only `qop=auth` (or no qop) is spoken; `auth-int` is refused.
    #[error("unsupported qop `{0}`")]
    UnsupportedQop(String),
    /// The credentials name a realm other than the one challenged.
    #[error("realm does not match")]
    RealmMismatch,
    /// The password lookup knows no such user.
    #[error("unknown user")]
    UnknownUser,
    /// The response hash is wrong: wrong password, or altered request fields.
    #[error("wrong digest response")]
    WrongResponse,
    /// The nonce-count was already seen for this nonce (RFC 2617 §3.2.2), or
    /// a nonce used without qop came back.
    #[error("replayed nonce")]
    Replay,
}

/// A digest algorithm (RFC 7616 §3.2, RFC 8760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// Strongest first: the order challenges are offered in and in which
    /// [`pick`] prefers them (RFC 8760 §2.4, RFC 7616 §3.7).
    pub const PREFERENCE: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The token on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `H(data)` as lowercase hex (RFC 7616 §3.4.1).
    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Algorithm::Md5 => 1,
            Algorithm::Sha256 => 2,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    /// `MD5` or `SHA-256`, any case. The `-sess` variants are refused: SIP
    /// has no use for them and RFC 3261 §22.4 never defined them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm(truncated(s)))
        }
    }
}

/// The outcome of [`NonceBook::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are good for this request.
    Ok { username: String },
    /// The digest is right but the nonce is expired, forgotten or not ours:
    /// challenge again with `stale=true` so the client retries without
    /// re-prompting (RFC 2617 §3.2.1 `stale`).
    Stale,
    /// Challenge again with a fresh nonce.
    Refused(DigestError),
}

/// Issues nonces and verifies digest credentials against them.
#[derive(Debug)]
pub struct NonceBook {
    secret: [u8; 32],
    /// Where the random part of each nonce comes from.
    rng: crate::Rng,
    ttl: Duration,
    max_tracked: usize,
    /// Nonce issue times are milliseconds since this instant (the first
    /// `now` seen), since an `Instant` has no wire form.
    epoch: Option<Instant>,
    /// Used nonces, keyed by (issued-at ms, nonce) so the oldest come first
    /// for expiry and eviction; the value is the highest nonce-count seen,
    /// `u32::MAX` for a nonce consumed without qop.
    used: BTreeMap<(u64, String), u32>,
    /// Issue time of the newest nonce evicted to keep `used` bounded. An
    /// untracked nonce issued at or before it may have been used already, so
    /// it is answered `Stale` rather than trusted.
    evicted_up_to: Option<u64>,
    /// The order challenges are offered in (see [`NonceBook::offer_order`]).
    order: [Algorithm; 2],
}

/// Bytes of randomness per nonce.
const NONCE_RANDOM: usize = 16;
/// MAC bytes kept per nonce: 128 bits of HMAC-SHA256 (RFC 2104 §5 allows
/// truncation to at least half the output).
const NONCE_MAC: usize = 16;
const NONCE_BYTES: usize = 8 + NONCE_RANDOM + NONCE_MAC;
/// Credentials longer than this are refused unparsed: a bound on work per
/// request, far above any real header (a SHA-256 answer is ~400 bytes).
const MAX_HEADER_LEN: usize = 4096;
/// At most this many auth-params per header (RFC 7616 defines 13).
const MAX_PARAMS: usize = 32;

impl NonceBook {
    /// How long a nonce stays valid (RFC 7616 §5.5 leaves it to the server;
    /// five minutes covers a REGISTER refresh round trip and INVITE retries).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
    /// Used nonces remembered at most; past it the oldest are forgotten and
    /// answered `Stale` when they come back.
    pub const DEFAULT_MAX_TRACKED: usize = 16_384;

    /// A book with a fresh secret drawn from `rng` (seeded by the edge from
    /// the OS): nonces of another book (another process, a restart) are
    /// answered `Stale`, which clients retry silently.
    pub fn new(ttl: Duration, mut rng: crate::Rng) -> Self {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rng, &mut secret);
        Self {
            secret,
            rng,
            ttl,
            max_tracked: Self::DEFAULT_MAX_TRACKED,
            epoch: None,
            used: BTreeMap::new(),
            evicted_up_to: None,
            order: Algorithm::PREFERENCE,
        }
    }

    /// Offers MD5 before SHA-256 when `md5_first`. Interoperability
    /// trade-off: RFC 8760 §2.4 asks for the strongest first, but many
    /// deployed UAs (SIPp 3.6 among them) read only the first challenge and
    /// give up when it is not MD5; an RFC 8760 UA given MD5 first uses MD5.
    pub fn offer_order(mut self, md5_first: bool) -> Self {
        self.order = if md5_first {
            [Algorithm::Md5, Algorithm::Sha256]
        } else {
            Algorithm::PREFERENCE
        };
        self
    }

    /// Bounds the used-nonce memory (default [`Self::DEFAULT_MAX_TRACKED`],
    /// at least 1).
    pub fn with_max_tracked(mut self, max_tracked: usize) -> Self {
        self.max_tracked = max_tracked.max(1);
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Used nonces currently remembered.
    pub fn tracked(&self) -> usize {
        self.used.len()
    }

    /// WWW-Authenticate / Proxy-Authenticate values for one fresh nonce: one
    /// per algorithm, in [`offer_order`](Self::offer_order) (RFC 8760 §2.4:
    /// the client uses the first it supports), all with `qop="auth"` (RFC 3261 §22.4 requires a
    /// qop in SIP challenges).
    pub fn challenge(&mut self, now: Instant, realm: &str, stale: bool) -> Vec<String> {
        let nonce = self.issue(now, realm);
        let stale = if stale { ", stale=true" } else { "" };
        self.order
            .iter()
            .map(|alg| {
                format!(
                    "Digest realm={}, nonce=\"{nonce}\", algorithm={alg}, qop=\"auth\"{stale}",
                    quote(realm)
                )
            })
            .collect()
    }

    /// Checks an Authorization / Proxy-Authorization value for `method` in
    /// `realm`; `password_lookup` maps a username to its password.
    ///
    /// Checks, in order: syntax, scheme, algorithm, realm, uri, qop, user,
    /// response hash (constant time), then nonce authenticity and age, then
    /// the nonce-count. The nonce is judged only after the hash, so `Stale`
    /// is said only to a client that knows the password (RFC 2617 §3.2.1).
    pub fn verify(
        &mut self,
        now: Instant,
        realm: &str,
        method: &str,
        authorization: &str,
        password_lookup: impl Fn(&str) -> Option<String>,
    ) -> Verdict {
        self.expire(now);
        let creds = match Credentials::parse(authorization) {
            Ok(creds) => creds,
            Err(e) => return Verdict::Refused(e),
        };
        if creds.realm != realm {
            return Verdict::Refused(DigestError::RealmMismatch);
        }
        // Hash even for an unknown user so the answer takes the same time
        // and does not tell which usernames exist.
        let password = password_lookup(&creds.username);
        let expected = response_hash(&ResponseInput {
            algorithm: creds.algorithm,
            username: &creds.username,
            realm,
            password: password.as_deref().unwrap_or(""),
            method,
            uri: &creds.uri,
            nonce: &creds.nonce,
            qop: creds
                .qop
                .as_ref()
                .map(|q| (q.nc_text.as_str(), q.cnonce.as_str())),
        });
        let matches = constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        );
        if password.is_none() {
            return Verdict::Refused(DigestError::UnknownUser);
        }
        if !matches {
            return Verdict::Refused(DigestError::WrongResponse);
        }
        let Some(issued_ms) = self.authentic_issue_time(&creds.nonce, realm) else {
            return Verdict::Stale;
        };
        let epoch = *self.epoch.get_or_insert(now);
        let issued = epoch.checked_add(Duration::from_millis(issued_ms));
        match issued {
            // Issued "in the future": a nonce from another epoch (restart).
            Some(issued) if issued <= now && now.duration_since(issued) < self.ttl => {}
            _ => return Verdict::Stale,
        }
        let nc = creds.qop.as_ref().map_or(u32::MAX, |q| q.nc);
        let key = (issued_ms, creds.nonce);
        match self.used.get_mut(&key) {
            Some(highest) if nc <= *highest => Verdict::Refused(DigestError::Replay),
            Some(highest) => {
                *highest = nc;
                Verdict::Ok {
                    username: creds.username,
                }
            }
            None if self.evicted_up_to.is_some_and(|e| issued_ms <= e) => Verdict::Stale,
            None => {
                if self.used.len() >= self.max_tracked
                    && let Some(((oldest, _), _)) = self.used.pop_first()
                {
                    self.evicted_up_to = Some(self.evicted_up_to.map_or(oldest, |e| e.max(oldest)));
                }
                self.used.insert(key, nc);
                Verdict::Ok {
                    username: creds.username,
                }
            }
        }
    }

    /// Forgets used nonces whose lifetime is over: they are refused as stale
    /// by their age from now on.
    pub fn expire(&mut self, now: Instant) {
        while let Some(((issued_ms, _), _)) = self.used.first_key_value() {
            match self.expiry_of(*issued_ms) {
                Some(at) if at > now => break,
                _ => {
                    self.used.pop_first();
                }
            }
        }
    }

    /// When [`Self::expire`] next has something to forget.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ((issued_ms, _), _) = self.used.first_key_value()?;
        self.expiry_of(*issued_ms)
    }

    fn expiry_of(&self, issued_ms: u64) -> Option<Instant> {
        self.epoch?
            .checked_add(Duration::from_millis(issued_ms))?
            .checked_add(self.ttl)
    }

    /// nonce = hex(issued-at ms (8 bytes BE) | random | MAC(issued | random | realm)).
    fn issue(&mut self, now: Instant, realm: &str) -> String {
        let epoch = *self.epoch.get_or_insert(now);
        let ms =
            u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX);
        let mut random = [0u8; NONCE_RANDOM];
        rand::RngCore::fill_bytes(&mut self.rng, &mut random);
        let mut raw = Vec::with_capacity(NONCE_BYTES);
        raw.extend_from_slice(&ms.to_be_bytes());
        raw.extend_from_slice(&random);
        let mac = self.nonce_mac(&raw, realm);
        raw.extend_from_slice(&mac[..NONCE_MAC]);
        hex::encode(raw)
    }

    /// The issue time of a nonce this book made for `realm`, or `None`.
    fn authentic_issue_time(&self, nonce: &str, realm: &str) -> Option<u64> {
        let raw = hex::decode(nonce).ok()?;
        if raw.len() != NONCE_BYTES {
            return None;
        }
        let (body, mac) = raw.split_at(8 + NONCE_RANDOM);
        let expected = self.nonce_mac(body, realm);
        if !constant_time_eq(&expected[..NONCE_MAC], mac) {
            return None;
        }
        let ms: [u8; 8] = body.get(..8)?.try_into().ok()?;
        Some(u64::from_be_bytes(ms))
    }

    fn nonce_mac(&self, body: &[u8], realm: &str) -> [u8; 32] {
        // The realm length goes in first so (body, realm) splits are unambiguous.
        let realm_len = (realm.len() as u64).to_be_bytes();
        hmac_sha256(&self.secret, &[&realm_len, realm.as_bytes(), body])
    }
}

/// Picks the challenge to answer among several WWW-Authenticate or
/// Proxy-Authenticate values: the strongest algorithm this module speaks
/// (SHA-256 over MD5, RFC 8760 §2.4), the first on a tie; `None` if none is
/// a usable Digest challenge.
pub fn pick<'a>(challenges: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(u8, &'a str)> = None;
    for &value in challenges {
        let Ok(challenge) = Challenge::parse(value) else {
            continue;
        };
        let rank = challenge.algorithm.rank();
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, value));
        }
    }
    best.map(|(_, value)| value)
}

/// The Authorization (or Proxy-Authorization) value answering `challenge`
/// for a request `method` to `uri` (the Request-URI, RFC 3261 §22.4).
///
/// `nc` is the count of requests made with this challenge's nonce, from 1,
/// written as 8 hex digits; `cnonce` should be fresh random text. Both are
/// used only when the challenge offers `qop=auth`; without qop the RFC 2069
/// form is sent. `opaque` is echoed (RFC 7616 §3.4).
pub fn answer(
    challenge: &str,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    nc: u32,
    cnonce: &str,
) -> Result<String, DigestError> {
    let challenge = Challenge::parse(challenge)?;
    let nc_text = format!("{nc:08x}");
    let qop = challenge.qop_auth.then_some((nc_text.as_str(), cnonce));
    let response = response_hash(&ResponseInput {
        algorithm: challenge.algorithm,
        username,
        realm: &challenge.realm,
        password,
        method,
        uri,
        nonce: &challenge.nonce,
        qop,
    });
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        challenge.algorithm,
    );
    if let Some((nc, cnonce)) = qop {
        // qop and nc are bare tokens in credentials (RFC 2617 §3.2.2).
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce={}", quote(cnonce)));
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(&format!(", opaque={}", quote(opaque)));
    }
    Ok(out)
}

/// The fields of a response hash (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).
struct ResponseInput<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    method: &'a str,
    uri: &'a str,
    nonce: &'a str,
    /// (nc as sent, cnonce) when qop=auth.
    qop: Option<(&'a str, &'a str)>,
}

fn response_hash(input: &ResponseInput<'_>) -> String {
    let h = |data: String| input.algorithm.hash(&data);
    let ha1 = h(format!(
        "{}:{}:{}",
        input.username, input.realm, input.password
    ));
    let ha2 = h(format!("{}:{}", input.method, input.uri));
    match input.qop {
        Some((nc, cnonce)) => h(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", input.nonce)),
        None => h(format!("{ha1}:{}:{ha2}", input.nonce)),
    }
}

/// A parsed Digest challenge, as far as a client needs it.
struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    /// The server offers qop=auth (possibly among others).
    qop_auth: bool,
}

impl Challenge {
    fn parse(value: &str) -> Result<Self, DigestError> {
        let header = AuthHeader::parse(value)?;
        header.require_digest()?;
        let algorithm = header.algorithm()?;
        let qop_auth = match header.get("qop") {
            None => false,
            Some(list)
                if list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
            {
                true
            }
            Some(other) => return Err(DigestError::UnsupportedQop(truncated(other))),
        };
        Ok(Self {
            realm: header.require("realm")?.to_owned(),
            nonce: header.require("nonce")?.to_owned(),
            opaque: header.get("opaque").map(str::to_owned),
            algorithm,
            qop_auth,
        })
    }
}

/// Parsed Digest credentials, as far as a server needs them.
struct Credentials {
    username: String,
    realm: String,
    nonce: String,
    uri: String,
    response: String,
    algorithm: Algorithm,
    qop: Option<QopAuth>,
}

struct QopAuth {
    nc: u32,
    /// nc exactly as sent: the hash covers the text (RFC 2617 §3.2.2.1).
    nc_text: String,
    cnonce: String,
}

impl Credentials {
    fn parse(value: &str) -> Result<Self, DigestError> {
        let header = AuthHeader::parse(value)?;
        header.require_digest()?;
        let algorithm = header.algorithm()?;
        let qop = match header.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_text = header.require("nc")?;
                // nc-value = 8LHEX (RFC 2617 §3.2.2); shorter is tolerated.
                if nc_text.is_empty()
                    || nc_text.len() > 8
                    || !nc_text.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(DigestError::Malformed("nc is not 8 hex digits"));
                }
                let nc = u32::from_str_radix(nc_text, 16)
                    .map_err(|_| DigestError::Malformed("nc is not 8 hex digits"))?;
                Some(QopAuth {
                    nc,
                    nc_text: nc_text.to_owned(),
                    cnonce: header.require("cnonce")?.to_owned(),
                })
            }
            Some(other) => return Err(DigestError::UnsupportedQop(truncated(other))),
        };
        let uri = header.require("uri")?;
        if uri.is_empty() {
            return Err(DigestError::MissingParam("uri"));
        }
        Ok(Self {
            username: header.require("username")?.to_owned(),
            realm: header.require("realm")?.to_owned(),
            nonce: header.require("nonce")?.to_owned(),
            uri: uri.to_owned(),
            response: header.require("response")?.to_owned(),
            algorithm,
            qop,
        })
    }
}

/// `auth-scheme 1*SP #auth-param` (RFC 7235 §2.1) with quoted-string values
/// unescaped and parameter names lowercased.
struct AuthHeader {
    scheme: String,
    params: Vec<(String, String)>,
}

impl AuthHeader {
    fn parse(value: &str) -> Result<Self, DigestError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(DigestError::Malformed("header too long"));
        }
        let mut cur = Cursor::new(value);
        cur.skip_ws();
        let scheme = cur.token();
        if scheme.is_empty() {
            return Err(DigestError::Malformed("no auth-scheme"));
        }
        let scheme = scheme.to_owned();
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            cur.skip_ws();
            // Empty list elements are allowed (RFC 7230 §7 `#rule`).
            while cur.eat(b',') {
                cur.skip_ws();
            }
            if cur.at_end() {
                break;
            }
            let name = cur.token().to_ascii_lowercase();
            if name.is_empty() {
                return Err(DigestError::Malformed("expected a parameter name"));
            }
            cur.skip_ws();
            if !cur.eat(b'=') {
                return Err(DigestError::Malformed(
                    "expected `=` after a parameter name",
                ));
            }
            cur.skip_ws();
            let value = if cur.eat(b'"') {
                cur.quoted_rest()?
            } else {
                let v = cur.bare_value();
                if v.is_empty() {
                    return Err(DigestError::Malformed("empty parameter value"));
                }
                v.to_owned()
            };
            // RFC 7616 §3.4: each directive at most once; two `response`s
            // would make the check ambiguous.
            if params.iter().any(|(n, _)| *n == name) {
                return Err(DigestError::Malformed("repeated parameter"));
            }
            if params.len() >= MAX_PARAMS {
                return Err(DigestError::Malformed("too many parameters"));
            }
            params.push((name, value));
            cur.skip_ws();
            if !cur.at_end() && !cur.eat(b',') {
                return Err(DigestError::Malformed("expected `,` between parameters"));
            }
        }
        if params.is_empty() {
            return Err(DigestError::Malformed("no parameters"));
        }
        Ok(Self { scheme, params })
    }

    fn require_digest(&self) -> Result<(), DigestError> {
        if self.scheme.eq_ignore_ascii_case("Digest") {
            Ok(())
        } else {
            Err(DigestError::UnsupportedScheme(truncated(&self.scheme)))
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &'static str) -> Result<&str, DigestError> {
        self.get(name).ok_or(DigestError::MissingParam(name))
    }

    /// Absent means MD5 (RFC 2617 §3.2.1).
    fn algorithm(&self) -> Result<Algorithm, DigestError> {
        self.get("algorithm").map_or(Ok(Algorithm::Md5), str::parse)
    }
}

/// A byte cursor over a header value; every stop is at an ASCII delimiter,
/// so slices fall on char boundaries, and `get` keeps it panic-free anyway.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Linear white space, folded lines included (RFC 3261 §25.1 LWS).
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// `token` (RFC 3261 §25.1).
    fn token(&mut self) -> &'a str {
        self.take_while(is_token_byte)
    }

    /// An unquoted value: lenient beyond `token` (some servers send bare
    /// base64 nonces), but stops at list and space delimiters.
    fn bare_value(&mut self) -> &'a str {
        self.take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n' | b'"'))
    }

    /// The rest of a quoted-string after its opening quote, unescaped
    /// (`quoted-pair = "\" CHAR`, RFC 3261 §25.1).
    fn quoted_rest(&mut self) -> Result<String, DigestError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(DigestError::Malformed("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    // Escapes only ever drop ASCII backslashes, so the bytes stay UTF-8.
                    return String::from_utf8(out)
                        .map_err(|_| DigestError::Malformed("quoted string is not UTF-8"));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) => out.push(b),
                        None => return Err(DigestError::Malformed("unterminated quoted string")),
                    }
                    self.pos += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// A quoted-string; control characters are dropped so no value can break
/// the header line (CRLF injection).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Peer-supplied text in an error, bounded so errors stay small in logs.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Equality whose time depends only on the lengths (which are public: the
/// hex length of the algorithm's output), not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// HMAC-SHA256 (RFC 2104) over the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const REALM: &str = "tenant-a.switchyard.test";
    const URI: &str = "sip:tenant-a.switchyard.test";

    fn alice(user: &str) -> Option<String> {
        (user == "alice").then(|| "wonderland".to_owned())
    }

    fn book() -> NonceBook {
        NonceBook::new(NonceBook::DEFAULT_TTL, StdRng::seed_from_u64(3))
    }

    fn answer_for(challenge: &str, password: &str, nc: u32) -> String {
        answer(challenge, "REGISTER", URI, "alice", password, nc, "c0ffee").expect("answer")
    }

    #[test]
    fn rfc2617_worked_example_gives_the_published_md5_response() {
        // RFC 2617 §3.5.
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let creds = answer(
            challenge,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            1,
            "0a4f113b",
        )
        .expect("answer");
        assert!(
            creds.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{creds}"
        );
        assert!(creds.contains("nc=00000001"), "{creds}");
        assert!(
            creds.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#),
            "{creds}"
        );
    }

    #[test]
    fn rfc7616_examples_give_the_published_sha256_and_md5_responses() {
        // RFC 7616 §3.9.1 (note the password is "Circle of Life" here).
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let opaque = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, expected) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let challenge = format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="{nonce}", opaque="{opaque}""#
            );
            let creds = answer(
                &challenge,
                "GET",
                "/dir/index.html",
                "Mufasa",
                "Circle of Life",
                1,
                cnonce,
            )
            .expect("answer");
            assert!(
                creds.contains(&format!("response=\"{expected}\"")),
                "{creds}"
            );
            assert!(creds.contains(&format!("algorithm={alg}")), "{creds}");
        }
    }

    #[test]
    fn hmac_matches_rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn challenges_offer_sha256_before_md5_with_qop_auth() {
        let values = book().challenge(Instant::now(), REALM, false);
        assert_eq!(values.len(), 2);
        assert!(values[0].contains("algorithm=SHA-256"));
        assert!(values[1].contains("algorithm=MD5"));
        assert!(values.iter().all(|v| v.contains(r#"qop="auth""#)));
        assert!(values.iter().all(|v| !v.contains("stale")));
    }

    #[test]
    fn client_answer_is_accepted_by_the_server_with_either_algorithm() {
        let now = Instant::now();
        let mut book = book();
        // Both values share one nonce, so each algorithm gets its own challenge.
        for index in 0..2 {
            let challenge = book.challenge(now, REALM, false).remove(index);
            let creds = answer_for(&challenge, "wonderland", 1);
            assert_eq!(
                book.verify(now, REALM, "REGISTER", &creds, alice),
                Verdict::Ok {
                    username: "alice".into()
                },
                "{challenge}"
            );
        }
    }

    #[test]
    fn pick_prefers_sha256_over_md5_and_skips_unusable_challenges() {
        let md5 = r#"Digest realm="r", nonce="n", algorithm=MD5, qop="auth""#;
        let sha = r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#;
        let sess = r#"Digest realm="r", nonce="n", algorithm=SHA-256-sess"#;
        let basic = r#"Basic realm="r""#;
        assert_eq!(pick(&[md5, sha]), Some(sha));
        assert_eq!(pick(&[basic, sess, md5]), Some(md5));
        assert_eq!(pick(&[basic, sess]), None);
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn increasing_nonce_counts_are_accepted_and_a_replayed_one_is_refused() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(0);
        let first = answer_for(&challenge, "wonderland", 1);
        let second = answer_for(&challenge, "wonderland", 2);
        assert!(matches!(
            book.verify(now, REALM, "REGISTER", &first, alice),
            Verdict::Ok { .. }
        ));
        assert!(matches!(
            book.verify(now, REALM, "REGISTER", &second, alice),
            Verdict::Ok { .. }
        ));
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &second, alice),
            Verdict::Refused(DigestError::Replay)
        );
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &first, alice),
            Verdict::Refused(DigestError::Replay)
        );
    }

    #[test]
    fn nonce_without_qop_is_good_for_one_request() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(1);
        let rfc2069 = challenge.replace(r#", qop="auth""#, "");
        let creds = answer_for(&rfc2069, "wonderland", 1);
        assert!(!creds.contains("qop"), "{creds}");
        assert!(matches!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Ok { .. }
        ));
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Refused(DigestError::Replay)
        );
    }

    #[test]
    fn nonce_turns_stale_exactly_at_its_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(300);
        let mut book = NonceBook::new(ttl, StdRng::seed_from_u64(4));
        let challenge = book.challenge(t0, REALM, false).remove(0);
        let creds = answer_for(&challenge, "wonderland", 1);
        let just_before = t0 + ttl - Duration::from_millis(1);
        assert!(matches!(
            book.verify(just_before, REALM, "REGISTER", &creds, alice),
            Verdict::Ok { .. }
        ));
        let creds = answer_for(&challenge, "wonderland", 2);
        assert_eq!(
            book.verify(t0 + ttl, REALM, "REGISTER", &creds, alice),
            Verdict::Stale
        );
        let again = book.challenge(t0 + ttl, REALM, true);
        assert!(again.iter().all(|v| v.ends_with("stale=true")));
    }

    #[test]
    fn wrong_password_and_unknown_user_are_refused() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(0);
        let creds = answer_for(&challenge, "looking-glass", 1);
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Refused(DigestError::WrongResponse)
        );
        let creds = answer(&challenge, "REGISTER", URI, "mallory", "x", 1, "c").expect("answer");
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Refused(DigestError::UnknownUser)
        );
    }

    #[test]
    fn digest_over_another_method_is_refused() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(0);
        let creds = answer_for(&challenge, "wonderland", 1);
        assert_eq!(
            book.verify(now, REALM, "INVITE", &creds, alice),
            Verdict::Refused(DigestError::WrongResponse)
        );
    }

    #[test]
    fn tampered_nonce_is_never_accepted() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(0);
        let nonce = AuthHeader::parse(&challenge)
            .expect("parse")
            .get("nonce")
            .expect("nonce")
            .to_owned();
        // Alter the issue time: the MAC no longer matches.
        let mut forged = nonce.clone().into_bytes();
        forged[9] = if forged[9] == b'f' { b'e' } else { b'f' };
        let forged = String::from_utf8(forged).expect("hex");
        let creds = answer_for(&challenge, "wonderland", 1);
        // An attacker reusing a captured response over the forged nonce.
        let replayed = creds.replace(&nonce, &forged);
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &replayed, alice),
            Verdict::Refused(DigestError::WrongResponse)
        );
        // A client that knows the password but holds a foreign nonce is only
        // told to fetch a fresh one.
        let honest = answer_for(&challenge.replace(&nonce, &forged), "wonderland", 1);
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &honest, alice),
            Verdict::Stale
        );
    }

    #[test]
    fn nonce_issued_for_one_realm_is_not_good_in_another() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, "tenant-b", false).remove(0);
        let creds = answer_for(&challenge, "wonderland", 1);
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Refused(DigestError::RealmMismatch)
        );
        // Relabelled to our realm and re-hashed: the nonce MAC covers the realm.
        let relabelled = challenge.replace("tenant-b", REALM);
        let creds = answer_for(&relabelled, "wonderland", 1);
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Stale
        );
    }

    #[test]
    fn unknown_scheme_and_unsupported_parameters_are_refused() {
        let now = Instant::now();
        let mut book = book();
        let refused = |book: &mut NonceBook, value: &str| match book
            .verify(now, REALM, "REGISTER", value, alice)
        {
            Verdict::Refused(e) => e,
            other => panic!("{value}: {other:?}"),
        };
        // RFC 4475 §3.3.7.
        assert_eq!(
            refused(&mut book, "NoOneKnowsThisScheme opaque-data=here"),
            DigestError::UnsupportedScheme("NoOneKnowsThisScheme".into())
        );
        let challenge = book.challenge(now, REALM, false).remove(0);
        let creds = answer_for(&challenge, "wonderland", 1);
        assert!(matches!(
            refused(&mut book, &creds.replace("SHA-256", "SHA-256-sess")),
            DigestError::UnsupportedAlgorithm(_)
        ));
        assert!(matches!(
            refused(&mut book, &creds.replace("qop=auth", "qop=auth-int")),
            DigestError::UnsupportedQop(_)
        ));
        assert_eq!(
            refused(&mut book, &creds.replace(&format!("uri=\"{URI}\", "), "")),
            DigestError::MissingParam("uri")
        );
        assert!(matches!(
            refused(&mut book, &format!("{creds}, response=\"00\"")),
            DigestError::Malformed(_)
        ));
        assert!(matches!(
            refused(&mut book, &creds.replace("nc=00000001", "nc=0000000g")),
            DigestError::Malformed(_)
        ));
    }

    #[test]
    fn quoted_values_with_escapes_round_trip() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(0);
        let user = r#"o"brien\x"#;
        let creds = answer(&challenge, "REGISTER", URI, user, "pw", 1, "c").expect("answer");
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, |u| (u == user)
                .then(|| "pw".to_owned())),
            Verdict::Ok {
                username: user.into()
            }
        );
        let injected = answer(&challenge, "REGISTER", URI, "a\r\nVia: x", "pw", 1, "c");
        assert!(!injected.expect("answer").contains('\n'));
    }

    #[test]
    fn used_nonce_memory_is_bounded_and_returns_at_expiry() {
        let t0 = Instant::now();
        let mut book = book().with_max_tracked(2);
        let challenges: Vec<String> = (0..3u64)
            .map(|i| {
                book.challenge(t0 + Duration::from_secs(i), REALM, false)
                    .remove(0)
            })
            .collect();
        let now = t0 + Duration::from_secs(3);
        for challenge in &challenges {
            let creds = answer_for(challenge, "wonderland", 1);
            assert!(matches!(
                book.verify(now, REALM, "REGISTER", &creds, alice),
                Verdict::Ok { .. }
            ));
        }
        assert_eq!(book.tracked(), 2);
        // The evicted (oldest) nonce can no longer be counted: stale, not replayable.
        let creds = answer_for(&challenges[0], "wonderland", 1);
        assert_eq!(
            book.verify(now, REALM, "REGISTER", &creds, alice),
            Verdict::Stale
        );
        let next = book.poll_timeout().expect("timeout");
        assert_eq!(next, t0 + Duration::from_secs(1) + book.ttl());
        book.expire(t0 + Duration::from_secs(2) + book.ttl());
        assert_eq!(book.tracked(), 0);
        assert_eq!(book.poll_timeout(), None);
    }

    #[test]
    fn garbage_headers_never_panic() {
        let now = Instant::now();
        let mut book = book();
        let challenge = book.challenge(now, REALM, false).remove(0);
        let good = answer_for(&challenge, "wonderland", 1);
        let fixed = [
            "",
            " ",
            "Digest",
            "Digest ",
            "Digest ,,,",
            "Digest =",
            "Digest a",
            "Digest a=",
            "Digest a=\"",
            "Digest a=\"\\",
            "Digest a=\"é\\é\"",
            "Digest a=b c=d",
            "Digest nc=ffffffffff",
            "Digest username=\"alice\", realm=\"x\", nonce=\"\", uri=\"\", response=\"\"",
            "\u{0}\u{1}\u{7f}",
            "Digest realm=\"ü\", nonce=\"ß\", algorithm=MD5",
        ];
        for value in fixed {
            let _ = book.verify(now, REALM, "REGISTER", value, alice);
            let _ = answer(value, "REGISTER", URI, "u", "p", 1, "c");
            let _ = pick(&[value]);
        }
        // Mutations of a valid header: cut, byte flips and splices.
        let mut rng = StdRng::seed_from_u64(7);
        let alphabet = b"\",=\\ \t\r\nDigestMD5-aq0\xc3\xa9";
        for _ in 0..5000 {
            let mut bytes = good.clone().into_bytes();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..=bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes.truncate(at),
                    1 => bytes.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            let value = String::from_utf8_lossy(&bytes);
            let _ = book.verify(now, REALM, "REGISTER", &value, alice);
            let _ = answer(&value, "REGISTER", URI, "u", "p", 1, "c");
        }
    }
}
