//! Call status events for tenants' status callbacks (issue 5 item 3).
//!
//! The endpoint only says what happened to a call whose number has a
//! callback URL; `crate::callbacks` (the IO edge) signs and POSTs them.

use std::time::Instant;

use crate::cdr::Cdr;

use super::Endpoint;
use super::call::CallState;

/// Where a call is, as a status callback reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallProgress {
    /// Admitted; its router starts.
    Initiated,
    /// The caller got a 180 or 183.
    Ringing,
    /// The caller got a 2xx.
    Answered,
    /// The call is over.
    Completed,
}

impl CallProgress {
    pub fn as_str(self) -> &'static str {
        match self {
            CallProgress::Initiated => "initiated",
            CallProgress::Ringing => "ringing",
            CallProgress::Answered => "answered",
            CallProgress::Completed => "completed",
        }
    }
}

/// One status of one call, for its number's callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStatusEvent {
    pub call_id: String,
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub status: CallProgress,
    /// 0 for the call's first event, then 1, 2...: a receiver sees gaps
    /// (an event dropped under overload) and can order what it got.
    pub sequence: u32,
    /// When it happened, unix milliseconds.
    pub unix_ms: u64,
    pub url: String,
    /// Only with [`CallProgress::Completed`]: the CDR's outcome,
    /// final SIP status and answered duration.
    pub end: Option<CallEnd>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    /// `completed`, `busy`, `canceled`, `rejected` or `failed`.
    pub outcome: String,
    pub sip_status: Option<u16>,
    pub duration_secs: u64,
}

impl Endpoint {
    /// Queues `status` of `call` if its number has a status callback.
    pub(super) fn report_progress(
        &mut self,
        now: Instant,
        call: &mut CallState,
        status: CallProgress,
        cdr: Option<&Cdr>,
    ) {
        let Some(url) = call.binding.status_callback.clone() else {
            return;
        };
        let sequence = call.status_sequence;
        call.status_sequence += 1;
        let end = cdr.map(|cdr| CallEnd {
            outcome: cdr.outcome.clone(),
            sip_status: cdr.sip_status,
            duration_secs: cdr.duration_secs,
        });
        self.events
            .push_back(super::EndpointEvent::Status(CallStatusEvent {
                call_id: call.id.clone(),
                tenant: call.tenant_id.clone(),
                from: call.from.clone(),
                to: call.to.clone(),
                status,
                sequence,
                unix_ms: self.unix_ms(now),
                url,
                end,
            }));
    }
}
