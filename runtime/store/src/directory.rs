//! The call placement directory's records (C11), when this runtime
//! serves one (`[directory] serve`): providers and the entries they hold.
//!
//! ```text
//!   provider(id, confirm_url, key, updated)      key: SPKI PEM; updated: the update's iat
//!   provider_identifier(identifier, provider)     one holder per entry (PRIMARY KEY)
//! ```
//!
//! The directory itself (`switchyard_directory::Registry`) lives in
//! memory; this is what it is rebuilt from at start. An update that
//! verified is saved here first ([`DirectoryStore::save`], one
//! transaction: the provider row and exactly its entries), then made
//! live. Every call blocks (SQLite); async callers run them off the
//! async path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, params};
use switchyard_directory::{Identifier, Provider, jws};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryStoreError {
    #[error("cannot open the directory at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// A stored row no longer reads (a key or identifier that does not
    /// parse): names the provider.
    #[error("the directory's record of provider {provider:?} is unreadable: {reason}")]
    Corrupt { provider: String, reason: String },
    #[error("the directory is unavailable: {0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for DirectoryStoreError {
    fn from(e: rusqlite::Error) -> Self {
        DirectoryStoreError::Unavailable(e.to_string())
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS provider (
        id TEXT PRIMARY KEY,
        confirm_url TEXT NOT NULL,
        key TEXT NOT NULL,
        updated INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS provider_identifier (
        identifier TEXT PRIMARY KEY,
        provider TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS provider_identifier_by_provider
        ON provider_identifier (provider);
";

/// Handle to the directory's file; cheap to clone.
#[derive(Clone)]
pub struct DirectoryStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for DirectoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryStore").finish_non_exhaustive()
    }
}

impl DirectoryStore {
    pub fn open(path: &Path) -> Result<Self, DirectoryStoreError> {
        let conn = super::open(path, SCHEMA).map_err(|reason| DirectoryStoreError::Open {
            path: path.into(),
            reason,
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `provider` with exactly its entries (what it held before
    /// and no longer lists is released), in one transaction. An entry
    /// another provider holds fails the whole save.
    pub fn save(&self, provider: &Provider) -> Result<(), DirectoryStoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO provider (id, confirm_url, key, updated) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET confirm_url = ?2, key = ?3, updated = ?4",
            params![
                provider.id,
                provider.confirm_url,
                provider.key_pem(),
                provider.updated
            ],
        )?;
        tx.execute(
            "DELETE FROM provider_identifier WHERE provider = ?1",
            [&provider.id],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO provider_identifier (identifier, provider) VALUES (?1, ?2)",
            )?;
            for identifier in &provider.identifiers {
                insert.execute(params![identifier.to_string(), provider.id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every provider stored, with its entries, by id.
    pub fn all(&self) -> Result<Vec<Provider>, DirectoryStoreError> {
        let conn = self.conn();
        let mut select =
            conn.prepare("SELECT id, confirm_url, key, updated FROM provider ORDER BY id")?;
        let rows = select
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut entries = conn.prepare_cached(
            "SELECT identifier FROM provider_identifier WHERE provider = ?1 ORDER BY identifier",
        )?;
        let mut providers = Vec::with_capacity(rows.len());
        for (id, confirm_url, key, updated) in rows {
            let corrupt = |reason: String| DirectoryStoreError::Corrupt {
                provider: id.clone(),
                reason,
            };
            let key = jws::public_key_from_pem(&key).map_err(corrupt)?;
            let texts = entries
                .query_map([&id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let identifiers = (texts.iter())
                .map(|t| Identifier::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| corrupt(e.to_string()))?;
            providers.push(Provider {
                id,
                confirm_url,
                key,
                identifiers,
                updated,
            });
        }
        Ok(providers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_directory::SigningKey;

    fn provider(id: &str, key: u8, ids: &[&str], updated: i64) -> Provider {
        let signing = SigningKey::from_slice(&[key; 32]).unwrap();
        Provider {
            id: id.into(),
            confirm_url: format!("https://{id}/v1/confirmations"),
            key: *signing.verifying_key(),
            identifiers: ids.iter().map(|t| Identifier::parse(t).unwrap()).collect(),
            updated,
        }
    }

    #[test]
    fn providers_are_stored_with_exactly_their_entries_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.sqlite3");
        let store = DirectoryStore::open(&path).unwrap();
        let a = provider("a.example", 1, &["+1555*", "a.example"], 10);
        store.save(&a).unwrap();
        store
            .save(&provider("b.example", 2, &["+1666*"], 11))
            .unwrap();
        // An update replaces a's entries and key.
        let a2 = provider("a.example", 3, &["+1777*"], 12);
        store.save(&a2).unwrap();
        drop(store);
        let store = DirectoryStore::open(&path).unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], a2);
        assert_eq!(all[1].identifiers[0].to_string(), "+1666*");
    }

    #[test]
    fn an_entry_another_provider_holds_fails_the_whole_save() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore::open(&dir.path().join("d.sqlite3")).unwrap();
        store
            .save(&provider("a.example", 1, &["+1555*"], 10))
            .unwrap();
        let err = store
            .save(&provider("b.example", 2, &["+1666*", "+1555*"], 11))
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        let all = store.all().unwrap();
        assert_eq!(all.len(), 1, "b was not stored");
    }
}
