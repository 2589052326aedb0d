//! Variables of the current call (`voice:runtime/call-vars`).
//!
//! They live as long as the call, survive a `redirect` to another handler,
//! and are the place for state that must outlast one event (each event runs
//! in a fresh instance). These calls take effect at once; the plan verbs
//! [`Plan::set_var`](crate::Plan::set_var) and
//! [`Plan::unset_var`](crate::Plan::unset_var) take effect when the runtime
//! reaches them in the plan.

use crate::bindings::call_handler::voice::runtime::call_vars as host;

/// The value of variable `name`, or `None` if it is not set.
pub fn get(name: &str) -> Option<String> {
    host::get(name)
}

/// Sets variable `name` to `value`.
pub fn set(name: &str, value: &str) {
    host::set(name, value)
}

/// Removes variable `name`; removing a missing variable does nothing.
pub fn remove(name: &str) {
    host::remove(name)
}

/// Every variable of the call as `(name, value)` pairs.
pub fn all() -> Vec<(String, String)> {
    host::all()
}
