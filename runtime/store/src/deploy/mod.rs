//! What each tenant has deployed: uploaded components (immutable,
//! content-hashed, numbered versions) and the numbers bound to them, with
//! their fallback, status callback, canary and the version to roll back to.
//!
//! ```text
//!   POST /v1/components/ivr  ──▶ blobs/<sha256>.wasm (once per content)
//!                               components: (tenant, ivr, 3, sha256, world…)
//!   PUT  /v1/numbers/+1555…  ──▶ numbers: +1555… → ivr v3 (previous v2),
//!                               canary v4 at 10 %
//!   serve::provision         ──▶ reads both and rebuilds the SIP directory
//! ```
//!
//! A version is never changed or deleted once stored, so a number pinned to
//! it keeps answering exactly as tested. A number belongs to one tenant at
//! a time. SQLite (`storage/deploy.sqlite3`), blobs beside it.

pub mod canary;
mod sip;

pub use sip::{SipDomain, SipUser, valid_domain};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use switchyard_sip::directory::Limits;
use switchyard_wasm::GuestLimits;

/// One stored version of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentVersion {
    pub name: String,
    pub version: u32,
    /// Hex SHA-256 of the bytes.
    pub hash: String,
    /// The world it implements (`call-handler`, ...).
    pub world: String,
    pub size: u64,
    pub created_ms: u64,
}

/// A component and its newest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentSummary {
    pub name: String,
    pub latest_version: u32,
    pub versions: u32,
}

/// A share of a number's new calls sent to another version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub version: u32,
    /// Percent of new calls, 1..=99.
    pub percent: u8,
    /// Share of the canary's calls that may fail (trap, deadline, invalid
    /// plan: anything that ran the fallback) before it is rolled back.
    #[serde(default = "default_failure_rate")]
    pub max_failure_rate: f64,
    /// Calls the canary must have finished before its rate is judged.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
}

fn default_failure_rate() -> f64 {
    0.2
}

fn default_min_calls() -> u32 {
    5
}

/// Why a canary ended by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolledBack {
    pub version: u32,
    pub calls: u32,
    pub failures: u32,
    pub at_ms: u64,
}

/// A number (or SIP user part, or `*`) bound to a component version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Number {
    pub number: String,
    pub component: String,
    pub version: u32,
    /// The version before the last change of `version` (what `rollback`
    /// returns to).
    pub previous_version: Option<u32>,
    /// A component (its newest version) that gets the event when this
    /// one fails, before the static apology.
    pub fallback: Option<String>,
    pub status_callback: Option<String>,
    pub canary: Option<Canary>,
    /// The last canary that was rolled back automatically.
    pub canary_rolled_back: Option<RolledBack>,
    pub updated_ms: u64,
}

/// What a tenant asks a number to be bound to.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBinding {
    pub component: String,
    pub version: u32,
    pub fallback: Option<String>,
    pub status_callback: Option<String>,
    pub canary: Option<Canary>,
}

/// An account's own limits, set by the operator; what is not set comes
/// from the config (`[[tenant]]` for config tenants, `[admission]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLimits {
    /// Calls in progress at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// New calls per second at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<u32>,
    /// Calls that may wait for a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Longest admission wait, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<u64>,
    /// Guest linear memory, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_memory_mb: Option<u64>,
    /// Guest wall time per event, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_deadline_ms: Option<u64>,
    /// Largest component upload, KiB (at most `[api] max_component_kb`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_kb: Option<u64>,
}

impl AccountLimits {
    /// These limits over the configured admission `limits`.
    pub fn apply(&self, limits: &mut Limits) {
        if self.max_calls.is_some() {
            limits.max_calls = self.max_calls;
        }
        if self.calls_per_second.is_some() {
            limits.calls_per_second = self.calls_per_second;
        }
        if let Some(queue) = self.queue {
            limits.queue = queue;
        }
        if let Some(ms) = self.queue_wait_ms {
            limits.queue_wait = Duration::from_millis(ms);
        }
    }

    pub fn sets_guest_limits(&self) -> bool {
        self.guest_memory_mb.is_some() || self.guest_deadline_ms.is_some()
    }

    /// These limits over the guest limits `base`.
    pub fn guest(&self, mut base: GuestLimits) -> GuestLimits {
        if let Some(mb) = self.guest_memory_mb {
            base.memory_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(ms) = self.guest_deadline_ms {
            base.deadline = Duration::from_millis(ms);
        }
        base
    }
}

/// Why a store operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("number {0:?} is bound by another account")]
    NumberTaken(String),
    #[error("SIP domain {0:?} belongs to another account")]
    DomainTaken(String),
    #[error("no version before {0} to roll back to")]
    NothingToRollBack(u32),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for DeployError {
    fn from(e: rusqlite::Error) -> Self {
        DeployError::Store(e.into())
    }
}

/// The deployment store. Cheap to clone.
#[derive(Clone)]
pub struct Deployments {
    db: Arc<Mutex<Connection>>,
    blobs: PathBuf,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments")
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS components (
        tenant     TEXT NOT NULL,
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        hash       TEXT NOT NULL,
        world      TEXT NOT NULL,
        size       INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, name, version)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS numbers (
        number           TEXT PRIMARY KEY,
        tenant           TEXT NOT NULL,
        component        TEXT NOT NULL,
        version          INTEGER NOT NULL,
        previous_version INTEGER,
        fallback         TEXT,
        status_callback  TEXT,
        canary           TEXT,
        rolled_back      TEXT,
        updated_ms       INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS numbers_tenant ON numbers (tenant, number);
    CREATE TABLE IF NOT EXISTS sip_users (
        tenant     TEXT NOT NULL,
        username   TEXT NOT NULL,
        password   TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, username)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS sip_domains (
        domain     TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS sip_domains_tenant ON sip_domains (tenant, domain);
    CREATE TABLE IF NOT EXISTS limits (
        tenant TEXT PRIMARY KEY,
        limits TEXT NOT NULL
    ) WITHOUT ROWID;
";

const NUMBER_COLUMNS: &str = "number, component, version, previous_version, fallback, \
                              status_callback, canary, rolled_back, updated_ms";

/// The tenant `select` (one `?1` parameter: `key`) names, if any.
fn owner(db: &Connection, select: &str, key: &str) -> rusqlite::Result<Option<String>> {
    db.query_row(select, params![key], |r| r.get(0)).optional()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `name` is a usable component name: 1–64 of `[A-Za-z0-9_-]`
/// (it goes into paths, logs and CDRs).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `number` is a usable number key: `*`, or 1–64 printable
/// characters without spaces or `/`.
pub fn valid_number(number: &str) -> bool {
    number == "*"
        || ((1..=64).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
}

impl Deployments {
    /// Opens (or creates) the store in `dir` (`deploy.sqlite3` and `blobs/`).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let blobs = dir.join("blobs");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        let path = dir.join("deploy.sqlite3");
        let conn = crate::open(&path, SCHEMA)
            .map_err(|e| anyhow::anyhow!("opening the deployment store {}: {e}", path.display()))?;
        Ok(Self {
            db: Arc::new(Mutex::new(conn)),
            blobs,
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.blobs.join(format!("{hash}.wasm"))
    }

    /// Stores `bytes` as the next version of `tenant`'s component `name`;
    /// the same bytes as an existing version return that version and
    /// `false` (uploads are idempotent).
    pub fn add_component(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
        hash: &str,
        world: &str,
    ) -> anyhow::Result<(ComponentVersion, bool)> {
        let path = self.blob_path(hash);
        if !path.exists() {
            // Written under a temporary name and renamed, so a crash never
            // leaves a truncated blob under its hash.
            let tmp = self
                .blobs
                .join(format!("{hash}.{:08x}.tmp", rand::random::<u32>()));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("storing {}", path.display()))?;
        }
        let mut db = self.db();
        let tx = db.transaction()?;
        let existing = tx
            .query_row(
                "SELECT name, version, hash, world, size, created_ms FROM components
                 WHERE tenant = ?1 AND name = ?2 AND hash = ?3",
                params![tenant, name, hash],
                row_to_version,
            )
            .optional()?;
        if let Some(existing) = existing {
            return Ok((existing, false));
        }
        let latest: Option<u32> = tx.query_row(
            "SELECT MAX(version) FROM components WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
            |r| r.get(0),
        )?;
        let stored = ComponentVersion {
            name: name.to_owned(),
            version: latest.unwrap_or(0) + 1,
            hash: hash.to_owned(),
            world: world.to_owned(),
            size: bytes.len() as u64,
            created_ms: now_ms(),
        };
        tx.execute(
            "INSERT INTO components (tenant, name, version, hash, world, size, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                tenant,
                stored.name,
                stored.version,
                stored.hash,
                stored.world,
                stored.size as i64,
                stored.created_ms as i64
            ],
        )?;
        tx.commit()?;
        Ok((stored, true))
    }

    /// The bytes of a stored version.
    pub fn bytes(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.blob_path(hash);
        std::fs::read(&path).with_context(|| format!("reading component {}", path.display()))
    }

    /// `tenant`'s components in name order after `after`.
    pub fn components(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<ComponentSummary>> {
        self.db()
            .prepare_cached(
                "SELECT name, MAX(version), COUNT(*) FROM components
                 WHERE tenant = ?1 AND name > ?2 GROUP BY name ORDER BY name LIMIT ?3",
            )?
            .query_map(params![tenant, after.unwrap_or(""), limit], |r| {
                Ok(ComponentSummary {
                    name: r.get(0)?,
                    latest_version: r.get(1)?,
                    versions: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
            .context("listing components")
    }

    /// Versions of `name`, oldest first, after version `after`.
    pub fn versions(
        &self,
        tenant: &str,
        name: &str,
        after: u32,
        limit: u32,
    ) -> anyhow::Result<Vec<ComponentVersion>> {
        self.db()
            .prepare_cached(
                "SELECT name, version, hash, world, size, created_ms FROM components
                 WHERE tenant = ?1 AND name = ?2 AND version > ?3 ORDER BY version LIMIT ?4",
            )?
            .query_map(params![tenant, name, after, limit], row_to_version)?
            .collect::<Result<Vec<_>, _>>()
            .context("listing component versions")
    }

    /// Version `version` of `name`, or the newest with `None`.
    pub fn version(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> anyhow::Result<Option<ComponentVersion>> {
        self.db()
            .query_row(
                "SELECT name, version, hash, world, size, created_ms FROM components
                 WHERE tenant = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
                 ORDER BY version DESC LIMIT 1",
                params![tenant, name, version],
                row_to_version,
            )
            .optional()
            .context("reading a component version")
    }

    /// Binds `number` for `tenant`. A rebinding to another version keeps
    /// the old one as `previous_version`.
    pub fn bind(
        &self,
        tenant: &str,
        number: &str,
        new: &NewBinding,
    ) -> Result<Number, DeployError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let owner = owner(&tx, "SELECT tenant FROM numbers WHERE number = ?1", number)?;
        if owner.as_deref().is_some_and(|o| o != tenant) {
            return Err(DeployError::NumberTaken(number.to_owned()));
        }
        let old = read_number(&tx, tenant, number)?;
        let previous = match &old {
            Some(old) if old.component == new.component && old.version == new.version => {
                old.previous_version
            }
            Some(old) if old.component == new.component => Some(old.version),
            _ => None,
        };
        let canary = new.canary.as_ref().map(serde_json::to_string).transpose();
        let canary = canary.context("encoding the canary")?;
        let rolled_back = old.as_ref().and_then(|o| o.canary_rolled_back.clone());
        let rolled_back = rolled_back.as_ref().map(serde_json::to_string).transpose();
        tx.execute(
            "INSERT OR REPLACE INTO numbers (number, tenant, component, version,
                 previous_version, fallback, status_callback, canary, rolled_back, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                number,
                tenant,
                new.component,
                new.version,
                previous,
                new.fallback,
                new.status_callback,
                canary,
                rolled_back.context("encoding the rollback")?,
                now_ms() as i64
            ],
        )?;
        let bound = read_number(&tx, tenant, number)?;
        tx.commit()?;
        bound.ok_or_else(|| DeployError::Store(anyhow::anyhow!("number vanished while binding")))
    }

    /// Back to the previous version; the canary (if any) ends.
    pub fn rollback(&self, tenant: &str, number: &str) -> Result<Option<Number>, DeployError> {
        let db = self.db();
        let Some(old) = read_number(&db, tenant, number)? else {
            return Ok(None);
        };
        let Some(previous) = old.previous_version else {
            return Err(DeployError::NothingToRollBack(old.version));
        };
        db.execute(
            "UPDATE numbers SET version = ?3, previous_version = NULL, canary = NULL,
                 updated_ms = ?4
             WHERE tenant = ?1 AND number = ?2",
            params![tenant, number, previous, now_ms() as i64],
        )?;
        Ok(read_number(&db, tenant, number)?)
    }

    /// Ends `number`'s canary on `version` because it failed too often;
    /// `false` if that canary is no longer there.
    pub fn roll_back_canary(
        &self,
        tenant: &str,
        number: &str,
        version: u32,
        calls: u32,
        failures: u32,
    ) -> anyhow::Result<bool> {
        let db = self.db();
        let Some(old) = read_number(&db, tenant, number)? else {
            return Ok(false);
        };
        if old.canary.as_ref().map(|c| c.version) != Some(version) {
            return Ok(false);
        }
        let record = RolledBack {
            version,
            calls,
            failures,
            at_ms: now_ms(),
        };
        db.execute(
            "UPDATE numbers SET canary = NULL, rolled_back = ?3, updated_ms = ?4
             WHERE tenant = ?1 AND number = ?2",
            params![
                tenant,
                number,
                serde_json::to_string(&record)?,
                record.at_ms as i64
            ],
        )?;
        Ok(true)
    }

    pub fn number(&self, tenant: &str, number: &str) -> anyhow::Result<Option<Number>> {
        Ok(read_number(&self.db(), tenant, number)?)
    }

    /// `tenant`'s numbers in order after `after`.
    pub fn numbers(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<Number>> {
        self.db()
            .prepare_cached(&format!(
                "SELECT {NUMBER_COLUMNS} FROM numbers WHERE tenant = ?1 AND number > ?2
                 ORDER BY number LIMIT ?3"
            ))?
            .query_map(params![tenant, after.unwrap_or(""), limit], row_to_number)?
            .collect::<Result<Vec<_>, _>>()
            .context("listing numbers")
    }

    /// Every bound number with its tenant (to build the directory).
    pub fn all_numbers(&self) -> anyhow::Result<Vec<(String, Number)>> {
        self.db()
            .prepare_cached(&format!(
                "SELECT {NUMBER_COLUMNS}, tenant FROM numbers ORDER BY number"
            ))?
            .query_map([], |r| Ok((r.get(9)?, row_to_number(r)?)))?
            .collect::<Result<Vec<_>, _>>()
            .context("listing numbers")
    }

    pub fn set_limits(&self, tenant: &str, limits: &AccountLimits) -> anyhow::Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO limits (tenant, limits) VALUES (?1, ?2)",
            params![tenant, serde_json::to_string(limits)?],
        )?;
        Ok(())
    }

    /// `tenant`'s own limits (none set: all default).
    pub fn limits(&self, tenant: &str) -> anyhow::Result<AccountLimits> {
        let text: Option<String> = self
            .db()
            .query_row(
                "SELECT limits FROM limits WHERE tenant = ?1",
                params![tenant],
                |r| r.get(0),
            )
            .optional()?;
        match text {
            Some(text) => serde_json::from_str(&text).context("reading the account's limits"),
            None => Ok(AccountLimits::default()),
        }
    }

    /// Every account's own limits (unreadable rows are skipped with a warning).
    pub fn all_limits(&self) -> anyhow::Result<std::collections::HashMap<String, AccountLimits>> {
        let rows = self
            .db()
            .prepare_cached("SELECT tenant, limits FROM limits")?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(tenant, text)| match serde_json::from_str(&text) {
                Ok(limits) => Some((tenant, limits)),
                Err(e) => {
                    tracing::warn!(%tenant, "unreadable limits ignored: {e}");
                    None
                }
            })
            .collect())
    }

    /// `false` if `tenant` had no such number.
    pub fn unbind(&self, tenant: &str, number: &str) -> anyhow::Result<bool> {
        let removed = self.db().execute(
            "DELETE FROM numbers WHERE tenant = ?1 AND number = ?2",
            params![tenant, number],
        )?;
        Ok(removed > 0)
    }
}

fn read_number(db: &Connection, tenant: &str, number: &str) -> rusqlite::Result<Option<Number>> {
    db.query_row(
        &format!("SELECT {NUMBER_COLUMNS} FROM numbers WHERE tenant = ?1 AND number = ?2"),
        params![tenant, number],
        row_to_number,
    )
    .optional()
}

fn row_to_version(r: &Row<'_>) -> rusqlite::Result<ComponentVersion> {
    Ok(ComponentVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        hash: r.get(2)?,
        world: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        created_ms: r.get::<_, i64>(5)? as u64,
    })
}

fn row_to_number(r: &Row<'_>) -> rusqlite::Result<Number> {
    // JSON columns written by this module; an unreadable one (a newer
    // format, a hand edit) reads as absent rather than failing every list.
    let json = |i: usize| -> rusqlite::Result<Option<String>> { r.get(i) };
    Ok(Number {
        number: r.get(0)?,
        component: r.get(1)?,
        version: r.get(2)?,
        previous_version: r.get(3)?,
        fallback: r.get(4)?,
        status_callback: r.get(5)?,
        canary: json(6)?.and_then(|t| serde_json::from_str(&t).ok()),
        canary_rolled_back: json(7)?.and_then(|t| serde_json::from_str(&t).ok()),
        updated_ms: r.get::<_, i64>(8)? as u64,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn store() -> (tempfile::TempDir, Deployments) {
        let dir = tempfile::tempdir().unwrap();
        let store = Deployments::open(dir.path()).unwrap();
        (dir, store)
    }

    fn binding(component: &str, version: u32) -> NewBinding {
        NewBinding {
            component: component.into(),
            version,
            fallback: None,
            status_callback: None,
            canary: None,
        }
    }

    #[test]
    fn versions_count_up_and_the_same_bytes_are_the_same_version() {
        let (_dir, store) = store();
        let (v1, new) = store
            .add_component("acme", "ivr", b"one", "h1", "call-handler")
            .unwrap();
        assert_eq!((v1.version, new), (1, true));
        let (v2, _) = store
            .add_component("acme", "ivr", b"two", "h2", "call-handler")
            .unwrap();
        assert_eq!(v2.version, 2);
        let (again, new) = store
            .add_component("acme", "ivr", b"one", "h1", "call-handler")
            .unwrap();
        assert_eq!((again.version, new), (1, false));
        // Another tenant's versions are its own.
        let (other, _) = store
            .add_component("globex", "ivr", b"two", "h2", "call-handler")
            .unwrap();
        assert_eq!(other.version, 1);
        assert_eq!(store.bytes("h2").unwrap(), b"two");
        let latest = store.version("acme", "ivr", None).unwrap().unwrap();
        assert_eq!(latest.version, 2);
        assert_eq!(store.versions("acme", "ivr", 1, 10).unwrap(), vec![v2]);
        let list = store.components("acme", None, 10).unwrap();
        assert_eq!((list[0].latest_version, list[0].versions), (2, 2));
        assert!(store.version("globex", "nope", None).unwrap().is_none());
    }

    #[test]
    fn a_number_belongs_to_one_tenant_and_rolls_back_once() {
        let (_dir, store) = store();
        store.bind("acme", "100", &binding("ivr", 1)).unwrap();
        assert!(matches!(
            store.bind("globex", "100", &binding("ivr", 1)),
            Err(DeployError::NumberTaken(_))
        ));
        let moved = store.bind("acme", "100", &binding("ivr", 2)).unwrap();
        assert_eq!((moved.version, moved.previous_version), (2, Some(1)));
        let back = store.rollback("acme", "100").unwrap().unwrap();
        assert_eq!((back.version, back.previous_version), (1, None));
        assert!(matches!(
            store.rollback("acme", "100"),
            Err(DeployError::NothingToRollBack(1))
        ));
        assert!(store.rollback("globex", "100").unwrap().is_none());
        assert_eq!(store.all_numbers().unwrap()[0].0, "acme");
        assert!(!store.unbind("globex", "100").unwrap());
        assert!(store.unbind("acme", "100").unwrap());
        store.bind("globex", "100", &binding("ivr", 1)).unwrap();
    }

    #[test]
    fn a_failing_canary_is_recorded_and_removed() {
        let (_dir, store) = store();
        let mut new = binding("ivr", 1);
        new.canary = Some(Canary {
            version: 2,
            percent: 50,
            max_failure_rate: 0.2,
            min_calls: 5,
        });
        store.bind("acme", "100", &new).unwrap();
        assert!(!store.roll_back_canary("acme", "100", 3, 5, 5).unwrap());
        assert!(store.roll_back_canary("acme", "100", 2, 6, 4).unwrap());
        let number = store.number("acme", "100").unwrap().unwrap();
        assert_eq!(number.canary, None);
        let rolled = number.canary_rolled_back.unwrap();
        assert_eq!((rolled.version, rolled.calls, rolled.failures), (2, 6, 4));
    }

    #[test]
    fn an_accounts_own_limits_override_only_what_they_set() {
        let (_dir, store) = store();
        let own = AccountLimits {
            max_calls: Some(3),
            queue_wait_ms: Some(500),
            guest_deadline_ms: Some(50),
            ..AccountLimits::default()
        };
        store.set_limits("acme", &own).unwrap();
        let stored = store.all_limits().unwrap();
        assert_eq!(stored.get("acme"), Some(&own));
        assert!(!stored.contains_key("globex"));
        assert_eq!(store.limits("acme").unwrap(), own);
        assert_eq!(store.limits("globex").unwrap(), AccountLimits::default());
        let mut limits = Limits {
            calls_per_second: Some(9),
            queue: 10,
            ..Limits::default()
        };
        own.apply(&mut limits);
        assert_eq!(
            (limits.max_calls, limits.calls_per_second, limits.queue),
            (Some(3), Some(9), 10)
        );
        assert_eq!(limits.queue_wait, Duration::from_millis(500));
        let guest = own.guest(GuestLimits::default());
        assert_eq!(guest.deadline, Duration::from_millis(50));
        assert_eq!(guest.memory_bytes, GuestLimits::default().memory_bytes);
    }

    #[test]
    fn names_and_numbers_are_checked() {
        assert!(valid_name("ivr-v2_x"));
        assert!(!valid_name("../x") && !valid_name("") && !valid_name("a b"));
        assert!(valid_number("+15550100") && valid_number("*") && valid_number("alice"));
        assert!(!valid_number("a/b") && !valid_number("a b") && !valid_number(""));
    }
}
