//! Caller verification policies (`voice:runtime/screen`, since WIT 0.2.1).
//!
//! Before an incoming call's handler runs, the runtime finds out what it
//! can about the caller — whether the provider that manages the caller's
//! number placed the call, and whether the call's STIR/SHAKEN PASSporT
//! holds — and asks the tenant's policy what to do with the call:
//!
//! ```text
//!  INVITE ──▶ runtime: directory + Identity check ── CallAttempt, Findings ──▶ screen(call, findings)
//!                                                                                   │
//!  handler runs, incoming.verification.label = "verified"  ◀── Ruling::Label(Verified)
//!  603/608 with the ruling's Reason, no handler            ◀── Ruling::reject(608, "…")
//! ```
//!
//! A policy is one function under [`verification_policy`](crate::verification_policy),
//! called once per call in a fresh instance. It may use the host imports
//! ([`log`](crate::log), [`kv`](crate::kv), [`clock`](crate::clock)). A
//! trap, or no answer within the runtime's deadline, applies the runtime's
//! default policy, never a plain accept.
//!
//! ```
//! use switchyard_sdk::log;
//! use switchyard_sdk::prelude::*;
//!
//! /// Calls to the hotline from a number nobody vouches for are asked for
//! /// a PIN by the account's `pin` handler; the rest go through labelled.
//! #[verification_policy]
//! fn screen(call: CallAttempt, findings: Findings) -> Ruling {
//!     log::info(format!("{}: {}", call.from, findings.passport.reason));
//!     match findings.passport.status {
//!         PassportStatus::Invalid => Ruling::Label(Label::LikelySpoofed),
//!         _ if findings.confirmed() || findings.attestation().is_some() => {
//!             Ruling::Label(Label::Verified)
//!         }
//!         _ if call.to == "+15550100" => Ruling::challenge("pin"),
//!         _ => Ruling::Label(Label::Unverified),
//!     }
//! }
//! # fn main() {}
//! ```

use crate::bindings::verification_policy::voice::runtime::screening_types as wit;

pub use crate::bindings::verification_policy::voice::runtime::verification_types::CallAttempt;
pub use wit::{
    Confirmation, Findings, Label, PassportCheck, PassportStatus, ProviderCheck, Rejection, Ruling,
};

impl Findings {
    /// Whether the caller's provider says it placed this call.
    pub fn confirmed(&self) -> bool {
        self.provider.answer == Confirmation::Confirmed
    }

    /// Whether the caller's provider manages the number and did not place
    /// this call: the caller id is someone else's.
    pub fn denied(&self) -> bool {
        self.provider.answer == Confirmation::Denied
    }

    /// The attestation (`"A"`, `"B"` or `"C"`) of a valid PASSporT; `None`
    /// when there is none or it did not check out.
    pub fn attestation(&self) -> Option<&str> {
        match self.passport.status {
            PassportStatus::Valid => self.passport.attestation.as_deref(),
            _ => None,
        }
    }
}

impl Ruling {
    /// Refuses the call with SIP `status` — 403 (Forbidden) or 608
    /// (Rejected, RFC 8688; anything else is sent as 603) — and `reason`
    /// as the response's Reason header.
    pub fn reject(status: u16, reason: impl Into<String>) -> Self {
        Ruling::Reject(Rejection {
            status,
            reason: reason.into(),
        })
    }

    /// Runs the account's handler `handler` instead of the number's, with
    /// the call labelled [`Label::Unverified`], to ask the caller something.
    pub fn challenge(handler: impl Into<String>) -> Self {
        Ruling::Challenge(handler.into())
    }
}
