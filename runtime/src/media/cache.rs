//! The media cache (C8): every prompt becomes telephony audio once.
//!
//! ```text
//!  say(text, voice, language) ─┐ source key = SHA-256 of what was asked
//!  fetch(url) ─────────────────┤ (synthesizer, voice, language, text / URL)
//!                              ▼
//!   hot map (memory): key → id → Samples ── hit ──► Media { id, samples }
//!        │ miss
//!        ▼ single flight per key: one task does the work, every caller waits
//!   index.sqlite3: sources(key → id), entries(id, bytes, last_used, shared),
//!        │         imports(tenant, id)           ── hit: read ID.wav ──► Media
//!        │ miss
//!        ▼
//!   synthesize (spawn_blocking) / fetch (If-None-Match after the TTL)
//!        ▼ decode_wav → 8 kHz mono → encode_wav
//!   dir/ID.wav, ID = hex SHA-256 of those bytes; then evict LRU to max_bytes
//!
//!  import(tenant, wav) ── same path, owned by the tenant, never evicted
//!  get(tenant, id)     ── shared entries, or the tenant's own imports
//! ```
//!
//! Entries are content-addressed: the same audio reached two ways (two
//! spellings of a text that speak alike, a URL and an import) is stored
//! once. Ids are 256-bit hashes, so they cannot be guessed.
//!
//! Shared entries (synthesized speech, fetched files) can always be made
//! again, so they are evicted, least recently used first, to keep them
//! within [`CacheConfig::max_bytes`]; an entry whose samples someone still
//! holds (a stream playing it, the call returning it) is not evicted.
//! Imports are a tenant's own media: they are never evicted and do not
//! count against `max_bytes` (tenant quotas come with the REST upload).
//!
//! Two locks, always taken in this order: the index (`db`) then the hot
//! map. A hit takes only the hot map and never touches SQLite: its
//! `last_used` is written back before an eviction pass and at drop.
//!
//! `say` and `fetch` are async and run all blocking work (synthesis, files,
//! SQLite) on `spawn_blocking`. `get`, `import`, `file` and `stats` are
//! blocking (a memory hit in `get` is not); call them off the async path
//! when they may touch the disk.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::Samples;
use super::audio::{AudioError, decode_wav, encode_wav};
use super::fetch::{FetchError, Fetched, Fetcher};
use super::synth::Synthesizer;

/// Limits of the [`MediaCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes of WAV files kept for shared entries (synthesized and
    /// fetched); least recently used ones are evicted past it. Default
    /// 1 GiB (about 18 hours of 8 kHz audio).
    pub max_bytes: u64,
    /// How long a fetched URL is used without asking its server again;
    /// after it, the server is asked with If-None-Match when it gave an
    /// ETag. Default 5 minutes.
    pub fetch_ttl: Duration,
    /// Most bytes of decoded samples kept in memory. Default 64 MiB.
    pub hot_max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            fetch_ttl: Duration::from_secs(5 * 60),
            hot_max_bytes: 64 << 20,
        }
    }
}

/// Why media could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// No such media, or it belongs to another tenant.
    #[error("no media with id {0:?}")]
    NotFound(String),
    /// The synthesizer failed (its message says why).
    #[error("speech synthesis failed: {0}")]
    Synth(String),
    /// The prompt URL could not be fetched.
    #[error("cannot fetch the prompt: {0}")]
    Fetch(#[from] FetchError),
    /// The audio could not be decoded.
    #[error("cannot use the audio: {0}")]
    BadAudio(#[from] AudioError),
    /// The cache directory or its index failed.
    #[error("media storage failed: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> MediaError {
    MediaError::Storage(e.to_string())
}

/// Prepared audio and its persistent id.
#[derive(Debug, Clone)]
pub struct Media {
    /// Hex SHA-256 of the stored WAV file: the id of `GET /media/{id}`.
    pub id: String,
    pub samples: Samples,
}

/// What the cache holds and has done since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CacheStats {
    /// Stored entries (shared and imported).
    pub entries: u64,
    /// Bytes of their WAV files.
    pub bytes: u64,
    /// Requests served without synthesizing or downloading.
    pub hits: u64,
    /// Requests that had to synthesize or download.
    pub misses: u64,
    pub syntheses: u64,
    /// Requests sent to web servers (including revalidations).
    pub fetches: u64,
    pub evictions: u64,
}

/// The media cache. Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct MediaCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MediaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCache")
            .field("dir", &self.inner.dir)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A result being prepared: `None` until it is there.
type Flight = watch::Receiver<Option<Result<Media, MediaError>>>;

struct Inner {
    dir: PathBuf,
    config: CacheConfig,
    synth: Arc<dyn Synthesizer>,
    fetcher: Fetcher,
    db: Mutex<Connection>,
    hot: Mutex<Hot>,
    /// Work under way per source key (single flight).
    flights: Mutex<HashMap<String, Flight>>,
    /// Last `last_used` handed out: strictly increasing, so LRU order is
    /// exact even within one millisecond.
    clock: AtomicU64,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    syntheses: AtomicU64,
    fetches: AtomicU64,
    evictions: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS entries (
        id        TEXT PRIMARY KEY,    -- hex SHA-256 of the WAV file
        bytes     INTEGER NOT NULL,
        last_used INTEGER NOT NULL,    -- unix ms (strictly increasing)
        shared    INTEGER NOT NULL     -- 1: synthesized or fetched
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_used);
    CREATE TABLE IF NOT EXISTS imports (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS imports_id ON imports (id);
    CREATE TABLE IF NOT EXISTS sources (
        key        TEXT PRIMARY KEY,   -- hex SHA-256 of what was asked for
        id         TEXT NOT NULL,
        fetched_ms INTEGER,            -- fetches: when the server last vouched
        etag       TEXT
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS sources_id ON sources (id);
";

/// Name of the index inside the cache directory.
const INDEX_FILE: &str = "index.sqlite3";

impl MediaCache {
    /// Opens (or creates) the cache in `dir` with default limits but
    /// `max_bytes`.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        synth: Arc<dyn Synthesizer>,
        fetcher: Fetcher,
    ) -> anyhow::Result<Self> {
        let config = CacheConfig {
            max_bytes,
            ..CacheConfig::default()
        };
        Self::open_with(dir, config, synth, fetcher)
    }

    /// Opens (or creates) the cache in `dir`. Files left by a crash are
    /// cleaned up and the shared entries are evicted down to `max_bytes`.
    pub fn open_with(
        dir: &Path,
        config: CacheConfig,
        synth: Arc<dyn Synthesizer>,
        fetcher: Fetcher,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the media cache directory {}", dir.display()))?;
        let index = dir.join(INDEX_FILE);
        let conn = Connection::open(&index)
            .with_context(|| format!("opening the media index {}", index.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .with_context(|| format!("preparing the media index {}", index.display()))?;
        let inner = Inner {
            dir: dir.to_owned(),
            config,
            synth,
            fetcher,
            db: Mutex::new(conn),
            hot: Mutex::new(Hot::default()),
            flights: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            counters: Counters::default(),
        };
        inner
            .recover()
            .with_context(|| format!("checking the media cache in {}", dir.display()))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// `text` spoken by `voice` / in `language`, synthesized only if this
    /// exact request was never made before (or was evicted since).
    /// Concurrent identical requests share one synthesis.
    pub async fn say(
        &self,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> Result<Media, MediaError> {
        let key = source_key(
            "say",
            &[Some(self.inner.synth.name()), voice, language, Some(text)],
        );
        if let Some(known) = self.inner.lookup_hot(&key) {
            Counters::bump(&self.inner.counters.hits);
            return Ok(known.media);
        }
        let inner = Arc::clone(&self.inner);
        let request = (
            text.to_owned(),
            voice.map(str::to_owned),
            language.map(str::to_owned),
        );
        let flight_key = key.clone();
        self.single_flight(
            &flight_key,
            async move { inner.synthesize(key, request).await },
        )
        .await
    }

    /// The WAV file at `url` as telephony audio. A copy fetched within
    /// [`CacheConfig::fetch_ttl`] is used as it is; an older one is checked
    /// with the server (If-None-Match) and, if the server cannot be
    /// reached, used for another TTL.
    pub async fn fetch(&self, url: &str) -> Result<Media, MediaError> {
        let key = source_key("fetch", &[Some(url)]);
        if let Some(known) = self.inner.lookup_hot(&key)
            && known.is_fresh(now_ms(), self.inner.config.fetch_ttl)
        {
            Counters::bump(&self.inner.counters.hits);
            return Ok(known.media);
        }
        let inner = Arc::clone(&self.inner);
        let (flight_key, url) = (key.clone(), url.to_owned());
        self.single_flight(&flight_key, async move { inner.download(key, url).await })
            .await
    }

    /// Media `id` as `tenant` may see it: any shared entry, or one of the
    /// tenant's own imports. Another tenant's import is [`MediaError::NotFound`].
    /// Blocking on a memory miss (SQLite and a file read).
    pub fn get(&self, tenant: &str, id: &str) -> Result<Media, MediaError> {
        let not_found = || MediaError::NotFound(id.to_owned());
        if !is_media_id(id) {
            return Err(not_found());
        }
        let inner = &self.inner;
        let hot_hit = {
            let mut hot = inner.hot();
            let stamp = inner.tick();
            hot.entries.get_mut(id).map(|entry| {
                entry.last_used = stamp;
                (entry.visible_to(tenant), entry.samples.clone())
            })
        };
        let media = match hot_hit {
            Some((true, samples)) => Media {
                id: id.to_owned(),
                samples,
            },
            Some((false, _)) => return Err(not_found()),
            None => {
                let access = inner.access(id)?.ok_or_else(not_found)?;
                if !access.visible_to(tenant) {
                    return Err(not_found());
                }
                let samples = inner.load(id)?.ok_or_else(not_found)?;
                inner.remember(id, samples, None)?.ok_or_else(not_found)?
            }
        };
        Counters::bump(&inner.counters.hits);
        Ok(media)
    }

    /// Adds `wav` (any WAV [`decode_wav`] reads) to `tenant`'s media: it is
    /// stored as telephony audio, visible to that tenant only (unless the
    /// same audio is also a shared entry) and never evicted. Importing the
    /// same audio again returns the same id. Blocking.
    pub fn import(&self, tenant: &str, wav: &[u8]) -> Result<Media, MediaError> {
        if tenant.is_empty() {
            return Err(storage("an import needs a tenant"));
        }
        let samples = decode_wav(wav)?;
        self.inner.store(samples, Owner::Tenant(tenant), None)
    }

    /// The stored WAV file of `id`, whoever may see it (serving goes
    /// through [`Self::file_for`]); `None` for an unknown or malformed id.
    /// Blocking (a file check).
    pub fn file(&self, id: &str) -> Option<PathBuf> {
        if !is_media_id(id) {
            return None;
        }
        let path = self.inner.path(id);
        path.is_file().then_some(path)
    }

    /// [`Self::file`] as `GET /media/{id}` may serve it: a shared entry
    /// (synthesized speech, a fetched prompt) to anyone, a tenant's import
    /// only to that tenant; `None` otherwise, as for an unknown id, so an
    /// import's existence is not revealed. Blocking (SQLite, a file check).
    pub fn file_for(&self, id: &str, tenant: Option<&str>) -> Option<PathBuf> {
        if !is_media_id(id) {
            return None;
        }
        let access = self.inner.access(id).ok().flatten()?;
        let visible = access.shared || tenant.is_some_and(|t| access.visible_to(t));
        if visible { self.file(id) } else { None }
    }

    /// Sizes and counters. Blocking (one SQLite query).
    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let (entries, bytes) = inner
            .db()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM entries",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .unwrap_or_default();
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            entries: entries.max(0) as u64,
            bytes: bytes.max(0) as u64,
            hits: read(&inner.counters.hits),
            misses: read(&inner.counters.misses),
            syntheses: read(&inner.counters.syntheses),
            fetches: read(&inner.counters.fetches),
            evictions: read(&inner.counters.evictions),
        }
    }

    /// Runs `work` for `key` unless the same key is already being worked
    /// on, in which case this waits for that result. Callers who did not
    /// start the work count as hits.
    ///
    /// The work runs as its own task: a caller that goes away (the call
    /// hung up) neither cancels it nor makes the others start it again,
    /// and what it prepares is cached for the next call.
    async fn single_flight<F>(&self, key: &str, work: F) -> Result<Media, MediaError>
    where
        F: Future<Output = Result<Media, MediaError>> + Send + 'static,
    {
        let (mut flight, started) = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let (done, flight) = watch::channel(None);
                    flights.insert(key.to_owned(), flight.clone());
                    let landing = Landing {
                        inner: Arc::clone(&self.inner),
                        key: key.to_owned(),
                    };
                    tokio::spawn(async move {
                        let result = work.await;
                        // Land before answering: a caller that has seen a
                        // failure and asks again must start a new flight.
                        drop(landing);
                        let _ = done.send(Some(result));
                    });
                    (flight, true)
                }
            }
        };
        if !started {
            Counters::bump(&self.inner.counters.hits);
        }
        let outcome = flight.wait_for(Option::is_some).await;
        match outcome.as_deref() {
            Ok(Some(result)) => result.clone(),
            _ => Err(storage("preparing the media failed unexpectedly")),
        }
    }
}

/// Ends a flight: removes it from the map when its task finishes, even by
/// panicking (its waiters then see the sender gone).
struct Landing {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for Landing {
    fn drop(&mut self) {
        lock(&self.inner.flights).remove(&self.key);
    }
}

/// Whether `id` has the form of a media id (64 lowercase hex digits), so
/// it can safely name a file.
pub fn is_media_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A stable key for a request: `kind` and the parts, length-prefixed so
/// no two different requests share a key (`None` differs from `""`).
fn source_key(kind: &str, parts: &[Option<&str>]) -> String {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    for part in parts {
        match part {
            Some(text) => {
                hash.update([1]);
                hash.update((text.len() as u64).to_le_bytes());
                hash.update(text.as_bytes());
            }
            None => hash.update([0]),
        }
    }
    hex::encode(hash.finalize())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data here (every
    // update is one statement or one map operation).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Who an entry belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner<'a> {
    Shared,
    Tenant(&'a str),
}

/// What a source key was last resolved to.
#[derive(Debug, Clone)]
struct Source {
    key: String,
    /// For fetches: when the server last vouched for the copy.
    fetched_ms: Option<u64>,
    etag: Option<String>,
}

/// A source key found in the cache.
#[derive(Debug, Clone)]
struct Known {
    media: Media,
    fetched_ms: Option<u64>,
    etag: Option<String>,
}

impl Known {
    /// Syntheses never go stale; fetches do after `ttl`.
    fn is_fresh(&self, now: u64, ttl: Duration) -> bool {
        self.fetched_ms
            .is_none_or(|at| now.saturating_sub(at) < ttl.as_millis() as u64)
    }
}

/// Who may see an entry.
#[derive(Debug, Clone, Default)]
struct Access {
    shared: bool,
    tenants: Vec<String>,
}

impl Access {
    fn visible_to(&self, tenant: &str) -> bool {
        self.shared || self.tenants.iter().any(|t| t == tenant)
    }
}

/// Recently used entries, decoded.
#[derive(Default)]
struct Hot {
    entries: HashMap<String, HotEntry>,
    /// Source key → what it resolved to (only ids in `entries`).
    keys: HashMap<String, Bound>,
    bytes: u64,
}

/// A source key in memory.
#[derive(Debug, Clone)]
struct Bound {
    id: String,
    fetched_ms: Option<u64>,
    etag: Option<String>,
}

struct HotEntry {
    samples: Samples,
    access: Access,
    last_used: u64,
    /// `last_used` as the index has it.
    persisted: u64,
    /// Source keys resolving to this entry.
    keys: Vec<String>,
}

impl HotEntry {
    fn visible_to(&self, tenant: &str) -> bool {
        self.access.visible_to(tenant)
    }

    fn bytes(&self) -> u64 {
        self.samples.len() as u64 * 2
    }
}

impl Hot {
    fn remove(&mut self, id: &str) -> Option<HotEntry> {
        let entry = self.entries.remove(id)?;
        self.bytes -= entry.bytes();
        for key in &entry.keys {
            if self.keys.get(key).is_some_and(|bound| bound.id == id) {
                self.keys.remove(key);
            }
        }
        Some(entry)
    }

    /// Points `source.key` at `id`, if `id` is in memory.
    fn bind(&mut self, id: &str, source: Source) {
        if !self.entries.contains_key(id) {
            return;
        }
        if let Some(old) = self.keys.get(&source.key)
            && old.id != id
            && let Some(entry) = self.entries.get_mut(&old.id)
        {
            entry.keys.retain(|k| *k != source.key);
        }
        if let Some(entry) = self.entries.get_mut(id)
            && !entry.keys.contains(&source.key)
        {
            entry.keys.push(source.key.clone());
        }
        let bound = Bound {
            id: id.to_owned(),
            fetched_ms: source.fetched_ms,
            etag: source.etag,
        };
        self.keys.insert(source.key, bound);
    }
}

impl Inner {
    fn db(&self) -> MutexGuard<'_, Connection> {
        lock(&self.db)
    }

    fn hot(&self) -> MutexGuard<'_, Hot> {
        lock(&self.hot)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }

    /// A `last_used` stamp: the wall clock in ms, but always later than
    /// the previous stamp.
    fn tick(&self) -> u64 {
        let now = now_ms();
        let mut prev = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .clock
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }

    /// `key` if it is in memory (marking its entry used).
    fn lookup_hot(&self, key: &str) -> Option<Known> {
        let mut hot = self.hot();
        let bound = hot.keys.get(key)?.clone();
        let stamp = self.tick();
        let entry = hot.entries.get_mut(&bound.id)?;
        entry.last_used = stamp;
        Some(Known {
            media: Media {
                id: bound.id,
                samples: entry.samples.clone(),
            },
            fetched_ms: bound.fetched_ms,
            etag: bound.etag,
        })
    }

    /// `key` from memory or disk. Blocking.
    fn lookup(&self, key: &str) -> Result<Option<Known>, MediaError> {
        if let Some(known) = self.lookup_hot(key) {
            return Ok(Some(known));
        }
        let row = self
            .db()
            .prepare_cached("SELECT id, fetched_ms, etag FROM sources WHERE key = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![key], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                })
                .optional()
            })
            .map_err(storage)?;
        let Some((id, fetched_ms, etag)) = row else {
            return Ok(None);
        };
        let Some(samples) = self.load(&id)? else {
            return Ok(None);
        };
        let source = Source {
            key: key.to_owned(),
            fetched_ms: fetched_ms.map(|t| t.max(0) as u64),
            etag,
        };
        let media = self.remember(&id, samples, Some(source.clone()))?;
        Ok(media.map(|media| Known {
            media,
            fetched_ms: source.fetched_ms,
            etag: source.etag,
        }))
    }

    /// Who may see `id`; `None` if it is not in the index.
    fn access(&self, id: &str) -> Result<Option<Access>, MediaError> {
        let db = self.db();
        access_of(&db, id).map_err(storage)
    }

    /// The samples of stored entry `id`; `None` if its file is gone
    /// (evicted meanwhile). A file that no longer decodes is dropped.
    fn load(&self, id: &str) -> Result<Option<Vec<i16>>, MediaError> {
        let path = self.path(id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage(format!("reading {}: {e}", path.display()))),
        };
        match decode_wav(&bytes) {
            Ok(samples) => Ok(Some(samples)),
            Err(e) => {
                tracing::warn!(id, error = %e, "dropping a damaged media file");
                let mut db = self.db();
                forget(&mut db, &self.dir, id).map_err(storage)?;
                self.hot().remove(id);
                Ok(None)
            }
        }
    }

    /// Puts loaded samples of `id` in memory, if the entry is still in
    /// the index (an eviction may have raced the file read).
    fn remember(
        &self,
        id: &str,
        samples: Vec<i16>,
        source: Option<Source>,
    ) -> Result<Option<Media>, MediaError> {
        let db = self.db();
        let Some(access) = access_of(&db, id).map_err(storage)? else {
            return Ok(None);
        };
        let stamp = self.tick();
        let samples: Samples = samples.into();
        let mut hot = self.hot();
        let samples = self.hold(&db, &mut hot, id, samples, access, stamp);
        if let Some(source) = source {
            hot.bind(id, source);
        }
        Ok(Some(Media {
            id: id.to_owned(),
            samples,
        }))
    }

    /// Adds `id` to the hot map (or refreshes it), dropping least recently
    /// used entries past `hot_max_bytes`. Returns the samples held.
    fn hold(
        &self,
        db: &Connection,
        hot: &mut Hot,
        id: &str,
        samples: Samples,
        access: Access,
        stamp: u64,
    ) -> Samples {
        if let Some(entry) = hot.entries.get_mut(id) {
            entry.access = access;
            entry.last_used = stamp;
            return entry.samples.clone();
        }
        let entry = HotEntry {
            samples: samples.clone(),
            access,
            last_used: stamp,
            persisted: stamp,
            keys: Vec::new(),
        };
        hot.bytes += entry.bytes();
        hot.entries.insert(id.to_owned(), entry);
        while hot.bytes > self.config.hot_max_bytes && hot.entries.len() > 1 {
            let coldest = hot
                .entries
                .iter()
                .filter(|(other, _)| other.as_str() != id)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(other, _)| other.clone());
            let Some(coldest) = coldest else { break };
            if let Some(dropped) = hot.remove(&coldest)
                && dropped.last_used > dropped.persisted
            {
                let _ = touch(db, &coldest, dropped.last_used);
            }
        }
        samples
    }

    /// Stores `samples` as an entry (once per content) and records who
    /// owns it and what asked for it; then evicts. Blocking.
    fn store(
        &self,
        samples: Vec<i16>,
        owner: Owner<'_>,
        source: Option<Source>,
    ) -> Result<Media, MediaError> {
        let wav = encode_wav(&samples);
        let id = hex::encode(Sha256::digest(&wav));
        let path = self.path(&id);
        // Everything under the index lock, so an eviction cannot remove
        // the file between writing it and recording it.
        let mut db = self.db();
        if !path.is_file() {
            write_atomically(&self.dir, &path, &wav).map_err(storage)?;
        }
        let stamp = self.tick();
        let tx = db.transaction().map_err(storage)?;
        tx.prepare_cached(
            "INSERT INTO entries (id, bytes, last_used, shared) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET last_used = ?3, shared = MAX(shared, ?4)",
        )
        .and_then(|mut s| {
            let shared = matches!(owner, Owner::Shared);
            s.execute(params![id, wav.len() as i64, stamp as i64, shared])
        })
        .map_err(storage)?;
        if let Owner::Tenant(tenant) = owner {
            tx.prepare_cached("INSERT OR IGNORE INTO imports (tenant, id) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![tenant, id]))
                .map_err(storage)?;
        }
        if let Some(source) = &source {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sources (key, id, fetched_ms, etag) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                let fetched = source.fetched_ms.map(|t| t as i64);
                s.execute(params![source.key, id, fetched, source.etag])
            })
            .map_err(storage)?;
        }
        let access = access_of(&tx, &id).map_err(storage)?.unwrap_or_default();
        tx.commit().map_err(storage)?;
        let samples = {
            let mut hot = self.hot();
            let samples = self.hold(&db, &mut hot, &id, samples.into(), access, stamp);
            if let Some(source) = source {
                hot.bind(&id, source);
            }
            samples
        };
        let media = Media { id, samples };
        // `media` holds the samples, so this pass cannot evict it.
        self.evict(&mut db).map_err(storage)?;
        Ok(media)
    }

    /// Records that the server vouched again for the copy under `key`.
    fn refresh(&self, key: &str, fetched_ms: u64) -> Result<(), MediaError> {
        self.db()
            .prepare_cached("UPDATE sources SET fetched_ms = ?2 WHERE key = ?1")
            .and_then(|mut s| s.execute(params![key, fetched_ms as i64]))
            .map_err(storage)?;
        if let Some(source) = self.hot().keys.get_mut(key) {
            source.fetched_ms = Some(fetched_ms);
        }
        Ok(())
    }

    /// Evicts shared entries, least recently used first, until they fit
    /// `max_bytes`. Entries whose samples are held outside the cache (being
    /// returned or played) are skipped.
    fn evict(&self, db: &mut Connection) -> rusqlite::Result<()> {
        const EVICTABLE: &str = "FROM entries e WHERE NOT EXISTS
            (SELECT 1 FROM imports i WHERE i.id = e.id)";
        let total: i64 = db.query_row(
            &format!("SELECT COALESCE(SUM(bytes), 0) {EVICTABLE}"),
            [],
            |row| row.get(0),
        )?;
        let mut over = (total.max(0) as u64).saturating_sub(self.config.max_bytes);
        if over == 0 {
            return Ok(());
        }
        self.flush_last_used(db)?;
        let in_use: HashSet<String> = self
            .hot()
            .entries
            .iter()
            .filter(|(_, e)| Arc::strong_count(&e.samples) > 1)
            .map(|(id, _)| id.clone())
            .collect();
        let candidates: Vec<(String, i64)> = db
            .prepare(&format!("SELECT id, bytes {EVICTABLE} ORDER BY last_used"))?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, bytes) in candidates {
            if over == 0 {
                break;
            }
            if in_use.contains(&id) {
                continue;
            }
            forget(db, &self.dir, &id)?;
            self.hot().remove(&id);
            over = over.saturating_sub(bytes.max(0) as u64);
            Counters::bump(&self.counters.evictions);
        }
        Ok(())
    }

    /// Writes the `last_used` of entries used from memory to the index.
    fn flush_last_used(&self, db: &mut Connection) -> rusqlite::Result<()> {
        let mut hot = self.hot();
        let tx = db.transaction()?;
        for (id, entry) in hot.entries.iter_mut() {
            if entry.last_used > entry.persisted {
                touch(&tx, id, entry.last_used)?;
                entry.persisted = entry.last_used;
            }
        }
        tx.commit()
    }

    /// After a restart or crash: drops temporary files, files the index
    /// does not know and index rows whose file is gone; restarts the
    /// clock after the last stamp; evicts down to `max_bytes`.
    fn recover(&self) -> anyhow::Result<()> {
        let mut db = self.db();
        let known: HashSet<String> = db
            .prepare("SELECT id FROM entries")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for file in std::fs::read_dir(&self.dir)? {
            let file = file?;
            let name = file.file_name();
            let name = name.to_string_lossy();
            let orphan = name
                .strip_suffix(".wav")
                .is_some_and(|id| is_media_id(id) && !known.contains(id));
            if orphan || name.ends_with(".tmp") {
                tracing::debug!(file = %name, "removing a leftover media file");
                let _ = std::fs::remove_file(file.path());
            }
        }
        for id in &known {
            if !self.path(id).is_file() {
                tracing::warn!(id, "media file missing: forgetting it");
                forget(&mut db, &self.dir, id)?;
            }
        }
        let last: i64 = db.query_row(
            "SELECT COALESCE(MAX(last_used), 0) FROM entries",
            [],
            |row| row.get(0),
        )?;
        self.clock.store(last.max(0) as u64, Ordering::Relaxed);
        self.evict(&mut db)?;
        Ok(())
    }

    /// The work of a `say` miss (one per key at a time).
    async fn synthesize(
        self: Arc<Self>,
        key: String,
        (text, voice, language): (String, Option<String>, Option<String>),
    ) -> Result<Media, MediaError> {
        let lookup_key = key.clone();
        if let Some(known) = blocking(&self, move |inner| inner.lookup(&lookup_key)).await? {
            Counters::bump(&self.counters.hits);
            return Ok(known.media);
        }
        Counters::bump(&self.counters.misses);
        Counters::bump(&self.counters.syntheses);
        let synth = Arc::clone(&self.synth);
        let samples = tokio::task::spawn_blocking(move || {
            synth.synthesize(&text, voice.as_deref(), language.as_deref())
        })
        .await
        .map_err(|e| MediaError::Synth(format!("the synthesizer crashed: {e}")))?
        .map_err(|e| MediaError::Synth(format!("{e:#}")))?;
        let source = Source {
            key,
            fetched_ms: None,
            etag: None,
        };
        blocking(&self, move |inner| {
            inner.store(samples, Owner::Shared, Some(source))
        })
        .await
    }

    /// The work of a `fetch` that memory could not answer.
    async fn download(self: Arc<Self>, key: String, url: String) -> Result<Media, MediaError> {
        let lookup_key = key.clone();
        let known = blocking(&self, move |inner| inner.lookup(&lookup_key)).await?;
        let now = now_ms();
        if let Some(known) = &known
            && known.is_fresh(now, self.config.fetch_ttl)
        {
            Counters::bump(&self.counters.hits);
            return Ok(known.media.clone());
        }
        Counters::bump(&self.counters.fetches);
        let etag = known.as_ref().and_then(|k| k.etag.clone());
        match (self.fetcher.get(&url, etag.as_deref()).await, known) {
            (Ok(Fetched::NotModified), Some(known)) => {
                Counters::bump(&self.counters.hits);
                blocking(&self, move |inner| inner.refresh(&key, now)).await?;
                Ok(known.media)
            }
            (Ok(Fetched::NotModified), None) => Err(FetchError::Status { url, status: 304 }.into()),
            (Ok(Fetched::Body { bytes, etag }), _) => {
                Counters::bump(&self.counters.misses);
                let source = Source {
                    key,
                    fetched_ms: Some(now),
                    etag,
                };
                blocking(&self, move |inner| {
                    let samples = decode_wav(&bytes)?;
                    inner.store(samples, Owner::Shared, Some(source))
                })
                .await
            }
            (Err(error), Some(known)) if error.is_transient() => {
                // Keep playing the copy we have; ask again after a TTL
                // rather than making every call wait for a dead server.
                tracing::warn!(%url, %error, "prompt server unreachable: using the cached copy");
                Counters::bump(&self.counters.hits);
                blocking(&self, move |inner| inner.refresh(&key, now)).await?;
                Ok(known.media)
            }
            (Err(error), _) => Err(error.into()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut db = lock(&self.db);
        if let Err(e) = self.flush_last_used(&mut db) {
            tracing::warn!(error = %e, "media cache: last use times not saved");
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T, F>(inner: &Arc<Inner>, f: F) -> Result<T, MediaError>
where
    T: Send + 'static,
    F: FnOnce(&Inner) -> Result<T, MediaError> + Send + 'static,
{
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| storage(format!("storage task failed: {e}")))?
}

fn access_of(db: &Connection, id: &str) -> rusqlite::Result<Option<Access>> {
    let shared = db
        .prepare_cached("SELECT shared FROM entries WHERE id = ?1")?
        .query_row(params![id], |row| row.get::<_, bool>(0))
        .optional()?;
    let Some(shared) = shared else {
        return Ok(None);
    };
    let tenants = db
        .prepare_cached("SELECT tenant FROM imports WHERE id = ?1")?
        .query_map(params![id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(Access { shared, tenants }))
}

fn touch(db: &Connection, id: &str, last_used: u64) -> rusqlite::Result<usize> {
    db.prepare_cached("UPDATE entries SET last_used = ?2 WHERE id = ?1")?
        .execute(params![id, last_used as i64])
}

/// Removes entry `id`: its rows and its file.
fn forget(db: &mut Connection, dir: &Path, id: &str) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    for table in ["entries", "sources", "imports"] {
        tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), params![id])?;
    }
    tx.commit()?;
    let _ = std::fs::remove_file(dir.join(format!("{id}.wav")));
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in `dir`, so a crash
/// never leaves a partial file under a valid id.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{:016x}.tmp", rand::random::<u64>()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;

    use super::*;
    use crate::media::RATE;
    use crate::media::fetch::FetchConfig;
    use crate::media::fetch::test_server::{TestServer, reply};
    use crate::media::tone::{goertzel, sine};

    /// A synthesizer that counts its calls and "speaks" a tone whose
    /// samples start with the text's bytes (so each text sounds different).
    #[derive(Default)]
    struct CountingSynth {
        calls: AtomicUsize,
        delay: Duration,
    }

    impl CountingSynth {
        fn slow(delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                delay,
                ..Self::default()
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Synthesizer for CountingSynth {
        fn name(&self) -> &str {
            "counting"
        }

        fn synthesize(
            &self,
            text: &str,
            voice: Option<&str>,
            _language: Option<&str>,
        ) -> anyhow::Result<Vec<i16>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            if text == "fail" {
                anyhow::bail!("cannot say {text:?}");
            }
            let mut samples = sine(1000.0, 200, 0.5);
            let marks = text.bytes().chain(voice.unwrap_or("").bytes());
            for (s, b) in samples.iter_mut().zip(marks) {
                *s = b as i16;
            }
            Ok(samples)
        }
    }

    /// Bytes of the WAV file of one CountingSynth utterance.
    const UTTERANCE_BYTES: u64 = 44 + 1600 * 2;

    fn open(dir: &Path, config: CacheConfig, synth: Arc<dyn Synthesizer>) -> MediaCache {
        let fetcher = Fetcher::new(FetchConfig {
            egress: crate::egress::EgressPolicy::unrestricted(),
            ..FetchConfig::default()
        })
        .unwrap();
        MediaCache::open_with(dir, config, synth, fetcher).unwrap()
    }

    fn wav_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "wav")
            })
            .count()
    }

    #[tokio::test]
    async fn saying_the_same_text_again_does_not_synthesize_again() {
        let dir = tempfile::tempdir().unwrap();
        let synth = Arc::new(CountingSynth::default());
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        let first = cache
            .say("Welcome to Acme", None, Some("en-US"))
            .await
            .unwrap();
        let second = cache
            .say("Welcome to Acme", None, Some("en-US"))
            .await
            .unwrap();
        assert_eq!(synth.calls(), 1);
        assert_eq!(first.id, second.id);
        assert!(Arc::ptr_eq(&first.samples, &second.samples));
        assert_eq!(first.samples.len(), RATE as usize / 5);
        assert!(is_media_id(&first.id));

        // Another voice, language or text is another request.
        cache
            .say("Welcome to Acme", Some("en-gb"), Some("en-US"))
            .await
            .unwrap();
        cache
            .say("Welcome to Acme", None, Some("en-GB"))
            .await
            .unwrap();
        cache.say("Welcome to Acme", None, None).await.unwrap();
        cache
            .say("Welcome to Globex", None, Some("en-US"))
            .await
            .unwrap();
        assert_eq!(synth.calls(), 5);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.syntheses), (1, 5, 5));
        // Same language/no-voice text with different voice marks differ;
        // the en-US/en-GB/None variants speak alike and share one file.
        assert_eq!(stats.entries, 3);
        assert_eq!(wav_files(dir.path()), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_thousand_concurrent_identical_says_cost_one_synthesis() {
        let dir = tempfile::tempdir().unwrap();
        let synth = CountingSynth::slow(Duration::from_millis(200));
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        let calls: Vec<_> = (0..1000)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.say("Please hold", None, None).await })
            })
            .collect();
        let mut ids = HashSet::new();
        for call in calls {
            ids.insert(call.await.unwrap().unwrap().id);
        }
        assert_eq!(synth.calls(), 1);
        assert_eq!(ids.len(), 1);
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits), (1, 999));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_a_failure_and_a_later_call_tries_again() {
        let dir = tempfile::tempdir().unwrap();
        let synth = CountingSynth::slow(Duration::from_millis(100));
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        let (a, b) = tokio::join!(cache.say("fail", None, None), cache.say("fail", None, None));
        let expected = MediaError::Synth(r#"cannot say "fail""#.into());
        assert_eq!(
            (a.unwrap_err(), b.unwrap_err()),
            (expected.clone(), expected)
        );
        assert_eq!(synth.calls(), 1);
        assert!(cache.say("fail", None, None).await.is_err());
        assert_eq!(synth.calls(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_hanging_up_does_not_waste_the_synthesis() {
        let dir = tempfile::tempdir().unwrap();
        let synth = CountingSynth::slow(Duration::from_millis(200));
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.say("Hello?", None, None).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.say("Hello?", None, None).await })
        };
        first.abort();
        assert!(waiting.await.unwrap().is_ok());
        cache.say("Hello?", None, None).await.unwrap();
        assert_eq!(synth.calls(), 1);
    }

    #[tokio::test]
    async fn the_cache_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let cache = open(
                dir.path(),
                CacheConfig::default(),
                Arc::new(CountingSynth::default()),
            );
            cache.say("Goodbye", None, None).await.unwrap().id
        };
        let synth = Arc::new(CountingSynth::default());
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        let again = cache.say("Goodbye", None, None).await.unwrap();
        assert_eq!(synth.calls(), 0);
        assert_eq!(again.id, id);
        assert_eq!(again.samples[0], b'G' as i16);
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.stats().hits, 1);
        let file = cache.file(&id).unwrap();
        assert_eq!(file, dir.path().join(format!("{id}.wav")));
        assert_eq!(
            hex::encode(Sha256::digest(std::fs::read(file).unwrap())),
            id
        );
    }

    #[tokio::test]
    async fn least_recently_used_entries_are_evicted_past_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let synth = Arc::new(CountingSynth::default());
        let config = CacheConfig {
            max_bytes: 3 * UTTERANCE_BYTES,
            ..CacheConfig::default()
        };
        let cache = open(dir.path(), config.clone(), synth.clone());
        let a = cache.say("a", None, None).await.unwrap().id;
        let b = cache.say("b", None, None).await.unwrap().id;
        cache.say("c", None, None).await.unwrap();
        cache.say("a", None, None).await.unwrap(); // a is now more recent than b
        cache.say("d", None, None).await.unwrap();
        assert_eq!(synth.calls(), 4);
        let stats = cache.stats();
        assert_eq!(
            (stats.entries, stats.bytes, stats.evictions),
            (3, 3 * UTTERANCE_BYTES, 1)
        );
        assert!(cache.file(&b).is_none(), "b was the least recently used");
        assert!(cache.file(&a).is_some());
        assert_eq!(
            cache.get("acme", &b).unwrap_err(),
            MediaError::NotFound(b.clone())
        );
        cache.say("b", None, None).await.unwrap();
        assert_eq!(synth.calls(), 5, "an evicted entry is made again");
        assert_eq!(wav_files(dir.path()), 3);

        // Reopening with a smaller budget evicts down to it.
        drop(cache);
        let cache = open(
            dir.path(),
            CacheConfig {
                max_bytes: UTTERANCE_BYTES,
                ..config
            },
            synth.clone(),
        );
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(wav_files(dir.path()), 1);
    }

    #[tokio::test]
    async fn an_entry_someone_holds_is_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let synth = Arc::new(CountingSynth::default());
        let config = CacheConfig {
            max_bytes: UTTERANCE_BYTES,
            ..CacheConfig::default()
        };
        let cache = open(dir.path(), config, synth.clone());
        let playing = cache.say("a", None, None).await.unwrap();
        let newer = cache.say("b", None, None).await.unwrap();
        // Over budget, but both are held: neither goes.
        assert!(cache.file(&playing.id).is_some() && cache.file(&newer.id).is_some());
        drop(playing);
        cache.say("c", None, None).await.unwrap();
        assert_eq!(cache.stats().evictions, 1);
        assert!(cache.file(&newer.id).is_some());
    }

    #[tokio::test]
    async fn imports_are_the_tenants_own_and_never_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let synth = Arc::new(CountingSynth::default());
        let config = CacheConfig {
            max_bytes: UTTERANCE_BYTES,
            ..CacheConfig::default()
        };
        let cache = open(dir.path(), config, synth.clone());
        // A 16 kHz stereo file: stored as 8 kHz mono.
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..16_000 {
            let s = ((i as f64 * 2.0 * std::f64::consts::PI / 16.0).sin() * 16_000.0) as i16;
            writer.write_sample(s).unwrap();
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        let upload = cursor.into_inner();

        let mine = cache.import("acme", &upload).unwrap();
        assert_eq!(mine.samples.len(), 8000);
        assert!(goertzel(&mine.samples[1000..7000], 1000.0) > 0.2);
        assert_eq!(cache.import("acme", &upload).unwrap().id, mine.id);
        assert_eq!(cache.get("acme", &mine.id).unwrap().id, mine.id);
        let hidden = MediaError::NotFound(mine.id.clone());
        assert_eq!(cache.get("globex", &mine.id).unwrap_err(), hidden);

        // Shared entries are visible to everyone.
        let shared = cache.say("hello", None, None).await.unwrap();
        assert_eq!(cache.get("globex", &shared.id).unwrap().id, shared.id);
        drop(shared);
        cache.say("more", None, None).await.unwrap();
        cache.say("still more", None, None).await.unwrap();
        assert!(cache.stats().evictions >= 1);
        assert!(cache.file(&mine.id).is_some());

        // Visibility holds from disk too, after a restart.
        drop(cache);
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        assert_eq!(cache.get("acme", &mine.id).unwrap().samples.len(), 8000);
        assert_eq!(cache.get("globex", &mine.id).unwrap_err(), hidden);
        // A second tenant importing the same audio gets it too, same id.
        assert_eq!(cache.import("globex", &upload).unwrap().id, mine.id);
        assert!(cache.get("globex", &mine.id).is_ok());

        assert!(matches!(
            cache.import("acme", b"not a wav"),
            Err(MediaError::BadAudio(AudioError::NotWav))
        ));
        for bad in ["../../etc/passwd", "ABC", &mine.id.to_uppercase()] {
            assert_eq!(
                cache.get("acme", bad).unwrap_err(),
                MediaError::NotFound(bad.into())
            );
            assert!(cache.file(bad).is_none());
        }
    }

    /// A prompt server whose file changes with `version`, with ETags.
    async fn versioned_server(version: Arc<AtomicUsize>, down: Arc<AtomicUsize>) -> TestServer {
        TestServer::start(move |req| {
            if down.load(Ordering::SeqCst) == 1 {
                return reply(503, &[], "maintenance");
            }
            let v = version.load(Ordering::SeqCst);
            let etag = format!("\"v{v}\"");
            if req
                .headers()
                .get("if-none-match")
                .is_some_and(|h| *h == *etag)
            {
                return reply(304, &[("etag", &etag)], Bytes::new());
            }
            let mut samples = sine(1000.0, 100, 0.5);
            samples[0] = v as i16;
            reply(200, &[("etag", &etag)], encode_wav(&samples))
        })
        .await
    }

    #[tokio::test]
    async fn a_fetched_prompt_is_reused_within_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let server = versioned_server(Arc::default(), Arc::default()).await;
        let cache = open(
            dir.path(),
            CacheConfig::default(),
            Arc::new(CountingSynth::default()),
        );
        let url = server.url("/greeting.wav");
        let first = cache.fetch(&url).await.unwrap();
        let second = cache.fetch(&url).await.unwrap();
        assert_eq!(first.id, second.id);
        assert_eq!(first.samples.len(), 800);
        assert_eq!(server.hits(), 1);
        let stats = cache.stats();
        assert_eq!((stats.fetches, stats.misses, stats.hits), (1, 1, 1));
        // Served from disk after a restart, still without asking.
        drop(cache);
        let cache = open(
            dir.path(),
            CacheConfig::default(),
            Arc::new(CountingSynth::default()),
        );
        assert_eq!(cache.fetch(&url).await.unwrap().id, first.id);
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn after_the_ttl_the_server_is_asked_again_with_the_etag() {
        let dir = tempfile::tempdir().unwrap();
        let (version, down) = (Arc::new(AtomicUsize::new(1)), Arc::new(AtomicUsize::new(0)));
        let server = versioned_server(version.clone(), down.clone()).await;
        let config = CacheConfig {
            fetch_ttl: Duration::ZERO,
            ..CacheConfig::default()
        };
        let cache = open(dir.path(), config, Arc::new(CountingSynth::default()));
        let url = server.url("/menu.wav");
        let v1 = cache.fetch(&url).await.unwrap();
        // Unchanged: 304, the same entry.
        assert_eq!(cache.fetch(&url).await.unwrap().id, v1.id);
        assert_eq!(server.hits(), 2);
        assert_eq!(cache.stats().entries, 1);
        // Changed: the new file.
        version.store(2, Ordering::SeqCst);
        let v2 = cache.fetch(&url).await.unwrap();
        assert_ne!(v2.id, v1.id);
        assert_eq!(v2.samples[0], 2);
        // Server down: the copy we have is used.
        down.store(1, Ordering::SeqCst);
        assert_eq!(cache.fetch(&url).await.unwrap().id, v2.id);
        assert_eq!(server.hits(), 4);
        let stats = cache.stats();
        assert_eq!((stats.fetches, stats.misses), (4, 2));
    }

    #[tokio::test]
    async fn concurrent_fetches_of_one_url_download_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let server = versioned_server(Arc::default(), Arc::default()).await;
        let cache = open(
            dir.path(),
            CacheConfig::default(),
            Arc::new(CountingSynth::default()),
        );
        let url = server.url("/hold-music.wav");
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let (cache, url) = (cache.clone(), url.clone());
                tokio::spawn(async move { cache.fetch(&url).await.unwrap().id })
            })
            .collect();
        let mut ids = HashSet::new();
        for call in calls {
            ids.insert(call.await.unwrap());
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn fetch_failures_are_reported_and_loopback_is_refused_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(|req| match req.uri().path() {
            "/text" => reply(200, &[("content-type", "text/plain")], "hello"),
            "/broken.wav" => reply(200, &[], &b"RIFF\0\0\0\0WAVEjunk"[..]),
            _ => reply(404, &[], "no"),
        })
        .await;
        let cache = open(
            dir.path(),
            CacheConfig::default(),
            Arc::new(CountingSynth::default()),
        );
        assert!(matches!(
            cache.fetch(&server.url("/missing.wav")).await,
            Err(MediaError::Fetch(FetchError::Status { status: 404, .. }))
        ));
        assert!(matches!(
            cache.fetch(&server.url("/text")).await,
            Err(MediaError::Fetch(FetchError::NotWav { .. }))
        ));
        assert!(matches!(
            cache.fetch(&server.url("/broken.wav")).await,
            Err(MediaError::BadAudio(AudioError::Malformed(_)))
        ));

        let strict = MediaCache::open(
            &dir.path().join("strict"),
            1 << 20,
            Arc::new(CountingSynth::default()),
            Fetcher::new(FetchConfig::default()).unwrap(),
        )
        .unwrap();
        let err = strict
            .fetch(&server.url("/greeting.wav"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, MediaError::Fetch(FetchError::Private { .. })),
            "{err}"
        );
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn leftovers_of_a_crash_are_cleaned_up_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let cache = open(
                dir.path(),
                CacheConfig::default(),
                Arc::new(CountingSynth::default()),
            );
            cache.say("kept", None, None).await.unwrap().id
        };
        let orphan = dir.path().join(format!("{}.wav", "ab".repeat(32)));
        std::fs::write(&orphan, b"x").unwrap();
        std::fs::write(dir.path().join(".0123.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let cache = open(
            dir.path(),
            CacheConfig::default(),
            Arc::new(CountingSynth::default()),
        );
        assert!(!orphan.exists());
        assert!(!dir.path().join(".0123.tmp").exists());
        assert!(dir.path().join("notes.txt").exists());
        assert!(cache.file(&id).is_some());

        // A file deleted behind the cache's back is forgotten.
        std::fs::remove_file(cache.file(&id).unwrap()).unwrap();
        drop(cache);
        let synth = Arc::new(CountingSynth::default());
        let cache = open(dir.path(), CacheConfig::default(), synth.clone());
        assert_eq!(cache.stats().entries, 0);
        cache.say("kept", None, None).await.unwrap();
        assert_eq!(synth.calls(), 1);
    }

    #[test]
    fn source_keys_tell_none_from_empty_and_never_run_parts_together() {
        let k = |parts: &[Option<&str>]| source_key("say", parts);
        assert_ne!(
            k(&[Some("s"), None, Some("hi")]),
            k(&[Some("s"), Some(""), Some("hi")])
        );
        assert_ne!(k(&[Some("ab"), Some("c")]), k(&[Some("a"), Some("bc")]));
        assert_ne!(
            source_key("say", &[Some("x")]),
            source_key("fetch", &[Some("x")])
        );
        assert!(is_media_id(&k(&[])));
    }
}
