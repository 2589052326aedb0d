//! The call detail record the endpoint produces when a call ends; the
//! store (`switchyard-store`) writes it off the call path.

use serde::{Deserialize, Serialize};

/// One finished call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdr {
    pub call_id: String,
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub answered_ms: Option<u64>,
    pub ended_ms: u64,
    /// Seconds from answer to end (0 when never answered).
    pub duration_secs: u64,
    /// How it ended: "completed", "busy", "rejected", "canceled", "failed"…
    pub outcome: String,
    /// Final SIP status sent to the caller, when one was.
    pub sip_status: Option<u16>,
    pub handler: String,
    /// Content hash of the handler's component.
    pub handler_version: String,
}
