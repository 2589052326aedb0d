//! The WIT contract (`voice:runtime@0.2.1`) as host-side Rust types, and
//! the released 0.1.x ([`v0_1`]) with conversions to it; the
//! verification-policy world's types are [`screening`].
//!
//! Generated from `wit/` by `wasmtime::component::bindgen!`, so the WIT
//! package is the single source of truth: the router, the decision log,
//! the simulator and the webhook benchmark all speak these types. They
//! derive serde so events and plans can be logged as JSON lines.

// Tests start virtual clocks from `Instant::now()`; the code itself never
// reads a clock or the OS RNG (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "call-handler",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub mod guest;
pub mod screening;
pub mod v0_1;

pub use voice::runtime::types::*;

/// The generated host-import traits, for the Wasm host to implement.
pub mod imports {
    pub use super::voice::runtime::{call_vars, clock, kv, log, presence};
}

impl IncomingCall {
    /// An inbound call with no extra headers and no verification done yet.
    pub fn inbound(
        from: impl Into<String>,
        to: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            direction: Direction::Inbound,
            region: region.into(),
            headers: Vec::new(),
            verification: Verification {
                status: VerificationStatus::NotChecked,
                attestation: None,
                label: None,
            },
        }
    }
}

impl Say {
    /// Speak `text` once in the default voice and language.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            voice: None,
            language: None,
            loop_count: 1,
        }
    }
}

impl ConferenceOptions {
    /// Conference `name` with TwiML's defaults: unmuted, starts when this
    /// caller enters and goes on when they leave, beeps, not recorded,
    /// the runtime's wait music, no limit beyond the runtime's.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            muted: false,
            start_on_enter: true,
            end_on_exit: false,
            beep: true,
            record: false,
            wait_prompt: None,
            max_participants: None,
        }
    }
}

impl Dial {
    /// Rings `target` for 20 s, not recorded, with no time limit.
    pub fn to(target: DialTarget) -> Self {
        Self {
            targets: vec![DialLeg {
                target,
                headers: Vec::new(),
            }],
            strategy: RingStrategy::Sequential,
            timeout_secs: 20,
            caller_id: None,
            record: false,
            answer_on_bridge: false,
            time_limit_secs: None,
        }
    }
}
