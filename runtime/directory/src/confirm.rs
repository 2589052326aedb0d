//! A provider's answer to a confirmation query, from its own records of
//! the calls it placed.
//!
//! ```text
//!  Query{orig, dest, at} ─► orig one of our identifiers? ─ no ─► Unknown
//!                                │ yes
//!                                ▼
//!        a placement orig → dest within ±window of at? ─► Yes | No
//! ```
//!
//! Numbers are compared normalised ([`caller_key`]): `15551230001`,
//! `+1 555-123-0001` and `sip:+15551230001@x` are one caller.

use crate::Identifier;
use crate::identifier::caller_key;
use crate::message::{Answer, Query};
use crate::table::Table;

/// How far from the query's `at` a placement still counts, by default:
/// a call is set up in seconds, and the two runtimes' clocks may differ
/// by a few.
pub const WINDOW_SECS: u64 = 30;

/// One call the provider placed, as its records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed<'a> {
    /// The caller id it placed the call with.
    pub caller: &'a str,
    /// The user or URI it dialled.
    pub callee: &'a str,
    /// Unix milliseconds.
    pub at_ms: u64,
}

/// What the provider holding `own` entries answers to `query`, given the
/// calls it placed around then (any superset will do: the ones that do
/// not match are skipped).
pub fn answer<'a>(
    query: &Query,
    own: &Table,
    placements: impl IntoIterator<Item = Placed<'a>>,
    window_secs: u64,
) -> Answer {
    let managed = Identifier::caller(&query.orig).is_ok_and(|orig| own.lookup(&orig).is_some());
    if !managed {
        return Answer::Unknown;
    }
    let (orig, dest) = (caller_key(&query.orig), caller_key(&query.dest));
    let at_ms = query.at.saturating_mul(1000);
    let window_ms = window_secs.saturating_mul(1000);
    let placed = placements.into_iter().any(|p| {
        let near = (p.at_ms as i64).abs_diff(at_ms) <= window_ms;
        near && caller_key(p.caller) == orig && caller_key(p.callee) == dest
    });
    if placed { Answer::Yes } else { Answer::No }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_767_603_600;

    fn own() -> Table {
        let ids = ["+1555*", "a.example"].map(|t| Identifier::parse(t).unwrap());
        Table::of("a.example", &ids)
    }

    fn query(orig: &str, dest: &str) -> Query {
        Query {
            asker: "b.example".into(),
            orig: orig.into(),
            dest: dest.into(),
            at: AT,
            iat: AT,
            nonce: "n0nce-0123".into(),
        }
    }

    fn placed(caller: &'static str, callee: &'static str, offset_ms: i64) -> Placed<'static> {
        Placed {
            caller,
            callee,
            at_ms: (AT * 1000 + offset_ms) as u64,
        }
    }

    #[test]
    fn a_placement_within_the_window_is_yes_however_the_numbers_are_written() {
        let records = [placed(
            "15551230001",
            "sip:+1 666 999 0001@carrier",
            -29_000,
        )];
        let q = query("+15551230001", "+16669990001");
        assert_eq!(answer(&q, &own(), records, WINDOW_SECS), Answer::Yes);
        let q = query("sip:+15551230001@b.example;user=phone", "16669990001");
        assert_eq!(answer(&q, &own(), records, WINDOW_SECS), Answer::Yes);
    }

    #[test]
    fn a_managed_caller_without_such_a_placement_is_no() {
        let q = query("+15551230001", "+16669990001");
        for records in [
            vec![],
            vec![placed("+15551230001", "+16669990001", 31_000)],
            vec![placed("+15551230001", "+16669990002", 0)],
            vec![placed("+15551230002", "+16669990001", 0)],
        ] {
            assert_eq!(answer(&q, &own(), records, WINDOW_SECS), Answer::No);
        }
        // A wider window takes the late one in.
        let late = [placed("+15551230001", "+16669990001", 31_000)];
        assert_eq!(answer(&q, &own(), late, 60), Answer::Yes);
    }

    #[test]
    fn a_caller_that_is_none_of_ours_is_unknown_whatever_we_placed() {
        let records = [placed("+16661230001", "+16669990001", 0)];
        for orig in ["+16661230001", "anonymous", "sip:bob@b.example"] {
            let q = query(orig, "+16669990001");
            assert_eq!(
                answer(&q, &own(), records, WINDOW_SECS),
                Answer::Unknown,
                "{orig}"
            );
        }
        // A SIP caller of our domain is ours; matched on its user.
        let q = query("sip:alice@a.example", "+16669990001");
        let records = [placed("alice", "+16669990001", 0)];
        assert_eq!(answer(&q, &own(), records, WINDOW_SECS), Answer::Yes);
    }
}
