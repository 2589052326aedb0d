//! Where a conference's mixers run (cascaded regional mixers, issue 15).
//!
//! Each region with participants runs one mixer; the regional mixers are
//! linked in a full mesh, each link carrying one RTP stream each way with
//! the sending region's *local* mix only. A mixer therefore never sends a
//! region its own audio back, and every region hears every other one
//! directly (a star would have to forward mix-minus streams). A handful of
//! regions makes the mesh small: n regions, n(n−1)/2 links.
//!
//! The first participant in a region opens its mixer and its links to the
//! regions already in; the last one leaving closes them. [`Placements`]
//! is the interface the runtime talks to: [`LocalPlacements`] keeps the
//! counts in memory (one runtime, or runtimes with a shared directory in
//! their configs); the multi-node storage implements it later. Keys carry
//! the tenant, so tenants never share a conference.

use std::collections::BTreeMap;

/// A conference: its tenant and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConferenceKey {
    pub tenant: String,
    pub name: String,
}

impl ConferenceKey {
    pub fn new(tenant: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            name: name.into(),
        }
    }
}

/// What the runtimes must do after a join or leave, in order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Start this region's mixer.
    Open(String),
    /// Link two regional mixers (one RTP stream each way).
    Link(String, String),
    /// Remove the link between two regions.
    Unlink(String, String),
    /// Stop this region's mixer.
    Close(String),
}

/// The conference orchestrator's interface.
pub trait Placements: Send {
    /// A participant joined `key` in `region`.
    fn join(&mut self, key: &ConferenceKey, region: &str) -> Vec<Change>;
    /// A participant of `key` in `region` left. Leaving a region with no
    /// participants changes nothing.
    fn leave(&mut self, key: &ConferenceKey, region: &str) -> Vec<Change>;
    /// The regions running a mixer for `key`, sorted.
    fn regions(&self, key: &ConferenceKey) -> Vec<String>;
}

/// [`Placements`] in memory.
#[derive(Debug, Default)]
pub struct LocalPlacements {
    /// Participants per region, per conference.
    counts: BTreeMap<ConferenceKey, BTreeMap<String, usize>>,
}

impl LocalPlacements {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The link between `a` and `b`, named in a stable order.
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.into(), b.into())
    } else {
        (b.into(), a.into())
    }
}

impl Placements for LocalPlacements {
    fn join(&mut self, key: &ConferenceKey, region: &str) -> Vec<Change> {
        let regions = self.counts.entry(key.clone()).or_default();
        let count = regions.entry(region.into()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return Vec::new();
        }
        let mut changes = vec![Change::Open(region.into())];
        for other in regions.keys().filter(|r| *r != region) {
            let (a, b) = pair(region, other);
            changes.push(Change::Link(a, b));
        }
        changes
    }

    fn leave(&mut self, key: &ConferenceKey, region: &str) -> Vec<Change> {
        let Some(regions) = self.counts.get_mut(key) else {
            return Vec::new();
        };
        let Some(count) = regions.get_mut(region) else {
            return Vec::new();
        };
        *count -= 1;
        if *count > 0 {
            return Vec::new();
        }
        regions.remove(region);
        let mut changes: Vec<Change> = regions
            .keys()
            .map(|other| {
                let (a, b) = pair(region, other);
                Change::Unlink(a, b)
            })
            .collect();
        changes.push(Change::Close(region.into()));
        if regions.is_empty() {
            self.counts.remove(key);
        }
        changes
    }

    fn regions(&self, key: &ConferenceKey) -> Vec<String> {
        self.counts
            .get(key)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(a: &str, b: &str) -> Change {
        Change::Link(a.into(), b.into())
    }

    fn unlink(a: &str, b: &str) -> Change {
        Change::Unlink(a.into(), b.into())
    }

    #[test]
    fn the_first_in_a_region_opens_its_mixer_and_links_it_to_every_other_region() {
        let mut p = LocalPlacements::new();
        let standup = ConferenceKey::new("acme", "standup");
        assert_eq!(p.join(&standup, "eu"), [Change::Open("eu".into())]);
        assert_eq!(p.join(&standup, "eu"), [], "a second participant in eu");
        assert_eq!(
            p.join(&standup, "us"),
            [Change::Open("us".into()), link("eu", "us")]
        );
        assert_eq!(
            p.join(&standup, "ap"),
            [
                Change::Open("ap".into()),
                link("ap", "eu"),
                link("ap", "us")
            ]
        );
        assert_eq!(p.regions(&standup), ["ap", "eu", "us"]);
    }

    #[test]
    fn the_last_out_of_a_region_closes_its_mixer_and_links() {
        let mut p = LocalPlacements::new();
        let k = ConferenceKey::new("acme", "standup");
        for region in ["eu", "eu", "us", "ap"] {
            p.join(&k, region);
        }
        assert_eq!(p.leave(&k, "eu"), [], "one left in eu");
        assert_eq!(
            p.leave(&k, "eu"),
            [
                unlink("ap", "eu"),
                unlink("eu", "us"),
                Change::Close("eu".into())
            ]
        );
        assert_eq!(p.regions(&k), ["ap", "us"]);
        assert_eq!(
            p.leave(&k, "us"),
            [unlink("ap", "us"), Change::Close("us".into())]
        );
        assert_eq!(p.leave(&k, "ap"), [Change::Close("ap".into())]);
        assert!(p.regions(&k).is_empty());
        assert_eq!(p.leave(&k, "ap"), [], "leaving twice changes nothing");
    }

    #[test]
    fn tenants_never_share_a_conference_of_the_same_name() {
        let mut p = LocalPlacements::new();
        let acme = ConferenceKey::new("acme", "room");
        let globex = ConferenceKey::new("globex", "room");
        p.join(&acme, "eu");
        assert_eq!(p.join(&globex, "eu"), [Change::Open("eu".into())]);
        assert_eq!(p.leave(&globex, "eu"), [Change::Close("eu".into())]);
        assert_eq!(p.regions(&acme), ["eu"]);
    }
}
