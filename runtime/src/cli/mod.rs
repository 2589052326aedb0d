//! The `switchyard` command line: what guest authors and operators run.
//!
//! * `check COMPONENT` — which world a component implements, or exactly
//!   what is wrong with it.
//! * `simulate COMPONENT SCRIPT` — one call through the real router and Wasm
//!   host, with a scripted caller in place of a phone.
//!
//! Exit codes: 0 success; 1 the component or script was refused; 2 bad
//! usage or an unreadable file; 3 (simulate) the call ran, but a handler
//! failed and the fallback played.

mod check;
mod simulate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use check::check;
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
    Simulate(SimulateArgs),
}

/// What a command failed on, and the exit code that goes with it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Refused(_) => ExitCode::from(1),
            CliError::Usage(_) => ExitCode::from(2),
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { component } => check(&component),
        Command::Simulate(args) => simulate(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
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
