//! Tenant-scoped key-value storage (`voice:runtime/kv`).
//!
//! Keys are strings, values bytes; the `*_string` helpers store UTF-8 text.
//! Keys of one tenant are invisible to every other tenant. A `?` on these
//! calls inside a handler turns a [`KvError`] into
//! [`HandlerError::HostFailure`](crate::HandlerError::HostFailure).
//!
//! Two calls of the same tenant may run at once, so a read-modify-write
//! (such as a counter) can lose an update; use it for statistics, not money.

use crate::bindings::call_handler::voice::runtime::kv as host;

pub use host::KvError;

/// The value stored under `key`, or `None` if there is none.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    host::get(key)
}

/// Stores `value` under `key`, replacing any previous value.
///
/// Fails with [`KvError::TooLarge`] when the key or value exceeds the
/// tenant's limit and [`KvError::QuotaExceeded`] when its storage is full.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    host::set(key, value)
}

/// Removes `key`; removing a missing key is not an error.
pub fn delete(key: &str) -> Result<(), KvError> {
    host::delete(key)
}

/// Keys starting with `prefix`, sorted, at most `limit` of them.
pub fn list_keys(prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
    host::list_keys(prefix, limit)
}

/// The value under `key` as text, or `None` if there is none.
///
/// Bytes that are not UTF-8 are replaced with `U+FFFD` rather than failing,
/// so a value written by [`set`] with binary data still reads.
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    Ok(get(key)?.map(|bytes| {
        String::from_utf8(bytes)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
    }))
}

/// Stores the text `value` under `key`.
pub fn set_string(key: &str, value: &str) -> Result<(), KvError> {
    set(key, value.as_bytes())
}
