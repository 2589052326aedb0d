//! The decision log: everything a call's handlers saw and decided.
//!
//! Events in, plans (or failures) out with the host-import results the
//! guest saw, fallbacks, and every verb the router executed. Stored per
//! call; `switchyard replay` feeds the events and import results to a new
//! component version and compares the plans.

use serde::{Deserialize, Serialize};

use switchyard_contract::guest::{GuestFailure, ImportRecord};
use switchyard_contract::screening::{CallAttempt, Findings, Ruling};
use switchyard_contract::{Context, Event, HangupCause, Plan, Verb};

/// What screened an incoming call: the call as the policy saw it, the
/// findings, the ruling, and who ruled (the account's policy, or the
/// default and why it applied). `switchyard screen` re-rules on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Screening {
    pub call: CallAttempt,
    pub findings: Findings,
    pub ruling: Ruling,
    pub by: String,
}

/// One line of the log, stamped with milliseconds since the call started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub at_ms: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Entry {
    /// An event sent to a handler.
    Event { ctx: Context, event: Event },
    /// What the handler answered to the event with the same sequence.
    Decision {
        sequence: u32,
        outcome: Result<Plan, GuestFailure>,
        imports: Vec<ImportRecord>,
        elapsed_us: u64,
    },
    /// The handler failed; this static plan runs instead.
    Fallback { reason: GuestFailure, plan: Plan },
    /// The handler failed; the same event goes to handler `to` (the
    /// number's fallback component).
    Handover { reason: GuestFailure, to: String },
    /// A verb the router executed (on the leg, or itself for set-var/redirect).
    Verb { verb: Verb },
    /// The handler's plan for a `queue-wait` did not run (it failed, was
    /// invalid, or came after the caller left the queue); the caller
    /// kept waiting as before.
    WaitIgnored { reason: String },
    /// A dial target rang nobody (`client:alice` is offline, a number has
    /// no trunk): why, beside the status the handler hears.
    Unreachable { target: String, reason: String },
    /// What the check of the caller's Identity header (STIR/SHAKEN)
    /// found, before the handler ran: the status the handler sees in
    /// `incoming.verification`, and why.
    Verified {
        status: String,
        reason: String,
        /// What the screening found and ruled (absent in logs written
        /// before 0.2.1's policies).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        screening: Option<Screening>,
    },
    /// The call ended.
    Ended { cause: HangupCause },
}

/// The log of one call, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DecisionLog {
    entries: Vec<LogEntry>,
}

impl DecisionLog {
    pub fn push(&mut self, at_ms: u64, entry: Entry) {
        self.entries.push(LogEntry { at_ms, entry });
    }

    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    /// The events sent to handlers, in order.
    pub fn events(&self) -> impl Iterator<Item = (&Context, &Event)> {
        self.entries.iter().filter_map(|e| match &e.entry {
            Entry::Event { ctx, event } => Some((ctx, event)),
            _ => None,
        })
    }

    /// One JSON object per line: the storage and `--json` format.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            // A LogEntry holds only strings, numbers and enums: it always serialises.
            out.push_str(&serde_json::to_string(entry).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// Parses what [`to_json_lines`](Self::to_json_lines) wrote.
    pub fn from_json_lines(text: &str) -> Result<Self, serde_json::Error> {
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }
}
