//! `switchyard calls list` and `switchyard logs CALL`: finished calls and
//! their decision logs, read over REST.

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use super::CliError;
use super::remote::{Remote, RemoteArgs};
use crate::router::{DecisionLog, LogEntry};
use crate::simulate::describe_entry;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only calls that ended this way: completed, busy, rejected, canceled, failed.
    #[arg(long)]
    pub status: Option<String>,
    /// Only calls to this number.
    #[arg(long)]
    pub number: Option<String>,
    /// How many calls to show, newest first (at most 1000).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the calls as JSON, one per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The call's id (CA...), as `switchyard calls list` shows it.
    pub call: String,
    /// Print the entries as JSON lines (the stored format) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `switchyard calls list`: a table of the account's latest calls.
pub fn list(args: ListArgs) -> Result<ExitCode, CliError> {
    let remote = Remote::new(&args.remote)?;
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(status) = args.status {
        query.push(("status", status));
    }
    if let Some(number) = args.number {
        query.push(("number", number));
    }
    let page = remote.get(&["v1", "calls"], &query)?;
    let calls = page["data"].as_array().cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if args.json {
        for call in &calls {
            let _ = writeln!(out, "{call}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if calls.is_empty() {
        let _ = writeln!(out, "no calls");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |call: &Value, field: &str| match &call[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let rows: Vec<[String; 7]> = calls
        .iter()
        .map(|c| {
            [
                text(c, "id"),
                c["started_ms"].as_u64().map_or("-".into(), utc),
                text(c, "from"),
                text(c, "to"),
                text(c, "status"),
                format!("{}s", text(c, "duration_secs")),
                text(c, "handler"),
            ]
        })
        .collect();
    let head = [
        "CALL",
        "STARTED (UTC)",
        "FROM",
        "TO",
        "STATUS",
        "DURATION",
        "HANDLER",
    ];
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    if page["next"].is_string() {
        let _ = writeln!(out, "(more: raise --limit)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchyard logs CALL`: the call's decision log, one line per entry.
pub fn logs(args: LogsArgs) -> Result<ExitCode, CliError> {
    let remote = Remote::new(&args.remote)?;
    let entries = remote.get(&["v1", "calls", &args.call, "log"], &[])?;
    let entries = entries
        .as_array()
        .ok_or_else(|| CliError::Remote(format!("the log of {} is not a JSON array", args.call)))?;
    let mut out = std::io::stdout().lock();
    for entry in entries {
        let line = match serde_json::from_value::<LogEntry>(entry.clone()) {
            Ok(parsed) if !args.json => describe_entry(&parsed),
            // JSON as asked, or an entry this CLI does not know (a newer server).
            _ => entry.to_string(),
        };
        let _ = writeln!(out, "{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The decision log of `call`, fetched from the API.
pub fn fetch_log(remote: &Remote, call: &str) -> Result<DecisionLog, CliError> {
    let entries = remote.get(&["v1", "calls", call, "log"], &[])?;
    let entries: Vec<LogEntry> = serde_json::from_value(entries).map_err(|e| {
        CliError::Remote(format!(
            "the log of {call} has an entry this version cannot read: {e}"
        ))
    })?;
    let mut log = DecisionLog::default();
    for entry in entries {
        log.push(entry.at_ms, entry.entry);
    }
    Ok(log)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_000_000_999), "2026-11-18 11:06:40");
    }
}
