//! What a component is, or exactly what is wrong with it: the answer of
//! `switchyard check` and of an upload.
//!
//! ```text
//!   bytes ─▶ check_header ──▶ NotWasm | CoreModule
//!     │
//!     ▼ (cache.rs: validate + compile)       ──▶ Invalid
//!   Component
//!     ├─ exports name a Switchyard world?    ──▶ NoWorld
//!     ├─ Linker::instantiate_pre             ──▶ UnsupportedImports | Link
//!     └─ call-handler: `handle` signature    ──▶ ExportMismatch
//!          ▼
//!   ComponentInfo { world, export, imports, exports } + Entry
//! ```
//!
//! Versions follow semver: a component built against any `0.2.x` or
//! `0.1.x` of the `voice:runtime` package (or any WASI `0.2.x`) is
//! accepted; wasmtime's linker resolves such names to the definitions this
//! runtime has, and [`Contract`] says which bindings call it.

use std::fmt;

use wasmtime::Engine;
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, TypedFunc};

use super::host::HostState;
use switchyard_contract::screening::{
    self, CallAttempt, Case, Evidence, Findings, Ruling, Verdict,
};
use switchyard_contract::{Context, Event, HandlerError, Plan, v0_1};

/// A released series of the `voice:runtime` package this runtime serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Contract {
    /// 0.1.x (`wit/history/0.1.1`): called through
    /// [`switchyard_contract::v0_1`]'s conversions.
    V0_1,
    /// 0.2.x, the current `wit/`.
    V0_2,
}

impl Contract {
    /// Newest first: the first one is what `wit/` is.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// `(major, minor)`: semver-compatible versions share it.
    fn series(self) -> (u64, u64) {
        match self {
            Contract::V0_1 => (0, 1),
            Contract::V0_2 => (0, 2),
        }
    }

    /// The series of an interface name's version (`voice:runtime/kv@0.1.0`).
    fn of(name: &str) -> Option<Self> {
        let version = split_version(name).1?;
        Self::ALL
            .into_iter()
            .find(|c| compatible(version, c.series()))
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.series();
        write!(f, "voice:runtime@{major}.{minor}.x")
    }
}

/// The Switchyard worlds a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum World {
    /// Exports `voice:runtime/handler`: decides on call events.
    CallHandler,
    /// Exports `voice:runtime/notify`: routes notifications.
    NotificationRouter,
    /// Exports `voice:runtime/screen` (or 0.2.0's `verify`): judges
    /// caller verification.
    VerificationPolicy,
}

impl World {
    const ALL: [World; 3] = [
        World::CallHandler,
        World::NotificationRouter,
        World::VerificationPolicy,
    ];

    /// The world's name in `wit/worlds.wit`.
    pub fn name(self) -> &'static str {
        match self {
            World::CallHandler => "call-handler",
            World::NotificationRouter => "notification-router",
            World::VerificationPolicy => "verification-policy",
        }
    }

    /// The interface the world exports, without a version.
    pub fn export(self) -> &'static str {
        match self {
            World::CallHandler => "voice:runtime/handler",
            World::NotificationRouter => "voice:runtime/notify",
            World::VerificationPolicy => "voice:runtime/screen",
        }
    }

    /// Whether `interface` (without a version) is this world's export:
    /// a verification policy built against 0.2.0 (or 0.1) exports `verify`.
    fn exported_as(self, interface: &str) -> bool {
        interface == self.export()
            || (self == World::VerificationPolicy && interface == "voice:runtime/verify")
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a valid component is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub world: World,
    /// The world's export as the component names it (its version included).
    pub export: String,
    /// The package series the component was built against.
    pub contract: Contract,
    /// Every import, as named by the component.
    pub imports: Vec<String>,
    /// Every export, as named by the component.
    pub exports: Vec<String>,
    /// Whether a call handler hears `status-changed` and `hangup`
    /// (its [`Manifest`](crate::manifest::Manifest)).
    pub notices: bool,
}

/// Why a component cannot be loaded. Each message says what is wrong and,
/// where there is one, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary: {reason}")]
    NotWasm { reason: String },
    /// A core module (what `wasm32-unknown-unknown` or `wasm32-wasip1` produce).
    #[error(
        "this is a core Wasm module, not a component: build with `cargo build --target wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`) so that it exports voice:runtime/handler@0.2.1"
    )]
    CoreModule,
    /// A component that fails validation or compilation.
    #[error("invalid component: {reason}")]
    Invalid { reason: String },
    /// A valid component that implements none of the Switchyard worlds.
    #[error(
        "exports {}; none is a Switchyard world — expected voice:runtime/handler (call-handler), \
         voice:runtime/notify (notification-router) or voice:runtime/screen (verification-policy), \
         at version 0.2.x (current) or 0.1.x",
        names(.exports)
    )]
    NoWorld { exports: Vec<String> },
    /// A Switchyard world, but not the one this use needs.
    #[error("implements {found}, but only {expected} components can be loaded here")]
    WrongWorld { found: World, expected: World },
    /// The world's export is there but its functions do not match the contract.
    #[error("export {export} does not match this runtime's contract: {reason}")]
    ExportMismatch { export: String, reason: String },
    /// Imports the runtime does not provide, by name.
    #[error(
        "imports {} which this runtime does not provide; a guest may import \
         voice:runtime/{{log,kv,clock,call-vars,presence}} at 0.2.x or 0.1.x and WASI 0.2 (wasi:cli, wasi:clocks, \
         wasi:filesystem, wasi:io, wasi:random, wasi:sockets; present but granting nothing)",
        .imports.join(", ")
    )]
    UnsupportedImports { imports: Vec<String> },
    /// Imports with known names whose types do not match ours.
    #[error("cannot link the component's imports: {reason}")]
    Link { reason: String },
    /// A `switchyard-handler` custom section this runtime cannot read.
    #[error("{reason}")]
    Manifest { reason: String },
}

fn names(list: &[String]) -> String {
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(", ")
    }
}

/// Refuses what is not a component before spending a compilation on it.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    const CORE: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT: [u8; 4] = [0x0d, 0, 1, 0];
    let not_wasm = |reason: String| Err(LoadError::NotWasm { reason });
    if bytes.len() < 8 {
        return not_wasm(format!(
            "{} bytes; a WebAssembly binary starts with an 8-byte header",
            bytes.len()
        ));
    }
    if &bytes[..4] != MAGIC {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
        if text.trim_start().starts_with('(') {
            return not_wasm(
                "this looks like WebAssembly text (WAT); upload the binary (`wasm-tools parse`)"
                    .into(),
            );
        }
        return not_wasm(format!(
            "missing the \\0asm magic number (starts with {})",
            hex::encode(&bytes[..4])
        ));
    }
    match <[u8; 4]>::try_from(&bytes[4..8]) {
        Ok(CORE) => Err(LoadError::CoreModule),
        Ok(COMPONENT) => Ok(()),
        _ => not_wasm(format!(
            "unknown WebAssembly version/layer {} (a component has 0d000100)",
            hex::encode(&bytes[4..8])
        )),
    }
}

/// Finds the component's world and resolves its imports against `linker`.
pub(crate) fn inspect(
    engine: &Engine,
    linker: &Linker<HostState>,
    component: &Component,
    bytes: &[u8],
) -> Result<(ComponentInfo, InstancePre<HostState>), LoadError> {
    let manifest = crate::manifest::Manifest::read(bytes)?;
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();

    let (world, export, contract) = World::ALL
        .iter()
        .find_map(|world| {
            exports.iter().find_map(|e| {
                let contract = Contract::of(e)?;
                world
                    .exported_as(split_version(e).0)
                    .then(|| (*world, e.clone(), contract))
            })
        })
        .ok_or_else(|| LoadError::NoWorld {
            exports: exports.clone(),
        })?;

    let pre = linker.instantiate_pre(component).map_err(|e| {
        // The linker stops at the first unresolved import; listing every
        // unknown name is more useful, and the allow-list only shapes the
        // message: a component that links is never refused by it.
        let unsupported: Vec<String> = imports
            .iter()
            .filter(|i| !is_provided(i))
            .cloned()
            .collect();
        if unsupported.is_empty() {
            LoadError::Link {
                reason: format!("{e:#}"),
            }
        } else {
            LoadError::UnsupportedImports {
                imports: unsupported,
            }
        }
    })?;

    Ok((
        ComponentInfo {
            world,
            export,
            contract,
            imports,
            exports,
            notices: manifest.notices,
        },
        pre,
    ))
}

/// A component's entry function (`handle`, `screen` or 0.2.0's `verify`),
/// checked against the contract once at load. The generated bindings
/// (`CallHandlerPre`) look the export up and type-check it again in every
/// instance they make: ~3 % of a call's CPU on the decision path, for a
/// check whose answer cannot change.
pub(crate) struct Entry {
    pre: InstancePre<HostState>,
    func: ComponentExportIndex,
    contract: Contract,
    kind: Kind,
}

/// Which function a component's world has it export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Handle,
    Screen,
    /// A verification policy built against 0.2.0 or 0.1.
    Verify,
}

impl Kind {
    fn of(info: &ComponentInfo) -> Self {
        match info.world {
            World::VerificationPolicy
                if split_version(&info.export).0 == "voice:runtime/verify" =>
            {
                Kind::Verify
            }
            World::VerificationPolicy => Kind::Screen,
            _ => Kind::Handle,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Handle => "handle",
            Kind::Screen => "screen",
            Kind::Verify => "verify",
        }
    }
}

/// Where an invocation failed: making the instance, or running `handle`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Instantiate,
    Call,
    /// The event or plan has no equivalent in the guest's contract.
    Convert,
}

impl Entry {
    /// Instantiates the component in `store` and calls `handle`.
    pub(crate) async fn run(
        &self,
        store: &mut Store<HostState>,
        ctx: &Context,
        event: &Event,
    ) -> Result<Result<Plan, HandlerError>, (Stage, wasmtime::Error)> {
        let func = self.instantiate(store).await?;
        let convert = |e: v0_1::Unrepresentable| (Stage::Convert, wasmtime::Error::msg(e.0));
        // SAFETY (both arms): `entry` type-checked this export against the
        // instance type of `pre` with the same aliases for this contract
        // (`typecheck`), and every instance made from `pre` has that type.
        match self.contract {
            Contract::V0_2 => {
                unsafe { call::<V02Params<'_>, V02Result>(store, func, (ctx, event)) }.await
            }
            Contract::V0_1 => {
                let event = v0_1::event(event).map_err(convert)?;
                let ctx = v0_1::context(ctx);
                let result =
                    unsafe { call::<V01Params<'_>, V01Result>(store, func, (&ctx, &event)) }
                        .await?;
                Ok(match result {
                    Ok(plan) => Ok(v0_1::plan(&plan).map_err(convert)?),
                    Err(error) => Err(v0_1::handler_error(&error)),
                })
            }
        }
    }

    /// Instantiates the policy in `store` and calls `screen` (or `verify`,
    /// with the case's 0.2.0 evidence). `Err(text)` is a 0.2.0 label of
    /// the policy's own words.
    pub(crate) async fn screen(
        &self,
        store: &mut Store<HostState>,
        case: &Case,
    ) -> Result<Result<Ruling, String>, (Stage, wasmtime::Error)> {
        let func = self.instantiate(store).await?;
        // SAFETY (both arms): `entry` type-checked the export as this kind.
        match self.kind {
            Kind::Verify => {
                let params = (&case.call, &case.evidence);
                let verdict = unsafe { call::<VerifyParams<'_>, Verdict>(store, func, params) };
                Ok(screening::ruling_of(verdict.await?))
            }
            _ => {
                let params = (&case.call, &case.findings);
                Ok(Ok(unsafe {
                    call::<ScreenParams<'_>, Ruling>(store, func, params)
                }
                .await?))
            }
        }
    }

    async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> Result<wasmtime::component::Func, (Stage, wasmtime::Error)> {
        let instance = self
            .pre
            .instantiate_async(&mut *store)
            .await
            .map_err(|e| (Stage::Instantiate, e))?;
        instance.get_func(&mut *store, self.func).ok_or_else(|| {
            let missing = format!("the instance has no `{}` export", self.kind.name());
            (Stage::Call, wasmtime::Error::msg(missing))
        })
    }
}

type ScreenParams<'a> = (&'a CallAttempt, &'a Findings);
type VerifyParams<'a> = (&'a CallAttempt, &'a Evidence);

/// `handle`'s parameters and result, per contract.
type V02Params<'a> = (&'a Context, &'a Event);
type V02Result = Result<Plan, HandlerError>;
type V01Params<'a> = (&'a v0_1::Context, &'a v0_1::Event);
type V01Result = Result<v0_1::Plan, v0_1::HandlerError>;

/// Calls `func` as a `TypedFunc<P, (R,)>`.
///
/// # Safety
///
/// `func` must have been type-checked as taking `P` and returning `(R,)`.
async unsafe fn call<P, R>(
    store: &mut Store<HostState>,
    func: wasmtime::component::Func,
    params: P,
) -> Result<R, (Stage, wasmtime::Error)>
where
    P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync,
    (R,):
        wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync + 'static,
{
    // SAFETY: the caller's promise.
    let handle = unsafe { TypedFunc::<P, (R,)>::new_unchecked(func) };
    let (result,) = handle
        .call_async(store, params)
        .await
        .map_err(|e| (Stage::Call, e))?;
    Ok(result)
}

/// Type-checks `func` as `kind` of `contract` (`verify` did not change
/// from 0.1 to 0.2.0).
fn typecheck(
    func: &wasmtime::component::types::ComponentFunc,
    contract: Contract,
    kind: Kind,
    cx: &wasmtime::component::__internal::InstanceType,
) -> wasmtime::Result<()> {
    match (kind, contract) {
        (Kind::Screen, _) => func.typecheck::<ScreenParams<'_>, (Ruling,)>(cx),
        (Kind::Verify, _) => func.typecheck::<VerifyParams<'_>, (Verdict,)>(cx),
        (Kind::Handle, Contract::V0_2) => func.typecheck::<V02Params<'_>, (V02Result,)>(cx),
        (Kind::Handle, Contract::V0_1) => func.typecheck::<V01Params<'_>, (V01Result,)>(cx),
    }
}

/// Checks the entry function (`handle`, `screen`, `verify`) against the
/// contract and prepares the typed entry point, refusing a bad upload at
/// once.
pub(crate) fn entry(
    component: &Component,
    info: &ComponentInfo,
    pre: InstancePre<HostState>,
) -> Result<Entry, LoadError> {
    let mismatch = |reason: String| LoadError::ExportMismatch {
        export: info.export.clone(),
        reason,
    };
    let (_, instance) = component
        .get_export(None, info.export.as_str())
        .ok_or_else(|| mismatch("the export cannot be found".into()))?;
    let kind = Kind::of(info);
    let name = kind.name();
    let func = match component.get_export(Some(&instance), name) {
        Some((ComponentItem::ComponentFunc(func), index)) => {
            typecheck(&func, info.contract, kind, &pre.instance_type()).map_err(|e| {
                mismatch(format!(
                    "`{name}` has a different signature than {} gives it ({e:#}); rebuild the guest with the SDK of this runtime (voice:runtime@0.2.1)",
                    info.contract
                ))
            })?;
            index
        }
        Some((other, _)) => {
            return Err(mismatch(format!(
                "`{name}` is a {}, not a function",
                item_kind(&other)
            )));
        }
        None => return Err(mismatch(format!("it has no function `{name}`"))),
    };
    Ok(Entry {
        pre,
        func,
        contract: info.contract,
        kind,
    })
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "core module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// Interfaces the linker defines, without versions; versions are checked
/// by [`compatible`].
const PROVIDED: &[(&str, (u64, u64))] = &[
    ("voice:runtime/log", (0, 2)),
    ("voice:runtime/kv", (0, 2)),
    ("voice:runtime/clock", (0, 2)),
    ("voice:runtime/call-vars", (0, 2)),
    ("voice:runtime/presence", (0, 2)),
    ("voice:runtime/types", (0, 2)),
    ("voice:runtime/verification-types", (0, 2)),
    ("voice:runtime/screening-types", (0, 2)),
    ("voice:runtime/verification-types", (0, 1)),
    ("voice:runtime/log", (0, 1)),
    ("voice:runtime/kv", (0, 1)),
    ("voice:runtime/clock", (0, 1)),
    ("voice:runtime/call-vars", (0, 1)),
    ("voice:runtime/presence", (0, 1)),
    ("voice:runtime/types", (0, 1)),
    ("wasi:io/error", (0, 2)),
    ("wasi:io/poll", (0, 2)),
    ("wasi:io/streams", (0, 2)),
    ("wasi:clocks/wall-clock", (0, 2)),
    ("wasi:clocks/monotonic-clock", (0, 2)),
    ("wasi:filesystem/types", (0, 2)),
    ("wasi:filesystem/preopens", (0, 2)),
    ("wasi:random/random", (0, 2)),
    ("wasi:random/insecure", (0, 2)),
    ("wasi:random/insecure-seed", (0, 2)),
    ("wasi:cli/exit", (0, 2)),
    ("wasi:cli/environment", (0, 2)),
    ("wasi:cli/stdin", (0, 2)),
    ("wasi:cli/stdout", (0, 2)),
    ("wasi:cli/stderr", (0, 2)),
    ("wasi:cli/terminal-input", (0, 2)),
    ("wasi:cli/terminal-output", (0, 2)),
    ("wasi:cli/terminal-stdin", (0, 2)),
    ("wasi:cli/terminal-stdout", (0, 2)),
    ("wasi:cli/terminal-stderr", (0, 2)),
    ("wasi:sockets/network", (0, 2)),
    ("wasi:sockets/instance-network", (0, 2)),
    ("wasi:sockets/tcp", (0, 2)),
    ("wasi:sockets/tcp-create-socket", (0, 2)),
    ("wasi:sockets/udp", (0, 2)),
    ("wasi:sockets/udp-create-socket", (0, 2)),
    ("wasi:sockets/ip-name-lookup", (0, 2)),
];

fn is_provided(import: &str) -> bool {
    let (interface, version) = split_version(import);
    PROVIDED
        .iter()
        .any(|(name, series)| *name == interface && version.is_some_and(|v| compatible(v, *series)))
}

fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (name, None),
    }
}

/// `(major, minor)` of a version; for `0.x` versions, `x` is the
/// compatibility series (semver: 0.1.0 and 0.2.0 are incompatible).
fn series_of(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn compatible(version: &str, series: (u64, u64)) -> bool {
    match series_of(version) {
        Some((0, minor)) => series == (0, minor),
        Some((major, _)) => series.0 == major,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_not_wasm() {
        let err = check_header(b"hello, this is not wasm").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not a WebAssembly binary: missing the \\0asm magic"),
            "{err}"
        );
        assert!(matches!(
            check_header(b"\0as"),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(
            check_header(b"(component)")
                .unwrap_err()
                .to_string()
                .contains("WAT")
        );
    }

    #[test]
    fn a_core_module_is_told_to_build_for_wasip2() {
        let err = check_header(b"\0asm\x01\0\0\0").unwrap_err();
        assert_eq!(err, LoadError::CoreModule);
        assert!(err.to_string().contains("--target wasm32-wasip2"));
    }

    #[test]
    fn a_component_header_passes() {
        check_header(b"\0asm\x0d\0\x01\0").unwrap();
    }

    #[test]
    fn semver_compatible_names_match() {
        assert_eq!(
            Contract::of("voice:runtime/handler@0.1.0"),
            Some(Contract::V0_1)
        );
        assert_eq!(
            Contract::of("voice:runtime/handler@0.1.7"),
            Some(Contract::V0_1)
        );
        assert_eq!(
            Contract::of("voice:runtime/handler@0.2.0"),
            Some(Contract::V0_2)
        );
        assert_eq!(Contract::of("voice:runtime/handler@0.3.0"), None);
        assert_eq!(Contract::of("voice:runtime/handler@1.2.0"), None);
        assert_eq!(Contract::of("voice:runtime/handler"), None);
        assert_eq!(Contract::V0_1.to_string(), "voice:runtime@0.1.x");
        assert!(is_provided("voice:runtime/kv@0.1.0"));
        assert!(is_provided("voice:runtime/presence@0.2.0"));
        assert!(!is_provided("voice:runtime/kv@0.3.0"));
        assert!(is_provided("wasi:cli/environment@0.2.3"));
        assert!(!is_provided("wasi:cli/environment@0.3.0"));
        assert!(!is_provided("wasi:http/outgoing-handler@0.2.0"));
    }

    #[test]
    fn no_world_lists_what_the_component_exports() {
        let err = LoadError::NoWorld {
            exports: vec!["wasi:http/incoming-handler@0.2.0".into()],
        };
        assert!(
            err.to_string().starts_with(
                "exports wasi:http/incoming-handler@0.2.0; none is a Switchyard world"
            )
        );
        let err = LoadError::NoWorld { exports: vec![] };
        assert!(err.to_string().starts_with("exports nothing;"));
    }
}
