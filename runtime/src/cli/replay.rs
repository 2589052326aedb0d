//! `switchyard replay CALL --component NEW.wasm`: fetch a finished call's
//! decision log over REST and re-run its events locally against another
//! component (see [`crate::replay`]).
//!
//! Exit codes: 0 every replayed event got the recorded plan; 1 a plan
//! differs (the first difference is the last line); 2 bad usage, an
//! unreadable or refused component; 4 the API failed.

use std::path::PathBuf;
use std::process::ExitCode;

use super::calls::fetch_log;
use super::check::host;
use super::remote::{Remote, RemoteArgs};
use super::{CliError, default_cache_dir, read};
use crate::replay::{Verdict, replay as run};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The recorded call's id (CA...).
    pub call: String,
    /// The component to run the call's events against.
    #[arg(long)]
    pub component: PathBuf,
    /// Where compiled components are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn replay(args: ReplayArgs) -> Result<ExitCode, CliError> {
    let bytes = read(&args.component)?;
    let remote = Remote::new(&args.remote)?;
    let log = fetch_log(&remote, &args.call)?;
    let host = host(&args.cache_dir.clone().unwrap_or_else(default_cache_dir))?;
    let refused =
        |e: &dyn std::fmt::Display| CliError::Usage(format!("{}: {e}", args.component.display()));
    let component = host.load(&bytes).map_err(|e| refused(&e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    let report = runtime
        .block_on(run(&log, &host, &component))
        .map_err(|e| CliError::Usage(format!("replaying {}: {e}", args.call)))?;

    for replayed in &report.events {
        if !matches!(replayed.verdict, Verdict::Differs { .. }) {
            println!("{replayed}");
        }
    }
    let skipped = report.events.len() - report.same() - usize::from(report.difference().is_some());
    let skipped = if skipped > 0 {
        format!(" ({skipped} skipped)")
    } else {
        String::new()
    };
    match report.difference() {
        Some(first) => {
            println!(
                "{} decides differently from call {}{skipped}; the first difference:",
                args.component.display(),
                args.call
            );
            println!("{first}");
            Ok(ExitCode::from(1))
        }
        None => {
            println!(
                "no difference: {} of call {}'s events replayed, every plan the same{skipped}",
                report.same(),
                args.call
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
