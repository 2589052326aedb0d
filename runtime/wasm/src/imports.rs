//! The `voice:runtime` host imports, one capability per view.
//!
//! ```text
//!   guest calls kv.get("stats/calls")
//!        │ linker: HostState::kv(&mut state) -> KvView (borrows kv handle,
//!        ▼         tenant id and the import log; nothing else)
//!   KvView::get ──▶ KvBackend::get(tenant, key) ──▶ WIT result
//!        └──▶ ImportRecord::KvGet { key, result } appended for replay
//! ```
//!
//! Every capability records what the guest saw, so a call can be replayed
//! against another component version without touching storage. Expected
//! failures (a key too large, storage down) are WIT `result` errors the
//! guest handles; none of these imports traps.

use std::collections::VecDeque;

use wasmtime::component::{HasData, Linker};

use super::host::HostState;
use super::output::GuestOutput;
use crate::kv::{self as store, Kv};
use switchyard_contract::guest::{CallVars, ImportRecord};
use switchyard_contract::imports::{call_vars, clock, kv, log, presence};
use switchyard_contract::voice::runtime::types;

/// Defines every `voice:runtime` import on `linker`, at the current
/// version (`imports_v0_1` defines the 0.1 names).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, LogCapability>(linker, HostState::log)?;
    kv::add_to_linker::<HostState, KvCapability>(linker, HostState::kv)?;
    clock::add_to_linker::<HostState, ClockCapability>(linker, HostState::clock)?;
    call_vars::add_to_linker::<HostState, VarsCapability>(linker, HostState::vars)?;
    presence::add_to_linker::<HostState, PresenceCapability>(linker, HostState::presence)?;
    // `types` has no functions, but a component that uses its types
    // imports the (empty) instance, so it must exist.
    types::add_to_linker::<HostState, TypesCapability>(linker, |_| NoData)?;
    // So are a verification policy's.
    use switchyard_contract::screening::imports::{screening_types, verification_types};
    verification_types::add_to_linker::<HostState, TypesCapability>(linker, |_| NoData)?;
    screening_types::add_to_linker::<HostState, TypesCapability>(linker, |_| NoData)?;
    Ok(())
}

impl switchyard_contract::screening::imports::verification_types::Host for NoData {}
impl switchyard_contract::screening::imports::screening_types::Host for NoData {}

pub(crate) struct LogCapability;
pub(crate) struct KvCapability;
pub(crate) struct ClockCapability;
pub(crate) struct VarsCapability;
pub(crate) struct PresenceCapability;
pub(crate) struct TypesCapability;

impl HasData for LogCapability {
    type Data<'a> = LogView<'a>;
}
impl HasData for KvCapability {
    type Data<'a> = KvView<'a>;
}
impl HasData for ClockCapability {
    type Data<'a> = ClockView<'a>;
}
impl HasData for VarsCapability {
    type Data<'a> = VarsView<'a>;
}
impl HasData for PresenceCapability {
    type Data<'a> = PresenceView<'a>;
}
impl HasData for TypesCapability {
    type Data<'a> = NoData;
}

pub(crate) struct NoData;
impl types::Host for NoData {}

// ------------------------------------------------------------------ log

/// `log`: lines go to tracing (within the output budget) and the record.
pub(crate) struct LogView<'a> {
    output: &'a GuestOutput,
    imports: &'a mut Vec<ImportRecord>,
}

impl<'a> LogView<'a> {
    pub(crate) fn new(output: &'a GuestOutput, imports: &'a mut Vec<ImportRecord>) -> Self {
        Self { output, imports }
    }
}

impl log::Host for LogView<'_> {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // A line over the output budget is dropped from the record too:
        // logging returns nothing, so replay does not depend on it, and the
        // record stays bounded whatever the guest does.
        if self.output.log(level, &message) {
            self.imports.push(ImportRecord::Log {
                level: level_name(level).to_owned(),
                message,
            });
        }
        Ok(())
    }
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Trace => "trace",
        log::Level::Debug => "debug",
        log::Level::Info => "info",
        log::Level::Warn => "warn",
        log::Level::Error => "error",
    }
}

// ------------------------------------------------------------------- kv

/// `kv`: the tenant's key-value storage. The tenant comes from the host
/// state, so a guest can only ever name its own tenant's keys.
pub(crate) struct KvView<'a> {
    kv: &'a Kv,
    tenant: &'a str,
    imports: &'a mut Vec<ImportRecord>,
}

impl<'a> KvView<'a> {
    pub(crate) fn new(kv: &'a Kv, tenant: &'a str, imports: &'a mut Vec<ImportRecord>) -> Self {
        Self {
            kv,
            tenant,
            imports,
        }
    }
}

impl kv::Host for KvView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::KvError>> {
        let result = self.kv.get(self.tenant, &key).await.map_err(wit_error);
        self.imports.push(ImportRecord::KvGet {
            key,
            result: recorded(&result),
        });
        Ok(result)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::KvError>> {
        let len = value.len();
        let result = self
            .kv
            .set(self.tenant, &key, value)
            .await
            .map_err(wit_error);
        self.imports.push(ImportRecord::KvSet {
            key,
            len,
            result: recorded(&result),
        });
        Ok(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), kv::KvError>> {
        let result = self.kv.delete(self.tenant, &key).await.map_err(wit_error);
        self.imports.push(ImportRecord::KvDelete {
            key,
            result: recorded(&result),
        });
        Ok(result)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, kv::KvError>> {
        let result = self
            .kv
            .list_keys(self.tenant, &prefix, limit)
            .await
            .map_err(wit_error);
        self.imports.push(ImportRecord::KvListKeys {
            prefix,
            limit,
            result: recorded(&result),
        });
        Ok(result)
    }
}

/// The WIT error a guest sees for a storage error.
fn wit_error(e: store::KvError) -> kv::KvError {
    match e {
        store::KvError::TooLarge { limit, .. } => kv::KvError::TooLarge(limit),
        store::KvError::QuotaExceeded { .. } => kv::KvError::QuotaExceeded,
        store::KvError::Unavailable(reason) => kv::KvError::Unavailable(reason),
        other @ store::KvError::Open { .. } => kv::KvError::Unavailable(other.to_string()),
    }
}

/// A kv result as the import record keeps it (errors in WIT syntax).
fn recorded<T: Clone>(result: &Result<T, kv::KvError>) -> Result<T, String> {
    result.clone().map_err(|e| describe(&e))
}

/// The recorded form of a WIT `kv-error`, in WIT syntax:
/// `too-large(512)`, `quota-exceeded`, `unavailable(<reason>)`.
pub(crate) fn describe(e: &kv::KvError) -> String {
    match e {
        kv::KvError::TooLarge(limit) => format!("too-large({limit})"),
        kv::KvError::QuotaExceeded => "quota-exceeded".to_owned(),
        kv::KvError::Unavailable(reason) => format!("unavailable({reason})"),
    }
}

// ---------------------------------------------------------------- clock

/// `clock`: the event's instant — the one WASI's wall clock reads too
/// (`entropy.rs`) — recorded so a replay sees the same time.
pub(crate) struct ClockView<'a> {
    /// A replay's recorded readings, answered in order, the last one
    /// repeating; empty: `event_ms`.
    recorded: &'a mut VecDeque<u64>,
    event_ms: u64,
    imports: &'a mut Vec<ImportRecord>,
}

impl<'a> ClockView<'a> {
    pub(crate) fn new(
        recorded: &'a mut VecDeque<u64>,
        event_ms: u64,
        imports: &'a mut Vec<ImportRecord>,
    ) -> Self {
        Self {
            recorded,
            event_ms,
            imports,
        }
    }
}

impl clock::Host for ClockView<'_> {
    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let ms = match self.recorded.len() {
            0 => self.event_ms,
            1 => self.recorded[0],
            _ => self.recorded.pop_front().unwrap_or_default(),
        };
        self.imports.push(ImportRecord::ClockNow { ms });
        Ok(ms)
    }
}

// ------------------------------------------------------------- presence

/// `presence`: the tenant's clients, as the backend knows them.
pub(crate) struct PresenceView<'a> {
    presence: &'a crate::presence::Presence,
    tenant: &'a str,
    imports: &'a mut Vec<ImportRecord>,
}

impl<'a> PresenceView<'a> {
    pub(crate) fn new(
        presence: &'a crate::presence::Presence,
        tenant: &'a str,
        imports: &'a mut Vec<ImportRecord>,
    ) -> Self {
        Self {
            presence,
            tenant,
            imports,
        }
    }
}

impl presence::Host for PresenceView<'_> {
    async fn lookup(&mut self, identity: String) -> wasmtime::Result<presence::ClientPresence> {
        let found = self.presence.lookup(self.tenant, &identity);
        self.imports.push(ImportRecord::PresenceLookup {
            identity,
            status: crate::presence::status_name(found.status).to_owned(),
            text: found.text.clone(),
            devices: found.devices,
        });
        Ok(found)
    }
}

// ------------------------------------------------------------ call-vars

/// `call-vars`: the call's variables, as the router passed them in.
pub(crate) struct VarsView<'a> {
    vars: &'a mut CallVars,
    imports: &'a mut Vec<ImportRecord>,
}

impl<'a> VarsView<'a> {
    pub(crate) fn new(vars: &'a mut CallVars, imports: &'a mut Vec<ImportRecord>) -> Self {
        Self { vars, imports }
    }
}

impl call_vars::Host for VarsView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let value = self.vars.get(&name).cloned();
        self.imports.push(ImportRecord::VarGet {
            name,
            value: value.clone(),
        });
        Ok(value)
    }

    async fn set(&mut self, name: String, value: String) -> wasmtime::Result<()> {
        self.imports.push(ImportRecord::VarSet {
            name: name.clone(),
            value: value.clone(),
        });
        self.vars.insert(name, value);
        Ok(())
    }

    async fn remove(&mut self, name: String) -> wasmtime::Result<()> {
        self.vars.remove(&name);
        self.imports.push(ImportRecord::VarRemove { name });
        Ok(())
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        let all: Vec<(String, String)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.imports.push(ImportRecord::VarAll { count: all.len() });
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use call_vars::Host as _;
    use clock::Host as _;
    use kv::Host as _;

    use super::*;
    use crate::kv::MemoryKv;

    #[tokio::test]
    async fn kv_is_scoped_to_the_views_tenant_and_recorded() {
        let store: Kv = std::sync::Arc::new(MemoryKv::default());
        let mut records = Vec::new();
        let mut acme = KvView::new(&store, "acme", &mut records);
        assert_eq!(acme.set("k".into(), b"1".to_vec()).await.unwrap(), Ok(()));
        assert_eq!(acme.get("k".into()).await.unwrap(), Ok(Some(b"1".to_vec())));
        let mut globex_records = Vec::new();
        let mut globex = KvView::new(&store, "globex", &mut globex_records);
        assert_eq!(globex.get("k".into()).await.unwrap(), Ok(None));
        assert_eq!(
            records,
            [
                ImportRecord::KvSet {
                    key: "k".into(),
                    len: 1,
                    result: Ok(())
                },
                ImportRecord::KvGet {
                    key: "k".into(),
                    result: Ok(Some(b"1".to_vec()))
                },
            ]
        );
    }

    #[tokio::test]
    async fn an_oversized_key_is_a_wit_error_with_the_limit() {
        let store: Kv = std::sync::Arc::new(MemoryKv::default());
        let mut records = Vec::new();
        let mut view = KvView::new(&store, "acme", &mut records);
        let result = view.set("k".repeat(600), vec![]).await.unwrap();
        assert_eq!(result, Err(kv::KvError::TooLarge(512)));
        assert!(
            matches!(&records[0], ImportRecord::KvSet { result: Err(e), .. } if e == "too-large(512)")
        );
    }

    #[tokio::test]
    async fn a_replayed_clock_answers_its_readings_in_order_then_repeats_the_last() {
        let mut readings = VecDeque::from([5, 7]);
        let mut records = Vec::new();
        let mut view = ClockView::new(&mut readings, 1_000, &mut records);
        let seen = [
            view.now_ms().await.unwrap(),
            view.now_ms().await.unwrap(),
            view.now_ms().await.unwrap(),
        ];
        assert_eq!(seen, [5, 7, 7]);
        assert_eq!(records[2], ImportRecord::ClockNow { ms: 7 });
    }

    #[tokio::test]
    async fn a_live_clock_answers_the_events_instant_every_time() {
        let mut none = VecDeque::new();
        let mut records = Vec::new();
        let mut view = ClockView::new(&mut none, 1_700_000_000_000, &mut records);
        let seen = [view.now_ms().await.unwrap(), view.now_ms().await.unwrap()];
        assert_eq!(seen, [1_700_000_000_000; 2]);
        assert_eq!(
            records[1],
            ImportRecord::ClockNow {
                ms: 1_700_000_000_000
            }
        );
    }

    #[tokio::test]
    async fn call_vars_change_and_every_access_is_recorded() {
        let mut vars = CallVars::from([("lang".to_owned(), "en".to_owned())]);
        let mut records = Vec::new();
        let mut view = VarsView::new(&mut vars, &mut records);
        assert_eq!(
            view.get("lang".into()).await.unwrap().as_deref(),
            Some("en")
        );
        view.set("step".into(), "2".into()).await.unwrap();
        view.remove("lang".into()).await.unwrap();
        assert_eq!(
            view.all().await.unwrap(),
            [("step".to_owned(), "2".to_owned())]
        );
        assert_eq!(vars, CallVars::from([("step".to_owned(), "2".to_owned())]));
        assert_eq!(records.len(), 4);
    }
}
