//! What the `kv` import needs from tenant key-value storage.
//!
//! The host depends on this trait, not on a database: `switchyard-store`
//! implements it on SQLite, tests with a map. Every method takes the tenant
//! from the host's own state (never from the guest), so one tenant cannot
//! name another's keys.

use std::path::PathBuf;
use std::sync::Arc;

use switchyard_contract::guest::BoxFuture;

/// Tenant-scoped key-value storage behind the guests' `kv` import.
pub trait KvBackend: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>>;
    fn set<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), KvError>>;
    fn delete<'a>(&'a self, tenant: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>>;
    /// Keys under `prefix`, in order, at most `limit` (the backend may cap it lower).
    fn list_keys<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<String>, KvError>>;
}

/// Which part of an entry broke a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPart {
    Key,
    Value,
}

impl std::fmt::Display for KvPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvPart::Key => "key",
            KvPart::Value => "value",
        })
    }
}

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A key or value is larger than the store allows.
    #[error("{part} is {len} bytes, over the limit of {limit} bytes")]
    TooLarge {
        part: KvPart,
        len: usize,
        limit: u32,
    },
    /// The write would take the tenant past its key count or byte quota.
    #[error(
        "storage quota exceeded: {keys} keys / {bytes} bytes used, limits {max_keys} keys / {max_bytes} bytes"
    )]
    QuotaExceeded {
        keys: u64,
        bytes: u64,
        max_keys: u64,
        max_bytes: u64,
    },
    /// SQLite failed or the storage thread is gone; retrying may work.
    #[error("key-value storage unavailable: {0}")]
    Unavailable(String),
    /// The database could not be opened or its schema created.
    #[error("cannot open key-value storage at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
}

/// The host's handle on the key-value storage; cloned per event.
pub type Kv = Arc<dyn KvBackend>;

/// A map standing in for the store in this crate's tests: tenant-scoped,
/// with the store's default key limit (512 bytes).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemoryKv(std::sync::Mutex<std::collections::BTreeMap<(String, String), Vec<u8>>>);

#[cfg(test)]
impl MemoryKv {
    const MAX_KEY_BYTES: u32 = 512;

    fn check(key: &str) -> Result<(), KvError> {
        if key.len() > Self::MAX_KEY_BYTES as usize {
            return Err(KvError::TooLarge {
                part: KvPart::Key,
                len: key.len(),
                limit: Self::MAX_KEY_BYTES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
impl KvBackend for MemoryKv {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        let map = self.0.lock().unwrap();
        let found = Self::check(key).map(|()| map.get(&(tenant.into(), key.into())).cloned());
        Box::pin(std::future::ready(found))
    }
    fn set<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), KvError>> {
        let done = Self::check(key).map(|()| {
            self.0
                .lock()
                .unwrap()
                .insert((tenant.into(), key.into()), value);
        });
        Box::pin(std::future::ready(done))
    }
    fn delete<'a>(&'a self, tenant: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        self.0.lock().unwrap().remove(&(tenant.into(), key.into()));
        Box::pin(std::future::ready(Ok(())))
    }
    fn list_keys<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<String>, KvError>> {
        let keys = self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, k)| t == tenant && k.starts_with(prefix))
            .take(limit as usize)
            .map(|(_, k)| k.clone())
            .collect();
        Box::pin(std::future::ready(Ok(keys)))
    }
}
