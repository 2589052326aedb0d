//! Persistence (SQLite): what outlives a call. The host reaches the
//! key-value store through `switchyard_wasm::KvBackend`, so nothing below
//! the store knows about SQLite.
//!
//! ```text
//!   guest kv import (async, wasm::imports)
//!          │  tenant id from the host state, never from the guest
//!          ▼
//!   store::KvStore ──(channel)──▶ SQLite worker thread ──▶ kv.sqlite3
//!          ▲                              │
//!          └──────── oneshot reply ◀──────┘
//! ```
//!
//! SQLite is blocking, so it never runs on a tokio worker: every store owns
//! one dedicated thread that holds the connection and executes requests in
//! order. SQLite allows one writer at a time anyway, so a single thread
//! costs no write throughput and keeps the quota bookkeeping race-free.
//!
//! * [`cdr`] — call detail records and the calls' decision logs, batched
//!   writes.
//! * [`conferences`] — ended conferences (the REST history).
//! * [`kv`] — tenant-scoped key-value storage with per-tenant limits.
//! * [`recordings`] — call recordings: WAV files and their metadata.
//! * [`tenancy`] — accounts and API keys (hashed; sealed for signing
//!   access tokens), operator key checks.
//! * [`seal`] — secrets the runtime reads back, sealed under the
//!   operator's key (AES-256-GCM).
//! * [`deploy`] — component versions and number bindings (canary, rollback).
//! * [`directory`] — the call placement directory's providers and
//!   entries, when this runtime serves one (C11).
//! * [`placements`] — the outbound calls this runtime placed, kept
//!   briefly to answer providers' confirmation queries (C11).
//!
//! [`open`] and [`Writer`] are what the write-behind CDR store stands on:
//! a file in WAL mode, and a thread that batches writes and answers
//! reads after the writes queued before them.

pub mod cdr;
pub mod conferences;
pub mod deploy;
pub mod directory;
pub mod kv;
mod kv_cache;
pub mod placements;
pub mod recordings;
pub mod seal;
pub mod tenancy;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

pub use cdr::{Cdr, CdrError, CdrFilter, CdrStore};
pub use conferences::{ConferenceStore, ConferenceStoreError, EndedConference};
pub use kv::{KvError, KvLimits, KvPart, KvStore, KvUsage};
pub use recordings::{Recording, RecordingStore};

/// Opens (or creates) the SQLite file at `path` in WAL mode and runs
/// `schema`; the error is a reason to put in the store's own error.
pub(crate) fn open(path: &Path, schema: &str) -> Result<Connection, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    // WAL + NORMAL: a commit is an append, not an fsync; a crash loses at
    // most the last few writes, never corrupts the file.
    conn.pragma_update(None, "journal_mode", "WAL")
        .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
        .and_then(|_| conn.execute_batch(schema))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

type Read = Box<dyn FnOnce(&Connection) + Send>;

enum Job<R> {
    Write(R),
    Read(Read),
}

/// A write-behind SQLite thread: rows of type `R` are queued without
/// waiting and written in batches (one transaction each); reads run on
/// the same thread after the writes queued before them, so a caller sees
/// its own rows. Cheap to clone; the thread stops with the last clone.
pub(crate) struct Writer<R> {
    jobs: mpsc::Sender<Job<R>>,
}

impl<R> Clone for Writer<R> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

/// Rows written per transaction at most.
const BATCH: usize = 10_000;

/// How long the writer lets rows gather after the first one arrives.
/// While it sleeps, senders find no parked receiver and never pay for a
/// wake-up: one thread switch per batch instead of one per row. 100 ms
/// rather than 20: at 4,000 calls/s the writers' CPU fell by a fifth
/// (fewer commits, fewer half-filled pages written again); a read queued
/// behind a write waits at most this long.
const GATHER: Duration = Duration::from_millis(100);

impl<R: Send + 'static> Writer<R> {
    /// Starts the thread `name` on `conn`; `write` stores one batch.
    pub(crate) fn start(
        name: &str,
        mut conn: Connection,
        write: fn(&mut Connection, &[R]) -> rusqlite::Result<()>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job<R>>();
        let what = name.to_owned();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    if matches!(first, Job::Write(_)) {
                        std::thread::sleep(GATHER);
                    }
                    let mut rows = Vec::new();
                    let mut reads = Vec::new();
                    let mut next = Some(first);
                    while let Some(job) = next {
                        match job {
                            Job::Write(row) => rows.push(row),
                            Job::Read(read) => reads.push(read),
                        }
                        next = if rows.len() < BATCH {
                            queue.try_recv().ok()
                        } else {
                            None
                        };
                    }
                    if !rows.is_empty()
                        && let Err(e) = write(&mut conn, &rows)
                    {
                        tracing::error!(store = what, error = %e, lost = rows.len(), "cannot write rows");
                    }
                    for read in reads {
                        read(&conn);
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Queues `row`; `false` if the thread has stopped (the row is lost).
    pub(crate) fn write(&self, row: R) -> bool {
        self.jobs.send(Job::Write(row)).is_ok()
    }

    /// Runs `read` on the thread and waits for its answer (blocking).
    pub(crate) fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let (reply, answer) = mpsc::channel();
        let job = Job::Read(Box::new(move |conn: &Connection| {
            let _ = reply.send(read(conn).map_err(|e| e.to_string()));
        }));
        let gone = || "the store's thread has stopped".to_owned();
        self.jobs.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}
