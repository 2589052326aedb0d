//! `switchyard check COMPONENT`.

use std::path::Path;
use std::process::ExitCode;

use crate::router::not_built;
use crate::store::{KvLimits, KvStore};
use crate::wasm::{ContentHash, Contract, HostConfig, WasmHost, World};

use super::{CliError, default_cache_dir, read};

pub fn check(path: &Path) -> Result<ExitCode, CliError> {
    let bytes = read(path)?;
    let host = host(&default_cache_dir())?;
    let info = host
        .inspect(&bytes)
        .map_err(|e| CliError::Refused(format!("{}: {e}", path.display())))?;
    println!("{}: {} component", path.display(), info.world);
    println!("  exports  {}", info.export);
    if info.contract != Contract::ALL[0] {
        println!(
            "  contract {} (an earlier version: it runs unchanged; rebuild with the current SDK for what {} added)",
            info.contract,
            Contract::ALL[0]
        );
    }
    println!(
        "  size     {} bytes, sha256 {}",
        bytes.len(),
        ContentHash::of(&bytes)
    );
    println!("  imports  {}", info.imports.join("\n           "));
    if info.world == World::CallHandler {
        println!(
            "  notices  {}",
            if info.notices {
                "on (hears status-changed and hangup)"
            } else {
                "off (not run for status-changed and hangup)"
            }
        );
        // What no plan may use yet: the same messages a refused plan gets.
        let missing: Vec<String> = not_built().map(|n| n.to_string()).collect();
        println!("  not yet  {}", missing.join("\n           "));
    }
    Ok(ExitCode::SUCCESS)
}

/// A host for the CLI: compiled components cached in the user's cache
/// directory, key-value storage in memory unless a file is named.
pub(super) fn host(cache_dir: &Path) -> Result<WasmHost, CliError> {
    let config = HostConfig::builder()
        .cache_dir(cache_dir)
        .build()
        .map_err(|e| CliError::Usage(format!("host configuration: {e}")))?;
    let kv = KvStore::in_memory(KvLimits::default())
        .map_err(|e| CliError::Usage(format!("key-value store: {e}")))?;
    WasmHost::new(config, kv).map_err(|e| CliError::Usage(format!("starting the Wasm host: {e}")))
}
