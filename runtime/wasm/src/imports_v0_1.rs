//! The host imports as `voice:runtime@0.1.x` names them, for components
//! built against it. The interfaces did not change in 0.2.0, but a new
//! package version renames every one of them, so the linker defines both
//! names; each 0.1 function here is the current one, its types mapped.

use wasmtime::component::Linker;

use super::host::HostState;
use super::imports::{
    ClockCapability, ClockView, KvCapability, KvView, LogCapability, LogView, PresenceCapability,
    PresenceView, TypesCapability, VarsCapability, VarsView,
};
use switchyard_contract::imports as now;
use switchyard_contract::v0_1::imports::{call_vars, clock, kv, log, presence, types};

/// Defines every 0.1 `voice:runtime` import on `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, LogCapability>(linker, HostState::log)?;
    kv::add_to_linker::<HostState, KvCapability>(linker, HostState::kv)?;
    clock::add_to_linker::<HostState, ClockCapability>(linker, HostState::clock)?;
    call_vars::add_to_linker::<HostState, VarsCapability>(linker, HostState::vars)?;
    presence::add_to_linker::<HostState, PresenceCapability>(linker, HostState::presence)?;
    types::add_to_linker::<HostState, TypesCapability>(linker, |_| super::imports::NoData)?;
    // A 0.1 verification policy's types (no functions; 0.1.1 is the
    // last 0.1, and the linker matches 0.1.0 to it).
    linker.instance("voice:runtime/verification-types@0.1.1")?;
    Ok(())
}

impl types::Host for super::imports::NoData {}

impl log::Host for LogView<'_> {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => now::log::Level::Trace,
            log::Level::Debug => now::log::Level::Debug,
            log::Level::Info => now::log::Level::Info,
            log::Level::Warn => now::log::Level::Warn,
            log::Level::Error => now::log::Level::Error,
        };
        now::log::Host::write(self, level, message).await
    }
}

fn kv_error(e: now::kv::KvError) -> kv::KvError {
    match e {
        now::kv::KvError::TooLarge(limit) => kv::KvError::TooLarge(limit),
        now::kv::KvError::QuotaExceeded => kv::KvError::QuotaExceeded,
        now::kv::KvError::Unavailable(reason) => kv::KvError::Unavailable(reason),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, kv::KvError>>;

impl kv::Host for KvView<'_> {
    async fn get(&mut self, key: String) -> KvResult<Option<Vec<u8>>> {
        Ok(now::kv::Host::get(self, key).await?.map_err(kv_error))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> KvResult<()> {
        Ok(now::kv::Host::set(self, key, value)
            .await?
            .map_err(kv_error))
    }

    async fn delete(&mut self, key: String) -> KvResult<()> {
        Ok(now::kv::Host::delete(self, key).await?.map_err(kv_error))
    }

    async fn list_keys(&mut self, prefix: String, limit: u32) -> KvResult<Vec<String>> {
        Ok(now::kv::Host::list_keys(self, prefix, limit)
            .await?
            .map_err(kv_error))
    }
}

impl clock::Host for ClockView<'_> {
    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        now::clock::Host::now_ms(self).await
    }
}

impl presence::Host for PresenceView<'_> {
    async fn lookup(&mut self, identity: String) -> wasmtime::Result<presence::ClientPresence> {
        let found = now::presence::Host::lookup(self, identity).await?;
        Ok(presence::ClientPresence {
            identity: found.identity,
            status: match found.status {
                now::presence::Status::Available => presence::Status::Available,
                now::presence::Status::Busy => presence::Status::Busy,
                now::presence::Status::Away => presence::Status::Away,
                now::presence::Status::Offline => presence::Status::Offline,
            },
            text: found.text,
            devices: found.devices,
        })
    }
}

impl call_vars::Host for VarsView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        now::call_vars::Host::get(self, name).await
    }

    async fn set(&mut self, name: String, value: String) -> wasmtime::Result<()> {
        now::call_vars::Host::set(self, name, value).await
    }

    async fn remove(&mut self, name: String) -> wasmtime::Result<()> {
        now::call_vars::Host::remove(self, name).await
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        now::call_vars::Host::all(self).await
    }
}
