//! Helpers on events and handler errors.

use crate::kv::KvError;
use crate::types::{Event, HandlerError};

impl Event {
    /// The event's WIT case name (`"incoming"`, `"gather-complete"`, …),
    /// for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Incoming(_) => "incoming",
            Event::GatherComplete(_) => "gather-complete",
            Event::DialComplete(_) => "dial-complete",
            Event::RecordComplete(_) => "record-complete",
            Event::ConferenceComplete(_) => "conference-complete",
            Event::QueueComplete(_) => "queue-complete",
            Event::QueueWait(_) => "queue-wait",
            Event::PayComplete(_) => "pay-complete",
            Event::Redirected(_) => "redirected",
            Event::StatusChanged(_) => "status-changed",
            Event::Hangup(_) => "hangup",
        }
    }
}

impl HandlerError {
    /// [`HandlerError::UnexpectedEvent`] naming `event`'s kind, for the
    /// catch-all arm of a handler's `match`.
    pub fn unexpected(event: &Event) -> Self {
        HandlerError::UnexpectedEvent(event.name().to_owned())
    }
}

/// Lets a handler use `?` on key-value calls: a storage failure the guest
/// cannot mend becomes [`HandlerError::HostFailure`], and the router applies
/// the tenant's fallback.
impl From<KvError> for HandlerError {
    fn from(err: KvError) -> Self {
        HandlerError::HostFailure(format!("kv: {err}"))
    }
}
