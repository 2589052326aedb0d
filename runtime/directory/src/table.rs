//! Identifier → provider: who manages a number, a range or a domain.
//!
//! A lookup takes the most specific entry: an exact number beats every
//! range, a longer range beats a shorter one, a domain covers its
//! subdomains (the nearest parent wins). Entries that overlap are
//! allowed (a range's operator may port one number to another provider:
//! the number's own entry then wins); only the *same* entry cannot have
//! two holders.

use std::collections::HashMap;

use crate::Identifier;

/// An entry another provider holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{identifier} is held by provider {holder:?}")]
pub struct Conflict {
    pub identifier: Identifier,
    pub holder: String,
}

/// The directory's entries.
#[derive(Debug, Clone, Default)]
pub struct Table {
    holders: HashMap<Identifier, String>,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table of one provider's own entries (what it answers for).
    pub fn of(provider: &str, identifiers: &[Identifier]) -> Self {
        let mut table = Table::new();
        // A fresh table holds nothing to conflict with.
        let _ = table.claim(provider, identifiers);
        table
    }

    /// Entries held, in all.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Who holds exactly this entry.
    pub fn holder(&self, identifier: &Identifier) -> Option<&str> {
        self.holders.get(identifier).map(String::as_str)
    }

    /// The most specific entry covering `identifier`, and its holder.
    pub fn lookup(&self, identifier: &Identifier) -> Option<(Identifier, &str)> {
        identifier.candidates().into_iter().find_map(|candidate| {
            let holder = self.holders.get(&candidate)?;
            Some((candidate, holder.as_str()))
        })
    }

    /// The entries `provider` holds, sorted.
    pub fn entries_of(&self, provider: &str) -> Vec<Identifier> {
        let mut own: Vec<Identifier> = (self.holders.iter())
            .filter(|(_, holder)| *holder == provider)
            .map(|(id, _)| id.clone())
            .collect();
        own.sort();
        own
    }

    /// Whether `provider` may hold exactly `identifiers`: the first one
    /// another provider holds is the conflict.
    pub fn check_claim(&self, provider: &str, identifiers: &[Identifier]) -> Result<(), Conflict> {
        for identifier in identifiers {
            if let Some(holder) = self.holder(identifier).filter(|h| *h != provider) {
                return Err(Conflict {
                    identifier: identifier.clone(),
                    holder: holder.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// `provider` now holds exactly `identifiers` (what it held before and
    /// no longer lists is released), unless one is another's.
    pub fn claim(&mut self, provider: &str, identifiers: &[Identifier]) -> Result<(), Conflict> {
        self.check_claim(provider, identifiers)?;
        self.holders.retain(|_, holder| holder != provider);
        for identifier in identifiers {
            self.holders.insert(identifier.clone(), provider.to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Identifier {
        Identifier::parse(text).unwrap()
    }

    fn ids(texts: &[&str]) -> Vec<Identifier> {
        texts.iter().map(|t| id(t)).collect()
    }

    fn table() -> Table {
        let mut table = Table::new();
        table.claim("a", &ids(&["+1555*", "a.example"])).unwrap();
        table
            .claim("b", &ids(&["+15551230001", "+15552*", "sip.a.example"]))
            .unwrap();
        table
    }

    #[test]
    fn an_exact_number_beats_the_longest_prefix_which_beats_a_shorter_one() {
        let t = table();
        assert_eq!(
            t.lookup(&id("+15551230001")),
            Some((id("+15551230001"), "b"))
        );
        assert_eq!(t.lookup(&id("+15552000000")), Some((id("+15552*"), "b")));
        assert_eq!(t.lookup(&id("+15559999999")), Some((id("+1555*"), "a")));
        assert_eq!(t.lookup(&id("+15561230001")), None);
        assert_eq!(t.lookup(&id("+15552*")), Some((id("+15552*"), "b")));
    }

    #[test]
    fn a_domain_matches_itself_and_its_subdomains_the_nearest_winning() {
        let t = table();
        assert_eq!(t.lookup(&id("a.example")), Some((id("a.example"), "a")));
        assert_eq!(t.lookup(&id("x.y.a.example")), Some((id("a.example"), "a")));
        assert_eq!(
            t.lookup(&id("x.sip.a.example")),
            Some((id("sip.a.example"), "b"))
        );
        assert_eq!(t.lookup(&id("b.example")), None);
        assert_eq!(t.lookup(&id("aa.example")), None);
    }

    #[test]
    fn a_provider_cannot_claim_an_entry_another_holds() {
        let mut t = table();
        let err = t.claim("c", &ids(&["+1666*", "+1555*"])).unwrap_err();
        assert_eq!(
            err,
            Conflict {
                identifier: id("+1555*"),
                holder: "a".into()
            }
        );
        assert_eq!(err.to_string(), "+1555* is held by provider \"a\"");
        // Nothing of the refused claim was taken.
        assert_eq!(t.lookup(&id("+16660000000")), None);
        // A narrower entry inside another's range is not a conflict.
        t.claim("c", &ids(&["+15559*"])).unwrap();
        assert_eq!(t.lookup(&id("+15559000000")), Some((id("+15559*"), "c")));
    }

    #[test]
    fn a_new_claim_replaces_what_the_provider_held() {
        let mut t = table();
        t.claim("a", &ids(&["+1777*"])).unwrap();
        assert_eq!(t.entries_of("a"), ids(&["+1777*"]));
        assert_eq!(t.lookup(&id("+15559999999")), None);
        assert_eq!(t.holder(&id("a.example")), None);
        // The freed entry may be taken by another.
        t.claim("b", &ids(&["+15551230001", "+1555*"])).unwrap();
        assert_eq!(t.holder(&id("+1555*")), Some("b"));
        assert_eq!(t.len(), 3, "b holds two, a one");
    }
}
