//! Placement records (C11): every outbound call this runtime placed —
//! a dial's fork, a REST call — so that, as a provider, it can answer
//! "did you place a call from X to Y around T?"
//! (`switchyard_directory::answer`).
//!
//! ```text
//!   EndpointEvent::Placed ─► PlacementStore::record (never blocks the SIP core)
//!        ─► Writer thread: batched INSERTs, then DELETE what is older than RETENTION
//!   POST /v1/confirmations ─► PlacementStore::around(caller, from_ms, to_ms) (blocking)
//! ```
//!
//! Rows are the operator's (the provider's) records: no tenant route
//! reads them, and a confirmation reveals only yes / no / unknown. The
//! caller is also kept as its [`caller_key`] (a number as `+digits`
//! however it was written), which is what queries match on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng as _;
use rusqlite::{Connection, params};
use switchyard_directory::caller_key;

use super::Writer;

pub use switchyard_sip::endpoint::Placement;

/// How long a placement is kept. A confirmation asks about a call being
/// set up — a query's `at` may be at most
/// `switchyard_directory::message::MAX_CALL_AGE_SECS` (5 min) from the
/// provider's clock, and matches within `[provider] window_secs` (at most
/// 2 min) of it — so 10 minutes answers every query that can be asked,
/// and no longer: these rows say who called whom.
pub const RETENTION: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    #[error("cannot open the placement records at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("placement records unavailable: {0}")]
    Unavailable(String),
}

/// A placement as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// `PL` and 16 hex digits.
    pub id: String,
    pub tenant: String,
    pub caller: String,
    pub callee: String,
    pub at_ms: u64,
    pub call_id: String,
}

/// Handle to the placement records; cheap to clone.
#[derive(Clone)]
pub struct PlacementStore {
    writer: Writer<Placed>,
}

impl std::fmt::Debug for PlacementStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementStore").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS placement (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        caller TEXT NOT NULL,
        caller_key TEXT NOT NULL,
        callee TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        call_id TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS placement_caller_time ON placement (caller_key, at_ms);
    CREATE INDEX IF NOT EXISTS placement_time ON placement (at_ms);
";

impl PlacementStore {
    pub fn open(path: &Path) -> Result<Self, PlacementError> {
        let err = |reason: String| PlacementError::Open {
            path: path.into(),
            reason,
        };
        let conn = super::open(path, SCHEMA).map_err(err)?;
        let writer =
            Writer::start("switchyard-placements", conn, write).map_err(|e| err(e.to_string()))?;
        Ok(Self { writer })
    }

    /// Queues a placement; on disk within one batch. Never blocks.
    pub fn record(&self, placement: Placement) -> String {
        let id = format!("PL{:016x}", rand::rng().random::<u64>());
        let row = Placed {
            id: id.clone(),
            tenant: placement.tenant,
            caller: placement.caller,
            callee: placement.callee,
            at_ms: placement.at_ms,
            call_id: placement.call_id,
        };
        if !self.writer.write(row) {
            tracing::error!("placement record lost: its writer has stopped");
        }
        id
    }

    /// The placements whose caller is `caller` (as [`caller_key`] reads
    /// it) from `from_ms` to `to_ms`, oldest first, after every placement
    /// queued before (blocking).
    pub fn around(
        &self,
        caller: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Placed>, PlacementError> {
        let key = caller_key(caller);
        self.writer
            .read(move |conn| {
                let mut select = conn.prepare_cached(
                    "SELECT id, tenant, caller, callee, at_ms, call_id FROM placement
                     WHERE caller_key = ?1 AND at_ms BETWEEN ?2 AND ?3 ORDER BY at_ms LIMIT 1000",
                )?;
                let rows = select.query_map(params![key, from_ms as i64, to_ms as i64], |r| {
                    Ok(Placed {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        caller: r.get(2)?,
                        callee: r.get(3)?,
                        at_ms: r.get::<_, i64>(4)? as u64,
                        call_id: r.get(5)?,
                    })
                })?;
                rows.collect()
            })
            .map_err(PlacementError::Unavailable)
    }

    /// Placements kept, in all (blocking).
    pub fn count(&self) -> Result<u64, PlacementError> {
        self.writer
            .read(|conn| {
                conn.query_row("SELECT COUNT(*) FROM placement", [], |r| r.get::<_, i64>(0))
            })
            .map(|n| n as u64)
            .map_err(PlacementError::Unavailable)
    }
}

fn write(conn: &mut Connection, rows: &[Placed]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO placement (id, tenant, caller, caller_key, callee, at_ms, call_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for p in rows {
            insert.execute(params![
                p.id,
                p.tenant,
                p.caller,
                caller_key(&p.caller),
                p.callee,
                p.at_ms as i64,
                p.call_id
            ])?;
        }
        // Pruned by the newest placement's time, not a clock: the store
        // keeps RETENTION of the calls before the latest one.
        if let Some(newest) = rows.iter().map(|p| p.at_ms).max() {
            let before = newest.saturating_sub(RETENTION.as_millis() as u64);
            tx.prepare_cached("DELETE FROM placement WHERE at_ms < ?1")?
                .execute([before as i64])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(caller: &str, callee: &str, at_ms: u64) -> Placement {
        Placement {
            tenant: "acme".into(),
            caller: caller.into(),
            callee: callee.into(),
            call_id: format!("{at_ms}@switchyard"),
            at_ms,
        }
    }

    #[test]
    fn placements_are_found_by_normalised_caller_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlacementStore::open(&dir.path().join("placements.sqlite3")).unwrap();
        let id = store.record(placement("15551230001", "+16669990001", 1_000_000));
        assert!(id.starts_with("PL") && id.len() == 18, "{id}");
        store.record(placement("+15551230002", "+16669990001", 1_000_500));
        store.record(placement("+15551230001", "+16669990003", 1_090_000));
        let found = store.around("+1 555 123 0001", 970_000, 1_030_000).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].id.as_str(), found[0].callee.as_str()),
            (id.as_str(), "+16669990001")
        );
        assert_eq!(found[0].call_id, "1000000@switchyard");
        assert_eq!(
            store
                .around("sip:+15551230001@x", 0, u64::MAX >> 2)
                .unwrap()
                .len(),
            2
        );
        assert!(
            store
                .around("+15551230009", 0, 2_000_000)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn placements_older_than_the_retention_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("placements.sqlite3");
        let store = PlacementStore::open(&path).unwrap();
        let minute = 60_000;
        store.record(placement("+15551230001", "+16669990001", minute));
        store.record(placement("+15551230001", "+16669990002", 5 * minute));
        assert_eq!(store.count().unwrap(), 2);
        // A call 12 minutes in: the first (11 minutes older) goes.
        store.record(placement("+15551230001", "+16669990003", 12 * minute));
        assert_eq!(store.count().unwrap(), 2);
        let left = store.around("+15551230001", 0, 20 * minute).unwrap();
        assert_eq!(left[0].callee, "+16669990002");
        drop(store);
        // Kept across a restart.
        let store = PlacementStore::open(&path).unwrap();
        assert_eq!(store.count().unwrap(), 2);
    }
}
