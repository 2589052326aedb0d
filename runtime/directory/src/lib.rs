//! The call placement directory and provider confirmation (C11), sans-IO.
//!
//! A directory maps caller identifiers (E.164 numbers, number ranges,
//! SIP domains) to the provider that manages them: its confirmation URL
//! and its P-256 public key. On an incoming call a runtime asks the
//! directory who manages the caller, then asks that provider "did you
//! place a call from X to Y around T?"; the provider answers yes, no or
//! unknown from its own records, signed — and nothing more (RFC 8816's
//! out-of-band model).
//!
//! ```text
//!   provider ──ProviderUpdate (signed)──► directory: Registry::check ─► commit
//!   asker ── lookup(Identifier::caller(from)) ──► directory: Registry::lookup
//!   asker ──Query (signed)──► provider: Query::verify ─► Limiter::check
//!                                        ─► confirm::answer(query, own Table, placements)
//!   asker ◄──Reply (signed)── provider:  Reply::verify(…, query) ─► Answer
//! ```
//!
//! * [`identifier`] — numbers, ranges, domains; callers normalised.
//! * [`table`] — identifier → provider: exact number, longest prefix,
//!   nearest parent domain.
//! * [`message`] — the signed messages (compact JWS, ES256, `kid` = the
//!   provider id), their checks, freshness.
//! * [`registry`] — the directory's state: providers and their entries.
//! * [`confirm`] — a provider's answer from its placement records.
//! * [`limiter`] — per-asker token buckets, bounded.
//!
//! Nothing here reads a clock, a socket or a file: the edge
//! (`switchyard::directory`, `switchyard_store::directory` and
//! `placements`) passes Unix time and `Instant`s in and does the HTTP
//! and the SQLite.

// Tests start virtual clocks from `Instant::now()`; the code itself never
// reads a clock or the OS RNG (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod confirm;
pub mod identifier;
pub mod limiter;
pub mod message;
pub mod registry;
pub mod table;

pub use confirm::{Placed, WINDOW_SECS, answer};
pub use identifier::{Identifier, IdentifierError, caller_key};
pub use limiter::{Decision, Limiter};
pub use message::{Answer, MessageError, Provider, ProviderUpdate, Query, Reply};
pub use registry::{Checked, Registry, UpdateError};
/// Keys, as `switchyard_shaken` (and its `jws`) use them.
pub use switchyard_shaken::{SigningKey, VerifyingKey, jws};
pub use table::{Conflict, Table};

/// How far a message's `iat` may be from the receiver's clock, either
/// way: the 60 s of PASSporTs (RFC 8224 §6.2.1).
pub use switchyard_shaken::FRESH_SECS;
