//! `switchyard simulate COMPONENT SCRIPT`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::guest::{BoxFuture, CallHandler, Handlers, Invocation, InvokeRequest};
use crate::router::RouterConfig;
use crate::simulate::{Line, Script, SimClock, describe_line, parse_rfc3339, run_with_clock};

use crate::wasm::{Entropy, Kv, Recorded, TenantScope, WasmHandler, WasmHost};

use super::check::host;
use super::{CliError, default_cache_dir, read};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The call-handler component the call starts on.
    pub component: PathBuf,
    /// The caller script (see `examples/scripts/`).
    pub script: PathBuf,
    /// Print JSON lines (decision-log entries and caller actions) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Another handler the call may `redirect` to, as NAME=COMPONENT (repeatable).
    #[arg(long = "handler", value_name = "NAME=COMPONENT")]
    pub handlers: Vec<String>,
    /// When the call starts on the wall clock, as RFC 3339
    /// (2026-01-05T09:00:00Z); the guest's `clock` reads it, moved on by
    /// the simulated time. Overrides the script's `at` line; default: now.
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    pub at: Option<u64>,
    /// Tenant the call belongs to (scopes key-value storage).
    #[arg(long, default_value = "sim-tenant")]
    pub tenant: String,
    /// Where compiled components are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// The handler name of a component: its file name without `.wasm`.
fn handler_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "main".into(), |s| s.to_string_lossy().into_owned())
}

pub fn simulate(args: SimulateArgs) -> Result<ExitCode, CliError> {
    let script_text = String::from_utf8(read(&args.script)?)
        .map_err(|_| CliError::Usage(format!("{} is not UTF-8 text", args.script.display())))?;
    let script = Script::parse(&script_text)
        .map_err(|e| CliError::Refused(format!("{}: {e}", args.script.display())))?;
    let host = host(&args.cache_dir.clone().unwrap_or_else(default_cache_dir))?;
    let start_ms = args.at.or(script.at_ms).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    let clock = SimClock::starting_at(start_ms);

    let start = handler_name(&args.component);
    let mut named = vec![(start.clone(), args.component.clone())];
    for spec in &args.handlers {
        let (name, path) = spec.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--handler {spec:?}: expected NAME=COMPONENT"))
        })?;
        named.push((name.to_string(), PathBuf::from(path)));
    }
    let mut handlers = Handlers::new();
    for (name, path) in named {
        handlers.insert(name, load(&host, &path, &args.tenant, &clock)?);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    let json = args.json;
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) must not stop the call half-way, nor panic.
    let show = |line: Line<'_>| {
        let text = if json {
            // Log entries and caller lines hold only plain data: they serialise.
            serde_json::to_string(&line).unwrap_or_default()
        } else {
            describe_line(&line)
        };
        let _ = writeln!(out, "{text}");
    };
    let simulation = runtime
        .block_on(run_with_clock(
            &handlers,
            &start,
            script,
            RouterConfig::default(),
            &clock,
            show,
        ))
        .map_err(|e| CliError::Refused(format!("{}: {e}", args.script.display())))?;

    let summary = &simulation.summary;
    if !json {
        let _ = writeln!(
            std::io::stdout(),
            "call ended by {} after {} handler events; fallback ran {} time(s)",
            crate::simulate::wit_name(&summary.ended_by),
            summary.events,
            summary.fallbacks
        );
    }
    for step in &simulation.unused {
        eprintln!(
            "warning: script line {} (`{}`) was never reached",
            step.line, step.text
        );
    }
    Ok(if summary.fallbacks > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn load(
    host: &WasmHost,
    path: &Path,
    tenant: &str,
    clock: &SimClock,
) -> Result<Arc<dyn CallHandler>, CliError> {
    let bytes = read(path)?;
    let refused = |e: &dyn std::fmt::Display| CliError::Refused(format!("{}: {e}", path.display()));
    let component = host.load(&bytes).map_err(|e| refused(&e))?;
    let handler = host
        .handler(&component, TenantScope::new(tenant))
        .map_err(|e| refused(&e))?;
    Ok(Arc::new(SimulatedClockHandler {
        handler,
        kv: host.kv().clone(),
        clock: clock.clone(),
    }))
}

/// A component whose `clock` import reads the simulated call's clock
/// instead of the host's: each event is run with that one reading, and
/// with the host's own key-value store, through the host's replay entry.
struct SimulatedClockHandler {
    handler: WasmHandler,
    kv: Kv,
    clock: SimClock,
}

impl CallHandler for SimulatedClockHandler {
    fn invoke(&self, request: InvokeRequest) -> BoxFuture<'_, Invocation> {
        let now = self.clock.now_ms();
        // The guest's WASI clocks read the simulated time too; its random
        // numbers are seeded by the event's place in the call, so the same
        // script gives the same run (a guest author's CI can rely on it).
        let entropy = Entropy {
            unix_ms: now,
            seed: u64::from(request.ctx.sequence),
        };
        let answers = Recorded {
            kv: self.kv.clone(),
            // A simulated call has no clients: every identity is offline.
            presence: std::sync::Arc::new(crate::wasm::presence::Nobody),
            clock_ms: vec![now],
            entropy,
        };
        Box::pin(self.handler.replay(request, answers))
    }

    fn hears_notices(&self) -> bool {
        self.handler.hears_notices()
    }
}
