//! Business hours from the `clock` import: open Monday to Friday,
//! 09:00–17:00 UTC.
//!
//! ```text
//! incoming        ─▶ open: a one-key menu     closed: "we are closed", hangup
//! gather-complete ─▶ open: "thank you", hangup   closed by now: "we have just closed", hangup
//! ```
//!
//! Each decision logs the time it saw ("Monday 09:00:05 UTC"), so
//! `switchyard simulate --at 2026-01-05T16:59:58Z` shows the call's clock
//! moving with the call, and closing under it.

use switchyard_sdk::prelude::*;
use switchyard_sdk::{clock, log};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
/// Opening hours, UTC, Monday to Friday: [OPENS, CLOSES).
const OPENS: u64 = 9;
const CLOSES: u64 = 17;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(if seen_now().is_open() {
            Plan::new().say("We are open").gather(
                Gather::digits(1)
                    .timeout_secs(5)
                    .say("Press 1 to talk to us"),
            )
        } else {
            Plan::new()
                .say("We are closed. We open at nine, Monday to Friday")
                .hangup()
        }),
        Event::GatherComplete(_) => Ok(if seen_now().is_open() {
            Plan::new().say("Thank you").hangup()
        } else {
            Plan::new().say("Sorry, we have just closed").hangup()
        }),
        _ => Ok(Plan::new()),
    }
}

/// The time from the host's clock, logged as the guest saw it.
fn seen_now() -> WeekTime {
    let now = WeekTime::of(clock::now_ms());
    log::info(now.to_string());
    now
}

/// A moment as the opening hours care about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WeekTime {
    /// 0 = Monday.
    weekday: usize,
    /// Seconds since midnight UTC.
    second_of_day: u64,
}

impl WeekTime {
    fn of(unix_ms: u64) -> Self {
        let secs = unix_ms / 1000;
        let days = secs / 86_400;
        // 1970-01-01 was a Thursday.
        Self {
            weekday: ((days + 3) % 7) as usize,
            second_of_day: secs % 86_400,
        }
    }

    fn is_open(self) -> bool {
        let hour = self.second_of_day / 3600;
        self.weekday < 5 && (OPENS..CLOSES).contains(&hour)
    }
}

impl std::fmt::Display for WeekTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.second_of_day;
        write!(
            f,
            "{} {:02}:{:02}:{:02} UTC",
            DAYS[self.weekday],
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `date -u -d 2026-01-05T09:00:00Z +%s` (a Monday), in ms.
    const MONDAY_NINE: u64 = 1_767_603_600_000;
    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_monday_at_nine_is_open_and_says_so() {
        let now = WeekTime::of(MONDAY_NINE);
        assert_eq!(now.to_string(), "Monday 09:00:00 UTC");
        assert!(now.is_open());
    }

    #[test]
    fn five_pm_and_the_weekend_are_closed() {
        assert!(WeekTime::of(MONDAY_NINE + 8 * HOUR - 1000).is_open());
        assert!(!WeekTime::of(MONDAY_NINE + 8 * HOUR).is_open());
        let saturday = WeekTime::of(MONDAY_NINE + 5 * 24 * HOUR + 2 * HOUR);
        assert_eq!(saturday.to_string(), "Saturday 11:00:00 UTC");
        assert!(!saturday.is_open());
    }
}
