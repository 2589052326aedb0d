//! Call detail records: one row per call, written off the call path.
//!
//! `record` never blocks a call: rows go over a channel to a dedicated
//! SQLite thread that writes whatever has queued up in one transaction
//! (at 2,000 calls/s a row-per-commit would be the bottleneck).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// One finished call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdr {
    pub call_id: String,
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub answered_ms: Option<u64>,
    pub ended_ms: u64,
    /// Seconds from answer to end (0 when never answered).
    pub duration_secs: u64,
    /// How it ended: "completed", "busy", "rejected", "canceled", "failed"…
    pub outcome: String,
    /// Final SIP status sent to the caller, when one was.
    pub sip_status: Option<u16>,
    pub handler: String,
    /// Content hash of the handler's component.
    pub handler_version: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdrError {
    #[error("cannot open call records at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("call records unavailable: {0}")]
    Unavailable(String),
}

enum Job {
    Write(Cdr),
    List {
        tenant: String,
        limit: u32,
        reply: mpsc::Sender<Result<Vec<Cdr>, String>>,
    },
}

/// Handle to the CDR table; cheap to clone.
#[derive(Clone)]
pub struct CdrStore {
    jobs: mpsc::Sender<Job>,
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
";

/// Rows written per transaction at most.
const BATCH: usize = 10_000;

impl CdrStore {
    pub fn open(path: &Path) -> Result<Self, CdrError> {
        let err = |e: &dyn std::fmt::Display| CdrError::Open {
            path: path.into(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(|e| err(&e))?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("switchyard-cdr".into())
            .spawn(move || worker(conn, queue))
            .map_err(|e| err(&e))?;
        Ok(Self { jobs })
    }

    /// Queues a record; it is on disk within one batch.
    pub fn record(&self, cdr: Cdr) {
        if self.jobs.send(Job::Write(cdr)).is_err() {
            tracing::error!("call record lost: the CDR writer has stopped");
        }
    }

    /// The latest `limit` records of `tenant`, newest first (blocking).
    pub fn list(&self, tenant: &str, limit: u32) -> Result<Vec<Cdr>, CdrError> {
        let (reply, answer) = mpsc::channel();
        let job = Job::List {
            tenant: tenant.into(),
            limit,
            reply,
        };
        let gone = || CdrError::Unavailable("the CDR writer has stopped".into());
        self.jobs.send(job).map_err(|_| gone())?;
        answer
            .recv()
            .map_err(|_| gone())?
            .map_err(CdrError::Unavailable)
    }
}

/// How long the writer lets records gather after the first one arrives.
/// While it sleeps, senders find no parked receiver and never pay for a
/// wake-up: one thread switch per batch instead of one per call.
const GATHER: Duration = Duration::from_millis(20);

fn worker(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        if matches!(first, Job::Write(_)) {
            std::thread::sleep(GATHER);
        }
        let mut rows = Vec::new();
        let mut lists = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Write(cdr) => rows.push(cdr),
                Job::List {
                    tenant,
                    limit,
                    reply,
                } => lists.push((tenant, limit, reply)),
            }
            next = if rows.len() < BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = write(&mut conn, &rows) {
            tracing::error!(error = %e, lost = rows.len(), "cannot write call records");
        }
        // Lists run after the writes queued before them, so a caller sees its own calls.
        for (tenant, limit, reply) in lists {
            let _ = reply.send(list(&conn, &tenant, limit).map_err(|e| e.to_string()));
        }
    }
}

fn write(conn: &mut Connection, rows: &[Cdr]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
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

fn list(conn: &Connection, tenant: &str, limit: u32) -> rusqlite::Result<Vec<Cdr>> {
    let mut query = conn.prepare_cached(
        "SELECT call_id, tenant, from_uri, to_uri, started_ms, answered_ms, ended_ms,
                duration_secs, outcome, sip_status, handler, handler_version
         FROM cdr WHERE tenant = ?1 ORDER BY started_ms DESC, rowid DESC LIMIT ?2",
    )?;
    let rows = query.query_map(params![tenant, limit], |row| {
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
    })?;
    rows.collect()
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

    #[test]
    fn records_are_listed_per_tenant_newest_first_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.sqlite3");
        let store = CdrStore::open(&path).unwrap();
        store.record(cdr("c1", "acme", 1));
        store.record(cdr("c2", "acme", 2));
        store.record(cdr("c3", "other", 3));
        let acme = store.list("acme", 10).unwrap();
        assert_eq!(
            acme.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
            ["c2", "c1"]
        );
        drop(store);
        let again = CdrStore::open(&path).unwrap();
        assert_eq!(
            again.list("other", 10).unwrap(),
            vec![cdr("c3", "other", 3)]
        );
    }
}
