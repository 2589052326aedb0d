//! Each component is validated and compiled once: kept in memory while in
//! use, and on disk across restarts.
//!
//! ```text
//!   bytes ─sha256─▶ ContentHash
//!      │
//!      ├─ in memory? (Weak<LoadedComponent>, alive while a handler uses it)
//!      │      yes ──▶ LoadSource::Memory
//!      ├─ <cache_dir>/<engine key>/<content hash>.cwasm exists?
//!      │      yes ──▶ Component::deserialize_file ──▶ LoadSource::DiskCache
//!      └─ Engine::precompile_component (validates + compiles)
//!             ──▶ temp file + rename ──▶ LoadSource::Compiled
//! ```
//!
//! The engine key is a hash of `Engine::precompile_compatibility_hash`, so
//! a wasmtime upgrade or a changed engine setting starts a fresh directory
//! instead of tripping over incompatible artifacts.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// sha256 of a component's bytes: its identity in caches and logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// Where a loaded component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Validated and compiled now (first sight of these bytes).
    Compiled,
    /// Deserialized from the on-disk cache of an earlier run.
    DiskCache,
    /// Already loaded and still in use in this process.
    Memory,
}

/// Counters of the component cache since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub compiled: u64,
    pub disk_hits: u64,
    pub memory_hits: u64,
    /// Compiled code that could not be written to disk (the component
    /// still loads; the next run compiles it again).
    pub disk_write_failures: u64,
}

/// The cache directory could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("cannot create the component cache directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Compiled components on disk, and the loaded ones (`T`, the host's
/// `LoadedComponent`) in memory while in use. Generic so the cache knows
/// nothing of what the host builds from a component.
pub(crate) struct ComponentCache<T> {
    dir: PathBuf,
    loaded: Mutex<HashMap<ContentHash, Weak<T>>>,
    compiled: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
    disk_write_failures: AtomicU64,
}

impl<T> ComponentCache<T> {
    /// Prepares `<cache_dir>/<engine key>/`.
    pub(crate) fn open(cache_dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let dir = cache_dir.join(engine_key(engine));
        std::fs::create_dir_all(&dir).map_err(|source| CacheError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
            disk_write_failures: AtomicU64::new(0),
        })
    }

    /// The component loaded from these bytes, if one is still in use.
    pub(crate) fn loaded(&self, hash: &ContentHash) -> Option<Arc<T>> {
        let found = self.lock().get(hash).and_then(Weak::upgrade);
        if found.is_some() {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps a weak reference, so later loads of the same bytes share it
    /// while it is alive and it is freed once the last handler goes.
    pub(crate) fn remember(&self, hash: ContentHash, component: &Arc<T>) {
        let mut loaded = self.lock();
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(hash, Arc::downgrade(component));
    }

    /// Compiled code for `bytes`, from disk when an earlier run compiled it.
    /// Errors are validation/compilation errors of the component itself.
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        hash: &ContentHash,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, LoadSource)> {
        let path = self.dir.join(format!("{hash}.cwasm"));
        if path.is_file() {
            // SAFETY: `deserialize_file` trusts its input to be code this
            // wasmtime produced. The file lives in our own cache directory,
            // under a subdirectory named after this engine's compatibility
            // hash, and was written (atomically, see below) only by
            // `precompile_component` of this process or an earlier run with
            // the same engine. wasmtime additionally checks the header's
            // engine/version fingerprint. The operator must keep the cache
            // directory writable only by the runtime, like its database.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    self.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, LoadSource::DiskCache));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "discarding unreadable cached component");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = write_atomically(&path, &compiled) {
            self.disk_write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), error = %e, "cannot write the component cache; continuing without it");
        }
        // SAFETY: `compiled` was produced by `precompile_component` on this
        // very engine a moment ago.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, LoadSource::Compiled))
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_write_failures: self.disk_write_failures.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Weak<T>>> {
        // The map holds only weak references; a panic elsewhere cannot
        // leave it inconsistent.
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes to a temporary file in the same directory, then renames, so a
/// reader (or a crash) never sees half an artifact under the final name.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    // Unique per process and write, so concurrent loads of the same bytes
    // (here or in another runtime sharing the directory) never collide.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("component"),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Short stable name for the engine's compilation settings.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    format!("engine-{}", hex::encode(&digest[..8]))
}

/// Feeds a `Hash` stream into sha256: std's `DefaultHasher` is not
/// guaranteed stable across Rust releases, and this name outlives a build.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_hex_sha256() {
        assert_eq!(
            ContentHash::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        write_atomically(&path, b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_engine_key_is_stable_for_one_engine() {
        let engine = Engine::default();
        assert_eq!(engine_key(&engine), engine_key(&engine));
        assert!(engine_key(&engine).starts_with("engine-"));
    }
}
