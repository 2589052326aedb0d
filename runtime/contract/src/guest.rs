//! What the router needs from a call handler, whatever runs it.
//!
//! The router never talks to wasmtime: it asks a [`CallHandler`] to decide
//! on one event and gets an [`Invocation`] back — the plan (or why there is
//! none), the call variables as the guest left them, and every host-import
//! result the guest saw, for the decision log and replay.
//!
//! Implementations: `wasm::WasmHandler` (a tenant's component) and
//! [`NativeHandler`] (a Rust closure: benchmarks and router tests).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Context, Event, HandlerError, Plan};

/// Variables of one call, in name order (so logs and replays are stable).
pub type CallVars = BTreeMap<String, String>;

/// One event for a handler to decide on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvokeRequest {
    pub ctx: Context,
    pub event: Event,
    pub vars: CallVars,
}

/// The answer to an [`InvokeRequest`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Invocation {
    pub outcome: Result<Plan, GuestFailure>,
    /// Call variables after the guest ran (unchanged when it failed).
    pub vars: CallVars,
    /// Host imports the guest called, in order, with what they returned.
    pub imports: Vec<ImportRecord>,
    /// Wall time of the invocation, instantiation included.
    #[serde(with = "micros")]
    pub elapsed: Duration,
}

impl Invocation {
    /// An invocation that failed before the guest ran.
    pub fn failed(failure: GuestFailure, vars: CallVars) -> Self {
        Self {
            outcome: Err(failure),
            vars,
            imports: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// Why a handler produced no usable plan. Every variant sends the call to
/// the tenant's fallback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GuestFailure {
    /// The guest returned `handler-error`.
    #[error("handler returned an error: {0:?}")]
    Handler(HandlerError),
    /// The guest trapped (panic, unreachable, bad memory access...).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest ran past its per-event deadline and was interrupted.
    #[error("guest exceeded its {limit_ms} ms deadline")]
    Deadline { limit_ms: u64 },
    /// The guest tried to grow its memory past the cap.
    #[error("guest exceeded its {limit_bytes}-byte memory cap")]
    MemoryCap { limit_bytes: u64 },
    /// The plan broke a rule of the contract (found by the router).
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    /// No handler of that name is bound for the tenant (after `redirect`).
    #[error("no handler named {0:?}")]
    UnknownHandler(String),
    /// The handler could not be run at all (component failed to instantiate...).
    #[error("handler unavailable: {0}")]
    Unavailable(String),
}

/// One host import a guest called, and its result: enough to replay the
/// call against another component version without touching storage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "import", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ImportRecord {
    Log {
        level: String,
        message: String,
    },
    KvGet {
        key: String,
        result: Result<Option<Vec<u8>>, String>,
    },
    KvSet {
        key: String,
        len: usize,
        result: Result<(), String>,
    },
    KvDelete {
        key: String,
        result: Result<(), String>,
    },
    KvListKeys {
        prefix: String,
        limit: u32,
        result: Result<Vec<String>, String>,
    },
    ClockNow {
        ms: u64,
    },
    /// What the guest's WASI clocks and random numbers derived from in
    /// this event (`wasm::Entropy`): the wall clock read `unix_ms`, every
    /// random number came from `seed`. The event's first record.
    Entropy {
        unix_ms: u64,
        seed: u64,
    },
    VarGet {
        name: String,
        value: Option<String>,
    },
    VarSet {
        name: String,
        value: String,
    },
    VarRemove {
        name: String,
    },
    VarAll {
        count: usize,
    },
    /// `presence.lookup`: what the guest was told about `identity`.
    PresenceLookup {
        identity: String,
        status: String,
        text: Option<String>,
        devices: u32,
    },
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Anything that can decide on call events.
pub trait CallHandler: Send + Sync {
    /// Decide on one event. Never panics and never fails as a Rust error:
    /// every failure is a [`GuestFailure`] in the returned invocation.
    fn invoke(&self, request: InvokeRequest) -> BoxFuture<'_, Invocation>;

    /// Whether the handler hears informational events (`status-changed`,
    /// `hangup`). A handler that says no is not run for them at all: on a
    /// call that is refused at once, that halves the guest work. No
    /// default, so a wrapper cannot forget to pass it on.
    fn hears_notices(&self) -> bool;
}

/// The handlers a call may reach, by name (a call starts on one and may
/// `redirect` to another).
pub type Handlers = HashMap<String, Arc<dyn CallHandler>>;

/// Whether the handler named `name` hears notices; an unknown name does
/// (its invocation reports that it is missing, as for any event).
pub fn hears_notices(handlers: &Handlers, name: &str) -> bool {
    handlers.get(name).is_none_or(|h| h.hears_notices())
}

/// Runs the handler named in the request, or reports that there is none.
pub async fn invoke_named(handlers: &Handlers, request: InvokeRequest) -> Invocation {
    match handlers.get(&request.ctx.handler) {
        Some(handler) => handler.invoke(request).await,
        None => Invocation::failed(
            GuestFailure::UnknownHandler(request.ctx.handler.clone()),
            request.vars,
        ),
    }
}

/// A handler written in Rust and compiled into the host.
pub struct NativeHandler<F>(pub F);

impl<F> CallHandler for NativeHandler<F>
where
    F: Fn(&Context, &Event, &mut CallVars) -> Result<Plan, HandlerError> + Send + Sync,
{
    fn invoke(&self, request: InvokeRequest) -> BoxFuture<'_, Invocation> {
        // How long a decision took is a measurement for metrics, not state
        // a protocol core keeps: the native handler times itself as the
        // Wasm host does.
        #[allow(clippy::disallowed_methods)]
        let start = std::time::Instant::now();
        let mut vars = request.vars;
        let outcome =
            (self.0)(&request.ctx, &request.event, &mut vars).map_err(GuestFailure::Handler);
        Box::pin(std::future::ready(Invocation {
            outcome,
            vars,
            imports: Vec::new(),
            elapsed: start.elapsed(),
        }))
    }

    fn hears_notices(&self) -> bool {
        true
    }
}

mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
