//! The `switchyard` binary; the commands live in `switchyard::cli`.

use std::process::ExitCode;

use clap::Parser;

// Signalling allocates many small, short-lived buffers per message; glibc's
// malloc showed ~10 % of a call's CPU in profiles, mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use switchyard::cli::{Cli, run};

/// mimalloc (v3) asks for transparent huge pages and purges memory freed a
/// second ago; each reuse then faults in and zeroes a whole 2 MiB page.
/// Profiles of refused calls showed that zeroing at 4 % of the CPU, and a
/// run without THP ~8 % less CPU per call (BENCHMARKS.md, `sip`). The
/// process flag makes every later fault a 4 KiB one, for the allocator
/// and the guests' pooled memories alike. mimalloc's `no_thp` feature
/// does the same for its v2 only, so it is done here.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only
    // and changes nothing but this process's page-fault policy.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
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
