//! The directory a runtime serves: providers and the entries they hold.
//!
//! ```text
//!  PUT …/providers/{id} ─► check(id, token, now) ─► Ok(Checked) ─► (edge stores it) ─► commit
//!                                                 └► Err(UpdateError: 400 / 401 / 409)
//!  GET …/lookup?id=     ─► lookup(identifier) ─► (entry matched, provider)
//! ```
//!
//! `check` changes nothing, so the edge can write the provider to disk
//! first and `commit` only what is stored: memory never runs ahead of
//! the file. The edge serialises check → store → commit (one update at
//! a time), so no two updates race for the same entry.

use std::collections::HashMap;

use crate::Identifier;
use crate::message::{MessageError, Provider, ProviderUpdate};
use crate::table::{Conflict, Table};

/// Why an update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// Malformed, stale, or not signed by the key it must be.
    #[error("{0}")]
    Message(#[from] MessageError),
    /// The update is for another provider than the one addressed.
    #[error("the update is signed as {kid:?}, not as the provider {addressed:?} it is sent to")]
    WrongProvider { addressed: String, kid: String },
    /// Older than the update on record (a replay).
    #[error("the update's iat {iat} is before the one on record ({on_record})")]
    Older { iat: i64, on_record: i64 },
    /// An entry another provider holds.
    #[error("{0}")]
    Conflict(#[from] Conflict),
}

/// An update that may be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub provider: Provider,
    /// No provider of that id was on record.
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    providers: HashMap<String, Provider>,
    table: Table,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts back a provider the edge stored earlier (at start-up). The
    /// store keeps one holder per entry, so nothing conflicts; if
    /// something does, the conflict is the answer and nothing changes.
    pub fn restore(&mut self, provider: Provider) -> Result<(), Conflict> {
        self.table.claim(&provider.id, &provider.identifiers)?;
        self.providers.insert(provider.id.clone(), provider);
        Ok(())
    }

    /// Checks the signed update `token` sent for provider `id` at Unix
    /// time `now`; changes nothing.
    pub fn check(&self, id: &str, token: &str, now: i64) -> Result<Checked, UpdateError> {
        let kid = ProviderUpdate::peek(token)?;
        if kid != id {
            return Err(UpdateError::WrongProvider {
                addressed: id.to_owned(),
                kid,
            });
        }
        let on_record = self.providers.get(id);
        let provider = ProviderUpdate::verify(token, on_record.map(|p| &p.key), now)?;
        if let Some(old) = on_record.filter(|old| provider.updated < old.updated) {
            return Err(UpdateError::Older {
                iat: provider.updated,
                on_record: old.updated,
            });
        }
        self.table.check_claim(id, &provider.identifiers)?;
        Ok(Checked {
            provider,
            created: on_record.is_none(),
        })
    }

    /// Makes a checked update live.
    pub fn commit(&mut self, checked: Checked) -> Result<(), Conflict> {
        self.restore(checked.provider)
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// The most specific entry covering `identifier` and its provider.
    pub fn lookup(&self, identifier: &Identifier) -> Option<(Identifier, &Provider)> {
        let (entry, holder) = self.table.lookup(identifier)?;
        Some((entry, self.providers.get(holder)?))
    }

    /// Providers on record.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shaken::SigningKey;
    use switchyard_shaken::jws::public_key_pem;

    const NOW: i64 = 1_767_603_600;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_slice(&[byte; 32]).unwrap()
    }

    fn update(id: &str, signer: u8, carried: u8, ids: &[&str], iat: i64) -> String {
        ProviderUpdate {
            provider: id.into(),
            confirm_url: format!("https://{id}/v1/confirmations"),
            key: public_key_pem(key(carried).verifying_key()),
            identifiers: ids.iter().map(|s| s.to_string()).collect(),
            iat,
        }
        .sign(&key(signer))
    }

    fn put(registry: &mut Registry, id: &str, token: &str) -> Result<bool, UpdateError> {
        let checked = registry.check(id, token, NOW)?;
        let created = checked.created;
        registry.commit(checked)?;
        Ok(created)
    }

    /// `id`'s own update, sent to its own path.
    fn send(
        r: &mut Registry,
        id: &str,
        keys: (u8, u8),
        ids: &[&str],
        iat: i64,
    ) -> Result<bool, UpdateError> {
        put(r, id, &update(id, keys.0, keys.1, ids, iat))
    }

    #[test]
    fn providers_register_update_and_are_looked_up() {
        let mut r = Registry::new();
        assert_eq!(
            send(&mut r, "a.example", (1, 1), &["+1555*"], NOW),
            Ok(true)
        );
        let both = ["+1555*", "a.example"];
        assert_eq!(send(&mut r, "a.example", (1, 1), &both, NOW), Ok(false));
        let number = Identifier::parse("+15551230001").unwrap();
        let (entry, provider) = r.lookup(&number).unwrap();
        assert_eq!(entry.to_string(), "+1555*");
        assert_eq!(provider.id, "a.example");
        assert_eq!(r.provider("a.example").unwrap().identifiers.len(), 2);
        assert!(r.lookup(&Identifier::parse("+1666000").unwrap()).is_none());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_wrong_key_a_claimed_entry_another_provider_or_a_replay_is_refused() {
        let mut r = Registry::new();
        send(&mut r, "a.example", (1, 1), &["+1555*"], NOW).unwrap();
        // Signed by a key other than the one on record.
        let err = send(&mut r, "a.example", (2, 2), &["+1555*"], NOW).unwrap_err();
        let signature = matches!(err, UpdateError::Message(MessageError::Signature { .. }));
        assert!(signature, "{err}");
        // Another provider claims a's range.
        let err = send(&mut r, "b.example", (2, 2), &["+1555*"], NOW).unwrap_err();
        assert_eq!(err.to_string(), "+1555* is held by provider \"a.example\"");
        assert!(r.provider("b.example").is_none());
        // Sent to another provider's path.
        let misdirected = update("b.example", 2, 2, &["+1666*"], NOW);
        let err = put(&mut r, "a.example", &misdirected).unwrap_err();
        assert!(matches!(err, UpdateError::WrongProvider { .. }), "{err}");
        // An older update replayed after a newer one.
        send(&mut r, "a.example", (1, 1), &["+1555*"], NOW + 5).unwrap();
        let err = send(&mut r, "a.example", (1, 1), &[], NOW).unwrap_err();
        assert!(matches!(err, UpdateError::Older { .. }), "{err}");
        assert_eq!(r.provider("a.example").unwrap().identifiers.len(), 1);
    }

    #[test]
    fn a_key_change_signed_by_the_old_key_takes_effect() {
        let mut r = Registry::new();
        send(&mut r, "a.example", (1, 1), &["+1555*"], NOW).unwrap();
        // Signed by key 1, carrying key 2.
        send(&mut r, "a.example", (1, 2), &["+1555*"], NOW).unwrap();
        assert_eq!(
            r.provider("a.example").unwrap().key,
            *key(2).verifying_key()
        );
        // The old key no longer signs.
        let err = send(&mut r, "a.example", (1, 1), &["+1555*"], NOW).unwrap_err();
        assert!(matches!(
            err,
            UpdateError::Message(MessageError::Signature { .. })
        ));
    }
}
