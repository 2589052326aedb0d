//! Clients connected to other regions' runtimes (C4): each runtime of a
//! region set (the `[conference]` peers and secret) pushes, on every
//! change of an identity's presence, which of its devices a call may ring
//! and through which gateway; `dial client:alice` then rings alice's
//! devices wherever she is connected, through her region's gateway (SIP
//! between runtimes), so her WebRTC media stays in her region.
//!
//! ```text
//!  eu: alice registers ─► Presence change ─► POST /internal/v1/clients ─► us: Remote
//!  us: dial client:alice ─► ring(): us devices + Remote's eu devices
//!        ─INVITE sip:DV7@eu-gateway─► eu gateway (trusts us's endpoint) ─► alice's browser
//! ```
//!
//! The view is what peers said last. Each runtime also re-tells every
//! identity connected to it every [`RESYNC`], so a peer that was down or
//! restarted when a change happened catches up within that time; what a
//! runtime has not re-told for [`STALE`] (it stopped, or lost its peers)
//! is forgotten, so a dead region's clients stop being rung. A shared
//! registration view comes with multi-node storage; this module is the
//! interface it will replace.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::presence::{DeviceId, NotRung};

/// What one runtime says about one identity's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub region: String,
    /// Its clients' gateway (devices are `sip:DV7@gateway`).
    pub gateway: SocketAddr,
    /// Its SIP endpoint, whose INVITEs other gateways take.
    pub endpoint: SocketAddr,
    pub tenant: String,
    pub identity: String,
    pub ring: Result<Vec<DeviceId>, NotRung>,
}

/// A runtime's answer to a [`Seen`]: where its own endpoint is, whose
/// INVITEs the teller's gateway then takes (each side of a push trusts
/// the other's endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub endpoint: Option<SocketAddr>,
}

/// How often a runtime re-tells its peers every identity connected to it.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Identities per push (a resync of many is several pushes).
pub const BATCH: usize = 500;
/// What a peer has not re-told for this long is forgotten.
pub const STALE: Duration = Duration::from_secs(3 * 30);

/// The other regions' identities, as last pushed, and when.
#[derive(Debug, Default)]
pub struct Remote {
    seen: HashMap<(String, String), BTreeMap<String, (Seen, Instant)>>,
}

impl Remote {
    pub fn update(&mut self, now: Instant, seen: Seen) {
        let key = (seen.tenant.clone(), seen.identity.clone());
        if matches!(seen.ring, Err(NotRung::Offline(_))) {
            if let Some(regions) = self.seen.get_mut(&key) {
                regions.remove(&seen.region);
                if regions.is_empty() {
                    self.seen.remove(&key);
                }
            }
        } else {
            self.seen
                .entry(key)
                .or_default()
                .insert(seen.region.clone(), (seen, now));
        }
    }

    /// Where else the identity is connected (as told within [`STALE`]).
    pub fn lookup(&self, now: Instant, tenant: &str, identity: &str) -> Vec<Seen> {
        let key = (tenant.to_owned(), identity.to_owned());
        (self.seen.get(&key).into_iter().flatten())
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) < STALE)
            .map(|(_, (seen, _))| seen.clone())
            .collect()
    }
}

/// Of two reasons nobody rang, the one that says more: busy (a device is
/// in a call), then away, then may-not, then offline.
pub fn stronger(a: NotRung, b: NotRung) -> NotRung {
    let rank = |why: &NotRung| match why {
        NotRung::Busy(_) => 3,
        NotRung::Away(_) => 2,
        NotRung::NotAllowed(_) => 1,
        NotRung::Offline(_) => 0,
    };
    if rank(&b) > rank(&a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(region: &str, ring: Result<Vec<DeviceId>, NotRung>) -> Seen {
        Seen {
            region: region.into(),
            gateway: "127.0.0.1:5070".parse().unwrap(),
            endpoint: "127.0.0.1:5060".parse().unwrap(),
            tenant: "acme".into(),
            identity: "alice".into(),
            ring,
        }
    }

    #[test]
    fn the_view_keeps_what_each_region_said_last_and_forgets_offline() {
        let now = Instant::now();
        let mut remote = Remote::default();
        remote.update(now, seen("eu", Ok(vec![7])));
        remote.update(now, seen("ap", Err(NotRung::Away("alice".into()))));
        assert_eq!(remote.lookup(now, "acme", "alice").len(), 2);
        assert!(
            remote.lookup(now, "globex", "alice").is_empty(),
            "per tenant"
        );
        remote.update(now, seen("eu", Ok(vec![7, 8])));
        let eu = remote.lookup(now, "acme", "alice");
        assert_eq!(eu[1].ring, Ok(vec![7, 8]));
        remote.update(now, seen("eu", Err(NotRung::Offline("alice".into()))));
        remote.update(now, seen("ap", Err(NotRung::Offline("alice".into()))));
        assert!(remote.lookup(now, "acme", "alice").is_empty());
    }

    #[test]
    fn what_a_region_stops_retelling_is_forgotten() {
        let now = Instant::now();
        let mut remote = Remote::default();
        remote.update(now, seen("eu", Ok(vec![7])));
        remote.update(now + RESYNC * 2, seen("ap", Ok(vec![9])));
        let later = now + STALE + Duration::from_secs(1);
        let left = remote.lookup(later, "acme", "alice");
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].region, "ap", "eu stopped re-telling");
        // A resync brings eu back.
        remote.update(later, seen("eu", Ok(vec![7])));
        assert_eq!(remote.lookup(later, "acme", "alice").len(), 2);
    }

    #[test]
    fn busy_says_more_than_away_and_offline() {
        let (busy, away) = (NotRung::Busy("a".into()), NotRung::Away("a".into()));
        let offline = NotRung::Offline("a".into());
        assert_eq!(stronger(offline.clone(), away.clone()), away);
        assert_eq!(stronger(busy.clone(), away), busy);
        assert_eq!(stronger(offline.clone(), offline.clone()), offline);
    }
}
