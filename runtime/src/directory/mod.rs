//! The call placement directory and provider confirmation at the edge
//! (C11): the HTTP and SQLite around `switchyard_directory` (sans-IO).
//!
//! ```text
//!  [directory] serve ─► Directory (served.rs): PUT/GET /v1/directory/providers/{id},
//!                        GET /v1/directory/lookup      ── storage/directory.sqlite3
//!  [directory] url   ─► Confirmer (confirmer.rs): check(caller, callee, at) for the
//!                        inbound flow; askers' keys; the start-up publish
//!  [provider]        ─► Answerer (served.rs): POST /v1/confirmations from the
//!                        placement records   ── storage/placements.sqlite3
//!                        (EndpointEvent::Placed, written behind by serve)
//! ```
//!
//! Every address reached (the directory, a provider's confirm_url) goes
//! through the egress policy (purposes `DirectoryLookup`, `Confirmation`;
//! `[directory] private` opens loopback and private addresses) and the one
//! HTTP client, `media::fetch::Fetcher`.

mod confirmer;
mod served;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use switchyard_directory::{Identifier, SigningKey};

pub use confirmer::{Check, Confirmation, Confirmer, Entry};
pub use served::{AnswerError, Answerer, Directory, PutError, Served};

use crate::egress::EgressPolicy;
use crate::serve::config::Config;
use crate::store::directory::DirectoryStore;
use crate::store::placements::PlacementStore;

/// The media type of a compact JWS (RFC 7515 §9.2.1).
pub const JOSE: &str = "application/jose";

/// This runtime as a provider (`[provider]`): what it signs with and
/// publishes.
pub struct Own {
    pub id: String,
    pub key: SigningKey,
    pub confirm_url: String,
    pub identifiers: Vec<Identifier>,
}

/// What the server runs of C11, from its config.
#[derive(Debug, Default)]
pub struct Started {
    /// `[directory] url`: asks (and publishes to) the directory.
    pub confirmer: Option<Arc<Confirmer>>,
    /// What the REST API serves.
    pub served: Served,
    /// `[provider]`: where the calls this runtime places are recorded.
    pub placements: Option<PlacementStore>,
}

/// Builds the directory, the confirmer and the answerer the config asks
/// for, with their stores under `[storage] path`. Publishing waits for
/// [`Confirmer::start_publishing`] (once the HTTP listener is up, in case
/// the directory is this runtime).
pub fn start(config: &Config, egress: EgressPolicy) -> anyhow::Result<Started> {
    let storage = &config.storage.path;
    let own = match &config.provider {
        Some(section) => {
            let missing = |what| anyhow::anyhow!("[provider] needs {what}");
            let key = section.key.as_deref().ok_or_else(|| missing("key"))?;
            let identifiers = (section.identifiers.iter())
                .map(|text| Identifier::parse(text))
                .collect::<Result<Vec<_>, _>>()
                .context("[provider] identifiers")?;
            Some(Arc::new(Own {
                id: section.id.clone().ok_or_else(|| missing("id"))?,
                key: confirmer::signing_key(key)?,
                confirm_url: (section.confirm_url.clone()).ok_or_else(|| missing("confirm_url"))?,
                identifiers,
            }))
        }
        None => None,
    };
    let confirmer = Confirmer::new(&config.directory, own.clone(), egress)?.map(Arc::new);
    let directory = match config.directory.serve {
        true => {
            let path = storage.join("directory.sqlite3");
            let store = DirectoryStore::open(&path).context("opening the directory")?;
            Some(Arc::new(Directory::open(store)?))
        }
        false => None,
    };
    let mut placements = None;
    let mut answerer = None;
    if let (Some(own), Some(section)) = (own, &config.provider) {
        let confirmer = (confirmer.clone())
            .context("[provider] needs [directory] url (askers' keys are looked up there)")?;
        let path = storage.join("placements.sqlite3");
        let store = PlacementStore::open(&path).context("opening the placement records")?;
        answerer = Some(Arc::new(Answerer::new(
            own,
            section.window_secs,
            section.queries_per_minute,
            store.clone(),
            confirmer,
        )));
        placements = Some(store);
    }
    Ok(Started {
        confirmer,
        served: Served {
            directory,
            answerer,
        },
        placements,
    })
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
