//! Call detail records: one row per call, written off the call path,
//! with the call's decision log (for `GET /v1/calls/{id}/log` and
//! `switchyard replay`) in a column of the same row.
//!
//! `record` never blocks a call: rows go over a channel to a dedicated
//! SQLite thread ([`super::Writer`]) that serialises the logs (JSON
//! lines, the `--json` format) and writes whatever has queued up in one
//! transaction (at 2,000 calls/s a row-per-commit would be the
//! bottleneck). Reads (the REST API's `/v1/calls`) run on that thread too.
//!
//! The log used to be a table of its own on a thread of its own: one
//! insert, two index updates and a commit more per call, a tenth of a
//! refused call's CPU at 2,000 calls/s. [`CdrStore::import_logs`] moves
//! the rows of that older file into this one.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::Writer;
use switchyard_router::DecisionLog;

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

/// One finished call on its way to disk.
struct Finished {
    cdr: Cdr,
    log: DecisionLog,
}

/// Handle to the CDR table; cheap to clone.
#[derive(Clone)]
pub struct CdrStore {
    writer: Writer<Finished>,
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
        handler_version TEXT NOT NULL,
        log TEXT
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
        add_log_column(&conn).map_err(|e| err(e.to_string()))?;
        let writer =
            Writer::start("switchyard-cdr", conn, write).map_err(|e| err(e.to_string()))?;
        Ok(Self { writer })
    }

    /// Queues a call's record and decision log; on disk within one batch.
    pub fn record(&self, cdr: Cdr, log: DecisionLog) {
        if !self.writer.write(Finished { cdr, log }) {
            tracing::error!("call record lost: the CDR writer has stopped");
        }
    }

    /// The decision log of call `call_id` if it belongs to `tenant`
    /// (blocking).
    pub fn log(&self, tenant: &str, call_id: &str) -> Result<Option<DecisionLog>, CdrError> {
        let (tenant, id) = (tenant.to_owned(), call_id.to_owned());
        let lines: Option<Option<String>> = self
            .writer
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT log FROM cdr WHERE call_id = ?1 AND tenant = ?2 LIMIT 1",
                )?
                .query_row(params![id, tenant], |r| r.get(0))
                .optional()
            })
            .map_err(CdrError::Unavailable)?;
        lines
            .flatten()
            .map(|text| DecisionLog::from_json_lines(&text))
            .transpose()
            .map_err(|e| CdrError::Unavailable(format!("the log of {call_id} is unreadable: {e}")))
    }

    /// Moves the decision logs of an older data directory's separate
    /// `logs` file (`path`) into their calls' rows, then renames that file
    /// `*.imported`, so a restart does not import it again. Returns how
    /// many logs found their call (blocking).
    pub fn import_logs(&self, path: &Path) -> Result<usize, CdrError> {
        let from = path.to_string_lossy().into_owned();
        let moved = self
            .writer
            .read(move |conn| {
                conn.execute("ATTACH DATABASE ?1 AS old", [&from])?;
                let moved = conn.execute(
                    "UPDATE cdr SET log = (SELECT lines FROM old.decision_log d
                         WHERE d.call_id = cdr.call_id AND d.tenant = cdr.tenant LIMIT 1)
                     WHERE log IS NULL AND EXISTS (SELECT 1 FROM old.decision_log d
                         WHERE d.call_id = cdr.call_id AND d.tenant = cdr.tenant)",
                    [],
                );
                conn.execute("DETACH DATABASE old", [])?;
                moved
            })
            .map_err(|e| CdrError::Unavailable(format!("cannot import {}: {e}", path.display())))?;
        let mut done = path.as_os_str().to_owned();
        done.push(".imported");
        std::fs::rename(path, &done)
            .map_err(|e| CdrError::Unavailable(format!("cannot rename {}: {e}", path.display())))?;
        Ok(moved)
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

/// A data directory from before the log column gets it (a NULL log:
/// those calls' logs are still in the separate file until imported).
fn add_log_column(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('cdr') WHERE name = 'log'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE cdr ADD COLUMN log TEXT")?;
    }
    Ok(())
}

fn write(conn: &mut Connection, rows: &[Finished]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO cdr VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for Finished { cdr: c, log } in rows {
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
                c.handler_version,
                log.to_json_lines()
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
    use switchyard_contract::guest::ImportRecord;
    use switchyard_contract::{Context, Event, HangupCause, Plan};
    use switchyard_router::Entry;

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

    fn log(call_id: &str) -> DecisionLog {
        let mut log = DecisionLog::default();
        log.push(
            0,
            Entry::Event {
                ctx: Context {
                    call_id: call_id.into(),
                    tenant: "acme".into(),
                    sequence: 0,
                    handler: "ivr".into(),
                },
                event: Event::Hangup(HangupCause::Caller),
            },
        );
        log.push(
            3,
            Entry::Decision {
                sequence: 0,
                outcome: Ok(Plan { verbs: vec![] }),
                imports: vec![ImportRecord::KvGet {
                    key: "stats/calls".into(),
                    result: Ok(Some(b"41".to_vec())),
                }],
                elapsed_us: 120,
            },
        );
        log
    }

    #[test]
    fn logs_are_kept_per_tenant_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.sqlite3");
        let store = CdrStore::open(&path).unwrap();
        store.record(cdr("CA1", "acme", 1_000), log("CA1"));
        store.record(cdr("CA2", "acme", 2_000), log("CA2"));
        assert_eq!(store.log("acme", "CA1").unwrap(), Some(log("CA1")));
        assert_eq!(store.log("globex", "CA1").unwrap(), None);
        assert_eq!(store.log("acme", "CA3").unwrap(), None);
        drop(store);
        let again = CdrStore::open(&path).unwrap();
        assert_eq!(again.log("acme", "CA2").unwrap(), Some(log("CA2")));
    }

    #[test]
    fn a_damaged_log_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.sqlite3");
        let store = CdrStore::open(&path).unwrap();
        store.record(cdr("CA9", "acme", 0), log("CA9"));
        drop(store.list("acme", 1));
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE cdr SET log = '{not json' WHERE call_id = 'CA9'", [])
            .unwrap();
        drop(conn);
        let store = CdrStore::open(&path).unwrap();
        let err = store.log("acme", "CA9").unwrap_err().to_string();
        assert!(err.contains("CA9"), "{err}");
    }

    /// A data directory from before the log column: a `cdr` table without
    /// it and the logs in `logs.sqlite3`, as that version wrote them.
    #[test]
    fn an_older_directory_gets_the_column_and_its_logs_imported() {
        let dir = tempfile::tempdir().unwrap();
        let (cdrs, logs) = (
            dir.path().join("cdr.sqlite3"),
            dir.path().join("logs.sqlite3"),
        );
        let old = Connection::open(&cdrs).unwrap();
        old.execute_batch(&SCHEMA.replace(",\n        log TEXT", ""))
            .unwrap();
        old.execute(
            &format!("INSERT INTO cdr ({COLUMNS}) VALUES ('CA1', 'acme', 'a', 'b', 1, NULL, 2, 0, 'busy', 486, 'ivr', 'v')"),
            [],
        )
        .unwrap();
        drop(old);
        let old = Connection::open(&logs).unwrap();
        old.execute_batch(
            "CREATE TABLE decision_log (call_id TEXT NOT NULL, tenant TEXT NOT NULL,
                 started_ms INTEGER NOT NULL, lines TEXT NOT NULL)",
        )
        .unwrap();
        for (call, tenant) in [("CA1", "acme"), ("CA1", "globex"), ("CA2", "acme")] {
            old.execute(
                "INSERT INTO decision_log VALUES (?1, ?2, 1, ?3)",
                params![call, tenant, log(call).to_json_lines()],
            )
            .unwrap();
        }
        drop(old);

        let store = CdrStore::open(&cdrs).unwrap();
        assert_eq!(store.log("acme", "CA1").unwrap(), None);
        // Only the log whose call (same tenant) has a record finds a row.
        assert_eq!(store.import_logs(&logs).unwrap(), 1);
        assert_eq!(store.log("acme", "CA1").unwrap(), Some(log("CA1")));
        assert!(!logs.exists());
        assert!(dir.path().join("logs.sqlite3.imported").exists());
        store.record(cdr("CA3", "acme", 3), log("CA3"));
        assert_eq!(store.log("acme", "CA3").unwrap(), Some(log("CA3")));
    }

    fn ids(cdrs: &[Cdr]) -> Vec<&str> {
        cdrs.iter().map(|c| c.call_id.as_str()).collect()
    }

    #[test]
    fn records_are_listed_per_tenant_newest_first_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.sqlite3");
        let store = CdrStore::open(&path).unwrap();
        store.record(cdr("c1", "acme", 1), DecisionLog::default());
        store.record(cdr("c2", "acme", 2), DecisionLog::default());
        store.record(cdr("c3", "other", 3), DecisionLog::default());
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
            store.record(c, DecisionLog::default());
        }
        store.record(cdr("x1", "other", 250), DecisionLog::default());
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
