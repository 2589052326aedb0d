//! Switchyard: a programmable voice runtime extended with WebAssembly.
//!
//! ```text
//!   call leg (SIP / simulator)          tenant's component
//!          │  LegEvent                        ▲ handle(ctx, event)
//!          ▼                                  │
//!   router::Call (sans-IO) ── Output::Invoke ─┴─ wasm::CallHandler
//!          │  Output::Leg(verb)               (fresh instance per event,
//!          ▼                                   deadline, memory cap)
//!   call leg executes the verb, reports the result
//! ```
//!
//! * [`contract`] — the WIT types, generated from `wit/`.
//! * [`wasm`] — engine, component cache, limits, host imports.
//! * [`router`] — per-call state machine and decision log.
//! * [`store`] — persistence (SQLite).
//! * [`tenancy`] — accounts and API keys.
//! * [`deploy`] — uploaded component versions and the numbers bound to them.
//! * [`api`] — the REST API under `/v1`.
//! * [`callbacks`] — signed status callbacks to tenants' URLs.
//! * [`tokens`] — access tokens (JWTs) for browser and app clients.
//! * [`clients`] — the clients' signalling WebSocket and presence.
//! * [`conferences`] — the conferences in progress, for the media edge and REST.
//! * [`cascade`] — conferences across runtimes of several regions.
//! * [`egress`] — which addresses the runtime may reach for a tenant.
//! * [`directory`] — the call placement directory and provider
//!   confirmation (C11): served, asked, answered.
//! * [`simulate`] — scripted caller for local testing of guests.
//! * [`replay`] — a recorded call's events against another component.

pub mod api;
pub mod callbacks;
pub mod cascade;
pub mod cli;
pub mod clients;
pub mod conferences;
pub mod directory;
pub mod media;
pub mod metrics;
pub mod replay;
pub mod screen;
pub mod serve;
pub mod shaken;
pub mod simulate;
pub mod tokens;

// The layers below, under the names the modules above (and the tests,
// benches and fuzz targets) use.
pub use switchyard_contract as contract;
pub use switchyard_contract::guest;
pub use switchyard_egress as egress;
pub use switchyard_router as router;
pub use switchyard_sip as sip;
pub use switchyard_store as store;
pub use switchyard_store::{deploy, tenancy};
pub use switchyard_wasm as wasm;
