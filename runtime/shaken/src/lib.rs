//! STIR/SHAKEN, sans-IO: what the runtime needs to sign the calls it
//! places and to check the `Identity` header of the calls it receives
//! (RFC 8224, PASSporT RFC 8225, SHAKEN RFC 8588).
//!
//! ```text
//!  sign:    Signer::from_pem(key, x5u) ─► sign(claims, iat) ─► Identity header value
//!  verify:  Identity::parse(header) ─► x5u() ─(edge fetches it, through
//!           the egress policy)─► Identity::verify(chain PEM, &roots, &call, now)
//!           ─► Ok(Verified { attest, .. }) | Err(Failure: why, for the evidence)
//! ```
//!
//! [`jws`] is the ES256 compact JWS underneath, public for the other
//! signed messages of C11 (the call placement directory's).
//!
//! Time comes in as Unix seconds; fetching the certificate is the edge's
//! job (with its timeout, cache and CA allow-list), so every check here
//! is a pure function of its inputs.

mod cert;
mod identity;
pub mod jws;
mod passport;

pub use cert::{Roots, chain_key};
pub use identity::Identity;
/// A P-256 private key, as [`jws::signing_key_from_pem`] reads it.
pub use p256::ecdsa::SigningKey;
/// A signer's public key, as [`chain_key`] gives it.
pub use p256::ecdsa::VerifyingKey;
pub use passport::{Attestation, Call, Claims, Signer, Verified};

/// Why an `Identity` header did not verify: the reason goes into the
/// evidence a tenant's verification policy sees and into the decision log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    #[error("the Identity header is malformed: {0}")]
    Header(String),
    #[error("the PASSporT is malformed: {0}")]
    Token(String),
    #[error("the PASSporT is signed with {0}, not ES256")]
    Algorithm(String),
    #[error("the PASSporT's ppt is {0:?}, not \"shaken\"")]
    Ppt(String),
    #[error("the certificate URL {0:?} is not https")]
    NotHttps(String),
    #[error("the certificate could not be used: {0}")]
    Certificate(String),
    #[error("the certificate does not chain to a trusted root: {0}")]
    Untrusted(String),
    #[error("the signature does not verify with the certificate's key")]
    Signature,
    #[error("the PASSporT is stale: iat {iat} is {age} s from now (at most 60)")]
    Stale { iat: i64, age: i64 },
    #[error("orig and dest must be objects (RFC 8225), not {0}")]
    NotObjects(String),
    #[error("orig {claimed:?} is not the caller {call:?}")]
    OrigMismatch { claimed: String, call: String },
    #[error("dest {claimed:?} does not include the called number {call:?}")]
    DestMismatch { claimed: Vec<String>, call: String },
    #[error("attest {0:?} is not A, B or C")]
    Attestation(String),
}

/// What a failure says in the WIT's `passport-check` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    InvalidSignature,
    Stale,
    NumberMismatch,
}

impl Failure {
    pub fn check(&self) -> Check {
        match self {
            Failure::Stale { .. } => Check::Stale,
            Failure::OrigMismatch { .. } | Failure::DestMismatch { .. } => Check::NumberMismatch,
            // Malformed, unsigned, untrusted: the evidence is not good.
            _ => Check::InvalidSignature,
        }
    }
}

/// How far `iat` may be from now, either way (RFC 8224 §6.2.1's 60 s).
pub const FRESH_SECS: i64 = 60;

/// Whether `iat` is within [`FRESH_SECS`] of `now` (Unix seconds, either
/// way); if not, its age (`now - iat`: negative from the future).
pub fn fresh(iat: i64, now: i64) -> Result<(), i64> {
    let age = now.saturating_sub(iat);
    match age.saturating_abs() > FRESH_SECS {
        true => Err(age),
        false => Ok(()),
    }
}
