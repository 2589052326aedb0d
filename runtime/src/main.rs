//! The `switchyard` binary; the commands live in `switchyard::cli`.

use std::process::ExitCode;

use clap::Parser;

// Signalling allocates many small, short-lived buffers per message; glibc's
// malloc showed ~10 % of a call's CPU in profiles, mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use switchyard::cli::{Cli, run};

fn main() -> ExitCode {
    // Guest log lines are shown in the command's own output; tracing is for
    // the runtime's diagnostics: warnings and errors unless SWITCHYARD_LOG
    // says otherwise (SWITCHYARD_LOG=info to see more).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run(Cli::parse())
}
