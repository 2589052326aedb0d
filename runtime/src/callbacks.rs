//! Status callbacks: call events POSTed to a number's URL, signed with
//! its account's key, retried, and never in a call's way (issue 5 item 3).
//!
//! ```text
//!   core task ── send(event) ── try_send ─► bounded queue ─► dispatcher
//!     (full: dropped, counted, warned;        │ one delivery task per call
//!      the core never waits)                  │ with events, at most
//!                                             ▼ `concurrency` at a time
//!                      POST url  (x-www-form-urlencoded, signed)
//!                        2xx ─► delivered
//!                        connect error, timeout, 5xx ─► retry after
//!                          first_retry · 2^n (≤ max_retry) × jitter [½, 1]
//!                          until `attempts` are spent ─► failed
//!                        3xx, 4xx, private address ─► failed at once
//! ```
//!
//! **The request.** `POST` to the URL exactly as configured, with
//! `Content-Type: application/x-www-form-urlencoded` (as Twilio's, so
//! existing receivers parse it) and these fields: `CallSid`, `AccountSid`
//! (the tenant), `From`, `To`, `CallStatus` (`initiated`, `ringing`,
//! `answered`, `completed`), `Timestamp` (unix milliseconds),
//! `SequenceNumber` (0, 1, 2... per call); on `completed` also `Outcome`
//! (`completed`, `busy`, `canceled`, `rejected`, `failed`), `Duration`
//! (answered seconds) and `SipResponseCode` (when a final status was sent).
//!
//! **The signature.** `X-Switchyard-Signature: base64(HMAC-SHA256(key,
//! URL + body))`, where `key` is the account's `signing_key` as
//! `GET /v1/accounts/{id}` returns it, used as its 64 ASCII characters
//! (not hex-decoded); `URL` is the callback URL as configured, and
//! `body` the raw request body, bytes as received. A receiver computes
//! the same and compares in constant time, e.g. in Python:
//!
//! ```text
//!   mac = hmac.new(key.encode(), url.encode() + body, hashlib.sha256)
//!   ok = hmac.compare_digest(base64.b64encode(mac.digest()).decode(), header)
//! ```
//!
//! Every attempt is signed with the key current at that moment, so a
//! rotated key takes effect from the next attempt on.
//!
//! **Guarantees.** At least once while the receiver answers 2xx within the
//! attempts (a timed-out attempt may have arrived: deduplicate by
//! `(CallSid, SequenceNumber)`). The events of one call are delivered in
//! order: each is delivered or given up before the next one of its call
//! is tried. Calls do not wait for each other, except that a call being
//! retried holds one of the `concurrency` delivery slots. An event that
//! finds the queue full is dropped: the receiver sees a gap in
//! `SequenceNumber`.
//!
//! **Targets.** As for prompt URLs (`media::fetch`), a tenant's URL must not
//! reach the operator's own networks: the runtime's egress policy
//! (`crate::egress`, purpose [`Purpose::StatusCallback`]) refuses loopback,
//! private and other non-public addresses (with a warning) unless `[api]
//! callbacks_private = true`; every resolved address is checked and only
//! checked ones are connected to; redirects are not followed.

use std::collections::{HashMap, VecDeque};
use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

use crate::egress::{EgressPolicy, Purpose};
use crate::media::fetch::{self, CheckedResolver, FetchError};
use crate::sip::endpoint::{CallProgress, CallStatusEvent};
use crate::tenancy::Accounts;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Switchyard-Signature";
const FORM: &str = "application/x-www-form-urlencoded";

/// How callbacks are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// Events waiting for delivery at most; more are dropped. Default 4,096.
    pub queue: usize,
    /// Calls whose events are being delivered at once. Default 16.
    pub concurrency: usize,
    /// Tries per event, the first included. Default 5.
    pub attempts: u32,
    /// Wait before the first retry, doubled for each next one. Default 1 s.
    pub first_retry: Duration,
    /// Longest wait between tries. Default 8 s.
    pub max_retry: Duration,
    /// Longest one attempt may take, connecting to the answer. Default 5 s.
    pub timeout: Duration,
    /// Which addresses URLs may reach: callbacks are sent for
    /// [`Purpose::StatusCallback`] (opened to loopback and private
    /// addresses by `[api] callbacks_private`). Default public only.
    pub egress: EgressPolicy,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            queue: 4096,
            concurrency: 16,
            attempts: 5,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(8),
            timeout: Duration::from_secs(5),
            egress: EgressPolicy::public_only(),
        }
    }
}

/// Delivery totals since start (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallbackStats {
    /// Events a receiver accepted (2xx).
    pub delivered: u64,
    /// Attempts made again after a failed one.
    pub retried: u64,
    /// Events given up: attempts spent, a 3xx/4xx, a refused address.
    pub failed: u64,
    /// Events not queued because the queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// Where signing keys come from: an account's current key, and a number
/// that changes whenever any key does (so cached keys are re-read).
pub trait SigningKeys: Send + Sync + 'static {
    /// May block (a database read).
    fn signing_key(&self, account: &str) -> anyhow::Result<Option<String>>;
    fn generation(&self) -> u64;
}

impl SigningKeys for Accounts {
    fn signing_key(&self, account: &str) -> anyhow::Result<Option<String>> {
        Accounts::signing_key(self, account)
    }

    fn generation(&self) -> u64 {
        self.signing_generation()
    }
}

/// The sending side, for the core task. Cheap to clone.
#[derive(Clone)]
pub struct Callbacks {
    queue: mpsc::Sender<Delivery>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Callbacks {
    /// Starts the dispatcher on the current tokio runtime; it stops when
    /// every clone of the returned sender is gone.
    pub fn start(config: CallbackConfig, keys: Arc<dyn SigningKeys>) -> Result<Self, FetchError> {
        let (queue, events) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared::new(config, keys, Arc::clone(&counters))?);
        tokio::spawn(dispatch(events, shared));
        Ok(Self { queue, counters })
    }

    /// Queues `event` for delivery; never waits. A full queue drops it.
    pub fn send(&self, event: CallStatusEvent) {
        self.deliver(event.into());
    }

    /// Queues any signed form POST (a conference's events); never waits.
    pub fn deliver(&self, delivery: Delivery) {
        if let Err(e) = self.queue.try_send(delivery) {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once, then every 1,000th: an overload must not flood the log.
            if dropped % 1000 == 1 {
                let d = match &e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                tracing::warn!(
                    about = %d.key,
                    event = %d.what,
                    dropped,
                    "status callback queue full: event dropped"
                );
            }
        }
    }

    pub fn stats(&self) -> CallbackStats {
        let c = &self.counters;
        CallbackStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Whether `url` can be a status callback: absolute http or https with a
/// host. (Whether its address is public is checked when it is used.)
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{}: URLs are not supported, only http and https",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(())
}

/// `base64(HMAC-SHA256(key, url + body))`.
pub fn sign(key: &[u8], url: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(url.as_bytes());
    mac.update(body);
    base64(&mac.finalize().into_bytes())
}

/// One signed form POST to a tenant's URL. Deliveries with the same `key`
/// (a call id, a conference sid) go one at a time, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub key: String,
    /// The account whose signing key signs it.
    pub tenant: String,
    pub url: String,
    /// application/x-www-form-urlencoded.
    pub body: String,
    /// What it reports, for logs (`completed`, `participant-join`...).
    pub what: String,
}

impl From<CallStatusEvent> for Delivery {
    fn from(event: CallStatusEvent) -> Self {
        Delivery {
            body: form(&event),
            what: event.status.as_str().to_owned(),
            key: event.call_id,
            tenant: event.tenant,
            url: event.url,
        }
    }
}

/// The form body of `event`.
pub fn form(event: &CallStatusEvent) -> String {
    let mut fields = vec![
        ("CallSid", event.call_id.clone()),
        ("AccountSid", event.tenant.clone()),
        ("From", event.from.clone()),
        ("To", event.to.clone()),
        ("CallStatus", event.status.as_str().to_owned()),
        ("Timestamp", event.unix_ms.to_string()),
        ("SequenceNumber", event.sequence.to_string()),
    ];
    if let (CallProgress::Completed, Some(end)) = (event.status, &event.end) {
        fields.push(("Outcome", end.outcome.clone()));
        fields.push(("Duration", end.duration_secs.to_string()));
        if let Some(status) = end.sip_status {
            fields.push(("SipResponseCode", status.to_string()));
        }
    }
    encode_form(&fields)
}

/// `fields` as an application/x-www-form-urlencoded body.
pub fn encode_form(fields: &[(&str, String)]) -> String {
    let mut body = String::new();
    for (name, value) in fields {
        if !body.is_empty() {
            body.push('&');
        }
        encode_into(&mut body, name);
        body.push('=');
        encode_into(&mut body, value);
    }
    body
}

/// application/x-www-form-urlencoded escaping (WHATWG URL standard).
fn encode_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The wait before try `attempt + 1` (after `attempt` failed, from 1):
/// `first · 2^(attempt-1)`, at most `max`, times a random factor in
/// [½, 1] so receivers coming back up are not hit in lockstep.
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let doubled = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    doubled.min(max).mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

/// What the dispatcher and the delivery tasks share.
struct Shared {
    client: reqwest::Client,
    /// Why https cannot work on this machine, if it cannot.
    tls_unavailable: Option<Arc<str>>,
    config: CallbackConfig,
    counters: Arc<Counters>,
    keys: Arc<dyn SigningKeys>,
    /// account → (key generation, key).
    cache: Mutex<HashMap<String, (u64, String)>>,
}

impl Shared {
    fn new(
        config: CallbackConfig,
        keys: Arc<dyn SigningKeys>,
        counters: Arc<Counters>,
    ) -> Result<Self, FetchError> {
        let setup = |e: &dyn std::fmt::Display| FetchError::Setup(e.to_string());
        let (tls, tls_unavailable) = fetch::tls_config()?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(CheckedResolver::new(config.egress, Purpose::StatusCallback))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Shared {
            client,
            tls_unavailable,
            config,
            counters,
            keys,
            cache: Mutex::new(HashMap::new()),
        })
    }
}

/// Calls with a delivery task, and the events of theirs it has yet to do.
type Busy = Arc<Mutex<HashMap<String, VecDeque<Delivery>>>>;

/// Hands each call's events to one delivery task at a time (so they go
/// in order), at most `concurrency` tasks at once. While every slot is
/// taken the queue fills up and `send` drops; what waits here beside the
/// queue is bounded by the few events each busy call can have.
async fn dispatch(mut events: mpsc::Receiver<Delivery>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    let busy: Busy = Arc::default();
    while let Some(event) = events.recv().await {
        {
            let mut calls = busy.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(waiting) = calls.get_mut(&event.key) {
                waiting.push_back(event);
                continue;
            }
            calls.insert(event.key.clone(), VecDeque::new());
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (shared, busy) = (Arc::clone(&shared), Arc::clone(&busy));
        tokio::spawn(async move {
            let _slot = slot;
            let mut event = event;
            loop {
                deliver(&shared, &event).await;
                let mut calls = busy.lock().unwrap_or_else(|e| e.into_inner());
                let next = calls.get_mut(&event.key).and_then(VecDeque::pop_front);
                match next {
                    Some(next) => event = next,
                    None => {
                        calls.remove(&event.key);
                        return;
                    }
                }
            }
        });
    }
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Delivered,
    /// Worth trying again (a network problem, a timeout, a 5xx).
    Retry(String),
    /// Trying again would not help.
    GiveUp(String),
}

/// Delivers `event` with retries, counting the outcome.
async fn deliver(shared: &Shared, event: &Delivery) {
    let body = &event.body;
    let counters = &shared.counters;
    let attempts = shared.config.attempts.max(1);
    for attempt in 1..=attempts {
        let why = match post(shared, event, body).await {
            Attempt::Delivered => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Attempt::Retry(why) if attempt < attempts => why,
            Attempt::Retry(why) | Attempt::GiveUp(why) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    about = %event.key,
                    event = %event.what,
                    url = %event.url,
                    attempt,
                    "status callback not delivered: {why}"
                );
                return;
            }
        };
        let wait = backoff(attempt, shared.config.first_retry, shared.config.max_retry);
        tracing::debug!(
            about = %event.key,
            url = %event.url,
            attempt,
            ?wait,
            "status callback failed, retrying: {why}"
        );
        tokio::time::sleep(wait).await;
        counters.retried.fetch_add(1, Ordering::Relaxed);
    }
}

async fn post(shared: &Shared, event: &Delivery, body: &str) -> Attempt {
    let url = match Url::parse(&event.url) {
        Ok(url) => url,
        Err(e) => return Attempt::GiveUp(format!("invalid URL: {e}")),
    };
    if let Err(e) = fetch::check_url(&url, shared.config.egress, Purpose::StatusCallback) {
        return Attempt::GiveUp(e.to_string());
    }
    if let Some(reason) = &shared.tls_unavailable
        && url.scheme() == "https"
    {
        return Attempt::GiveUp(reason.to_string());
    }
    let key = match signing_key(shared, &event.tenant).await {
        Ok(Some(key)) => key,
        Ok(None) => return Attempt::GiveUp(format!("account {} has no signing key", event.tenant)),
        // The store may be busy a moment: worth another try.
        Err(e) => return Attempt::Retry(format!("reading the signing key: {e:#}")),
    };
    let signature = sign(key.as_bytes(), &event.url, body.as_bytes());
    let Ok(signature) = HeaderValue::from_str(&signature) else {
        return Attempt::GiveUp("unrepresentable signature".into());
    };
    let sent = shared
        .client
        .post(url)
        .header(CONTENT_TYPE, HeaderValue::from_static(FORM))
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Attempt::Delivered,
        Ok(response) if response.status().is_server_error() => {
            Attempt::Retry(format!("the receiver answered {}", response.status()))
        }
        Ok(response) => Attempt::GiveUp(format!("the receiver answered {}", response.status())),
        Err(e) => {
            let mut source = e.source();
            while let Some(inner) = source {
                if let Some(ours) = inner.downcast_ref::<FetchError>() {
                    return Attempt::GiveUp(ours.to_string());
                }
                source = inner.source();
            }
            Attempt::Retry(fetch::chain(&e))
        }
    }
}

/// The key of `account`, from the cache while no key changed.
async fn signing_key(shared: &Shared, account: &str) -> anyhow::Result<Option<String>> {
    let generation = shared.keys.generation();
    {
        let cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, key)) = cache.get(account)
            && *seen == generation
        {
            return Ok(Some(key.clone()));
        }
    }
    let (keys, owned) = (Arc::clone(&shared.keys), account.to_owned());
    let key = tokio::task::spawn_blocking(move || keys.signing_key(&owned)).await??;
    if let Some(key) = &key {
        let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(account.to_owned(), (generation, key.clone()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::egress::Setting;
    use crate::sip::endpoint::CallEnd;

    /// One request a test receiver got.
    #[derive(Debug, Clone)]
    struct Received {
        signature: Option<String>,
        content_type: Option<String>,
        body: Vec<u8>,
    }

    /// An HTTP server on 127.0.0.1 answering its n-th request with
    /// `script[n]` (the last one for the rest).
    struct Receiver {
        addr: SocketAddr,
        got: Arc<Mutex<Vec<Received>>>,
    }

    impl Receiver {
        async fn start(script: Vec<u16>) -> Receiver {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let got: Arc<Mutex<Vec<Received>>> = Arc::default();
            let (log, script) = (Arc::clone(&got), Arc::new(script));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                            async move {
                                let header = |name: &str| {
                                    req.headers()
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_owned)
                                };
                                let (signature, content_type) =
                                    (header(SIGNATURE_HEADER), header("content-type"));
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let n = {
                                    let mut log = log.lock().unwrap();
                                    log.push(Received {
                                        signature,
                                        content_type,
                                        body: body.to_vec(),
                                    });
                                    log.len() - 1
                                };
                                let status = script[n.min(script.len() - 1)];
                                let mut reply = Response::new(Full::new(Bytes::new()));
                                *reply.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, Infallible>(reply)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Receiver { addr, got }
        }

        fn url(&self) -> String {
            format!("http://{}/status", self.addr)
        }

        fn got(&self) -> Vec<Received> {
            self.got.lock().unwrap().clone()
        }
    }

    /// Keys from memory; `rotate` changes the key and the generation.
    struct TestKeys {
        key: Mutex<String>,
        generation: AtomicU64,
    }

    impl TestKeys {
        fn new(key: &str) -> Arc<TestKeys> {
            Arc::new(TestKeys {
                key: Mutex::new(key.into()),
                generation: AtomicU64::new(0),
            })
        }

        fn rotate(&self, key: &str) {
            *self.key.lock().unwrap() = key.into();
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl SigningKeys for TestKeys {
        fn signing_key(&self, account: &str) -> anyhow::Result<Option<String>> {
            Ok((account == "acme").then(|| self.key.lock().unwrap().clone()))
        }

        fn generation(&self) -> u64 {
            self.generation.load(Ordering::SeqCst)
        }
    }

    fn quick() -> CallbackConfig {
        CallbackConfig {
            first_retry: Duration::from_millis(10),
            max_retry: Duration::from_millis(40),
            timeout: Duration::from_secs(2),
            egress: EgressPolicy::public_only().allowing_setting(Setting::CallbacksPrivate),
            ..CallbackConfig::default()
        }
    }

    fn event(call: &str, status: CallProgress, sequence: u32, url: &str) -> CallStatusEvent {
        CallStatusEvent {
            call_id: call.into(),
            tenant: "acme".into(),
            from: "sip:alice@example.com".into(),
            to: "+15550100".into(),
            status,
            sequence,
            unix_ms: 1_700_000_000_000 + u64::from(sequence),
            url: url.into(),
            end: (status == CallProgress::Completed).then(|| CallEnd {
                outcome: "completed".into(),
                sip_status: Some(200),
                duration_secs: 42,
            }),
        }
    }

    /// Waits (at most 5 s) until `done` holds of the stats.
    async fn until(callbacks: &Callbacks, done: impl Fn(CallbackStats) -> bool) -> CallbackStats {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stats = callbacks.stats();
            if done(stats) || Instant::now() > deadline {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn field(body: &[u8], name: &str) -> Option<String> {
        std::str::from_utf8(body)
            .unwrap()
            .split('&')
            .find_map(|pair| {
                let (n, v) = pair.split_once('=')?;
                (n == name).then(|| v.to_owned())
            })
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_base64() {
        // RFC 4231 test case 2, the data split between URL and body.
        assert_eq!(
            sign(b"Jefe", "what do ya want ", b"for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        assert_ne!(
            sign(b"Jefe", "what do ya want", b" for nothing?!"),
            sign(b"Jefe", "what do ya want ", b"for nothing?")
        );
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn the_form_escapes_values_and_adds_the_end_on_completed() {
        let mut ev = event("CA1", CallProgress::Completed, 3, "http://x/");
        ev.from = "sip:a b+c@example.com;tag=1".into();
        assert_eq!(
            form(&ev),
            "CallSid=CA1&AccountSid=acme&From=sip%3Aa+b%2Bc%40example.com%3Btag%3D1\
             &To=%2B15550100&CallStatus=completed&Timestamp=1700000000003&SequenceNumber=3\
             &Outcome=completed&Duration=42&SipResponseCode=200"
        );
        let ringing = form(&event("CA1", CallProgress::Ringing, 1, "http://x/"));
        assert!(ringing.ends_with("CallStatus=ringing&Timestamp=1700000000001&SequenceNumber=1"));
    }

    #[test]
    fn back_off_doubles_up_to_its_cap_with_jitter() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(8));
        for _ in 0..100 {
            for (attempt, nominal) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (40, 8)] {
                let wait = backoff(attempt, first, max);
                let nominal = Duration::from_secs(nominal);
                assert!(
                    wait >= nominal / 2 && wait <= nominal,
                    "{attempt}: {wait:?}"
                );
            }
        }
    }

    #[test]
    fn callback_urls_must_be_http_with_a_host() {
        assert!(check_url("https://hooks.example.com/a?b=c").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        for bad in ["ftp://example.com/", "mailto:a@b", "http://", "nope", ""] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn two_500s_then_a_200_is_delivered_once_after_three_signed_attempts() {
        let receiver = Receiver::start(vec![500, 500, 200]).await;
        let callbacks = Callbacks::start(quick(), TestKeys::new("k1")).unwrap();
        let url = receiver.url();
        callbacks.send(event("CA1", CallProgress::Answered, 2, &url));
        let stats = until(&callbacks, |s| s.delivered + s.failed > 0).await;
        assert_eq!(
            stats,
            CallbackStats {
                delivered: 1,
                retried: 2,
                failed: 0,
                dropped: 0
            }
        );
        let got = receiver.got();
        assert_eq!(got.len(), 3);
        for request in &got {
            assert_eq!(request.content_type.as_deref(), Some(FORM));
            assert_eq!(
                request.signature.as_deref(),
                Some(sign(b"k1", &url, &request.body).as_str())
            );
            assert_eq!(
                field(&request.body, "CallStatus").as_deref(),
                Some("answered")
            );
        }
    }

    #[tokio::test]
    async fn a_4xx_is_not_retried() {
        let receiver = Receiver::start(vec![404]).await;
        let callbacks = Callbacks::start(quick(), TestKeys::new("k1")).unwrap();
        callbacks.send(event("CA1", CallProgress::Initiated, 0, &receiver.url()));
        let stats = until(&callbacks, |s| s.failed > 0).await;
        assert_eq!((stats.delivered, stats.retried, stats.failed), (0, 0, 1));
        // Nothing more comes later either.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(receiver.got().len(), 1);
    }

    #[tokio::test]
    async fn a_receiver_that_stays_down_gets_every_attempt_then_the_event_fails() {
        let receiver = Receiver::start(vec![503]).await;
        let callbacks = Callbacks::start(quick(), TestKeys::new("k1")).unwrap();
        callbacks.send(event("CA1", CallProgress::Initiated, 0, &receiver.url()));
        let stats = until(&callbacks, |s| s.failed > 0).await;
        assert_eq!((stats.delivered, stats.retried, stats.failed), (0, 4, 1));
        assert_eq!(receiver.got().len(), 5);
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_blocking() {
        // A receiver that accepts connections and never answers.
        let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", hang.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = hang.accept().await {
                held.push(stream);
            }
        });
        let config = CallbackConfig {
            queue: 2,
            concurrency: 1,
            timeout: Duration::from_secs(30),
            ..quick()
        };
        let callbacks = Callbacks::start(config, TestKeys::new("k1")).unwrap();
        let started = Instant::now();
        for call in 0..50 {
            callbacks.send(event(
                &format!("CA{call}"),
                CallProgress::Initiated,
                0,
                &url,
            ));
        }
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        // The dispatcher holds at most one event waiting for a slot, the
        // one slot holds one, the queue two: the rest are dropped.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for call in 50..60 {
            callbacks.send(event(
                &format!("CA{call}"),
                CallProgress::Initiated,
                0,
                &url,
            ));
        }
        let stats = callbacks.stats();
        assert!(stats.dropped >= 60 - 4, "{stats:?}");
        assert_eq!((stats.delivered, stats.failed), (0, 0));
    }

    #[tokio::test]
    async fn loopback_and_private_urls_are_refused_unless_callbacks_may_reach_them() {
        let receiver = Receiver::start(vec![200]).await;
        let port = receiver.addr.port();
        let refused = [
            receiver.url(),
            // A name resolving to loopback is refused by the resolver.
            format!("http://localhost:{port}/status"),
            format!("http://10.0.0.1:{port}/status"),
            "http://192.168.1.20/status".to_string(),
        ];
        // Another purpose's permission does not open callbacks.
        for egress in [
            EgressPolicy::public_only(),
            EgressPolicy::public_only().allowing_setting(Setting::FetchPrivate),
        ] {
            let config = CallbackConfig { egress, ..quick() };
            let shared = Shared::new(config.clone(), TestKeys::new("k1"), Arc::default()).unwrap();
            for url in &refused {
                let attempt = post(
                    &shared,
                    &event("CA1", CallProgress::Initiated, 0, url).into(),
                    "x",
                )
                .await;
                let Attempt::GiveUp(why) = attempt else {
                    panic!("{url}: {attempt:?}");
                };
                assert!(why.contains("not a public address"), "{url}: {why}");
                assert!(
                    why.contains("`[api] callbacks_private = true`"),
                    "{url}: {why}"
                );
            }
            // The dispatcher gives them up at once: no retry.
            let callbacks = Callbacks::start(config, TestKeys::new("k1")).unwrap();
            for (n, url) in refused.iter().enumerate() {
                callbacks.send(event(&format!("CA{n}"), CallProgress::Initiated, 0, url));
            }
            let stats = until(&callbacks, |s| s.failed >= 4).await;
            assert_eq!((stats.delivered, stats.retried, stats.failed), (0, 0, 4));
        }
        assert!(receiver.got().is_empty());

        // Allowed: loopback is delivered to, and a private address passes
        // the check (nothing listens there to deliver to).
        let allowed = quick();
        let callbacks = Callbacks::start(allowed.clone(), TestKeys::new("k1")).unwrap();
        callbacks.send(event("CA9", CallProgress::Initiated, 0, &refused[1]));
        let stats = until(&callbacks, |s| s.delivered + s.failed >= 1).await;
        assert_eq!((stats.delivered, stats.failed), (1, 0));
        assert_eq!(receiver.got().len(), 1);
        for url in &refused[2..] {
            let url = Url::parse(url).unwrap();
            assert_eq!(
                fetch::check_url(&url, allowed.egress, Purpose::StatusCallback),
                Ok(()),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn a_calls_events_arrive_in_order_even_when_one_is_retried() {
        let receiver = Receiver::start(vec![500, 200]).await;
        let callbacks = Callbacks::start(quick(), TestKeys::new("k1")).unwrap();
        let url = receiver.url();
        let statuses = [
            CallProgress::Initiated,
            CallProgress::Ringing,
            CallProgress::Answered,
            CallProgress::Completed,
        ];
        for (sequence, status) in statuses.into_iter().enumerate() {
            callbacks.send(event("CA1", status, sequence as u32, &url));
        }
        let stats = until(&callbacks, |s| s.delivered >= 4).await;
        assert_eq!((stats.delivered, stats.retried, stats.failed), (4, 1, 0));
        let order: Vec<String> = receiver
            .got()
            .iter()
            .map(|r| field(&r.body, "SequenceNumber").unwrap())
            .collect();
        assert_eq!(order, ["0", "0", "1", "2", "3"]);
    }

    #[tokio::test]
    async fn a_rotated_key_signs_the_next_event_and_unknown_accounts_fail() {
        let receiver = Receiver::start(vec![200]).await;
        let keys = TestKeys::new("old");
        let callbacks =
            Callbacks::start(quick(), Arc::clone(&keys) as Arc<dyn SigningKeys>).unwrap();
        let url = receiver.url();
        callbacks.send(event("CA1", CallProgress::Initiated, 0, &url));
        until(&callbacks, |s| s.delivered == 1).await;
        keys.rotate("new");
        callbacks.send(event("CA1", CallProgress::Completed, 1, &url));
        until(&callbacks, |s| s.delivered == 2).await;
        let got = receiver.got();
        assert_eq!(
            got[0].signature.as_deref(),
            Some(sign(b"old", &url, &got[0].body).as_str())
        );
        assert_eq!(
            got[1].signature.as_deref(),
            Some(sign(b"new", &url, &got[1].body).as_str())
        );
        let mut stranger = event("CA2", CallProgress::Initiated, 0, &url);
        stranger.tenant = "nobody".into();
        callbacks.send(stranger);
        let stats = until(&callbacks, |s| s.failed == 1).await;
        assert_eq!((stats.delivered, stats.failed), (2, 1));
        assert_eq!(receiver.got().len(), 2);
    }
}
