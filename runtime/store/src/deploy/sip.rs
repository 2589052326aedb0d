//! An account's SIP side: its users (digest credentials for REGISTER)
//! and the SIP domains it owns, which are the realms those users register
//! in. A domain belongs to one account at a time, like a number.

use anyhow::Context as _;
use rusqlite::params;
use serde::Serialize;

use super::{DeployError, Deployments, now_ms, owner};

/// A SIP user of an account (the password is never shown again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SipUser {
    pub username: String,
    pub created_ms: u64,
}

/// A SIP domain an account owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SipDomain {
    pub domain: String,
    pub created_ms: u64,
}

/// Whether `domain` is a DNS name we route by: lowercase labels of
/// `[a-z0-9-]` (1–63, no '-' at either end), at least two of them, at
/// most 253 characters, and not an IPv4 address (a tenant must not take
/// the calls addressed to one of the runtime's IPs).
pub fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && domain.parse::<std::net::Ipv4Addr>().is_err()
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl Deployments {
    /// Sets SIP user `username`'s password; `true` if the user is new.
    pub fn set_sip_user(
        &self,
        tenant: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<bool> {
        let db = self.db();
        let updated = db.execute(
            "UPDATE sip_users SET password = ?3 WHERE tenant = ?1 AND username = ?2",
            params![tenant, username, password],
        )?;
        if updated == 0 {
            db.execute(
                "INSERT INTO sip_users (tenant, username, password, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, username, password, now_ms() as i64],
            )?;
        }
        Ok(updated == 0)
    }

    /// `tenant`'s SIP users in name order after `after`.
    pub fn sip_users(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<SipUser>> {
        self.named(
            "SELECT username, created_ms FROM sip_users WHERE tenant = ?1 AND username > ?2
             ORDER BY username LIMIT ?3",
            (tenant, after, limit),
            |username, created_ms| SipUser {
                username,
                created_ms,
            },
        )
        .context("listing SIP users")
    }

    /// Every account's SIP users with their passwords: (tenant, user, password).
    pub fn all_sip_users(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        self.db()
            .prepare_cached("SELECT tenant, username, password FROM sip_users")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()
            .context("listing SIP users")
    }

    /// `false` if `tenant` had no such user.
    pub fn delete_sip_user(&self, tenant: &str, username: &str) -> anyhow::Result<bool> {
        let removed = self.db().execute(
            "DELETE FROM sip_users WHERE tenant = ?1 AND username = ?2",
            params![tenant, username],
        )?;
        Ok(removed > 0)
    }

    /// Gives `domain` to `tenant`; `true` if it is new to it.
    pub fn claim_domain(&self, tenant: &str, domain: &str) -> Result<bool, DeployError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        match owner(
            &tx,
            "SELECT tenant FROM sip_domains WHERE domain = ?1",
            domain,
        )? {
            Some(owner) if owner == tenant => Ok(false),
            Some(_) => Err(DeployError::DomainTaken(domain.to_owned())),
            None => {
                tx.execute(
                    "INSERT INTO sip_domains (domain, tenant, created_ms) VALUES (?1, ?2, ?3)",
                    params![domain, tenant, now_ms() as i64],
                )?;
                tx.commit()?;
                Ok(true)
            }
        }
    }

    /// `tenant`'s SIP domains in name order after `after`.
    pub fn domains(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<SipDomain>> {
        self.named(
            "SELECT domain, created_ms FROM sip_domains WHERE tenant = ?1 AND domain > ?2
             ORDER BY domain LIMIT ?3",
            (tenant, after, limit),
            |domain, created_ms| SipDomain { domain, created_ms },
        )
        .context("listing SIP domains")
    }

    /// A page of (name, created_ms) rows of `select`, which takes the
    /// tenant, the name to start after and the limit.
    fn named<T>(
        &self,
        select: &str,
        (tenant, after, limit): (&str, Option<&str>, u32),
        make: fn(String, u64) -> T,
    ) -> rusqlite::Result<Vec<T>> {
        self.db()
            .prepare_cached(select)?
            .query_map(params![tenant, after.unwrap_or(""), limit], |r| {
                Ok(make(r.get(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect()
    }

    /// Every account's SIP domains: (tenant, domain).
    pub fn all_domains(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.db()
            .prepare_cached("SELECT tenant, domain FROM sip_domains ORDER BY domain")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()
            .context("listing SIP domains")
    }

    /// `false` if `tenant` does not own `domain`.
    pub fn release_domain(&self, tenant: &str, domain: &str) -> anyhow::Result<bool> {
        let removed = self.db().execute(
            "DELETE FROM sip_domains WHERE tenant = ?1 AND domain = ?2",
            params![tenant, domain],
        )?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::*;

    #[test]
    fn sip_users_are_per_account_and_their_passwords_can_change() {
        let (_dir, store) = store();
        assert!(store.set_sip_user("acme", "bob", "pw-one-123").unwrap());
        assert!(!store.set_sip_user("acme", "bob", "pw-two-456").unwrap());
        assert!(store.set_sip_user("globex", "bob", "other-pw-1").unwrap());
        let users = store.sip_users("acme", None, 10).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].username, "bob");
        let mut all = store.all_sip_users().unwrap();
        all.sort();
        assert_eq!(
            all,
            [
                ("acme".into(), "bob".into(), "pw-two-456".into()),
                ("globex".into(), "bob".into(), "other-pw-1".into())
            ]
        );
        assert!(!store.delete_sip_user("acme", "carol").unwrap());
        assert!(store.delete_sip_user("acme", "bob").unwrap());
        assert!(store.sip_users("acme", None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_domain_belongs_to_one_account() {
        let (_dir, store) = store();
        assert!(store.claim_domain("acme", "acme.example").unwrap());
        assert!(!store.claim_domain("acme", "acme.example").unwrap());
        assert!(matches!(
            store.claim_domain("globex", "acme.example"),
            Err(DeployError::DomainTaken(_))
        ));
        assert!(store.claim_domain("globex", "globex.example").unwrap());
        let own = store.domains("acme", None, 10).unwrap();
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].domain, "acme.example");
        assert_eq!(
            store.all_domains().unwrap(),
            [
                ("acme".into(), "acme.example".into()),
                ("globex".into(), "globex.example".into())
            ]
        );
        assert!(!store.release_domain("globex", "acme.example").unwrap());
        assert!(store.release_domain("acme", "acme.example").unwrap());
        assert!(store.claim_domain("globex", "acme.example").unwrap());
    }

    #[test]
    fn domains_are_dns_names() {
        for good in ["acme.example", "sip.acme-corp.example", "a1.b2"] {
            assert!(valid_domain(good), "{good}");
        }
        let long = format!("{}.example", "a".repeat(64));
        for bad in [
            "",
            "example",
            "Acme.example",
            "acme..example",
            "-acme.example",
            "acme-.example",
            "acme.example.",
            "127.0.0.1",
            "acme_x.example",
            "acme.example:5060",
            long.as_str(),
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }
}
