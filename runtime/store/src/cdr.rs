//! Call detail records: one row per call, written off the call path.
//!
//! `record` never blocks a call: rows go over a channel to a dedicated
//! SQLite thread ([`super::Writer`]) that writes whatever has queued up in
//! one transaction (at 2,000 calls/s a row-per-commit would be the
//! bottleneck). Reads (the REST API's `/v1/calls`) run on that thread too.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::Writer;

pub use switchyard_sip::cdr::Cdr;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdrError {
    #[error("cannot open call records at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("call records unavailable: {0}")]
    Unavailable(String),
}

/// Which of a tenant's records a page holds; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    /// The outcome ("completed", "busy"…).
    pub outcome: Option<String>,
    /// What was dialled (the CDR's `to`).
    pub to: Option<String>,
    /// Started at or after, unix ms.
    pub since_ms: Option<u64>,
    /// Started before, unix ms.
    pub until_ms: Option<u64>,
}

/// Handle to the CDR table; cheap to clone.
#[derive(Clone)]
pub struct CdrStore {
    writer: Writer<Cdr>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS cdr (
        call_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        from_uri TEXT NOT NULL,
        to_uri TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        answered_ms INTEGER,
        ended_ms INTEGER NOT NULL,
        duration_secs INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        sip_status INTEGER,
        handler TEXT NOT NULL,
        handler_version TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS cdr_tenant_time ON cdr (tenant, started_ms);
    CREATE INDEX IF NOT EXISTS cdr_call ON cdr (call_id);
";

const COLUMNS: &str = "call_id, tenant, from_uri, to_uri, started_ms, answered_ms, ended_ms,
    duration_secs, outcome, sip_status, handler, handler_version";

impl std::fmt::Debug for CdrStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdrStore").finish_non_exhaustive()
    }
}

impl CdrStore {
    pub fn open(path: &Path) -> Result<Self, CdrError> {
        let err = |reason: String| CdrError::Open {
            path: path.into(),
            reason,
        };
        let conn = super::open(path, SCHEMA).map_err(err)?;
        let writer =
            Writer::start("switchyard-cdr", conn, write).map_err(|e| err(e.to_string()))?;
        Ok(Self { writer })
    }

    /// Queues a record; it is on disk within one batch.
    pub fn record(&self, cdr: Cdr) {
        if !self.writer.write(cdr) {
            tracing::error!("call record lost: the CDR writer has stopped");
        }
    }

    /// The latest `limit` records of `tenant`, newest first (blocking).
    pub fn list(&self, tenant: &str, limit: u32) -> Result<Vec<Cdr>, CdrError> {
        self.page(tenant, &CdrFilter::default(), None, limit)
            .map(Option::unwrap_or_default)
    }

    /// Up to `limit` of `tenant`'s records matching `filter`, newest first
    /// (by start, then by arrival), after the record of call `after` if
    /// given. `None` when `after` is no call of `tenant` (blocking).
    pub fn page(
        &self,
        tenant: &str,
        filter: &CdrFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<Cdr>>, CdrError> {
        let (tenant, filter, after) = (tenant.to_owned(), filter.clone(), after.map(str::to_owned));
        self.writer
            .read(move |conn| page(conn, &tenant, &filter, after.as_deref(), limit))
            .map_err(CdrError::Unavailable)
    }

    /// The record of call `call_id` if it belongs to `tenant` (blocking).
    pub fn get(&self, tenant: &str, call_id: &str) -> Result<Option<Cdr>, CdrError> {
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.writer
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM cdr WHERE call_id = ?1 AND tenant = ?2 LIMIT 1"
                ))?
                .query_row(params![call_id, tenant], cdr)
                .optional()
            })
            .map_err(CdrError::Unavailable)
    }
}

fn write(conn: &mut Connection, rows: &[Cdr]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO cdr VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for c in rows {
            insert.execute(params![
                c.call_id,
                c.tenant,
                c.from,
                c.to,
                c.started_ms as i64,
                c.answered_ms.map(|v| v as i64),
                c.ended_ms as i64,
                c.duration_secs as i64,
                c.outcome,
                c.sip_status,
                c.handler,
                c.handler_version
            ])?;
        }
    }
    tx.commit()
}

fn page(
    conn: &Connection,
    tenant: &str,
    filter: &CdrFilter,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Option<Vec<Cdr>>> {
    let mut sql = format!("SELECT {COLUMNS} FROM cdr WHERE tenant = ?");
    let mut args = vec![Value::from(tenant.to_owned())];
    if let Some(after) = after {
        // The cursor is a position in the order, so a page never repeats
        // or skips a row, whatever arrives in between.
        let cursor: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT started_ms, rowid FROM cdr WHERE tenant = ?1 AND call_id = ?2 LIMIT 1",
            )?
            .query_row(params![tenant, after], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((started, rowid)) = cursor else {
            return Ok(None);
        };
        sql += " AND (started_ms < ? OR (started_ms = ? AND rowid < ?))";
        args.extend([started, started, rowid].map(Value::from));
    }
    if let Some(outcome) = &filter.outcome {
        sql += " AND outcome = ?";
        args.push(Value::from(outcome.clone()));
    }
    if let Some(to) = &filter.to {
        sql += " AND to_uri = ?";
        args.push(Value::from(to.clone()));
    }
    if let Some(since) = filter.since_ms {
        sql += " AND started_ms >= ?";
        args.push(Value::from(since.min(i64::MAX as u64) as i64));
    }
    if let Some(until) = filter.until_ms {
        sql += " AND started_ms < ?";
        args.push(Value::from(until.min(i64::MAX as u64) as i64));
    }
    sql += " ORDER BY started_ms DESC, rowid DESC LIMIT ?";
    args.push(Value::from(i64::from(limit)));
    let mut query = conn.prepare_cached(&sql)?;
    let rows = query.query_map(params_from_iter(args), cdr)?;
    rows.collect::<rusqlite::Result<_>>().map(Some)
}

fn cdr(row: &Row<'_>) -> rusqlite::Result<Cdr> {
    Ok(Cdr {
        call_id: row.get(0)?,
        tenant: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        started_ms: row.get::<_, i64>(4)? as u64,
        answered_ms: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        ended_ms: row.get::<_, i64>(6)? as u64,
        duration_secs: row.get::<_, i64>(7)? as u64,
        outcome: row.get(8)?,
        sip_status: row.get(9)?,
        handler: row.get(10)?,
        handler_version: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdr(call_id: &str, tenant: &str, started_ms: u64) -> Cdr {
        Cdr {
            call_id: call_id.into(),
            tenant: tenant.into(),
            from: "sip:a@x".into(),
            to: "sip:b@y".into(),
            started_ms,
            answered_ms: Some(started_ms + 10),
            ended_ms: started_ms + 1_000,
            duration_secs: 1,
            outcome: "completed".into(),
            sip_status: Some(200),
            handler: "ivr".into(),
            handler_version: "abc".into(),
        }
    }

    fn ids(cdrs: &[Cdr]) -> Vec<&str> {
        cdrs.iter().map(|c| c.call_id.as_str()).collect()
    }

    #[test]
    fn records_are_listed_per_tenant_newest_first_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.sqlite3");
        let store = CdrStore::open(&path).unwrap();
        store.record(cdr("c1", "acme", 1));
        store.record(cdr("c2", "acme", 2));
        store.record(cdr("c3", "other", 3));
        let acme = store.list("acme", 10).unwrap();
        assert_eq!(ids(&acme), ["c2", "c1"]);
        drop(store);
        let again = CdrStore::open(&path).unwrap();
        assert_eq!(
            again.list("other", 10).unwrap(),
            vec![cdr("c3", "other", 3)]
        );
    }

    #[test]
    fn pages_filter_and_follow_the_cursor_within_one_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = CdrStore::open(&dir.path().join("cdr.sqlite3")).unwrap();
        // c2 and c3 start in the same millisecond: arrival order breaks the tie.
        for (id, started, outcome, to) in [
            ("c1", 100, "completed", "+1"),
            ("c2", 200, "busy", "+2"),
            ("c3", 200, "completed", "+1"),
            ("c4", 300, "failed", "+1"),
            ("c5", 400, "completed", "+2"),
        ] {
            let mut c = cdr(id, "acme", started);
            c.outcome = outcome.into();
            c.to = to.into();
            store.record(c);
        }
        store.record(cdr("x1", "other", 250));
        let all = CdrFilter::default();

        let first = store.page("acme", &all, None, 2).unwrap().unwrap();
        assert_eq!(ids(&first), ["c5", "c4"]);
        let second = store.page("acme", &all, Some("c4"), 2).unwrap().unwrap();
        assert_eq!(ids(&second), ["c3", "c2"]);
        let last = store.page("acme", &all, Some("c2"), 2).unwrap().unwrap();
        assert_eq!(ids(&last), ["c1"]);
        // Another tenant's call is no cursor, and unknown ones neither.
        assert_eq!(store.page("acme", &all, Some("x1"), 2).unwrap(), None);
        assert_eq!(store.page("acme", &all, Some("nope"), 2).unwrap(), None);

        let completed = CdrFilter {
            outcome: Some("completed".into()),
            ..all.clone()
        };
        let found = store.page("acme", &completed, None, 10).unwrap().unwrap();
        assert_eq!(ids(&found), ["c5", "c3", "c1"]);
        let to_one_since = CdrFilter {
            to: Some("+1".into()),
            since_ms: Some(200),
            ..all.clone()
        };
        let found = store
            .page("acme", &to_one_since, None, 10)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&found), ["c4", "c3"]);
        let until = CdrFilter {
            until_ms: Some(300),
            ..all.clone()
        };
        let found = store.page("acme", &until, Some("c3"), 10).unwrap().unwrap();
        assert_eq!(ids(&found), ["c2", "c1"]);

        assert_eq!(store.get("acme", "c3").unwrap().unwrap().to, "+1");
        assert_eq!(store.get("acme", "x1").unwrap(), None);
        assert_eq!(store.get("other", "x1").unwrap().unwrap().started_ms, 250);
    }
}
