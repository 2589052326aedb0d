//! The asking side: who manages a caller (the directory, cached), and did
//! that provider place this call (a signed query to its confirm_url).
//!
//! ```text
//!  check(caller, callee, at) ─► Identifier::caller ─► lookup: cache (ttl_secs), else
//!     GET {directory}/v1/directory/lookup?id=… (purpose DirectoryLookup)
//!   ─► Query signed with [provider] key ─► POST {confirm_url} (purpose Confirmation)
//!   ─► Reply::verify with the directory's key for that provider, echoing the query
//!   ─► Check { Confirmed | Denied | UnknownCaller | Unreachable, provider, reason }
//! ```
//!
//! Nothing here fails open or panics: whatever goes wrong (a timeout, a
//! bad signature, an answer that does not echo the query) is
//! `Unreachable` with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Deserialize;
use switchyard_directory::{
    Answer, Identifier, ProviderUpdate, Query, Reply, SigningKey, VerifyingKey, jws,
};

use super::{JOSE, Own, unix_now};
use crate::egress::{EgressPolicy, Purpose};
use crate::media::fetch::{FetchConfig, FetchError, Fetcher};
use crate::serve::config::DirectorySection;

/// Lookups (and keys) cached at most; past it the cache starts over.
const MAX_CACHED: usize = 10_000;
/// Largest answer read from the directory or a provider.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// What a provider said about a call, as the runtime judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Not asked: no directory, or this runtime cannot sign queries.
    NotAsked,
    /// No provider manages the caller (the directory has none, the one
    /// it names says it does not, or the caller is no number or domain).
    UnknownCaller,
    /// The caller's provider placed this call.
    Confirmed,
    /// The caller's provider manages the caller and placed no such call.
    Denied,
    /// The directory or the provider could not be asked, or answered
    /// something that does not verify.
    Unreachable,
}

/// The outcome of [`Confirmer::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub answer: Confirmation,
    /// The provider asked, once the directory named one.
    pub provider: Option<String>,
    /// Why, in words (for the decision log).
    pub reason: String,
}

impl Check {
    fn new(answer: Confirmation, provider: Option<&str>, reason: impl Into<String>) -> Self {
        Check {
            answer,
            provider: provider.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// A directory entry, as a lookup answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry that matched (`+1555*` for `+15551230001`).
    pub identifier: String,
    pub provider: String,
    pub confirm_url: String,
    pub key: VerifyingKey,
}

/// `GET /v1/directory/lookup` and `/providers/{id}` as JSON.
#[derive(Deserialize)]
struct Found {
    #[serde(default)]
    identifier: String,
    #[serde(alias = "id")]
    provider: String,
    confirm_url: String,
    key: String,
}

type Cache<T> = Mutex<HashMap<String, (Option<T>, Instant)>>;

/// Asks the directory and providers; built from `[directory]` (and
/// `[provider]` for signing). Shared by the inbound flow, the answering
/// side (askers' keys) and the start-up publish.
pub struct Confirmer {
    /// `[directory] url`, without a trailing `/`.
    url: String,
    lookups: Fetcher,
    confirmations: Fetcher,
    own: Option<Arc<Own>>,
    ttl: Duration,
    entries: Cache<Entry>,
    keys: Cache<VerifyingKey>,
}

impl std::fmt::Debug for Confirmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmer")
            .field("url", &self.url)
            .field("provider", &self.own.as_ref().map(|o| &o.id))
            .finish_non_exhaustive()
    }
}

impl Confirmer {
    /// The confirmer `[directory]` describes, signing as `own` (the
    /// `[provider]`) if given; `None` when `[directory] url` is unset.
    pub fn new(
        section: &DirectorySection,
        own: Option<Arc<Own>>,
        egress: EgressPolicy,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = &section.url else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(section.timeout_ms.max(1));
        let fetcher = |purpose| {
            Fetcher::new(FetchConfig {
                timeout,
                connect_timeout: timeout,
                max_bytes: MAX_ANSWER_BYTES,
                // A signed POST is never repeated elsewhere.
                max_redirects: 0,
                egress,
                purpose,
                extra_roots: Vec::new(),
            })
        };
        Ok(Some(Self {
            url: url.trim_end_matches('/').to_owned(),
            lookups: fetcher(Purpose::DirectoryLookup).context("setting up directory lookups")?,
            confirmations: fetcher(Purpose::Confirmation)
                .context("setting up confirmation requests")?,
            own,
            ttl: Duration::from_secs(section.ttl_secs),
            entries: Mutex::default(),
            keys: Mutex::default(),
        }))
    }

    /// This runtime's provider id, if it is one.
    pub fn provider_id(&self) -> Option<&str> {
        self.own.as_deref().map(|own| own.id.as_str())
    }

    /// Asks whether the caller's provider placed the call from `caller`
    /// (a From / P-Asserted-Identity user or URI) to `callee` that
    /// arrived at Unix second `at_unix`.
    pub async fn check(&self, caller: &str, callee: &str, at_unix: i64) -> Check {
        let Some(own) = self.own.as_deref() else {
            return Check::new(
                Confirmation::NotAsked,
                None,
                "confirmation queries are signed: asking needs [provider] (id and key)",
            );
        };
        let orig = match Identifier::caller(caller) {
            Ok(orig) => orig,
            Err(why) => return Check::new(Confirmation::UnknownCaller, None, why.to_string()),
        };
        let entry = match self.lookup(&orig).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                let why = format!("the directory has no provider for {orig}");
                return Check::new(Confirmation::UnknownCaller, None, why);
            }
            Err(why) => return Check::new(Confirmation::Unreachable, None, why),
        };
        let provider = Some(entry.provider.as_str());
        let query = Query {
            asker: own.id.clone(),
            orig: party(caller),
            dest: party(callee),
            at: at_unix,
            iat: unix_now(),
            nonce: format!("{:032x}", rand::random::<u128>()),
        };
        let token = Bytes::from(query.sign(&own.key));
        let asked = self
            .confirmations
            .send(reqwest::Method::POST, &entry.confirm_url, JOSE, token)
            .await;
        let who = &entry.provider;
        let body = match asked {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                let why = format!("provider {who} answered {status}: {}", message(&body));
                return Check::new(Confirmation::Unreachable, provider, why);
            }
            Err(e) => {
                let why = format!("provider {who} could not be asked: {e}");
                return Check::new(Confirmation::Unreachable, provider, why);
            }
        };
        let text = String::from_utf8_lossy(&body);
        let verified = Reply::verify(&text, who, &entry.key, &query, unix_now());
        match verified {
            Ok(Answer::Yes) => Check::new(
                Confirmation::Confirmed,
                provider,
                format!("provider {who} placed this call"),
            ),
            Ok(Answer::No) => Check::new(
                Confirmation::Denied,
                provider,
                format!("provider {who} manages {orig} and placed no such call"),
            ),
            Ok(Answer::Unknown) => Check::new(
                Confirmation::UnknownCaller,
                provider,
                format!(
                    "provider {who} does not manage {orig} (the directory's entry {})",
                    entry.identifier
                ),
            ),
            Err(why) => Check::new(
                Confirmation::Unreachable,
                provider,
                format!("provider {who}'s answer was refused: {why}"),
            ),
        }
    }

    /// Who manages `identifier`: cached for `ttl_secs` (misses too),
    /// else asked. `Err` when the directory could not be asked.
    pub async fn lookup(&self, identifier: &Identifier) -> Result<Option<Entry>, String> {
        let key = identifier.to_string();
        if let Some(cached) = self.cached(&self.entries, &key) {
            return Ok(cached);
        }
        let url = format!("{}/v1/directory/lookup?id={}", self.url, escape(&key));
        let entry = self.get(&url).await?;
        let entry = entry.map(|(found, key)| Entry {
            identifier: found.identifier,
            provider: found.provider,
            confirm_url: found.confirm_url,
            key,
        });
        self.cache(&self.entries, key, entry.clone());
        Ok(entry)
    }

    /// The key the directory has on record for provider `id` (what its
    /// queries must be signed with): cached like lookups.
    pub async fn provider_key(&self, id: &str) -> Result<Option<VerifyingKey>, String> {
        if let Some(cached) = self.cached(&self.keys, id) {
            return Ok(cached);
        }
        let url = format!("{}/v1/directory/providers/{}", self.url, escape(id));
        let key = self.get(&url).await?.map(|(_, key)| key);
        self.cache(&self.keys, id.to_owned(), key);
        Ok(key)
    }

    /// A directory answer: `None` for 404.
    async fn get(&self, url: &str) -> Result<Option<(Found, VerifyingKey)>, String> {
        let body = match self.lookups.get_bytes(url).await {
            Ok(body) => body,
            Err(FetchError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(format!("the directory could not be asked: {e}")),
        };
        let found: Found = serde_json::from_slice(&body)
            .map_err(|e| format!("the directory's answer is not an entry: {e}"))?;
        let key = jws::public_key_from_pem(&found.key)
            .map_err(|e| format!("the directory's key for {}: {e}", found.provider))?;
        Ok(Some((found, key)))
    }

    fn cached<T: Clone>(&self, cache: &Cache<T>, key: &str) -> Option<Option<T>> {
        let cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (value, at) = cache.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    fn cache<T>(&self, cache: &Cache<T>, key: String, value: Option<T>) {
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (value, Instant::now()));
    }

    /// Publishes this provider's entry to the directory once: `Ok(true)`
    /// when it was created, `Ok(false)` updated; `Err((transient, why))`.
    pub async fn publish(&self) -> Result<bool, (bool, String)> {
        let Some(own) = self.own.as_deref() else {
            return Err((false, "publishing needs [provider]".into()));
        };
        let update = ProviderUpdate {
            provider: own.id.clone(),
            confirm_url: own.confirm_url.clone(),
            key: jws::public_key_pem(own.key.verifying_key()),
            identifiers: own.identifiers.iter().map(ToString::to_string).collect(),
            iat: unix_now(),
        };
        let token = Bytes::from(update.sign(&own.key));
        let url = format!("{}/v1/directory/providers/{}", self.url, escape(&own.id));
        match self
            .lookups
            .send(reqwest::Method::PUT, &url, JOSE, token)
            .await
        {
            Ok((201, _)) => Ok(true),
            Ok((200, _)) => Ok(false),
            Ok((status, body)) => {
                let transient = status >= 500 || status == 429;
                Err((
                    transient,
                    format!("{url} answered {status}: {}", message(&body)),
                ))
            }
            Err(e) => Err((e.is_transient(), e.to_string())),
        }
    }

    /// Publishes in the background until the directory takes it, backing
    /// off from 1 s to a minute between tries; a refusal that retrying
    /// cannot fix (a bad signature, an entry another provider holds) is
    /// logged and ends it.
    pub fn start_publishing(self: &Arc<Self>) {
        let Some(own) = self.own.clone() else {
            return;
        };
        let confirmer = Arc::clone(self);
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            loop {
                match confirmer.publish().await {
                    Ok(created) => {
                        let what = if created { "registered" } else { "updated" };
                        tracing::info!(provider = %own.id, directory = %confirmer.url, entries = own.identifiers.len(), "provider {what} in the directory");
                        println!(
                            "switchyard: provider {} {what} in the directory {}",
                            own.id, confirmer.url
                        );
                        return;
                    }
                    Err((true, why)) => {
                        tracing::warn!(provider = %own.id, error = %why, retry_in = ?wait, "publishing to the directory");
                    }
                    Err((false, why)) => {
                        tracing::error!(provider = %own.id, error = %why, "the directory refused this provider's entry");
                        return;
                    }
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        });
    }
}

/// A party as a query names it: a number as `+digits`, anything else as
/// given.
fn party(text: &str) -> String {
    match Identifier::caller(text) {
        Ok(number @ Identifier::Number(_)) => number.to_string(),
        _ => text.trim().to_owned(),
    }
}

/// The `message` of a JSON error body, else the body's start.
fn message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Error {
        message: String,
    }
    match serde_json::from_slice::<Error>(body) {
        Ok(error) => error.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// `text` for a URL path segment or query value: unreserved characters
/// as they are, the rest %-escaped (a number's `+`, a range's `*`).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signing key of `[provider] key`.
pub(super) fn signing_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("[provider] key: reading {}", path.display()))?;
    jws::signing_key_from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("[provider] key {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_are_numbers_when_they_can_be() {
        assert_eq!(party("sip:+1 555 123 0001@x"), "+15551230001");
        assert_eq!(party(" sip:alice@a.example "), "sip:alice@a.example");
        assert_eq!(escape("+1555*"), "%2B1555%2A");
        assert_eq!(escape("a.example"), "a.example");
        assert_eq!(message(br#"{"code":"x","message":"why"}"#), "why");
        assert_eq!(message(b"plain"), "plain");
    }
}
