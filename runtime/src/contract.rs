//! The WIT contract (`voice:runtime@0.1.0`) as host-side Rust types.
//!
//! Generated from `wit/` by `wasmtime::component::bindgen!`, so the WIT
//! package is the single source of truth: the router, the decision log,
//! the simulator and the webhook benchmark all speak these types. They
//! derive serde so events and plans can be logged as JSON lines.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "call-handler",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use voice::runtime::types::*;

/// The generated host-import traits, for the Wasm host to implement.
pub mod imports {
    pub use super::voice::runtime::{call_vars, clock, kv, log};
}
