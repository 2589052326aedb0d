//! Ended conferences: what `/v1/conferences` shows once a room is gone,
//! across restarts. An open conference lives in the media edge's
//! directory; the moment it closes, its summary is queued here (one row,
//! written behind like the CDRs, [`super::Writer`]) and the directory
//! forgets it.
//!
//! A conference's mixed recording is stored after the room closes (the
//! WAV is written off the engine's threads), so its id may arrive after
//! the row: [`ConferenceStore::recorded`] fills it in. Both go through the
//! one writer thread in the order they were queued.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Writer;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConferenceStoreError {
    #[error("cannot open conference history at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("conference history unavailable: {0}")]
    Unavailable(String),
}

/// A conference that has ended, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedConference {
    pub tenant: String,
    /// `CF` and hex digits.
    pub sid: String,
    pub name: String,
    pub created_unix_ms: u64,
    /// `None`: it ended before anyone started it.
    pub started_unix_ms: Option<u64>,
    pub ended_unix_ms: u64,
    /// `last-left`, `end-on-exit` or `ended` (REST).
    pub ended_by: String,
    pub recording_id: Option<String>,
}

enum Change {
    Ended(EndedConference),
    Recorded { sid: String, recording_id: String },
}

/// Handle to the history; cheap to clone.
#[derive(Clone)]
pub struct ConferenceStore {
    writer: Writer<Change>,
}

impl std::fmt::Debug for ConferenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceStore").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS conference (
        sid TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        ended_ms INTEGER NOT NULL,
        ended_by TEXT NOT NULL,
        recording_id TEXT
    );
    CREATE INDEX IF NOT EXISTS conference_tenant_time
        ON conference (tenant, created_ms, sid);
";

const COLUMNS: &str = "tenant, sid, name, created_ms, started_ms, ended_ms, ended_by, recording_id";

impl ConferenceStore {
    pub fn open(path: &Path) -> Result<Self, ConferenceStoreError> {
        let err = |reason: String| ConferenceStoreError::Open {
            path: path.into(),
            reason,
        };
        let conn = super::open(path, SCHEMA).map_err(err)?;
        let writer =
            Writer::start("switchyard-conferences", conn, write).map_err(|e| err(e.to_string()))?;
        Ok(Self { writer })
    }

    /// Queues an ended conference; on disk within one batch.
    pub fn ended(&self, conference: EndedConference) {
        if !self.writer.write(Change::Ended(conference)) {
            tracing::error!("conference history lost: its writer has stopped");
        }
    }

    /// The mixed recording of conference `sid` was stored as
    /// `recording_id`.
    pub fn recorded(&self, sid: &str, recording_id: &str) {
        let change = Change::Recorded {
            sid: sid.to_owned(),
            recording_id: recording_id.to_owned(),
        };
        if !self.writer.write(change) {
            tracing::error!(
                conference = sid,
                "recording id lost: the history writer has stopped"
            );
        }
    }

    /// The ended conference `sid` if it belongs to `tenant` (blocking).
    pub fn get(
        &self,
        tenant: &str,
        sid: &str,
    ) -> Result<Option<EndedConference>, ConferenceStoreError> {
        let (tenant, sid) = (tenant.to_owned(), sid.to_owned());
        self.writer
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM conference WHERE sid = ?1 AND tenant = ?2"
                ))?
                .query_row(params![sid, tenant], ended)
                .optional()
            })
            .map_err(ConferenceStoreError::Unavailable)
    }

    /// Up to `limit` of the tenant's ended conferences, newest first
    /// (created, then sid), after position `after` = (created, sid) in
    /// that order if given (blocking).
    pub fn page(
        &self,
        tenant: &str,
        after: Option<(u64, &str)>,
        limit: u32,
    ) -> Result<Vec<EndedConference>, ConferenceStoreError> {
        let tenant = tenant.to_owned();
        // No cursor: a position after every real one.
        let (created, sid) = after.map_or((i64::MAX, String::new()), |(at, sid)| {
            (at.min(i64::MAX as u64) as i64, sid.to_owned())
        });
        self.writer
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM conference WHERE tenant = ?1
                       AND (created_ms < ?2 OR (created_ms = ?2 AND sid < ?3))
                     ORDER BY created_ms DESC, sid DESC LIMIT ?4"
                ))?
                .query_map(params![tenant, created, sid, i64::from(limit)], ended)?
                .collect()
            })
            .map_err(ConferenceStoreError::Unavailable)
    }
}

fn write(conn: &mut Connection, changes: &[Change]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        // REPLACE: a conference closes once; a row seen twice (a retried
        // close) is the same row.
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO conference VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut recorded =
            tx.prepare_cached("UPDATE conference SET recording_id = ?2 WHERE sid = ?1")?;
        for change in changes {
            match change {
                Change::Ended(c) => {
                    insert.execute(params![
                        c.sid,
                        c.tenant,
                        c.name,
                        c.created_unix_ms as i64,
                        c.started_unix_ms.map(|v| v as i64),
                        c.ended_unix_ms as i64,
                        c.ended_by,
                        c.recording_id,
                    ])?;
                }
                Change::Recorded { sid, recording_id } => {
                    recorded.execute(params![sid, recording_id])?;
                }
            }
        }
    }
    tx.commit()
}

fn ended(row: &Row<'_>) -> rusqlite::Result<EndedConference> {
    Ok(EndedConference {
        tenant: row.get(0)?,
        sid: row.get(1)?,
        name: row.get(2)?,
        created_unix_ms: row.get::<_, i64>(3)? as u64,
        started_unix_ms: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        ended_unix_ms: row.get::<_, i64>(5)? as u64,
        ended_by: row.get(6)?,
        recording_id: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conference(tenant: &str, sid: &str, created: u64) -> EndedConference {
        EndedConference {
            tenant: tenant.into(),
            sid: sid.into(),
            name: "standup".into(),
            created_unix_ms: created,
            started_unix_ms: Some(created + 5),
            ended_unix_ms: created + 60_000,
            ended_by: "last-left".into(),
            recording_id: None,
        }
    }

    #[test]
    fn ended_conferences_survive_a_reopen_newest_first_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conferences.sqlite3");
        {
            let store = ConferenceStore::open(&path).unwrap();
            store.ended(conference("acme", "CF1", 1_000));
            store.ended(conference("acme", "CF3", 3_000));
            store.ended(conference("acme", "CF2", 3_000));
            store.ended(conference("other", "CF9", 2_000));
            // A read waits for the writes queued before it.
            assert_eq!(store.page("acme", None, 10).unwrap().len(), 3);
        }
        let store = ConferenceStore::open(&path).unwrap();
        let sids = |page: Vec<EndedConference>| page.into_iter().map(|c| c.sid).collect::<Vec<_>>();
        assert_eq!(
            sids(store.page("acme", None, 10).unwrap()),
            ["CF3", "CF2", "CF1"]
        );
        assert_eq!(sids(store.page("acme", None, 2).unwrap()), ["CF3", "CF2"]);
        assert_eq!(
            sids(store.page("acme", Some((3_000, "CF2")), 2).unwrap()),
            ["CF1"]
        );
        assert_eq!(
            store.get("acme", "CF1").unwrap(),
            Some(conference("acme", "CF1", 1_000))
        );
        assert_eq!(store.get("acme", "CF9").unwrap(), None, "another tenant's");
        assert_eq!(sids(store.page("other", None, 10).unwrap()), ["CF9"]);
    }

    #[test]
    fn a_recording_stored_after_the_close_is_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConferenceStore::open(&dir.path().join("c.sqlite3")).unwrap();
        store.ended(conference("acme", "CF1", 1_000));
        store.recorded("CF1", "RE42");
        let got = store.get("acme", "CF1").unwrap().unwrap();
        assert_eq!(got.recording_id.as_deref(), Some("RE42"));
    }
}
