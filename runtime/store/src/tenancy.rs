//! Accounts and their API keys (`storage/accounts.sqlite3`).
//!
//! ```text
//!   accounts(id, name, status, created_ms, signing_key)
//!                                               id: a config tenant id, or "AC" + 16 hex
//!   api_keys(id, account, secret_sha256, created_ms, revoked, secret_sealed)
//!                                                               id: "SK" + 16 hex
//! ```
//!
//! A key's secret is 32 random bytes, handed out once (as 64 hex digits)
//! when the key is created. Requests are checked against its SHA-256: a
//! fast hash is right here because the secret has 256 bits of entropy —
//! there is nothing to brute-force, so a slow password hash would only
//! cost CPU on every request. [`Accounts::verify`] compares hashes in
//! constant time.
//!
//! Access tokens are JWTs a tenant signs with a key's secret (HMAC), so
//! the runtime needs the secret itself to check them: it keeps it sealed
//! ([`crate::seal`], AES-256-GCM under the operator's sealing key, bound
//! to the key id), never in clear. Keys made before tokens existed have
//! no sealed copy and cannot sign tokens ([`TokenKey::NotSealed`]).
//!
//! An account's signing key (32 random bytes as 64 hex digits) signs its
//! status callbacks (`switchyard::callbacks`). Unlike API secrets it is stored
//! as is: the runtime needs it to sign, and the account reads it back
//! (`GET /v1/accounts/{id}`) to verify. Rotating it replaces it at once.
//!
//! Every call blocks (SQLite); async callers run them off the async path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::seal::Sealer;

/// One account (a tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Unix milliseconds.
    pub created_ms: u64,
}

/// One API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// `SK` and 16 hex digits.
    pub id: String,
    pub account: String,
    pub created_ms: u64,
    pub revoked: bool,
}

/// A key just created: the only time its secret is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// 64 hex digits (32 random bytes). Sent as the password of HTTP
    /// Basic auth, with the account id as the user.
    pub secret: String,
}

/// What a token's key id (`kid`) names, for checking its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKey {
    /// A live key of an active account, and its secret.
    Live {
        account: String,
        secret: String,
    },
    /// No key has this id.
    Unknown,
    Revoked {
        account: String,
    },
    /// A live key of a suspended account.
    Suspended {
        account: String,
    },
    /// A key made before access tokens: no sealed secret to check with.
    NotSealed {
        account: String,
    },
    /// The sealed secret does not open (the sealing key changed).
    Unsealable {
        account: String,
    },
}

impl TokenKey {
    /// The account of the key, if there is one.
    pub fn account(&self) -> Option<&str> {
        match self {
            TokenKey::Live { account, .. }
            | TokenKey::Revoked { account }
            | TokenKey::Suspended { account }
            | TokenKey::NotSealed { account }
            | TokenKey::Unsealable { account } => Some(account),
            TokenKey::Unknown => None,
        }
    }
}

/// What [`Accounts::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// An active account and one of its live keys.
    Active(Account),
    /// A live key of a suspended account.
    Suspended,
    /// No such account, or no live key with that secret.
    Invalid,
}

pub const ACTIVE: &str = "active";
pub const SUSPENDED: &str = "suspended";

/// The accounts store. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    db: Arc<Mutex<Connection>>,
    sealer: Sealer,
    /// Bumped whenever a signing key changes, so caches of keys
    /// ([`Accounts::signing_generation`]) know to read them again.
    signing_generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS accounts (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        status     TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS api_keys (
        id            TEXT PRIMARY KEY,
        account       TEXT NOT NULL,
        secret_sha256 BLOB NOT NULL,
        created_ms    INTEGER NOT NULL,
        revoked       INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account, id);
";

/// Added after the first release: stores from before lack it.
const SIGNING_KEY_COLUMN: &str = "ALTER TABLE accounts ADD COLUMN signing_key TEXT";
/// Added with access tokens.
const SEALED_COLUMN: &str = "ALTER TABLE api_keys ADD COLUMN secret_sealed BLOB";

/// The sealing key's file beside an accounts store at `path`.
pub fn sealing_key_path(path: &Path) -> std::path::PathBuf {
    path.with_file_name("sealing.key")
}

/// A new signing key: 32 random bytes, hex.
fn new_signing_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Equal-length byte strings compared without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// SHA-256 of `secret`.
pub fn sha256(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl Accounts {
    /// Opens (or creates) the store at `path`, sealing with the key in
    /// `sealing.key` beside it (made when missing).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, Sealer::load_or_create(&sealing_key_path(path))?)
    }

    /// Opens (or creates) the store at `path`, sealing with `sealer`.
    pub fn open_with(path: &Path, sealer: Sealer) -> anyhow::Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("opening the accounts store {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .and_then(|_| add_column(&conn, "accounts", "signing_key", SIGNING_KEY_COLUMN))
            .and_then(|_| add_column(&conn, "api_keys", "secret_sealed", SEALED_COLUMN))
            .with_context(|| format!("preparing the accounts store {}", path.display()))?;
        Ok(Self {
            db: Arc::new(Mutex::new(conn)),
            sealer,
            signing_generation: Arc::new(AtomicU64::new(0)),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure account `id` exists (a tenant of the config); an
    /// existing one is left as it is (suspension survives restarts).
    pub fn ensure(&self, id: &str) -> anyhow::Result<()> {
        self.db()
            .execute(
                "INSERT OR IGNORE INTO accounts (id, name, status, created_ms, signing_key)
                 VALUES (?1, ?1, ?2, ?3, ?4)",
                params![id, ACTIVE, now_ms() as i64, new_signing_key()],
            )
            .with_context(|| format!("ensuring account {id}"))?;
        // An account from a store older than signing keys gets one now.
        self.signing_key(id)?;
        Ok(())
    }

    /// A new active account named `name`.
    pub fn create(&self, name: &str) -> anyhow::Result<Account> {
        let account = Account {
            id: format!("AC{:016x}", rand::random::<u64>()),
            name: name.to_owned(),
            status: ACTIVE.into(),
            created_ms: now_ms(),
        };
        self.db()
            .execute(
                "INSERT INTO accounts (id, name, status, created_ms, signing_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    account.id,
                    account.name,
                    account.status,
                    account.created_ms as i64,
                    new_signing_key()
                ],
            )
            .context("creating an account")?;
        Ok(account)
    }

    pub fn get(&self, id: &str) -> anyhow::Result<Option<Account>> {
        self.db()
            .query_row(
                "SELECT id, name, status, created_ms FROM accounts WHERE id = ?1",
                params![id],
                row_to_account,
            )
            .optional()
            .context("reading an account")
    }

    /// Accounts in id order after `after`, at most `limit`.
    pub fn list(&self, after: Option<&str>, limit: u32) -> anyhow::Result<Vec<Account>> {
        self.db()
            .prepare_cached(
                "SELECT id, name, status, created_ms FROM accounts WHERE id > ?1
                 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![after.unwrap_or(""), limit], row_to_account)?
            .collect::<Result<Vec<_>, _>>()
            .context("listing accounts")
    }

    /// Sets the status of account `id` ([`ACTIVE`] or [`SUSPENDED`]);
    /// `None` if there is no such account.
    pub fn set_status(&self, id: &str, status: &str) -> anyhow::Result<Option<Account>> {
        self.db()
            .execute(
                "UPDATE accounts SET status = ?2 WHERE id = ?1",
                params![id, status],
            )
            .context("changing an account's status")?;
        self.get(id)
    }

    /// The signing key of account `id` (64 hex digits); `None` if there is
    /// no such account. An account without one (made before signing
    /// keys existed) gets one.
    pub fn signing_key(&self, id: &str) -> anyhow::Result<Option<String>> {
        let db = self.db();
        let found: Option<Option<String>> = db
            .query_row(
                "SELECT signing_key FROM accounts WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()
            .context("reading a signing key")?;
        match found {
            None => Ok(None),
            Some(Some(key)) => Ok(Some(key)),
            Some(None) => {
                let key = new_signing_key();
                db.execute(
                    "UPDATE accounts SET signing_key = ?2 WHERE id = ?1",
                    params![id, key],
                )
                .context("adding a signing key")?;
                self.signing_generation.fetch_add(1, Ordering::SeqCst);
                Ok(Some(key))
            }
        }
    }

    /// Replaces the signing key of account `id`; the new key, or `None`
    /// if there is no such account. Callbacks are signed with the new key
    /// from the next delivery attempt on.
    pub fn rotate_signing_key(&self, id: &str) -> anyhow::Result<Option<String>> {
        let key = new_signing_key();
        let changed = self
            .db()
            .execute(
                "UPDATE accounts SET signing_key = ?2 WHERE id = ?1",
                params![id, key],
            )
            .context("rotating a signing key")?;
        self.signing_generation.fetch_add(1, Ordering::SeqCst);
        Ok((changed > 0).then_some(key))
    }

    /// Changes whenever a signing key changes: a cache of keys taken at
    /// one generation is current while this returns the same number.
    pub fn signing_generation(&self) -> u64 {
        self.signing_generation.load(Ordering::SeqCst)
    }

    /// A new key of `account`; `None` if there is no such account.
    pub fn create_key(&self, account: &str) -> anyhow::Result<Option<NewKey>> {
        if self.get(account)?.is_none() {
            return Ok(None);
        }
        let secret: [u8; 32] = rand::random();
        let secret = hex::encode(secret);
        let key = ApiKey {
            id: format!("SK{:016x}", rand::random::<u64>()),
            account: account.to_owned(),
            created_ms: now_ms(),
            revoked: false,
        };
        self.db()
            .execute(
                "INSERT INTO api_keys (id, account, secret_sha256, created_ms, revoked, secret_sealed)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![
                    key.id,
                    key.account,
                    &sha256(secret.as_bytes())[..],
                    key.created_ms as i64,
                    self.sealer.seal(secret.as_bytes(), &key.id),
                ],
            )
            .context("creating an API key")?;
        Ok(Some(NewKey { key, secret }))
    }

    /// The live (unrevoked) keys of `account` in id order after `after`.
    pub fn list_keys(
        &self,
        account: &str,
        after: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<ApiKey>> {
        self.db()
            .prepare_cached(
                "SELECT id, account, created_ms, revoked FROM api_keys
                 WHERE account = ?1 AND revoked = 0 AND id > ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![account, after.unwrap_or(""), limit], |row| {
                Ok(ApiKey {
                    id: row.get(0)?,
                    account: row.get(1)?,
                    created_ms: row.get::<_, i64>(2)?.max(0) as u64,
                    revoked: row.get::<_, i64>(3)? != 0,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
            .context("listing API keys")
    }

    /// Revokes key `key` of `account`; false if it has no such live key.
    pub fn revoke_key(&self, account: &str, key: &str) -> anyhow::Result<bool> {
        let changed = self
            .db()
            .execute(
                "UPDATE api_keys SET revoked = 1 WHERE id = ?1 AND account = ?2 AND revoked = 0",
                params![key, account],
            )
            .context("revoking an API key")?;
        Ok(changed > 0)
    }

    /// The key `key_id` as a token names it, with its secret when it may
    /// sign (live, of an active account, sealed).
    pub fn token_key(&self, key_id: &str) -> anyhow::Result<TokenKey> {
        // account, revoked, sealed secret, account status
        type Row = (String, bool, Option<Vec<u8>>, Option<String>);
        let found: Option<Row> = self
            .db()
            .prepare_cached(
                "SELECT k.account, k.revoked, k.secret_sealed, a.status
                 FROM api_keys k LEFT JOIN accounts a ON a.id = k.account WHERE k.id = ?1",
            )?
            .query_row(params![key_id], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, i64>(1)? != 0,
                    row.get(2)?,
                    row.get(3)?,
                ))
            })
            .optional()
            .context("reading an API key")?;
        let Some((account, revoked, sealed, status)) = found else {
            return Ok(TokenKey::Unknown);
        };
        Ok(match (revoked, status.as_deref(), sealed) {
            (true, ..) => TokenKey::Revoked { account },
            (false, Some(ACTIVE), Some(sealed)) => match self.sealer.open(&sealed, key_id) {
                Ok(secret) => match String::from_utf8(secret) {
                    Ok(secret) => TokenKey::Live { account, secret },
                    Err(_) => TokenKey::Unsealable { account },
                },
                Err(_) => TokenKey::Unsealable { account },
            },
            (false, Some(ACTIVE), None) => TokenKey::NotSealed { account },
            (false, ..) => TokenKey::Suspended { account },
        })
    }

    /// The newest live key of `account` that can sign tokens, with its
    /// secret; `None` if it has none (or only keys from before tokens).
    pub fn newest_token_key(&self, account: &str) -> anyhow::Result<Option<(String, String)>> {
        let ids: Vec<String> = self
            .db()
            .prepare_cached(
                "SELECT id FROM api_keys WHERE account = ?1 AND revoked = 0
                   AND secret_sealed IS NOT NULL ORDER BY created_ms DESC, id DESC",
            )?
            .query_map(params![account], |row| row.get(0))?
            .collect::<Result<_, _>>()
            .context("listing API keys")?;
        for id in ids {
            if let TokenKey::Live { secret, .. } = self.token_key(&id)? {
                return Ok(Some((id, secret)));
            }
        }
        Ok(None)
    }

    /// Whether `secret` is a live key of `account`. Every live key of the
    /// account is compared (hash against hash, in constant time).
    pub fn verify(&self, account: &str, secret: &str) -> anyhow::Result<Verified> {
        let Some(found) = self.get(account)? else {
            return Ok(Verified::Invalid);
        };
        let hashes = self
            .db()
            .prepare_cached(
                "SELECT secret_sha256 FROM api_keys WHERE account = ?1 AND revoked = 0",
            )?
            .query_map(params![account], |row| row.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()
            .context("reading API keys")?;
        let offered = sha256(secret.as_bytes());
        let matched = hashes
            .iter()
            .fold(false, |any, hash| any | constant_time_eq(hash, &offered));
        Ok(match (matched, found.status == ACTIVE) {
            (false, _) => Verified::Invalid,
            (true, false) => Verified::Suspended,
            (true, true) => Verified::Active(found),
        })
    }
}

/// Adds `table.column` (by `alter`) to a store made before it existed.
fn add_column(conn: &Connection, table: &str, column: &str, alter: &str) -> rusqlite::Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists(params![table, column])?;
    if !has {
        conn.execute(alter, [])?;
    }
    Ok(())
}

fn row_to_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        status: row.get(2)?,
        created_ms: row.get::<_, i64>(3)?.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.sqlite3")).unwrap();
        (dir, accounts)
    }

    #[test]
    fn a_created_key_verifies_and_a_wrong_secret_does_not() {
        let (_dir, accounts) = store();
        let account = accounts.create("Acme").unwrap();
        assert!(account.id.starts_with("AC") && account.id.len() == 18);
        assert_eq!(accounts.get(&account.id).unwrap().unwrap(), account);
        let new = accounts.create_key(&account.id).unwrap().unwrap();
        assert!(new.key.id.starts_with("SK") && new.key.id.len() == 18);
        assert_eq!(new.secret.len(), 64);
        assert_eq!(
            accounts.verify(&account.id, &new.secret).unwrap(),
            Verified::Active(account.clone())
        );
        let mut wrong = new.secret.clone();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            accounts.verify(&account.id, &wrong).unwrap(),
            Verified::Invalid
        );
        assert_eq!(
            accounts.verify("ACnobody", &new.secret).unwrap(),
            Verified::Invalid
        );
        assert!(accounts.create_key("ACnobody").unwrap().is_none());
    }

    #[test]
    fn a_revoked_key_no_longer_verifies_or_lists() {
        let (_dir, accounts) = store();
        let account = accounts.create("Acme").unwrap();
        let old = accounts.create_key(&account.id).unwrap().unwrap();
        let new = accounts.create_key(&account.id).unwrap().unwrap();
        assert_eq!(accounts.list_keys(&account.id, None, 50).unwrap().len(), 2);
        assert!(accounts.revoke_key(&account.id, &old.key.id).unwrap());
        assert!(!accounts.revoke_key(&account.id, &old.key.id).unwrap());
        assert_eq!(
            accounts.verify(&account.id, &old.secret).unwrap(),
            Verified::Invalid
        );
        assert!(matches!(
            accounts.verify(&account.id, &new.secret).unwrap(),
            Verified::Active(_)
        ));
        assert_eq!(
            accounts.list_keys(&account.id, None, 50).unwrap(),
            vec![new.key]
        );
    }

    #[test]
    fn a_suspended_account_is_told_apart_and_resumes() {
        let (_dir, accounts) = store();
        accounts.ensure("acme").unwrap();
        let key = accounts.create_key("acme").unwrap().unwrap();
        let suspended = accounts.set_status("acme", SUSPENDED).unwrap().unwrap();
        assert_eq!(suspended.status, SUSPENDED);
        assert_eq!(
            accounts.verify("acme", &key.secret).unwrap(),
            Verified::Suspended
        );
        assert_eq!(accounts.verify("acme", "nope").unwrap(), Verified::Invalid);
        // Ensuring at start-up does not undo a suspension.
        accounts.ensure("acme").unwrap();
        assert_eq!(accounts.get("acme").unwrap().unwrap().status, SUSPENDED);
        accounts.set_status("acme", ACTIVE).unwrap();
        assert!(matches!(
            accounts.verify("acme", &key.secret).unwrap(),
            Verified::Active(_)
        ));
        assert!(accounts.set_status("nobody", ACTIVE).unwrap().is_none());
    }

    #[test]
    fn signing_keys_are_made_with_the_account_and_rotate() {
        let (_dir, accounts) = store();
        let account = accounts.create("Acme").unwrap();
        let key = accounts.signing_key(&account.id).unwrap().unwrap();
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            accounts.signing_key(&account.id).unwrap(),
            Some(key.clone())
        );
        accounts.ensure("acme").unwrap();
        let config_key = accounts.signing_key("acme").unwrap().unwrap();
        assert_ne!(config_key, key);
        // Ensuring again at the next start keeps the key.
        accounts.ensure("acme").unwrap();
        assert_eq!(accounts.signing_key("acme").unwrap(), Some(config_key));
        let generation = accounts.signing_generation();
        let rotated = accounts.rotate_signing_key(&account.id).unwrap().unwrap();
        assert_ne!(rotated, key);
        assert_eq!(accounts.signing_key(&account.id).unwrap(), Some(rotated));
        assert!(accounts.signing_generation() > generation);
        assert_eq!(accounts.rotate_signing_key("nobody").unwrap(), None);
        assert_eq!(accounts.signing_key("nobody").unwrap(), None);
    }

    #[test]
    fn a_store_from_before_signing_keys_opens_and_its_accounts_get_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE accounts (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
                    created_ms INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 INSERT INTO accounts VALUES ('old', 'Old', 'active', 1), ('cfg', 'cfg', 'active', 2);",
            )
            .unwrap();
        }
        let accounts = Accounts::open(&path).unwrap();
        assert_eq!(accounts.get("old").unwrap().unwrap().name, "Old");
        assert_eq!(accounts.signing_key("old").unwrap().unwrap().len(), 64);
        accounts.ensure("cfg").unwrap();
        let key = accounts.signing_key("cfg").unwrap().unwrap();
        drop(accounts);
        // Opening again neither fails on the added column nor changes keys.
        let accounts = Accounts::open(&path).unwrap();
        assert_eq!(accounts.signing_key("cfg").unwrap(), Some(key));
    }

    #[test]
    fn a_new_key_can_sign_tokens_until_revoked_or_suspended() {
        let (dir, accounts) = store();
        let account = accounts.create("Acme").unwrap().id;
        let old = accounts.create_key(&account).unwrap().unwrap();
        let new = accounts.create_key(&account).unwrap().unwrap();
        let live = |secret: &str| TokenKey::Live {
            account: account.clone(),
            secret: secret.into(),
        };
        assert_eq!(accounts.token_key(&old.key.id).unwrap(), live(&old.secret));
        assert_eq!(accounts.token_key("SKnope").unwrap(), TokenKey::Unknown);
        // The secret is not in the database file in clear.
        let db = std::fs::read(dir.path().join("accounts.sqlite3")).unwrap();
        let wal = std::fs::read(dir.path().join("accounts.sqlite3-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(!bytes.windows(64).any(|w| w == new.secret.as_bytes()));
        }
        let newest = accounts.newest_token_key(&account).unwrap().unwrap();
        assert!(
            [&old, &new]
                .iter()
                .any(|k| newest == (k.key.id.clone(), k.secret.clone()))
        );

        assert!(accounts.revoke_key(&account, &old.key.id).unwrap());
        let revoked = TokenKey::Revoked {
            account: account.clone(),
        };
        assert_eq!(accounts.token_key(&old.key.id).unwrap(), revoked);
        assert_eq!(
            accounts.newest_token_key(&account).unwrap(),
            Some((new.key.id.clone(), new.secret.clone()))
        );
        accounts.set_status(&account, SUSPENDED).unwrap();
        let suspended = TokenKey::Suspended {
            account: account.clone(),
        };
        assert_eq!(accounts.token_key(&new.key.id).unwrap(), suspended);
        assert_eq!(accounts.newest_token_key(&account).unwrap(), None);
    }

    #[test]
    fn another_sealing_key_cannot_open_the_secrets() {
        let (dir, accounts) = store();
        let account = accounts.create("Acme").unwrap().id;
        let key = accounts.create_key(&account).unwrap().unwrap();
        drop(accounts);
        let path = dir.path().join("accounts.sqlite3");
        let other = Accounts::open_with(&path, Sealer::new([9; 32])).unwrap();
        assert_eq!(
            other.token_key(&key.key.id).unwrap(),
            TokenKey::Unsealable { account }
        );
    }

    #[test]
    fn a_key_from_before_tokens_verifies_but_cannot_sign() {
        let (_dir, accounts) = store();
        let account = accounts.create("Acme").unwrap().id;
        let key = accounts.create_key(&account).unwrap().unwrap();
        accounts
            .db()
            .execute("UPDATE api_keys SET secret_sealed = NULL", [])
            .unwrap();
        assert!(matches!(
            accounts.verify(&account, &key.secret).unwrap(),
            Verified::Active(_)
        ));
        assert_eq!(
            accounts.token_key(&key.key.id).unwrap(),
            TokenKey::NotSealed {
                account: account.clone()
            }
        );
        assert_eq!(accounts.newest_token_key(&account).unwrap(), None);
    }

    #[test]
    fn accounts_page_by_id() {
        let (_dir, accounts) = store();
        for id in ["a", "b", "c"] {
            accounts.ensure(id).unwrap();
        }
        let first = accounts.list(None, 2).unwrap();
        assert_eq!(first.len(), 2);
        let rest = accounts.list(Some(&first[1].id), 2).unwrap();
        assert_eq!(
            rest.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }
}
