//! Decision logs: every call's events, plans and host-import results,
//! kept for `GET /v1/calls/{id}/log` and `switchyard replay`.
//!
//! Written like CDRs, off the call path: `record` queues the log for the
//! store's thread ([`super::Writer`]), which serialises it (JSON lines,
//! the `--json` format) and writes the batch in one transaction.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::Writer;
use switchyard_router::DecisionLog;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("cannot open decision logs at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("decision logs unavailable: {0}")]
    Unavailable(String),
}

/// One call's log on its way to disk.
struct Row {
    call_id: String,
    tenant: String,
    started_ms: u64,
    log: DecisionLog,
}

/// Handle to the logs table; cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    writer: Writer<Row>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS decision_log (
        call_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        lines TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS decision_log_call ON decision_log (call_id);
    CREATE INDEX IF NOT EXISTS decision_log_tenant_time ON decision_log (tenant, started_ms);
";

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let err = |reason: String| LogError::Open {
            path: path.into(),
            reason,
        };
        let conn = super::open(path, SCHEMA).map_err(err)?;
        let writer =
            Writer::start("switchyard-logs", conn, write).map_err(|e| err(e.to_string()))?;
        Ok(Self { writer })
    }

    /// Queues the log of call `call_id`; it is on disk within one batch.
    pub fn record(&self, call_id: &str, tenant: &str, started_ms: u64, log: DecisionLog) {
        let row = Row {
            call_id: call_id.into(),
            tenant: tenant.into(),
            started_ms,
            log,
        };
        if !self.writer.write(row) {
            tracing::error!(
                call = call_id,
                "decision log lost: the log writer has stopped"
            );
        }
    }

    /// The log of call `call_id` if it belongs to `tenant` (blocking).
    pub fn get(&self, tenant: &str, call_id: &str) -> Result<Option<DecisionLog>, LogError> {
        let (tenant, id) = (tenant.to_owned(), call_id.to_owned());
        let lines: Option<String> = self
            .writer
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT lines FROM decision_log WHERE call_id = ?1 AND tenant = ?2 LIMIT 1",
                )?
                .query_row(params![id, tenant], |r| r.get(0))
                .optional()
            })
            .map_err(LogError::Unavailable)?;
        lines
            .map(|text| DecisionLog::from_json_lines(&text))
            .transpose()
            .map_err(|e| LogError::Unavailable(format!("the log of {call_id} is unreadable: {e}")))
    }
}

fn write(conn: &mut Connection, rows: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO decision_log VALUES (?1, ?2, ?3, ?4)")?;
        for row in rows {
            insert.execute(params![
                row.call_id,
                row.tenant,
                row.started_ms.min(i64::MAX as u64) as i64,
                row.log.to_json_lines()
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_contract::guest::ImportRecord;
    use switchyard_contract::{Context, Event, HangupCause, Plan};
    use switchyard_router::Entry;

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
        let path = dir.path().join("logs.sqlite3");
        let store = LogStore::open(&path).unwrap();
        store.record("CA1", "acme", 1_000, log("CA1"));
        store.record("CA2", "acme", 2_000, log("CA2"));
        assert_eq!(store.get("acme", "CA1").unwrap(), Some(log("CA1")));
        assert_eq!(store.get("globex", "CA1").unwrap(), None);
        assert_eq!(store.get("acme", "CA3").unwrap(), None);
        drop(store);
        let again = LogStore::open(&path).unwrap();
        assert_eq!(again.get("acme", "CA2").unwrap(), Some(log("CA2")));
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.sqlite3");
        drop(LogStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO decision_log VALUES ('CA9', 'acme', 0, '{not json')",
            [],
        )
        .unwrap();
        drop(conn);
        let store = LogStore::open(&path).unwrap();
        let err = store.get("acme", "CA9").unwrap_err().to_string();
        assert!(err.contains("CA9"), "{err}");
    }
}
