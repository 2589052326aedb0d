//! The answering sides: the directory this runtime serves (`[directory]
//! serve`) and this runtime as a provider answering confirmation
//! queries (`[provider]`). The REST API (`api::directory`,
//! `api::confirmations`) calls these and maps their errors to statuses.
//!
//! ```text
//!  PUT providers/{id} ─► Directory::put: one at a time ─► Registry::check
//!        ─► DirectoryStore::save (blocking, off the async path) ─► commit
//!  POST /v1/confirmations ─► Answerer::answer: Query::peek ─► the asker's
//!        key (Confirmer::provider_key, cached) ─► Query::verify
//!        ─► Limiter (per asker) ─► PlacementStore::around ─► answer ─► Reply
//! ```

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use switchyard_directory::{
    Decision, Identifier, Limiter, MessageError, Placed, Provider, Query, Registry, Reply, Table,
    UpdateError, answer,
};

use super::{Confirmer, Own, unix_now};
use crate::store::directory::DirectoryStore;
use crate::store::placements::PlacementStore;

/// What the REST API serves of C11; nothing by default.
#[derive(Clone, Debug, Default)]
pub struct Served {
    /// `[directory] serve`.
    pub directory: Option<Arc<Directory>>,
    /// `[provider]`.
    pub answerer: Option<Arc<Answerer>>,
}

/// The directory this runtime serves: in memory, stored in SQLite.
pub struct Directory {
    registry: RwLock<Registry>,
    store: DirectoryStore,
    /// Updates are checked, stored and committed one at a time.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

/// Why an update was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("{0}")]
    Update(#[from] UpdateError),
    #[error("the directory could not store the update: {0}")]
    Store(String),
}

impl Directory {
    /// The directory stored at `store`, loaded.
    pub fn open(store: DirectoryStore) -> anyhow::Result<Self> {
        let mut registry = Registry::new();
        for provider in store.all().context("reading the directory")? {
            let id = provider.id.clone();
            registry
                .restore(provider)
                .with_context(|| format!("the directory's provider {id}"))?;
        }
        Ok(Self {
            registry: RwLock::new(registry),
            store,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the signed update `token` sent for provider `id`; whether it
    /// created the provider.
    pub async fn put(&self, id: &str, token: &str) -> Result<(bool, Provider), PutError> {
        let _one_at_a_time = self.writing.lock().await;
        let checked = self.read().check(id, token, unix_now())?;
        let (store, provider) = (self.store.clone(), checked.provider.clone());
        tokio::task::spawn_blocking(move || store.save(&provider))
            .await
            .map_err(|e| PutError::Store(e.to_string()))?
            .map_err(|e| PutError::Store(e.to_string()))?;
        let (created, provider) = (checked.created, checked.provider.clone());
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        registry.commit(checked).map_err(UpdateError::from)?;
        Ok((created, provider))
    }

    pub fn provider(&self, id: &str) -> Option<Provider> {
        self.read().provider(id).cloned()
    }

    /// The most specific entry covering `identifier` and its provider.
    pub fn lookup(&self, identifier: &Identifier) -> Option<(Identifier, Provider)> {
        let registry = self.read();
        let (entry, provider) = registry.lookup(identifier)?;
        Some((entry, provider.clone()))
    }
}

/// Why a confirmation query was not answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Malformed, stale, or not signed by the asker's key.
    #[error("{0}")]
    Query(#[from] MessageError),
    /// The asker is not in the directory.
    #[error("the asker {0:?} is not in the directory")]
    UnknownAsker(String),
    /// The directory could not be asked for the asker's key.
    #[error("{0}")]
    Directory(String),
    /// Over the asker's rate.
    #[error("too many confirmation queries from {asker:?}")]
    Limited {
        asker: String,
        retry_after: Duration,
    },
    #[error("the placement records are unavailable: {0}")]
    Store(String),
}

/// This runtime as a provider, answering confirmation queries from its
/// placement records, signing with its `[provider] key`.
pub struct Answerer {
    own: Arc<Own>,
    /// Its own entries: what it answers for.
    table: Table,
    window_secs: u64,
    limiter: Mutex<Limiter>,
    placements: PlacementStore,
    /// Where askers' keys come from.
    confirmer: Arc<Confirmer>,
}

impl std::fmt::Debug for Answerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answerer")
            .field("provider", &self.own.id)
            .finish_non_exhaustive()
    }
}

/// Askers whose rate is tracked at once; past it, see [`Limiter`].
const MAX_ASKERS: usize = 10_000;

impl Answerer {
    pub fn new(
        own: Arc<Own>,
        window_secs: u64,
        queries_per_minute: u32,
        placements: PlacementStore,
        confirmer: Arc<Confirmer>,
    ) -> Self {
        Self {
            table: Table::of(&own.id, &own.identifiers),
            own,
            window_secs,
            // A minute's worth may come at once, then it refills evenly.
            limiter: Mutex::new(Limiter::new(
                queries_per_minute,
                queries_per_minute,
                MAX_ASKERS,
            )),
            placements,
            confirmer,
        }
    }

    /// The signed reply to the query `token`.
    pub async fn answer(&self, token: &str) -> Result<String, AnswerError> {
        let asker = Query::peek(token)?;
        let key = (self.confirmer.provider_key(&asker).await)
            .map_err(AnswerError::Directory)?
            .ok_or_else(|| AnswerError::UnknownAsker(asker.clone()))?;
        let now = unix_now();
        let query = Query::verify(token, &asker, &key, now)?;
        let decision = (self.limiter.lock().unwrap_or_else(PoisonError::into_inner))
            .check(&asker, Instant::now());
        if let Decision::Limited { retry_after } = decision {
            return Err(AnswerError::Limited { asker, retry_after });
        }
        let window_ms = self.window_secs.saturating_mul(1000);
        let at_ms = query.at.max(0) as u64 * 1000;
        let (store, orig) = (self.placements.clone(), query.orig.clone());
        let (from, to) = (at_ms.saturating_sub(window_ms), at_ms + window_ms);
        let rows = tokio::task::spawn_blocking(move || store.around(&orig, from, to))
            .await
            .map_err(|e| AnswerError::Store(e.to_string()))?
            .map_err(|e| AnswerError::Store(e.to_string()))?;
        let placed = rows.iter().map(|p| Placed {
            caller: &p.caller,
            callee: &p.callee,
            at_ms: p.at_ms,
        });
        let said = answer(&query, &self.table, placed, self.window_secs);
        tracing::debug!(asker = %asker, answer = said.as_str(), "confirmation query answered");
        Ok(Reply::to(&query, &self.own.id, said, now).sign(&self.own.key))
    }
}
