//! The one wasmtime `Engine`, its epoch ticker and the `Linker` of every
//! import a guest may use.
//!
//! ```text
//!   HostConfig ──▶ build_engine ──▶ Engine (component model, pooling
//!                                   allocator, epoch interruption)
//!                        │
//!                        ├──▶ EpochTicker thread: increment_epoch() every tick
//!                        │    (stops when the ticker is dropped)
//!                        └──▶ build_linker ──▶ Linker<HostState>
//!                              WASI 0.2 (granting nothing) + voice:runtime/*
//! ```
//!
//! Everything here is built once per process; per-event work happens in
//! `handler.rs` against these shared, immutable values.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::config::HostConfig;
use super::host::HostState;
use super::imports;

/// The engine or linker could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// wasmtime refused the configuration (e.g. the pool's address space
    /// could not be reserved).
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
    /// Defining the host imports failed (a bug: names clash).
    #[error("cannot define host imports: {0}")]
    Linker(String),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(String),
}

/// Creates the engine for `config`.
pub(crate) fn build_engine(config: &HostConfig) -> Result<Engine, EngineError> {
    let p = config.pool();
    // With PAGEMAP_SCAN a freed slot is reset by rewriting only the pages
    // the guest dirtied, so keeping them resident is nearly free (ivr:
    // ~20 µs per event instead of ~35 µs). Without it, keeping pages means
    // a blind memset of the whole span, slower than madvise: keep none.
    let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
    let (memory_keep, table_keep) = if pagemap {
        (p.memory_keep_resident, p.table_keep_resident)
    } else {
        (0, 0)
    };
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(p.component_instances)
        .total_core_instances(p.core_instances)
        .total_memories(p.memories)
        .total_tables(p.tables)
        // Every in-flight event runs on its own fiber stack.
        .total_stacks(p.component_instances)
        .max_memory_size(p.max_memory_bytes as usize)
        .table_elements(p.max_table_elements as usize)
        .pagemap_scan(if pagemap { Enabled::Yes } else { Enabled::No })
        .linear_memory_keep_resident(memory_keep as usize)
        .table_keep_resident(table_keep as usize)
        // One flush (and its syscalls) per 16 freed slots, not per event.
        .decommit_batch_size(16);
    tracing::debug!(
        pagemap,
        memory_keep,
        table_keep,
        "pooling allocator slot reuse"
    );

    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| EngineError::Engine(format!("{e:#}")))
}

/// Creates the linker holding every import a guest may use. Built once;
/// `Linker::instantiate_pre` resolves a component against it at load time.
pub(crate) fn build_linker(engine: &Engine) -> Result<Linker<HostState>, EngineError> {
    let mut linker = Linker::new(engine);
    // Rust `wasm32-wasip2` std imports WASI even when a guest never touches
    // a file or socket, so every WASI 0.2 interface is defined; the per-event
    // WasiCtx grants nothing through them (see `host.rs`).
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| EngineError::Linker(format!("{e:#}")))?;
    imports::add_to_linker(&mut linker).map_err(|e| EngineError::Linker(format!("{e:#}")))?;
    super::imports_v0_1::add_to_linker(&mut linker)
        .map_err(|e| EngineError::Linker(format!("{e:#}")))?;
    Ok(linker)
}

/// Advances the engine's epoch every tick, so a guest's deadline (counted
/// in ticks) can interrupt it. Dropping the ticker stops and joins the
/// thread.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<Self, EngineError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                // A closed channel (the ticker dropped) ends the loop at
                // once instead of after the next tick.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| EngineError::Ticker(e.to_string()))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
