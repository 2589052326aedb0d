//! Time as the call sees it (`voice:runtime/clock`).
//!
//! Use this rather than `std::time`: the host records the value, so a
//! replayed call sees the same time.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::bindings::call_handler::voice::runtime::clock::now_ms()
}
