//! Tenant-scoped key-value storage on SQLite.
//!
//! ```text
//!   KvStore::get/set/delete/list_keys  (async, any task)
//!        │ check key/value limits (no round trip for a refusal)
//!        │ get: a key read or written before answers from the ReadCache
//!        ▼
//!   Job ──mpsc──▶ "switchyard-kv" thread: owns the rusqlite Connection
//!                      │ one transaction per request
//!                      ▼
//!                 kv(tenant, key, value) + kv_usage(tenant, keys, bytes)
//!                      │ after each commit or read: ReadCache::put
//!        ◀──oneshot── Result<_, KvError>
//! ```
//!
//! Every statement is keyed by `tenant`, and the tenant is a parameter the
//! host passes from its own state, so one tenant cannot name another's keys.
//! Usage per tenant is kept in `kv_usage` inside the same transaction as the
//! write, so the quota check never scans the tenant's keys.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use switchyard_contract::guest::BoxFuture;
use tokio::sync::oneshot;

use super::kv_cache::ReadCache;

/// Size limits of the key-value store, the same for every tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key in bytes. Default 512.
    pub max_key_bytes: u32,
    /// Largest value in bytes. Default 64 KiB.
    pub max_value_bytes: u32,
    /// Most keys one tenant may hold. Default 10 000.
    pub max_keys_per_tenant: u64,
    /// Most bytes (keys + values) one tenant may hold. Default 16 MiB.
    pub max_bytes_per_tenant: u64,
    /// Most keys one `list_keys` returns, whatever the guest asks. Default 1 000.
    pub max_list_keys: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 64 * 1024,
            max_keys_per_tenant: 10_000,
            max_bytes_per_tenant: 16 * 1024 * 1024,
            max_list_keys: 1_000,
        }
    }
}

/// How much of its quota a tenant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvUsage {
    pub keys: u64,
    pub bytes: u64,
}

pub use switchyard_wasm::kv::{KvError, KvPart};

/// An error on the storage thread, where SQLite's convert with `?`
/// (`KvError` belongs to the host crate, so it cannot have that `From`).
struct Fail(KvError);

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        // A storage failure as the guest sees it: retrying may work.
        Fail(KvError::Unavailable(e.to_string()))
    }
}

impl From<KvError> for Fail {
    fn from(e: KvError) -> Self {
        Fail(e)
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the key-value store. Cheap to clone; the storage thread stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct KvStore {
    jobs: mpsc::Sender<Job>,
    limits: Arc<KvLimits>,
    cache: Arc<ReadCache>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        tenant TEXT NOT NULL,
        key    BLOB NOT NULL,
        value  BLOB NOT NULL,
        PRIMARY KEY (tenant, key)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS kv_usage (
        tenant TEXT PRIMARY KEY,
        keys   INTEGER NOT NULL,
        bytes  INTEGER NOT NULL
    ) WITHOUT ROWID;
";

impl KvStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: impl AsRef<Path>, limits: KvLimits) -> Result<Self, KvError> {
        let path = path.as_ref();
        let open_err = |reason: String| KvError::Open {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        // WAL + NORMAL: a commit is an append, not an fsync; a crash loses at
        // most the last few writes, never corrupts the file.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
            .map_err(|e| open_err(e.to_string()))?;
        Self::start(conn, limits).map_err(|e| open_err(e.to_string()))
    }

    /// A private in-memory database, for tests and `switchyard simulate`.
    pub fn in_memory(limits: KvLimits) -> Result<Self, KvError> {
        let conn = Connection::open_in_memory().map_err(|e| KvError::Open {
            path: PathBuf::from(":memory:"),
            reason: e.to_string(),
        })?;
        Self::start(conn, limits).map_err(|e| KvError::Open {
            path: PathBuf::from(":memory:"),
            reason: e.to_string(),
        })
    }

    fn start(mut conn: Connection, limits: KvLimits) -> Result<Self, rusqlite::Error> {
        conn.execute_batch(SCHEMA)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("switchyard-kv".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    // A panicking job drops its reply sender, so its caller
                    // sees `Unavailable`; the thread and connection live on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            jobs,
            limits: Arc::new(limits),
            cache: Arc::default(),
        })
    }

    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// The value stored under `key` for `tenant`.
    pub async fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        if let Some(value) = self.cache.get(tenant, key) {
            return Ok(value);
        }
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        let cache = Arc::clone(&self.cache);
        self.run(move |conn, _| {
            let mut stmt =
                conn.prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?;
            let value = stmt
                .query_row(params![tenant, key.as_bytes()], |row| {
                    row.get::<_, Vec<u8>>(0)
                })
                .optional()?;
            cache.put(&tenant, &key, value.clone());
            Ok(value)
        })
        .await
    }

    /// Stores `value` under `key`, replacing what was there.
    pub async fn set(&self, tenant: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.check_key(key)?;
        if value.len() > self.limits.max_value_bytes as usize {
            return Err(KvError::TooLarge {
                part: KvPart::Value,
                len: value.len(),
                limit: self.limits.max_value_bytes,
            });
        }
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        let cache = Arc::clone(&self.cache);
        self.run(move |conn, limits| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let old = entry_size(&tx, &tenant, &key)?;
            let usage = usage_of(&tx, &tenant)?;
            let new = KvUsage {
                keys: usage.keys + u64::from(old.is_none()),
                bytes: usage.bytes.saturating_sub(old.unwrap_or(0))
                    + (key.len() + value.len()) as u64,
            };
            // Only growth is refused: a tenant over a lowered quota can
            // still overwrite with smaller values to get back under it.
            let too_many_keys = new.keys > limits.max_keys_per_tenant && new.keys > usage.keys;
            let too_many_bytes = new.bytes > limits.max_bytes_per_tenant && new.bytes > usage.bytes;
            if too_many_keys || too_many_bytes {
                return Err(KvError::QuotaExceeded {
                    keys: usage.keys,
                    bytes: usage.bytes,
                    max_keys: limits.max_keys_per_tenant,
                    max_bytes: limits.max_bytes_per_tenant,
                }
                .into());
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO kv (tenant, key, value) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![tenant, key.as_bytes(), value])?;
            store_usage(&tx, &tenant, new)?;
            tx.commit()?;
            cache.put(&tenant, &key, Some(value));
            Ok(())
        })
        .await
    }

    /// Removes `key`; removing a missing key is not an error.
    pub async fn delete(&self, tenant: &str, key: &str) -> Result<(), KvError> {
        self.check_key(key)?;
        let (tenant, key) = (tenant.to_owned(), key.to_owned());
        let cache = Arc::clone(&self.cache);
        self.run(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(old) = entry_size(&tx, &tenant, &key)? {
                tx.prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND key = ?2")?
                    .execute(params![tenant, key.as_bytes()])?;
                let usage = usage_of(&tx, &tenant)?;
                let new = KvUsage {
                    keys: usage.keys.saturating_sub(1),
                    bytes: usage.bytes.saturating_sub(old),
                };
                store_usage(&tx, &tenant, new)?;
            }
            tx.commit()?;
            cache.put(&tenant, &key, None);
            Ok(())
        })
        .await
    }

    /// Keys of `tenant` starting with `prefix`, sorted bytewise, at most
    /// `limit` (capped by [`KvLimits::max_list_keys`]).
    pub async fn list_keys(
        &self,
        tenant: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        self.check_key(prefix)?;
        let limit = limit.min(self.limits.max_list_keys);
        let (tenant, prefix) = (tenant.to_owned(), prefix.to_owned());
        self.run(move |conn, _| {
            // Keys are BLOBs so the range compares bytes (a TEXT bound
            // would sort before every BLOB), and the index does the work.
            let lower = prefix.as_bytes().to_vec();
            let upper = prefix_successor(&lower);
            let mut keys = Vec::new();
            let mut push = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
                let raw: Vec<u8> = row.get(0)?;
                // Keys only ever enter as `&str`, so this never drops one.
                if let Ok(key) = String::from_utf8(raw) {
                    keys.push(key);
                }
                Ok(())
            };
            match upper {
                Some(upper) => {
                    let mut stmt = conn.prepare_cached(
                        "SELECT key FROM kv WHERE tenant = ?1 AND key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4",
                    )?;
                    let mut rows = stmt.query(params![tenant, lower, upper, limit])?;
                    while let Some(row) = rows.next()? {
                        push(row)?;
                    }
                }
                None => {
                    let mut stmt = conn.prepare_cached("SELECT key FROM kv WHERE tenant = ?1 ORDER BY key LIMIT ?2")?;
                    let mut rows = stmt.query(params![tenant, limit])?;
                    while let Some(row) = rows.next()? {
                        push(row)?;
                    }
                }
            }
            Ok(keys)
        })
        .await
    }

    /// How much of its quota `tenant` uses.
    pub async fn usage(&self, tenant: &str) -> Result<KvUsage, KvError> {
        let tenant = tenant.to_owned();
        self.run(move |conn, _| Ok(usage_of(conn, &tenant)?)).await
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.len() > self.limits.max_key_bytes as usize {
            return Err(KvError::TooLarge {
                part: KvPart::Key,
                len: key.len(),
                limit: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Runs `f` on the storage thread and waits for its answer without
    /// blocking the async runtime.
    async fn run<R, F>(&self, f: F) -> Result<R, KvError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection, &KvLimits) -> Result<R, Fail> + Send + 'static,
    {
        let gone = || KvError::Unavailable("the storage thread has stopped".into());
        let (reply, answer) = oneshot::channel();
        let limits = Arc::clone(&self.limits);
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn, &limits).map_err(|Fail(e)| e));
            }))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl switchyard_wasm::KvBackend for KvStore {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(KvStore::get(self, tenant, key))
    }
    fn set<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(KvStore::set(self, tenant, key, value))
    }
    fn delete<'a>(&'a self, tenant: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(KvStore::delete(self, tenant, key))
    }
    fn list_keys<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<String>, KvError>> {
        Box::pin(KvStore::list_keys(self, tenant, prefix, limit))
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`; `None` when there is none (empty or all-0xFF prefix).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

fn entry_size(conn: &Connection, tenant: &str, key: &str) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached(
        "SELECT length(key) + length(value) FROM kv WHERE tenant = ?1 AND key = ?2",
    )?
    .query_row(params![tenant, key.as_bytes()], |row| row.get::<_, i64>(0))
    .optional()
    .map(|size| size.map(|s| s.max(0) as u64))
}

fn usage_of(conn: &Connection, tenant: &str) -> rusqlite::Result<KvUsage> {
    conn.prepare_cached("SELECT keys, bytes FROM kv_usage WHERE tenant = ?1")?
        .query_row(params![tenant], |row| {
            Ok(KvUsage {
                keys: row.get::<_, i64>(0)?.max(0) as u64,
                bytes: row.get::<_, i64>(1)?.max(0) as u64,
            })
        })
        .optional()
        .map(Option::unwrap_or_default)
}

fn store_usage(conn: &Connection, tenant: &str, usage: KvUsage) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO kv_usage (tenant, keys, bytes) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![tenant, usage.keys as i64, usage.bytes as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(limits: KvLimits) -> KvStore {
        KvStore::in_memory(limits).expect("in-memory store")
    }

    #[tokio::test]
    async fn a_value_set_is_read_back_and_deleted() {
        let kv = store(KvLimits::default());
        assert_eq!(kv.get("acme", "k").await, Ok(None));
        kv.set("acme", "k", b"v1".to_vec()).await.unwrap();
        kv.set("acme", "k", b"v2".to_vec()).await.unwrap();
        assert_eq!(kv.get("acme", "k").await, Ok(Some(b"v2".to_vec())));
        assert_eq!(kv.usage("acme").await, Ok(KvUsage { keys: 1, bytes: 3 }));
        kv.delete("acme", "k").await.unwrap();
        kv.delete("acme", "k").await.unwrap();
        assert_eq!(kv.get("acme", "k").await, Ok(None));
        assert_eq!(kv.usage("acme").await, Ok(KvUsage::default()));
    }

    #[tokio::test]
    async fn reads_of_a_cached_key_follow_every_write_and_refusal() {
        let kv = store(KvLimits {
            max_keys_per_tenant: 1,
            ..KvLimits::default()
        });
        // Each read below may come from the cache: it must still be the
        // committed value.
        kv.set("acme", "k", b"v1".to_vec()).await.unwrap();
        assert_eq!(kv.get("acme", "k").await, Ok(Some(b"v1".to_vec())));
        kv.set("acme", "k", b"v2".to_vec()).await.unwrap();
        assert_eq!(kv.get("acme", "k").await, Ok(Some(b"v2".to_vec())));
        assert_eq!(kv.get("acme", "other").await, Ok(None));
        let refused = kv.set("acme", "other", b"x".to_vec()).await;
        assert!(matches!(refused, Err(KvError::QuotaExceeded { .. })));
        assert_eq!(
            kv.get("acme", "other").await,
            Ok(None),
            "a refused write is not read back"
        );
        kv.delete("acme", "k").await.unwrap();
        assert_eq!(kv.get("acme", "k").await, Ok(None));
        kv.set("acme", "other", b"y".to_vec()).await.unwrap();
        assert_eq!(kv.get("acme", "other").await, Ok(Some(b"y".to_vec())));
        assert_eq!(kv.get("globex", "other").await, Ok(None));
    }

    #[tokio::test]
    async fn one_tenants_keys_are_invisible_to_another() {
        let kv = store(KvLimits::default());
        kv.set("acme", "stats/calls", b"7".to_vec()).await.unwrap();
        assert_eq!(kv.get("globex", "stats/calls").await, Ok(None));
        assert_eq!(kv.list_keys("globex", "", 10).await, Ok(vec![]));
        kv.delete("globex", "stats/calls").await.unwrap();
        assert_eq!(kv.get("acme", "stats/calls").await, Ok(Some(b"7".to_vec())));
    }

    #[tokio::test]
    async fn list_keys_returns_only_the_prefix_sorted_and_limited() {
        let kv = store(KvLimits::default());
        for key in ["b/2", "a/1", "b/1", "b/3", "c", "bb"] {
            kv.set("acme", key, vec![]).await.unwrap();
        }
        kv.set("globex", "b/0", vec![]).await.unwrap();
        assert_eq!(
            kv.list_keys("acme", "b/", 10).await.unwrap(),
            ["b/1", "b/2", "b/3"]
        );
        assert_eq!(kv.list_keys("acme", "b/", 2).await.unwrap(), ["b/1", "b/2"]);
        assert_eq!(kv.list_keys("acme", "", 100).await.unwrap().len(), 6);
        assert_eq!(
            kv.list_keys("acme", "é", 100).await.unwrap(),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn oversized_keys_and_values_are_refused_with_their_limit() {
        let kv = store(KvLimits::default());
        let long_key = "k".repeat(513);
        assert!(matches!(
            kv.set("acme", &long_key, vec![]).await,
            Err(KvError::TooLarge {
                part: KvPart::Key,
                limit: 512,
                ..
            })
        ));
        assert!(matches!(
            kv.set("acme", "k", vec![0; 64 * 1024 + 1]).await,
            Err(KvError::TooLarge {
                part: KvPart::Value,
                limit: 65536,
                ..
            })
        ));
        kv.set("acme", "k", vec![0; 64 * 1024]).await.unwrap();
    }

    #[tokio::test]
    async fn a_tenant_past_its_quota_is_refused_but_may_shrink() {
        let kv = store(KvLimits {
            max_keys_per_tenant: 2,
            max_bytes_per_tenant: 100,
            ..KvLimits::default()
        });
        kv.set("acme", "a", vec![0; 10]).await.unwrap();
        kv.set("acme", "b", vec![0; 10]).await.unwrap();
        assert!(matches!(
            kv.set("acme", "c", vec![]).await,
            Err(KvError::QuotaExceeded { .. })
        ));
        assert!(matches!(
            kv.set("acme", "a", vec![0; 90]).await,
            Err(KvError::QuotaExceeded { .. })
        ));
        kv.set("acme", "a", vec![0; 5]).await.unwrap();
        // Another tenant has its own quota.
        kv.set("globex", "c", vec![]).await.unwrap();
        kv.delete("acme", "b").await.unwrap();
        kv.set("acme", "c", vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/kv.sqlite3");
        {
            let kv = KvStore::open(&path, KvLimits::default()).unwrap();
            kv.set("acme", "k", b"v".to_vec()).await.unwrap();
        }
        let kv = KvStore::open(&path, KvLimits::default()).unwrap();
        assert_eq!(kv.get("acme", "k").await, Ok(Some(b"v".to_vec())));
        assert_eq!(kv.usage("acme").await, Ok(KvUsage { keys: 1, bytes: 2 }));
    }
}
