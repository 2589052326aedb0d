//! The Wasm host the rest of the runtime sees: load a component once, then
//! run it per event as a [`CallHandler`].
//!
//! ```text
//!   WasmHost::load(bytes) ─▶ check_header ─▶ cache (memory / disk / compile)
//!        │                    ─▶ inspect + typecheck ─▶ Arc<LoadedComponent>
//!        ▼                                               (component::Entry)
//!   WasmHost::handler(component, TenantScope) ─▶ WasmHandler
//!        │
//!        ▼ invoke(InvokeRequest), per event:
//!   HostState::new (Entropy: fresh, or recorded when replaying)
//!        ─▶ Store (limiter, epoch deadline) ─▶ instantiate_async
//!        ─▶ handle(ctx, event) ─▶ Store dropped ─▶ Invocation
//!           │ trap / interrupt / refused growth / wall timeout / panic
//!           └──▶ GuestFailure (never a Rust error, never a panic)
//! ```
//!
//! Nothing of one event survives into the next: the store, its instance
//! and its WASI context are dropped when `invoke` returns, so a guest that
//! trapped leaves the host exactly as healthy as before.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};

use super::cache::{CacheError, CacheStats, ComponentCache, ContentHash, LoadSource};
use super::component::{self, ComponentInfo, LoadError, Stage, World};
use super::config::{ConfigError, GuestLimits, HostConfig};
use super::engine::{self, EngineError, EpochTicker};
use super::entropy::Entropy;
use super::host::{Answers, HostOutcome, HostState};
use super::output::GuestOutput;
use crate::kv::{Kv, KvBackend};
use switchyard_contract::guest::{
    BoxFuture, CallHandler, CallVars, GuestFailure, Invocation, InvokeRequest,
};
use switchyard_contract::screening::{Case, Ruling};
use switchyard_contract::{Context, Event, HandlerError, Plan};

/// The Wasm host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Engine, linker, component cache and key-value store, shared by every
/// handler. Cheap to clone. The epoch ticker runs while the host or any
/// handler made from it is alive.
#[derive(Clone)]
pub struct WasmHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    config: HostConfig,
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache<LoadedComponent>,
    kv: Kv,
    /// Set once the runtime's client registry exists; until then, and
    /// without clients, every identity is offline.
    presence: std::sync::OnceLock<crate::presence::Presence>,
    /// The answer until then (made once: no allocation per event).
    nobody: crate::presence::Presence,
    _ticker: EpochTicker,
}

/// A component validated, compiled and linked once, ready to instantiate
/// per event.
pub struct LoadedComponent {
    hash: ContentHash,
    info: ComponentInfo,
    source: LoadSource,
    entry: component::Entry,
}

impl LoadedComponent {
    /// sha256 of the component's bytes.
    pub fn hash(&self) -> &ContentHash {
        &self.hash
    }

    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// Where the compiled code came from when this was first loaded.
    pub fn source(&self) -> LoadSource {
        self.source
    }
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("hash", &self.hash)
            .field("info", &self.info)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Whose events a handler decides on, and within which limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    pub tenant: Arc<str>,
    /// `None`: the host's [`HostConfig::default_limits`].
    pub limits: Option<GuestLimits>,
}

impl TenantScope {
    pub fn new(tenant: impl Into<Arc<str>>) -> Self {
        Self {
            tenant: tenant.into(),
            limits: None,
        }
    }

    pub fn with_limits(mut self, limits: GuestLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

impl WasmHost {
    /// Starts the engine (reserving the pool), the epoch ticker, and opens
    /// the component cache directory.
    pub fn new(config: HostConfig, kv: impl KvBackend) -> Result<Self, HostError> {
        let kv: Kv = Arc::new(kv);
        let engine = engine::build_engine(&config)?;
        let linker = engine::build_linker(&engine)?;
        let cache = ComponentCache::open(config.cache_dir(), &engine)?;
        let ticker = EpochTicker::start(&engine, config.epoch_tick())?;
        Ok(Self {
            inner: Arc::new(HostInner {
                config,
                engine,
                linker,
                cache,
                kv,
                presence: std::sync::OnceLock::new(),
                nobody: Arc::new(crate::presence::Nobody),
                _ticker: ticker,
            }),
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    pub fn kv(&self) -> &Kv {
        &self.inner.kv
    }

    /// Where guests' `presence.lookup` is answered from (once; later
    /// calls are ignored).
    pub fn set_presence(&self, presence: crate::presence::Presence) {
        let _ = self.inner.presence.set(presence);
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Says which world `bytes` implement, or exactly what is wrong with
    /// them (`switchyard check`). Compiles, so the next `load` is cheap.
    /// CPU-heavy on first sight of a component: call it off the async
    /// runtime (`spawn_blocking`).
    pub fn inspect(&self, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        component::check_header(bytes)?;
        let hash = ContentHash::of(bytes);
        if let Some(loaded) = self.inner.cache.loaded(&hash) {
            return Ok(loaded.info.clone());
        }
        let (component, _) = self.compile(&hash, bytes)?;
        let (info, _) =
            component::inspect(&self.inner.engine, &self.inner.linker, &component, bytes)?;
        Ok(info)
    }

    /// Validates, compiles (or fetches from cache) and links a call-handler
    /// component. Loading the same bytes again while the first result is
    /// alive returns it. CPU-heavy on first sight: call it off the async
    /// runtime (`spawn_blocking`).
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedComponent>, LoadError> {
        self.load_as(bytes, World::CallHandler)
    }

    /// [`WasmHost::load`] for a verification-policy component.
    pub fn load_policy(&self, bytes: &[u8]) -> Result<Arc<LoadedComponent>, LoadError> {
        self.load_as(bytes, World::VerificationPolicy)
    }

    fn load_as(&self, bytes: &[u8], world: World) -> Result<Arc<LoadedComponent>, LoadError> {
        component::check_header(bytes)?;
        let hash = ContentHash::of(bytes);
        if let Some(loaded) = self.inner.cache.loaded(&hash) {
            if loaded.info.world != world {
                return Err(LoadError::WrongWorld {
                    found: loaded.info.world,
                    expected: world,
                });
            }
            return Ok(loaded);
        }
        let (component, source) = self.compile(&hash, bytes)?;
        let (info, pre) =
            component::inspect(&self.inner.engine, &self.inner.linker, &component, bytes)?;
        if info.world != world {
            return Err(LoadError::WrongWorld {
                found: info.world,
                expected: world,
            });
        }
        let entry = component::entry(&component, &info, pre)?;
        let loaded = Arc::new(LoadedComponent {
            hash,
            info,
            source,
            entry,
        });
        self.inner.cache.remember(hash, &loaded);
        tracing::info!(component = %hash, ?source, %world, "loaded component");
        Ok(loaded)
    }

    /// A handler running `component` for `scope`'s tenant. Fails when the
    /// tenant's limits do not fit the pool.
    pub fn handler(
        &self,
        component: &Arc<LoadedComponent>,
        scope: TenantScope,
    ) -> Result<WasmHandler, ConfigError> {
        Ok(WasmHandler(self.sandbox(component, scope)?))
    }

    /// The verification policy `component` (from [`WasmHost::load_policy`])
    /// for `scope`'s tenant, within the tenant's limits.
    pub fn policy(
        &self,
        component: &Arc<LoadedComponent>,
        scope: TenantScope,
    ) -> Result<WasmPolicy, ConfigError> {
        Ok(WasmPolicy(self.sandbox(component, scope)?))
    }

    fn sandbox(
        &self,
        component: &Arc<LoadedComponent>,
        scope: TenantScope,
    ) -> Result<Sandbox, ConfigError> {
        let config = &self.inner.config;
        let limits = scope.limits.unwrap_or(config.default_limits());
        config.check_guest_limits(&limits)?;
        Ok(Sandbox {
            host: Arc::clone(&self.inner),
            component: Arc::clone(component),
            tenant: scope.tenant,
            deadline_ticks: config.deadline_ticks(limits.deadline),
            limits,
        })
    }

    fn compile(
        &self,
        hash: &ContentHash,
        bytes: &[u8],
    ) -> Result<(Component, LoadSource), LoadError> {
        self.inner
            .cache
            .compile(&self.inner.engine, hash, bytes)
            .map_err(|e| LoadError::Invalid {
                reason: format!("{e:#}"),
            })
    }
}

/// Host-import answers for a replayed event (`crate::replay`): the kv
/// imports reach a scratch store instead of the host's, the clock answers
/// recorded readings, WASI clocks and random numbers come from the
/// recorded entropy.
#[derive(Clone)]
pub struct Recorded {
    pub kv: Kv,
    /// Presence answers ([`crate::presence::Replayed`] on a replay).
    pub presence: crate::presence::Presence,
    /// `now-ms` answers, in order; the last one repeats. Empty: the
    /// entropy's instant.
    pub clock_ms: Vec<u64>,
    pub entropy: Entropy,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("clock_ms", &self.clock_ms)
            .field("entropy", &self.entropy)
            .finish_non_exhaustive()
    }
}

/// The host's presence backend, or nobody present.
fn presence_of(host: &HostInner) -> crate::presence::Presence {
    Arc::clone(host.presence.get().unwrap_or(&host.nobody))
}

/// A tenant's component as a [`CallHandler`]: a fresh instance per event.
pub struct WasmHandler(Sandbox);

/// A tenant's verification-policy component: a fresh instance per call.
pub struct WasmPolicy(Sandbox);

/// A tenant's component within the tenant's limits: what a handler and a
/// policy both run in.
struct Sandbox {
    host: Arc<HostInner>,
    component: Arc<LoadedComponent>,
    tenant: Arc<str>,
    limits: GuestLimits,
    deadline_ticks: u64,
}

/// What a sandbox runs: one call of the component's entry function.
enum Job<'a> {
    Handle(&'a Context, &'a Event),
    Screen(&'a Case),
}

/// What the entry function returned.
enum Done {
    Handled(Result<Plan, HandlerError>),
    Screened(Result<Ruling, String>),
}

impl WasmHandler {
    pub fn component(&self) -> &Arc<LoadedComponent> {
        &self.0.component
    }

    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    pub fn limits(&self) -> &GuestLimits {
        &self.0.limits
    }

    /// Decides on `request` as [`CallHandler::invoke`] does, with the kv,
    /// clock and WASI clock and random imports answered from `recorded`.
    pub async fn replay(&self, request: InvokeRequest, recorded: Recorded) -> Invocation {
        self.run(request, Some(recorded)).await
    }

    async fn run(&self, request: InvokeRequest, recorded: Option<Recorded>) -> Invocation {
        let start = Instant::now();
        let InvokeRequest { ctx, event, vars } = request;
        // The router gets the variables back unchanged when the guest fails.
        let vars_before = vars.clone();
        let answers = self.0.answers(recorded);
        let (done, host) = (self.0)
            .execute(&ctx.call_id, vars, answers, Job::Handle(&ctx, &event))
            .await;
        let outcome = match done {
            Ok(Done::Handled(Ok(plan))) => Ok(plan),
            Ok(Done::Handled(Err(handler_error))) => Err(GuestFailure::Handler(handler_error)),
            Ok(Done::Screened(_)) => unreachable!("a handler's job is Handle"),
            Err(failure) => Err(failure),
        };
        let vars = match &outcome {
            Ok(_) => host.vars,
            Err(failure) => {
                tracing::warn!(tenant = &*self.0.tenant, call_id = %ctx.call_id, component = %self.0.component.hash, %failure, "guest failed");
                vars_before
            }
        };
        Invocation {
            outcome,
            vars,
            imports: host.imports,
            elapsed: start.elapsed(),
        }
    }
}

impl WasmPolicy {
    pub fn component(&self) -> &Arc<LoadedComponent> {
        &self.0.component
    }

    /// The policy's ruling on `case`. `Ok(Err(text))`: a 0.2.0 policy's
    /// label of its own words. `label` names the call in the guest's log
    /// lines (its SIP Call-ID).
    pub async fn screen(
        &self,
        label: &str,
        case: &Case,
    ) -> Result<Result<Ruling, String>, GuestFailure> {
        let answers = self.0.answers(None);
        let job = Job::Screen(case);
        match self.0.execute(label, CallVars::new(), answers, job).await.0 {
            Ok(Done::Screened(ruling)) => Ok(ruling),
            Ok(Done::Handled(_)) => unreachable!("a policy's job is Screen"),
            Err(failure) => {
                tracing::warn!(tenant = &*self.0.tenant, call = label, component = %self.0.component.hash, %failure, "verification policy failed");
                Err(failure)
            }
        }
    }
}

impl Sandbox {
    fn answers(&self, recorded: Option<Recorded>) -> Answers {
        match recorded {
            Some(r) => Answers {
                kv: r.kv,
                presence: r.presence,
                clock: VecDeque::from(r.clock_ms),
                entropy: r.entropy,
            },
            None => Answers {
                kv: self.host.kv.clone(),
                presence: presence_of(&self.host),
                clock: VecDeque::new(),
                entropy: Entropy::fresh(),
            },
        }
    }

    /// Runs `job` in a fresh instance within the limits; whatever goes
    /// wrong is a [`GuestFailure`], never a Rust error or a panic.
    async fn execute(
        &self,
        call_id: &str,
        vars: CallVars,
        answers: Answers,
        job: Job<'_>,
    ) -> (Result<Done, GuestFailure>, HostOutcome) {
        let config = &self.host.config;
        let state = HostState::new(
            Arc::clone(&self.tenant),
            call_id,
            vars,
            answers,
            &self.limits,
            config.guest_output_bytes(),
        );
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|state| state.limiter());
        store.set_epoch_deadline(self.deadline_ticks);

        let ran = {
            let entry = &self.component.entry;
            let call = async {
                match job {
                    Job::Handle(ctx, event) => {
                        entry.run(&mut store, ctx, event).await.map(Done::Handled)
                    }
                    Job::Screen(case) => entry.screen(&mut store, case).await.map(Done::Screened),
                }
            };
            let mut call = std::pin::pin!(call);
            // Epochs only interrupt running wasm; this bounds a guest parked
            // in a host call (a WASI sleep, a stalled storage request) too.
            tokio::time::timeout(config.invocation_timeout(), CatchUnwind(call.as_mut())).await
        };

        let host = store.into_data().into_outcome();
        host.output.finish();
        let done = match ran {
            Ok(Ok(Ok(done))) => Ok(done),
            Ok(Ok(Err((stage, error)))) => {
                Err(self.classify(stage, &error, host.refused_memory, &host.output))
            }
            Ok(Err(panic)) => {
                let message = panic_text(&*panic);
                tracing::error!(
                    tenant = &*self.tenant,
                    call_id,
                    panic = message,
                    "host panicked while running a guest"
                );
                Err(GuestFailure::Unavailable(format!(
                    "host error while running the guest: {message}"
                )))
            }
            Err(_) => Err(GuestFailure::Deadline {
                limit_ms: duration_ms(config.invocation_timeout()),
            }),
        };
        (done, host)
    }

    fn classify(
        &self,
        stage: Stage,
        error: &wasmtime::Error,
        refused_memory: Option<usize>,
        output: &GuestOutput,
    ) -> GuestFailure {
        let trap = error.downcast_ref::<Trap>();
        if matches!(trap, Some(Trap::Interrupt)) {
            return GuestFailure::Deadline {
                limit_ms: duration_ms(self.limits.deadline),
            };
        }
        // Refused growth shows up as whatever the guest does next (Rust
        // aborts with `unreachable`, instantiation fails outright), so the
        // limiter's memory of it decides, not the trap code.
        if refused_memory.is_some() {
            return GuestFailure::MemoryCap {
                limit_bytes: self.limits.memory_bytes,
            };
        }
        match (stage, trap) {
            (Stage::Instantiate, None) => {
                GuestFailure::Unavailable(format!("cannot instantiate the component: {error:#}"))
            }
            (Stage::Convert, _) => GuestFailure::Unavailable(format!(
                "the component's contract ({}) cannot carry this: {error:#}",
                self.component.info.contract
            )),
            _ => GuestFailure::Trap(trap_summary(error, output)),
        }
    }
}

impl CallHandler for WasmHandler {
    fn invoke(&self, request: InvokeRequest) -> BoxFuture<'_, Invocation> {
        Box::pin(self.run(request, None))
    }

    fn hears_notices(&self) -> bool {
        self.0.component.info.notices
    }
}

/// One line for a tenant: the trap, the guest's panic message if it
/// printed one, and the innermost guest frames.
fn trap_summary(error: &wasmtime::Error, output: &GuestOutput) -> String {
    let mut summary = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    if let Some(panic) = output.panic_message() {
        summary.push_str("; ");
        summary.push_str(&panic);
    }
    if let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() {
        // Guests are mostly Rust; names from other languages pass through
        // `demangle` unchanged.
        let frames: Vec<String> = backtrace
            .frames()
            .iter()
            .filter_map(|f| f.func_name())
            .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
            .filter(|name| !is_runtime_frame(name))
            .take(3)
            .collect();
        if !frames.is_empty() {
            summary.push_str("; in ");
            summary.push_str(&frames.join(" ← "));
        }
    }
    summary.replace(['\n', '\r'], " ")
}

/// Frames of the guest's language runtime (panic machinery, allocator),
/// which say nothing about where the guest's own code failed.
fn is_runtime_frame(name: &str) -> bool {
    const RUNTIME: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "<std::",
        "<core::",
        "<alloc::",
        "__rust",
        "rust_panic",
        "rust_begin_unwind",
        "abort",
        "dlmalloc",
        "__rdl_",
        "__wasm_",
        "wit_bindgen",
    ];
    RUNTIME.iter().any(|prefix| name.starts_with(prefix))
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Turns a panic while polling into a value, so a host bug met by one
/// guest fails that event instead of the router's task.
struct CatchUnwind<'a, F>(Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_frames_are_skipped_in_summaries() {
        assert!(is_runtime_frame("core::panicking::panic_fmt"));
        assert!(is_runtime_frame("__rust_start_panic"));
        assert!(!is_runtime_frame("guest_trap::handle"));
    }

    #[tokio::test]
    async fn a_panic_inside_the_future_becomes_an_error_value() {
        let fut = async {
            if true {
                panic!("boom");
            }
        };
        let mut fut = std::pin::pin!(fut);
        let result: Result<(), _> = CatchUnwind(fut.as_mut()).await;
        assert_eq!(panic_text(&*result.unwrap_err()), "boom");
    }
}
