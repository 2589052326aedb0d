//! Call recordings: WAV files and their metadata.
//!
//! ```text
//!   media edge (record verb, recorded dial) ──spawn_blocking──► save(tenant, call, samples)
//!        │ id = "RE" + 32 random hex digits (128 bits: unguessable)
//!        ├─► dir/ID.wav           8 kHz mono PCM16 (audio::encode_wav)
//!        └─► dir/recordings.sqlite3: recordings(id, tenant, call_id, ...)
//!   REST /v1/recordings[/{id}[/audio]] ◄── page / get / audio_path / delete
//! ```
//!
//! Every call blocks (a file and SQLite); callers run them off the async
//! path. The file is written before the row, so a listed recording always
//! has its audio; a crash between the two leaves only an unlisted file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use switchyard_media::RATE;
use switchyard_media::audio::encode_wav;

/// One stored recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recording {
    /// `RE` and 32 hex digits.
    pub id: String,
    pub tenant: String,
    pub call_id: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub duration_ms: u32,
    /// Size of the WAV file.
    pub bytes: u64,
    /// What recorded it: `record` (the verb) or `dial` (a recorded bridge).
    pub source: String,
}

/// The recordings of every tenant in one directory. Cheap to clone.
#[derive(Clone)]
pub struct RecordingStore {
    dir: PathBuf,
    db: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for RecordingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS recordings (
        id          TEXT PRIMARY KEY,
        tenant      TEXT NOT NULL,
        call_id     TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        source      TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS recordings_tenant_time ON recordings (tenant, created_ms);
    CREATE INDEX IF NOT EXISTS recordings_call ON recordings (tenant, call_id, created_ms);
";

const COLUMNS: &str = "id, tenant, call_id, created_ms, duration_ms, bytes, source";

/// Most recordings one `list` returns, whatever is asked.
pub const MAX_LIST: u32 = 1000;

impl RecordingStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the recordings directory {}", dir.display()))?;
        let path = dir.join("recordings.sqlite3");
        let conn = Connection::open(&path)
            .with_context(|| format!("opening the recordings index {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .with_context(|| format!("preparing the recordings index {}", path.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            db: Arc::new(Mutex::new(conn)),
        })
    }

    /// Stores `samples` ([`RATE`] mono) as a new recording of `call_id`.
    /// `source` says what recorded it (`record` or `dial`).
    pub fn save(
        &self,
        tenant: &str,
        call_id: &str,
        samples: &[i16],
        source: &str,
    ) -> anyhow::Result<Recording> {
        let id = format!("RE{:032x}", rand::random::<u128>());
        let wav = encode_wav(samples);
        let path = self.audio_path(&id);
        let tmp = self.dir.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, &wav)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing recording {}", path.display()))?;
        let recording = Recording {
            id,
            tenant: tenant.to_owned(),
            call_id: call_id.to_owned(),
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: (samples.len() as u64 * 1000 / RATE as u64).min(u32::MAX as u64) as u32,
            bytes: wav.len() as u64,
            source: source.to_owned(),
        };
        let inserted = self
            .db()
            .prepare_cached(&format!(
                "INSERT INTO recordings ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))
            .and_then(|mut stmt| {
                stmt.execute(params![
                    recording.id,
                    recording.tenant,
                    recording.call_id,
                    recording.created_ms as i64,
                    recording.duration_ms as i64,
                    recording.bytes as i64,
                    recording.source,
                ])
            });
        if let Err(e) = inserted {
            let _ = std::fs::remove_file(&path);
            return Err(e).context("recording the recording's metadata");
        }
        Ok(recording)
    }

    /// Recording `id`, if it exists.
    pub fn get(&self, id: &str) -> anyhow::Result<Option<Recording>> {
        if !is_recording_id(id) {
            return Ok(None);
        }
        self.db()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM recordings WHERE id = ?1"))?
            .query_row(params![id], row_to_recording)
            .optional()
            .context("reading recording metadata")
    }

    /// `tenant`'s recordings, of one call if `call_id` is given, newest
    /// first, at most `limit` (capped at [`MAX_LIST`]).
    pub fn list(
        &self,
        tenant: &str,
        call_id: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<Recording>> {
        let limit = limit.min(MAX_LIST);
        let db = self.db();
        let rows = match call_id {
            Some(call_id) => db
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM recordings WHERE tenant = ?1 AND call_id = ?2
                     ORDER BY created_ms DESC, id LIMIT ?3"
                ))?
                .query_map(params![tenant, call_id, limit], row_to_recording)?
                .collect::<Result<Vec<_>, _>>(),
            None => db
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM recordings WHERE tenant = ?1
                     ORDER BY created_ms DESC, id LIMIT ?2"
                ))?
                .query_map(params![tenant, limit], row_to_recording)?
                .collect::<Result<Vec<_>, _>>(),
        };
        rows.context("listing recordings")
    }

    /// `tenant`'s recordings in id order after `after` (a cursor), of one
    /// call if `call_id` is given, at most `limit` (capped at
    /// [`MAX_LIST`] + 1, so a caller can ask one extra to see if there is
    /// a next page).
    pub fn page(
        &self,
        tenant: &str,
        call_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<Recording>> {
        let limit = limit.min(MAX_LIST + 1);
        self.db()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM recordings
                 WHERE tenant = ?1 AND (?2 IS NULL OR call_id = ?2) AND id > ?3
                 ORDER BY id LIMIT ?4"
            ))?
            .query_map(
                params![tenant, call_id, after.unwrap_or(""), limit],
                row_to_recording,
            )?
            .collect::<Result<Vec<_>, _>>()
            .context("listing recordings")
    }

    /// Where the audio of recording `id` is. A malformed id (anything but
    /// `RE` and 32 hex digits) gets a path inside the store that never
    /// exists, so no id can point outside it.
    pub fn audio_path(&self, id: &str) -> PathBuf {
        if is_recording_id(id) {
            self.dir.join(format!("{id}.wav"))
        } else {
            self.dir.join("not-a-recording-id")
        }
    }

    /// Deletes recording `id` (metadata and audio); false if there was none.
    pub fn delete(&self, id: &str) -> anyhow::Result<bool> {
        if !is_recording_id(id) {
            return Ok(false);
        }
        let deleted = self
            .db()
            .prepare_cached("DELETE FROM recordings WHERE id = ?1")?
            .execute(params![id])
            .context("deleting recording metadata")?;
        match std::fs::remove_file(self.audio_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("deleting the recording's audio")
            }
            _ => Ok(deleted > 0),
        }
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether `id` has the form of a recording id: `RE` and 32 lowercase hex
/// digits.
pub fn is_recording_id(id: &str) -> bool {
    id.len() == 34
        && id.starts_with("RE")
        && id[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn row_to_recording(row: &rusqlite::Row<'_>) -> rusqlite::Result<Recording> {
    let number = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
    Ok(Recording {
        id: row.get(0)?,
        tenant: row.get(1)?,
        call_id: row.get(2)?,
        created_ms: number(3)?,
        duration_ms: number(4)?.min(u32::MAX as u64) as u32,
        bytes: number(5)?,
        source: row.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_media::audio::decode_wav;
    use switchyard_media::tone::sine;

    #[test]
    fn a_saved_recording_is_read_back_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordingStore::open(dir.path()).unwrap();
        let audio = sine(440.0, 1500, 0.3);
        let saved = store.save("acme", "call-1", &audio, "record").unwrap();
        assert!(is_recording_id(&saved.id), "{}", saved.id);
        assert_eq!(saved.duration_ms, 1500);
        assert_eq!(saved.bytes, 44 + 2 * 12_000);
        assert_eq!(
            (saved.source.as_str(), saved.call_id.as_str()),
            ("record", "call-1")
        );
        assert_eq!(store.get(&saved.id).unwrap(), Some(saved.clone()));
        let wav = std::fs::read(store.audio_path(&saved.id)).unwrap();
        assert_eq!(decode_wav(&wav).unwrap(), audio);

        assert!(store.delete(&saved.id).unwrap());
        assert!(!store.delete(&saved.id).unwrap());
        assert_eq!(store.get(&saved.id).unwrap(), None);
        assert!(!store.audio_path(&saved.id).exists());
    }

    #[test]
    fn listing_is_per_tenant_per_call_newest_first_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordingStore::open(dir.path()).unwrap();
        let mut acme = Vec::new();
        for (call, source) in [("c1", "record"), ("c1", "dial"), ("c2", "record")] {
            acme.push(store.save("acme", call, &[0; 80], source).unwrap());
            std::thread::sleep(Duration::from_millis(2));
        }
        store.save("globex", "c1", &[0; 80], "record").unwrap();
        let ids = |list: Vec<Recording>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.list("acme", None, 10).unwrap()),
            [acme[2].id.as_str(), &acme[1].id, &acme[0].id]
        );
        assert_eq!(
            ids(store.list("acme", Some("c1"), 10).unwrap()),
            [acme[1].id.as_str(), &acme[0].id]
        );
        assert_eq!(
            ids(store.list("acme", None, 1).unwrap()),
            [acme[2].id.as_str()]
        );
        assert_eq!(store.list("globex", None, 10).unwrap().len(), 1);
        assert!(store.list("initech", None, 10).unwrap().is_empty());
    }

    #[test]
    fn recordings_survive_reopening_and_ids_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let ids: std::collections::HashSet<String> = {
            let store = RecordingStore::open(dir.path()).unwrap();
            (0..50)
                .map(|_| store.save("acme", "c", &[1, 2, 3], "record").unwrap().id)
                .collect()
        };
        assert_eq!(ids.len(), 50);
        let store = RecordingStore::open(dir.path()).unwrap();
        assert_eq!(store.list("acme", None, 100).unwrap().len(), 50);
    }

    #[test]
    fn malformed_ids_never_name_a_file_outside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordingStore::open(dir.path()).unwrap();
        for bad in [
            "../recordings.sqlite3",
            "RE../../etc/passwd",
            "recordings",
            "",
            "RE0123",
        ] {
            assert_eq!(store.get(bad).unwrap(), None);
            assert!(!store.delete(bad).unwrap());
            let path = store.audio_path(bad);
            assert!(
                path.starts_with(dir.path()) && !path.exists(),
                "{bad}: {path:?}"
            );
        }
        assert!(dir.path().join("recordings.sqlite3").exists());
    }
}
