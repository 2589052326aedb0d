//! The simulator's transcript lines: the router's log entries and the
//! scripted caller's actions, with their virtual time.

use crate::router::describe::{describe_entry, stamp};

use super::Line;

/// One line per log entry or caller action, with the virtual time.
pub fn describe_line(line: &Line<'_>) -> String {
    match line {
        Line::Log(entry) => describe_entry(entry),
        Line::Caller(caller) => format!(
            "{}  caller    {}   (script line {})",
            stamp(caller.at_ms),
            caller.action,
            caller.line
        ),
    }
}
