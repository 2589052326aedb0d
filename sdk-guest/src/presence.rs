//! Who of the account's browser and app clients is reachable
//! (`voice:runtime/presence`, since WIT 0.1.1).
//!
//! The host records each answer, so a replayed call sees what the call
//! saw. In `switchyard simulate` every identity is offline.

pub use crate::bindings::call_handler::voice::runtime::presence::{ClientPresence, Status};

/// The presence of client `identity` (the identity its access tokens
/// carry): available, busy (a device in a call or set busy), away, or
/// offline when no device is connected.
pub fn lookup(identity: &str) -> ClientPresence {
    crate::bindings::call_handler::voice::runtime::presence::lookup(identity)
}
