//! RFC 3339 timestamps (`2026-01-05T09:00:00Z`) to Unix milliseconds, for
//! the wall-clock start of a simulated call. Small enough not to need a
//! date crate: the proleptic Gregorian calendar, UTC offsets, no leap-second
//! table (a `:60` second counts as the next minute's first, as POSIX does).

/// Milliseconds since the Unix epoch of an RFC 3339 date-time
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`), at or after 1970.
pub fn parse(text: &str) -> Result<u64, String> {
    let fail =
        |why: &str| format!("`{text}` is not an RFC 3339 time like 2026-01-05T09:00:00Z ({why})");
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return Err(fail("too short"));
    }
    let digits = |range: std::ops::Range<usize>, what: &str| -> Result<u32, String> {
        let part = &text[range];
        if part.bytes().all(|b| b.is_ascii_digit()) {
            Ok(part.parse().unwrap_or(0))
        } else {
            Err(fail(&format!("bad {what}")))
        }
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, want)| bytes[at] != want)
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return Err(fail("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let year = digits(0..4, "year")?;
    let month = digits(5..7, "month")?;
    let day = digits(8..10, "day")?;
    let hour = digits(11..13, "hour")?;
    let minute = digits(14..16, "minute")?;
    let second = digits(17..19, "second")?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(fail("no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail("no such time of day"));
    }

    // An optional fraction: milliseconds are kept, finer digits dropped.
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return Err(fail("empty fraction of a second"));
        }
        let ms: String = fraction[..len]
            .chars()
            .chain("00".chars())
            .take(3)
            .collect();
        millis = ms.parse::<u64>().unwrap_or(0);
        rest = &fraction[len..];
    }
    let offset_secs: i64 = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return Err(fail("bad UTC offset"));
            }
            let secs = hours * 3600 + minutes * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return Err(fail("expected Z or a UTC offset like +01:00 at the end")),
    };

    let days = days_from_civil(i64::from(year), month, day);
    let local_secs =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let utc_secs = local_secs - offset_secs;
    u64::try_from(utc_secs)
        .map(|secs| secs * 1000 + millis)
        .map_err(|_| fail("before 1970"))
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_count_from_the_epoch() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        // `date -u -d 2026-01-05T09:00:00Z +%s` = 1767603600
        assert_eq!(parse("2026-01-05T09:00:00Z"), Ok(1_767_603_600_000));
        // A leap day: `date -u -d 2024-02-29T12:34:56Z +%s` = 1709210096
        assert_eq!(parse("2024-02-29T12:34:56.789Z"), Ok(1_709_210_096_789));
    }

    #[test]
    fn an_offset_is_taken_off_to_reach_utc() {
        assert_eq!(
            parse("2026-01-05T10:30:00+01:30"),
            parse("2026-01-05T09:00:00Z")
        );
        assert_eq!(
            parse("2026-01-04T23:00:00-10:00"),
            parse("2026-01-05T09:00:00z")
        );
    }

    #[test]
    fn malformed_or_impossible_times_say_what_is_wrong() {
        for (text, why) in [
            ("2026-01-05", "too short"),
            ("2026-01-05T09:00:00", "too short"),
            ("2026-01-05T09:00:00+0100", "UTC offset"),
            ("2026-02-29T09:00:00Z", "no such date"),
            ("2026-01-05T24:00:00Z", "no such time"),
            ("2026/01/05T09:00:00Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("2026-01-05T09:00:0xZ", "bad second"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
