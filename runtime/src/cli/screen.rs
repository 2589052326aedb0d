//! `switchyard screen [--policy POLICY] CASE...`: a verification policy
//! tried on recorded findings, locally, through the same ruling and the
//! same fallback as a real call (`crate::screen::rule` and `decide`).
//!
//! A case is a JSON file: either a call's decision log (the array that
//! `GET /v1/calls/{id}/log` answers, or the lines `switchyard logs --json`
//! prints), whose `verified` entry holds the findings the runtime
//! recorded; or a case written by hand (`examples/screening/*.json`):
//!
//! ```json
//! {"from": "+15550100", "to": "100", "headers": [],
//!  "findings": {"provider": {"answer": "Denied", "provider": "a.example", "reason": "..."},
//!               "passport": {"status": "Absent", "attestation": null, "reason": "..."}}}
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::contract::Header;
use crate::contract::screening::{self, CallAttempt, Case, EvidencePassport, Findings};
use crate::router::{Entry, LogEntry};
use crate::sip::endpoint::Outcome;
use crate::wasm::{TenantScope, WasmPolicy};

use super::check::host;
use super::{CliError, default_cache_dir, read};

#[derive(Debug, clap::Args)]
pub struct ScreenArgs {
    /// The verification-policy component; without one, the default
    /// policy rules (what a call of an account without one gets).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Cases: decision logs of recorded calls, or hand-written cases.
    #[arg(required = true)]
    pub cases: Vec<PathBuf>,
    /// Print one JSON object per case instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where compiled components are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// A hand-written case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    from: String,
    to: String,
    #[serde(default)]
    headers: Vec<Header>,
    findings: Findings,
}

pub fn screen(args: ScreenArgs) -> Result<ExitCode, CliError> {
    let cases = (args.cases.iter())
        .map(|path| Ok((path, case(path)?)))
        .collect::<Result<Vec<_>, CliError>>()?;
    let policy = match &args.policy {
        Some(path) => Some(load(path, &args.cache_dir)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    let mut out = std::io::stdout().lock();
    for (path, case) in cases {
        let name = path.display().to_string();
        let (ruled, by) = runtime.block_on(crate::screen::rule(policy.as_ref(), &name, &case));
        let screened = crate::screen::decide(case.call, case.findings, ruled, by);
        let verdict = match &screened.outcome {
            Outcome::Admit => match &screened.verification.label {
                Some(label) => format!("admitted, labelled {label}"),
                None => "admitted, unlabelled".into(),
            },
            Outcome::Challenge(handler) => format!("challenged: handler {handler} runs"),
            Outcome::Reject { status, reason } => format!("rejected {status} ({reason})"),
        };
        let by = screened.screening.as_ref().map_or("", |s| s.by.as_str());
        let line = if args.json {
            serde_json::json!({
                "case": name,
                "outcome": verdict,
                "verification": screened.verification,
                "screening": screened.screening,
            })
            .to_string()
        } else {
            format!(
                "{name}: {verdict}, by {by}\n  findings: {}",
                screened.reason
            )
        };
        let _ = writeln!(out, "{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn load(path: &Path, cache_dir: &Option<PathBuf>) -> Result<WasmPolicy, CliError> {
    let bytes = read(path)?;
    let refused = |e: &dyn std::fmt::Display| CliError::Refused(format!("{}: {e}", path.display()));
    let host = host(&cache_dir.clone().unwrap_or_else(default_cache_dir))?;
    let component = host.load_policy(&bytes).map_err(|e| refused(&e))?;
    host.policy(&component, TenantScope::new("sim-tenant"))
        .map_err(|e| refused(&e))
}

/// The case in the file at `path`.
fn case(path: &Path) -> Result<Case, CliError> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| CliError::Usage(format!("{} is not UTF-8 text", path.display())))?;
    let bad = |why: String| CliError::Usage(format!("{}: {why}", path.display()));
    let (call, findings) = match serde_json::from_str::<Written>(&text) {
        Ok(w) => {
            let call = CallAttempt {
                from: w.from,
                to: w.to,
                headers: w.headers,
            };
            (call, w.findings)
        }
        Err(written) => from_log(&text).map_err(|why| {
            bad(format!(
                "neither a case ({written}) nor a decision log with findings ({why})"
            ))
        })?,
    };
    // The log keeps the reasons, not 0.2.0's kind of invalid PASSporT.
    let evidence = screening::evidence(&findings, EvidencePassport::InvalidSignature);
    Ok(Case {
        call,
        findings,
        evidence,
    })
}

/// The call and findings a decision log recorded.
fn from_log(text: &str) -> Result<(CallAttempt, Findings), String> {
    let entries: Vec<LogEntry> = match serde_json::from_str(text) {
        Ok(entries) => entries,
        Err(_) => (text.lines())
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not log entries: {e}"))?,
    };
    let screening = entries.into_iter().find_map(|e| match e.entry {
        Entry::Verified {
            screening: Some(s), ..
        } => Some(s),
        _ => None,
    });
    let screening = screening.ok_or("it has no `verified` entry with findings")?;
    Ok((screening.call, screening.findings))
}
