//! Write Switchyard call handlers, and caller verification policies, as
//! one Rust function.
//!
//! A call handler is a WebAssembly component the runtime calls once per call
//! event. It answers every event with a [`Plan`]: the verbs (say, gather,
//! dial, record, …) to run next. A verb that produces a result (gather, dial,
//! record, conference, enqueue, pay) ends the plan, and its result comes back
//! as the next event:
//!
//! ```text
//!  runtime ── Event::Incoming ──────────▶ handle(ctx, event) ── Plan: say, gather ──▶ runtime
//!  runtime ── Event::GatherComplete ────▶ handle(ctx, event) ── Plan: say, dial ────▶ runtime
//!  runtime ── Event::DialComplete ──────▶ handle(ctx, event) ── Plan: hangup ───────▶ runtime
//! ```
//!
//! Each event runs in a fresh instance, so nothing survives in Rust statics
//! between events: keep per-call state in [`vars`] and per-tenant state in
//! [`kv`]. Every host call is recorded, so a call can be replayed against a
//! new version of the component.
//!
//! # A complete guest
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! switchyard-sdk = { path = "../../sdk-guest" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use switchyard_sdk::prelude::*;
//! use switchyard_sdk::{log, vars};
//!
//! #[call_handler]
//! fn handle(ctx: Context, event: Event) -> Result<Plan, HandlerError> {
//!     log::info(format!("{} on call {}", event.name(), ctx.call_id));
//!     match event {
//!         Event::Incoming(call) => Ok(Plan::new()
//!             .say(format!("Hello, {}", call.from))
//!             .gather(Gather::digits(1).say("Press 1 to talk to Alice"))),
//!         Event::GatherComplete(input) if input.digits == "1" => {
//!             vars::set("choice", "alice");
//!             Ok(Plan::new().dial(Dial::client("alice").timeout_secs(20)))
//!         }
//!         Event::GatherComplete(_) => Ok(Plan::new().say("Goodbye").hangup()),
//!         Event::DialComplete(_) => Ok(Plan::new().hangup()),
//!         Event::Hangup(_) => Ok(Plan::new()),
//!         other => Err(HandlerError::unexpected(&other)),
//!     }
//! }
//! ```
//!
//! Build it with nothing but cargo; the result is a component:
//!
//! ```sh
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! The signature is fixed (arguments by value, not `async`); anything else
//! is a compile error on the function:
//!
//! ```compile_fail,E0308
//! use switchyard_sdk::prelude::*;
//!
//! #[call_handler]
//! fn handle(ctx: &Context, event: Event) -> Result<Plan, HandlerError> {
//!     Ok(Plan::new())
//! }
//! ```
//!
//! A handler that has nothing to do when the call changes status or ends
//! can say so; the runtime then runs it only for the events that need a
//! plan, which on a call refused at once halves the guest work:
//!
//! ```
//! use switchyard_sdk::prelude::*;
//!
//! #[call_handler(notices = false)]
//! fn handle(_ctx: Context, _event: Event) -> Result<Plan, HandlerError> {
//!     Ok(Plan::new().reject_busy())
//! }
//! # fn main() {}
//! ```
//!
//! That is the only argument:
//!
//! ```compile_fail
//! use switchyard_sdk::prelude::*;
//!
//! #[call_handler(notice = false)]
//! fn handle(_ctx: Context, _event: Event) -> Result<Plan, HandlerError> {
//!     Ok(Plan::new())
//! }
//! ```
//!
//! `README.md` covers checking and simulating the component with the
//! `switchyard` CLI.
//!
//! # Verification policies
//!
//! A tenant's caller verification policy is a component of its own: the
//! runtime calls it once per incoming call, before the call's handler,
//! with what it found out about the caller, and it rules on the call
//! ([`screening`] has the types and the data flow):
//!
//! ```
//! use switchyard_sdk::prelude::*;
//!
//! #[verification_policy]
//! fn screen(_call: CallAttempt, findings: Findings) -> Ruling {
//!     if findings.denied() {
//!         Ruling::reject(608, "caller id not placed by its provider")
//!     } else if findings.confirmed() || findings.attestation() == Some("A") {
//!         Ruling::Label(Label::Verified)
//!     } else {
//!         Ruling::Label(Label::Unverified)
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Its signature is fixed too, `fn(CallAttempt, Findings) -> Ruling`:
//!
//! ```compile_fail,E0308
//! use switchyard_sdk::prelude::*;
//!
//! #[verification_policy]
//! fn screen(_call: CallAttempt, _findings: Findings) -> Option<Ruling> {
//!     None
//! }
//! ```
//!
//! and it takes no arguments:
//!
//! ```compile_fail
//! use switchyard_sdk::prelude::*;
//!
//! #[verification_policy(notices = false)]
//! fn screen(_call: CallAttempt, _findings: Findings) -> Ruling {
//!     Ruling::Accept
//! }
//! ```
//!
//! # Layout
//!
//! - [`call_handler`]: the attribute that exports your function as the
//!   call handler; [`verification_policy`] exports it as the policy.
//! - [`types`]: every WIT type (`Context`, `Event`, `Plan`, verbs, results),
//!   with builder methods for the verbs in [`Plan`], [`Say`](types::Say),
//!   [`Gather`](types::Gather), [`Dial`](types::Dial),
//!   [`Record`](types::Record), [`Conference`](types::Conference),
//!   [`Enqueue`](types::Enqueue) and [`Pay`](types::Pay).
//! - [`screening`]: a policy's types (`CallAttempt`, `Findings`, `Ruling`,
//!   …) with a few helpers.
//! - [`kv`], [`vars`], [`log`], [`clock`], [`presence`]: the host imports.
//! - [`prelude`]: what a handler usually needs, in one `use`.

#![warn(missing_docs)]

pub mod clock;
mod event;
pub mod kv;
pub mod log;
mod plan;
pub mod presence;
pub mod screening;
pub mod vars;
mod verbs;

/// Code generated by `wit-bindgen` from `wit/`, one module per world; the
/// [`call_handler`] expansion reaches the export machinery through here.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    /// Bindings of the `call-handler` world.
    pub mod call_handler {
        wit_bindgen::generate!({
            world: "call-handler",
            path: "../wit",
            pub_export_macro: true,
            // The export macro expands in the guest crate, so it must name
            // this module by its absolute path.
            default_bindings_module: "::switchyard_sdk::bindings::call_handler",
            additional_derives: [PartialEq, Eq],
        });
    }

    /// Bindings of the `verification-policy` world. Its host imports and
    /// `types` are `call_handler`'s modules (one `kv`, one `log`, one
    /// `Header`); only the screening types and the `screen` export are
    /// generated here.
    pub mod verification_policy {
        wit_bindgen::generate!({
            world: "verification-policy",
            path: "../wit",
            pub_export_macro: true,
            default_bindings_module: "::switchyard_sdk::bindings::verification_policy",
            additional_derives: [PartialEq, Eq],
            // Keys name the package version: a WIT bump must bump them
            // (wit-bindgen refuses an interface missing here).
            with: {
                "voice:runtime/types@0.2.1": crate::bindings::call_handler::voice::runtime::types,
                "voice:runtime/log@0.2.1": crate::bindings::call_handler::voice::runtime::log,
                "voice:runtime/kv@0.2.1": crate::bindings::call_handler::voice::runtime::kv,
                "voice:runtime/clock@0.2.1": crate::bindings::call_handler::voice::runtime::clock,
                "voice:runtime/call-vars@0.2.1": crate::bindings::call_handler::voice::runtime::call_vars,
                "voice:runtime/presence@0.2.1": crate::bindings::call_handler::voice::runtime::presence,
                "voice:runtime/verification-types@0.2.1": generate,
                "voice:runtime/screening-types@0.2.1": generate,
            },
        });
    }
    // later: `notification_router`, generated the same way and exported by
    // its own attribute in `switchyard-sdk-macro`.
}

/// Every type of the `voice:runtime/types` WIT interface.
///
/// They are the exact values the host sees: a handler returns a [`Plan`]
/// record, not a copy of it. The verb records have builder methods with
/// TwiML defaults; the fields stay public for anything the builders do not
/// cover.
pub mod types {
    pub use crate::bindings::call_handler::voice::runtime::types::*;
    pub use crate::verbs::{Conference, Record};
}

pub use types::{Context, Event, HandlerError, Plan};

pub use switchyard_sdk_macro::{call_handler, verification_policy};

/// What a handler usually needs: `use switchyard_sdk::prelude::*;`.
///
/// Brings in [`call_handler`], [`verification_policy`], every WIT type of
/// a handler ([`types`]) and the types of a policy ([`screening`]). The
/// host import modules ([`kv`], [`vars`], [`log`], [`clock`]) stay
/// qualified, since their function names (`get`, `set`, `info`) would
/// clash.
pub mod prelude {
    pub use crate::screening::{
        CallAttempt, Confirmation, Findings, Label, PassportCheck, PassportStatus, ProviderCheck,
        Rejection, Ruling,
    };
    pub use crate::types::*;
    pub use crate::{call_handler, verification_policy};
}

/// Items the [`call_handler`] and [`verification_policy`] expansions use;
/// not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::call_handler::export as export_call_handler;
    pub use crate::bindings::call_handler::exports::voice::runtime::handler::Guest as CallHandler;
    pub use crate::bindings::verification_policy::export as export_verification_policy;
    pub use crate::bindings::verification_policy::exports::voice::runtime::screen::Guest as VerificationPolicy;
}

/// Compiles the README's example as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
