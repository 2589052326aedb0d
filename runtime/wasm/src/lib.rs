//! The Wasm host: runs tenants' components, one fresh sandboxed instance
//! per call event.
//!
//! ```text
//!   HostConfig ──▶ WasmHost::new ── engine.rs: Engine (pooling, epochs)
//!                     │              + epoch ticker + Linker (WASI + imports.rs)
//!                     │
//!   upload bytes ──▶ load ── component.rs: header, world, imports, types
//!                     │      cache.rs: compiled once (memory / disk)
//!                     ▼
//!               Arc<LoadedComponent> ──▶ handler(.., TenantScope) ──▶ WasmHandler
//!                                                                      │
//!   router ── InvokeRequest ──▶ CallHandler::invoke ───────────────────┘
//!              per event: host.rs HostState (WASI granting nothing, limiter,
//!              vars, kv, output.rs → tracing, entropy.rs clocks + seeded
//!              random numbers) → Store → instantiate → handle
//!                     ▼
//!               Invocation { plan | GuestFailure, vars, import records, elapsed }
//! ```
//!
//! * [`config`] — typed limits with documented defaults.
//! * `engine` — the one `Engine`, its epoch ticker and the `Linker`.
//! * `cache` — content-addressed compiled components, in memory and on disk.
//! * [`component`] — what a component is, or what is wrong with it.
//! * `host`, `imports`, `output` — per-event state and the host imports.
//! * [`entropy`] — the guest's WASI clocks and random numbers, reproducible
//!   from two recorded numbers per event.
//! * [`presence`] — where `presence.lookup` is answered from.
//! * [`manifest`] — what a component declares in its `switchyard-handler`
//!   custom section (e.g. that it takes no notices).
//! * `handler` — [`WasmHost`] and [`WasmHandler`].

mod cache;
pub mod component;
pub mod config;
mod engine;
pub mod entropy;
mod handler;
mod host;
mod imports;
mod imports_v0_1;
pub mod kv;
pub mod manifest;
mod output;
pub mod presence;

pub use cache::{CacheError, CacheStats, ContentHash, LoadSource};
pub use component::{ComponentInfo, Contract, LoadError, World, check_header};
pub use config::{ConfigError, GuestLimits, HostConfig, HostConfigBuilder, PoolLimits};
pub use engine::EngineError;
pub use entropy::Entropy;
pub use handler::{
    HostError, LoadedComponent, Recorded, TenantScope, WasmHandler, WasmHost, WasmPolicy,
};
pub use kv::{Kv, KvBackend, KvError};
