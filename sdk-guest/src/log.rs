//! Structured logging (`voice:runtime/log`).
//!
//! Lines go to the runtime's tracing output tagged with the tenant and call
//! ids, so there is no need to repeat them in the message.
//!
//! ```no_run
//! use switchyard_sdk::log;
//! # let digits = "1";
//! log::info(format!("caller chose {digits}"));
//! log::warn("no input");
//! ```

use crate::bindings::call_handler::voice::runtime::log as host;

pub use host::Level;

/// Writes `message` at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    host::write(level, message.as_ref())
}

/// Writes `message` at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message)
}

/// Writes `message` at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message)
}

/// Writes `message` at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message)
}

/// Writes `message` at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message)
}

/// Writes `message` at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message)
}
