//! The `switchyard` command line: what guest authors and operators run.
//!
//! * `check COMPONENT` — which world a component implements, or exactly
//!   what is wrong with it.
//! * `simulate COMPONENT SCRIPT` — one call through the real router and Wasm
//!   host, with a scripted caller in place of a phone.
//! * `screen [--policy POLICY] CASE...` — a verification policy (or the
//!   default one) tried on recorded findings: a call's decision log, or a
//!   case written by hand; the same ruling and fallback as a real call.
//! * `serve` — the runtime itself.
//!
//! Clients of a running `serve`, over its REST API (`remote`: `--api URL`
//! or SWITCHYARD_API, default http://127.0.0.1:8080; `--account` /
//! SWITCHYARD_ACCOUNT and `--key` / SWITCHYARD_KEY, HTTP Basic):
//!
//! * `deploy COMPONENT --number N [--name NAME]` — upload the component's
//!   next version (`POST /v1/components/{name}`) and bind the number to it
//!   (`PUT /v1/numbers/{N}`).
//! * `calls list [--status S] [--number N] [--limit K]` — the latest
//!   finished calls, newest first.
//! * `logs CALL [--json]` — a call's decision log, line by line.
//! * `replay CALL --component NEW.wasm` — the call's recorded events
//!   against another component, with the recorded host-import results;
//!   prints where the plans first differ.
//!
//! Exit codes: 0 success; 1 the component or script was refused, or
//! (replay) a plan differs; 2 bad usage or an unreadable file (and, for
//! replay, a refused component, so 1 always means a difference); 3
//! (simulate) the call ran, but a handler failed and the fallback played;
//! 4 the REST API could not be reached or refused the request.

mod calls;
mod check;
mod deploy;
mod remote;
mod replay;
mod screen;
mod simulate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use calls::{ListArgs, LogsArgs};
pub use check::check;
pub use deploy::DeployArgs;
pub use remote::RemoteArgs;
pub use replay::ReplayArgs;
pub use screen::ScreenArgs;
pub use simulate::{SimulateArgs, simulate};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Programmable voice runtime extended with WebAssembly"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say which Switchyard world a component implements, or what is wrong with it.
    Check {
        /// The component (.wasm) to check.
        component: PathBuf,
    },
    /// Run one call through a component with a scripted caller.
    #[command(after_help = crate::simulate::script_help())]
    Simulate(SimulateArgs),
    /// Answer SIP calls: tenants, numbers and components from a TOML file,
    /// or the demo (IVR guest on 127.0.0.1:5060) without one.
    Serve {
        /// The config file (see examples/switchyard.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Upload a component and bind a number to it (REST client).
    Deploy(DeployArgs),
    /// Finished calls of the account (REST client).
    Calls {
        #[command(subcommand)]
        command: CallsCommand,
    },
    /// Show a finished call's decision log (REST client).
    Logs(LogsArgs),
    /// Re-run a recorded call against another component and show where the
    /// plans differ; exit 1 if one does (REST client).
    Replay(ReplayArgs),
    /// Try a verification policy on recorded findings (decision logs, or
    /// cases written by hand): what it rules and what the call would do.
    Screen(ScreenArgs),
}

#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// The latest finished calls, newest first.
    List(ListArgs),
}

/// What a command failed on, and the exit code that goes with it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
    /// The REST API could not be reached, or answered with an error.
    #[error("{0}")]
    Remote(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Refused(_) => ExitCode::from(1),
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Remote(_) => ExitCode::from(4),
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { component } => check(&component),
        Command::Simulate(args) => simulate(args),
        Command::Serve { config } => serve(config.as_deref()),
        Command::Deploy(args) => deploy::deploy(args),
        Command::Calls {
            command: CallsCommand::List(args),
        } => calls::list(args),
        Command::Logs(args) => calls::logs(args),
        Command::Replay(args) => replay::replay(args),
        Command::Screen(args) => screen::screen(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

fn serve(path: Option<&Path>) -> Result<ExitCode, CliError> {
    let config = match path {
        Some(path) => {
            crate::serve::Config::load(path).map_err(|e| CliError::Usage(e.to_string()))?
        }
        None => crate::serve::Config::demo(),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = config.workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    runtime
        .block_on(crate::serve::run(config))
        .map_err(|e| CliError::Refused(format!("{e:#}")))?;
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Where compiled components are kept between runs of the CLI.
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("switchyard").join("components")
}
