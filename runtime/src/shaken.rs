//! STIR/SHAKEN checks of incoming calls at the edge (C11): the answer to
//! the endpoint's `EndpointEvent::Verify`, before the call's handler runs.
//!
//! ```text
//!  Verify { identity, from, to } ─► Identity::parse ─► x5u (https only)
//!     ─► the chain's key: cached per URL (cert_ttl_secs), else fetched
//!        through the egress policy (purpose CertificateFetch, [shaken]
//!        fetch_private; timeout_ms; 64 KiB at most) and chained to the
//!        [shaken] roots
//!     ─► the PASSporT checked (signature, iat within 60 s, orig/dest)
//!     ─► PassportCheck { valid + attestation | invalid, reason }
//! ```
//!
//! The checks themselves are `switchyard_shaken` (sans-IO); this module
//! is its IO: the fetch, the clock, the cache. A check never fails open:
//! whatever goes wrong (unreachable x5u, a timeout) is `invalid`, with why.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use switchyard_contract::screening::{EvidencePassport, PassportCheck, PassportStatus};
use switchyard_shaken::{Call, Check, Failure, Identity, Roots, VerifyingKey, chain_key};

use crate::egress::{EgressPolicy, Purpose};
use crate::media::fetch::{FetchConfig, Fetcher};
use crate::serve::config::ShakenSection;

/// Certificate chains kept at most; past it the cache starts over.
const MAX_CACHED: usize = 10_000;
/// Largest certificate chain fetched.
const MAX_CHAIN_BYTES: u64 = 64 * 1024;

/// What a check found, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub passport: PassportCheck,
    /// The same as 0.2.0's policies name it.
    pub evidence: EvidencePassport,
}

impl Checked {
    fn invalid(reason: String, kind: Check) -> Self {
        Self {
            passport: PassportCheck {
                status: PassportStatus::Invalid,
                attestation: None,
                reason,
            },
            evidence: match kind {
                Check::Stale => EvidencePassport::Stale,
                Check::NumberMismatch => EvidencePassport::NumberMismatch,
                Check::InvalidSignature => EvidencePassport::InvalidSignature,
            },
        }
    }

    fn failed(failure: Failure) -> Self {
        Self::invalid(failure.to_string(), failure.check())
    }

    /// What a call without an Identity header, or a runtime that does not
    /// check them, is found to have.
    pub fn not_there(status: PassportStatus, reason: &str) -> Self {
        Self {
            passport: PassportCheck {
                status,
                attestation: None,
                reason: reason.into(),
            },
            evidence: EvidencePassport::Absent,
        }
    }
}

pub struct Verifier {
    fetcher: Fetcher,
    roots: Roots,
    ttl: Duration,
    keys: Mutex<HashMap<String, (VerifyingKey, Instant)>>,
}

impl Verifier {
    /// The verifier `[shaken]` describes; `None` when `verify` is off.
    pub fn new(section: &ShakenSection, egress: EgressPolicy) -> anyhow::Result<Option<Self>> {
        if !section.verify {
            return Ok(None);
        }
        let path = (section.roots.as_deref()).context("[shaken] verify needs roots")?;
        let roots = Roots::from_pem(&read(path)?).map_err(anyhow::Error::msg)?;
        let extra_roots = match &section.fetch_ca {
            Some(path) => rustls_pemfile::certs(&mut read(path)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("[shaken] fetch_ca {}", path.display()))?,
            None => Vec::new(),
        };
        let timeout = Duration::from_millis(section.timeout_ms);
        let fetcher = Fetcher::new(FetchConfig {
            timeout,
            connect_timeout: timeout,
            max_bytes: MAX_CHAIN_BYTES,
            max_redirects: 2,
            egress,
            purpose: Purpose::CertificateFetch,
            extra_roots,
        })
        .context("setting up certificate fetches")?;
        Ok(Some(Self {
            fetcher,
            roots,
            ttl: Duration::from_secs(section.cert_ttl_secs),
            keys: Mutex::default(),
        }))
    }

    /// Checks the `Identity` header value of a call from `from` to `to`.
    pub async fn check(&self, identity: &str, from: &str, to: &str) -> Checked {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let identity = match Identity::parse(identity) {
            Ok(identity) => identity,
            Err(why) => return Checked::failed(why),
        };
        let url = match identity.x5u() {
            Ok(url) => url,
            Err(why) => return Checked::failed(why),
        };
        let key = match self.key(url, now).await {
            Ok(key) => key,
            Err(why) => return Checked::invalid(why, Check::InvalidSignature),
        };
        let call = Call {
            from: from.into(),
            to: to.into(),
        };
        match identity.verify_with(&key, &call, now) {
            Ok(verified) => Checked {
                passport: PassportCheck {
                    status: PassportStatus::Valid,
                    attestation: Some(verified.attest.as_str().into()),
                    reason: format!("attestation {}", verified.attest.as_str()),
                },
                evidence: EvidencePassport::Valid,
            },
            Err(why) => Checked::failed(why),
        }
    }

    /// The key of the chain at `url`: cached, or fetched and chained.
    async fn key(&self, url: &str, now: i64) -> Result<VerifyingKey, String> {
        let cached = |keys: &HashMap<String, (VerifyingKey, Instant)>| {
            let (key, at) = keys.get(url)?;
            (at.elapsed() < self.ttl).then_some(*key)
        };
        if let Some(key) = cached(&self.keys()) {
            return Ok(key);
        }
        let chain = (self.fetcher.get_bytes(url).await)
            .map_err(|e| format!("the certificate could not be fetched: {e}"))?;
        let key = chain_key(&chain, &self.roots, now).map_err(|e| e.to_string())?;
        let mut keys = self.keys();
        if keys.len() >= MAX_CACHED {
            keys.clear();
        }
        keys.insert(url.to_owned(), (key, Instant::now()));
        Ok(key)
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, (VerifyingKey, Instant)>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
