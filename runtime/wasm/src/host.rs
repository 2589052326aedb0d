//! Per-event host state: everything one guest instance may reach, built
//! fresh for each event and dropped with its `Store`.
//!
//! ```text
//!   InvokeRequest + TenantScope + Entropy (+ recorded kv/clock when replaying)
//!          │ HostState::new (no preopens, env, args or network)
//!          ▼
//!   HostState ─┬─ wasi + table ─────▶ WasiView (wasmtime-wasi), clocks and
//!              │                      random numbers from the Entropy
//!              ├─ limiter ──────────▶ Store::limiter (memory/table caps)
//!              └─ call: CallState ──▶ small views, one per capability:
//!                   tenant, vars,       LogView, KvView, ClockView, VarsView
//!                   imports, kv,        (imports.rs)
//!                   output
//!          │ after the call: into_parts()
//!          ▼
//!   vars, import records, limiter verdict ──▶ Invocation
//! ```
//!
//! The tenant id lives here, set by the host from the handler's scope; no
//! import takes it from the guest.

use std::collections::VecDeque;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::config::GuestLimits;
use super::entropy::Entropy;
use super::imports::{ClockView, KvView, LogView, PresenceView, VarsView};
use super::output::{GuestOutput, Stream};
use crate::kv::Kv;
use crate::presence::Presence;
use switchyard_contract::guest::{CallVars, ImportRecord};

/// The `T` of every `Store<T>` the Wasm host creates.
pub struct HostState {
    /// Built at the guest's first WASI call: most events make none, and
    /// building one (pipes, a reseeded RNG) was ~2 % of a call's CPU.
    wasi: Option<WasiCtx>,
    entropy: Entropy,
    table: ResourceTable,
    limiter: GuestLimiter,
    call: CallState,
}

/// What the Switchyard imports of one event work on.
struct CallState {
    tenant: Arc<str>,
    vars: CallVars,
    imports: Vec<ImportRecord>,
    kv: Kv,
    presence: Presence,
    /// Recorded clock readings to answer with (replay); empty: `event_ms`.
    clock: VecDeque<u64>,
    /// The event's instant, ms since 1970 (its [`Entropy`]).
    event_ms: u64,
    output: Arc<GuestOutput>,
}

/// What is left of a [`HostState`] once its guest has run.
pub(crate) struct HostOutcome {
    pub(crate) vars: CallVars,
    pub(crate) imports: Vec<ImportRecord>,
    /// The memory size the limiter refused, if it refused one.
    pub(crate) refused_memory: Option<usize>,
    pub(crate) output: Arc<GuestOutput>,
}

/// Where one event's storage, clock and randomness answers come from:
/// the host's own, or a replay's recording.
pub(crate) struct Answers {
    pub(crate) kv: Kv,
    pub(crate) presence: Presence,
    /// Recorded `now-ms` readings; empty: the entropy's instant.
    pub(crate) clock: VecDeque<u64>,
    pub(crate) entropy: Entropy,
}

impl HostState {
    pub(crate) fn new(
        tenant: Arc<str>,
        call_id: &str,
        vars: CallVars,
        answers: Answers,
        limits: &GuestLimits,
        output_budget: usize,
    ) -> Self {
        let Answers {
            kv,
            presence,
            clock,
            entropy,
        } = answers;
        let output = Arc::new(GuestOutput::new(
            Arc::clone(&tenant),
            call_id.to_owned(),
            output_budget,
        ));
        Self {
            wasi: None,
            entropy,
            table: ResourceTable::new(),
            limiter: GuestLimiter::new(limits),
            call: CallState {
                tenant,
                vars,
                // Recorded whatever the guest reads: std asks for a
                // HashMap seed without the host seeing it as a call.
                imports: vec![entropy.record()],
                kv,
                presence,
                clock,
                event_ms: entropy.unix_ms,
                output,
            },
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }

    pub(crate) fn into_outcome(self) -> HostOutcome {
        HostOutcome {
            vars: self.call.vars,
            imports: self.call.imports,
            refused_memory: self.limiter.refused_memory,
            output: self.call.output,
        }
    }

    pub(crate) fn log(&mut self) -> LogView<'_> {
        LogView::new(&self.call.output, &mut self.call.imports)
    }

    pub(crate) fn kv(&mut self) -> KvView<'_> {
        KvView::new(&self.call.kv, &self.call.tenant, &mut self.call.imports)
    }

    pub(crate) fn presence(&mut self) -> PresenceView<'_> {
        PresenceView::new(
            &self.call.presence,
            &self.call.tenant,
            &mut self.call.imports,
        )
    }

    pub(crate) fn clock(&mut self) -> ClockView<'_> {
        ClockView::new(
            &mut self.call.clock,
            self.call.event_ms,
            &mut self.call.imports,
        )
    }

    pub(crate) fn vars(&mut self) -> VarsView<'_> {
        VarsView::new(&mut self.call.vars, &mut self.call.imports)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (output, entropy) = (&self.call.output, self.entropy);
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| wasi_ctx(output, entropy)),
            table: &mut self.table,
        }
    }
}

/// The guest's WASI: output to its pipes, clocks and randomness from the
/// event's entropy. The builder's defaults already deny filesystem (no
/// preopens), env, args and every socket address; TCP/UDP/name lookup are
/// switched off too so a guest fails at the first call, not at connect.
fn wasi_ctx(output: &Arc<GuestOutput>, entropy: Entropy) -> WasiCtx {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(output.pipe(Stream::Stdout))
        .stderr(output.pipe(Stream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    entropy.give_to(&mut wasi);
    wasi.build()
}

/// Enforces a tenant's [`GuestLimits`] on one store and remembers whether
/// it refused memory, so a trap that follows can be reported as a memory
/// cap rather than a generic trap.
pub(crate) struct GuestLimiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    refused_memory: Option<usize>,
}

impl GuestLimiter {
    fn new(limits: &GuestLimits) -> Self {
        Self {
            memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_elements: limits.table_elements as usize,
            instances: limits.instances as usize,
            refused_memory: None,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            // Refuse (memory.grow returns -1) rather than trap: a guest may
            // recover, and if it does not, the trap is classified by this.
            self.refused_memory = Some(desired);
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_refuses_growth_past_the_cap_and_remembers_it() {
        let mut limiter = GuestLimiter::new(&GuestLimits {
            memory_bytes: 1 << 20,
            ..GuestLimits::default()
        });
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.refused_memory, None);
        assert!(!limiter.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(limiter.refused_memory, Some(2 << 20));
    }

    #[test]
    fn the_limiter_respects_a_smaller_module_maximum() {
        let mut limiter = GuestLimiter::new(&GuestLimits::default());
        assert!(!limiter.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
        assert_eq!(limiter.refused_memory, None);
    }
}
