//! Who of an account's clients is reachable (C2), sans-IO: devices come
//! and go as the signalling edge tells; an identity's presence is the sum
//! of its devices'.
//!
//! ```text
//!   identity alice ── device 1 (browser)  available
//!                 └── device 2 (phone)    away, in a call
//!   presence(alice) = busy: a device in a call makes the identity busy;
//!   else available if any device is; else away; offline with no device
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A device's (or an identity's) presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Available,
    Busy,
    Away,
    Offline,
}

/// Longest presence text.
pub const MAX_TEXT: usize = 140;
/// Devices one identity may have connected at once.
pub const MAX_DEVICES: usize = 20;

/// One connected device, as the edge names it.
pub type DeviceId = u64;

/// An identity's presence as the REST API and guests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub identity: String,
    pub status: Status,
    /// The text of the device that set one last.
    pub text: Option<String>,
    /// Devices connected now.
    pub devices: usize,
}

#[derive(Debug, Clone)]
struct Device {
    tenant: String,
    identity: String,
    status: Status,
    text: Option<String>,
    /// When the text was set (a counter: the latest wins).
    text_at: u64,
    calls: u32,
    /// Its token grants incoming calls.
    incoming: bool,
}

/// Why `dial client:…` rings none of an identity's devices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NotRung {
    #[error("{0} is offline (no device connected)")]
    Offline(String),
    #[error("{0} may not receive calls (no connected device's token grants incoming calls)")]
    NotAllowed(String),
    #[error("{0} is busy (a device is in a call, or set busy)")]
    Busy(String),
    #[error("{0} is away")]
    Away(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("presence is available, busy or away (offline is what a device is when it leaves)")]
    Offline,
    #[error("presence text is at most {MAX_TEXT} characters")]
    TextTooLong,
    #[error("no such device")]
    NoDevice,
    #[error("{identity} has {MAX_DEVICES} devices connected, the most there may be")]
    TooManyDevices { identity: String },
}

/// Every account's connected devices.
#[derive(Debug, Default)]
pub struct Presence {
    devices: BTreeMap<DeviceId, Device>,
    by_identity: BTreeMap<(String, String), BTreeSet<DeviceId>>,
    next: DeviceId,
    /// Orders text changes.
    clock: u64,
    /// Tenants whose clients stay reachable on their other devices while
    /// one device is in a call.
    free_in_call: BTreeSet<String>,
}

impl Presence {
    /// A device of `identity` (of `tenant`) connects, available.
    pub fn connect(&mut self, tenant: &str, identity: &str) -> Result<DeviceId, PresenceError> {
        let key = (tenant.to_owned(), identity.to_owned());
        if (self.by_identity.get(&key)).is_some_and(|d| d.len() >= MAX_DEVICES) {
            return Err(PresenceError::TooManyDevices {
                identity: identity.to_owned(),
            });
        }
        self.next += 1;
        let id = self.next;
        self.devices.insert(
            id,
            Device {
                tenant: tenant.to_owned(),
                identity: identity.to_owned(),
                status: Status::Available,
                text: None,
                text_at: 0,
                calls: 0,
                incoming: false,
            },
        );
        self.by_identity.entry(key).or_default().insert(id);
        Ok(id)
    }

    /// The account and identity of device `id`.
    pub fn owner(&self, id: DeviceId) -> Option<(String, String)> {
        (self.devices.get(&id)).map(|d| (d.tenant.clone(), d.identity.clone()))
    }

    /// The device left (closed, timed out, or its token stopped working).
    pub fn disconnect(&mut self, id: DeviceId) {
        let Some(device) = self.devices.remove(&id) else {
            return;
        };
        let key = (device.tenant, device.identity);
        if let Some(set) = self.by_identity.get_mut(&key) {
            set.remove(&id);
            if set.is_empty() {
                self.by_identity.remove(&key);
            }
        }
    }

    /// The device's user chose a status and, optionally, a text.
    pub fn set(
        &mut self,
        id: DeviceId,
        status: Status,
        text: Option<String>,
    ) -> Result<(), PresenceError> {
        if status == Status::Offline {
            return Err(PresenceError::Offline);
        }
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(PresenceError::TextTooLong);
        }
        self.clock += 1;
        let device = self.devices.get_mut(&id).ok_or(PresenceError::NoDevice)?;
        device.status = status;
        device.text = text;
        device.text_at = self.clock;
        Ok(())
    }

    /// Whether a call on one device makes the tenant's identities busy as a
    /// whole (the default) or only that device.
    pub fn set_busy_in_call(&mut self, tenant: &str, busy: bool) {
        if busy {
            self.free_in_call.remove(tenant);
        } else {
            self.free_in_call.insert(tenant.to_owned());
        }
    }

    /// Whether the device's token lets it receive calls.
    pub fn set_incoming(&mut self, id: DeviceId, incoming: bool) {
        if let Some(device) = self.devices.get_mut(&id) {
            device.incoming = incoming;
        }
    }

    /// The devices a call to the identity rings: those that may receive
    /// calls and are available, when none of the identity's is in a call
    /// or set busy (an identity is busy as a whole).
    pub fn ringable(&self, tenant: &str, identity: &str) -> Result<Vec<DeviceId>, NotRung> {
        let key = (tenant.to_owned(), identity.to_owned());
        let devices: Vec<(DeviceId, &Device)> = (self.by_identity.get(&key).into_iter().flatten())
            .filter_map(|id| Some((*id, self.devices.get(id)?)))
            .collect();
        let who = || identity.to_owned();
        if devices.is_empty() {
            return Err(NotRung::Offline(who()));
        }
        let callable: Vec<_> = devices.iter().filter(|(_, d)| d.incoming).collect();
        if callable.is_empty() {
            return Err(NotRung::NotAllowed(who()));
        }
        let whole = !self.free_in_call.contains(tenant);
        if (devices.iter()).any(|(_, d)| (whole && d.calls > 0) || d.status == Status::Busy) {
            return Err(NotRung::Busy(who()));
        }
        let ring: Vec<DeviceId> = (callable.iter())
            .filter(|(_, d)| d.status == Status::Available && d.calls == 0)
            .map(|(id, _)| *id)
            .collect();
        if ring.is_empty() {
            let in_call = callable.iter().any(|(_, d)| d.calls > 0);
            return Err(if in_call {
                NotRung::Busy(who())
            } else {
                NotRung::Away(who())
            });
        }
        Ok(ring)
    }

    /// A call on the device began (`true`) or ended (`false`).
    pub fn in_call(&mut self, id: DeviceId, on: bool) {
        if let Some(device) = self.devices.get_mut(&id) {
            device.calls = if on {
                device.calls + 1
            } else {
                device.calls.saturating_sub(1)
            };
        }
    }

    /// The identity's presence; offline when no device is connected.
    pub fn view(&self, tenant: &str, identity: &str) -> View {
        let key = (tenant.to_owned(), identity.to_owned());
        let devices: Vec<&Device> = (self.by_identity.get(&key).into_iter().flatten())
            .filter_map(|id| self.devices.get(id))
            .collect();
        let whole = !self.free_in_call.contains(tenant);
        let status = if devices.is_empty() {
            Status::Offline
        } else if devices
            .iter()
            .any(|d| (whole && d.calls > 0) || d.status == Status::Busy)
        {
            Status::Busy
        } else if devices.iter().any(|d| d.status == Status::Available) {
            Status::Available
        } else {
            Status::Away
        };
        let text = (devices.iter())
            .filter(|d| d.text.is_some())
            .max_by_key(|d| d.text_at)
            .and_then(|d| d.text.clone());
        View {
            identity: identity.to_owned(),
            status,
            text,
            devices: devices.len(),
        }
    }

    /// Every (tenant, identity) with a device connected.
    pub fn present(&self) -> Vec<(String, String)> {
        self.by_identity.keys().cloned().collect()
    }

    /// The tenant's identities with a device connected, by identity.
    pub fn list(&self, tenant: &str) -> Vec<View> {
        (self.by_identity.keys())
            .filter(|(t, _)| t == tenant)
            .map(|(_, identity)| self.view(tenant, identity))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_the_sum_of_its_devices() {
        let mut p = Presence::default();
        assert_eq!(p.view("acme", "alice").status, Status::Offline);
        let browser = p.connect("acme", "alice").unwrap();
        let phone = p.connect("acme", "alice").unwrap();
        let view = p.view("acme", "alice");
        assert_eq!((view.status, view.devices), (Status::Available, 2));

        p.set(browser, Status::Away, Some("at lunch".into()))
            .unwrap();
        assert_eq!(
            p.view("acme", "alice").status,
            Status::Available,
            "the phone is"
        );
        assert_eq!(p.view("acme", "alice").text.as_deref(), Some("at lunch"));
        p.set(phone, Status::Away, None).unwrap();
        assert_eq!(p.view("acme", "alice").status, Status::Away);

        // A call on any device makes the identity busy until it ends.
        p.in_call(phone, true);
        assert_eq!(p.view("acme", "alice").status, Status::Busy);
        p.in_call(phone, false);
        assert_eq!(p.view("acme", "alice").status, Status::Away);

        p.disconnect(browser);
        p.disconnect(phone);
        let view = p.view("acme", "alice");
        assert_eq!((view.status, view.devices), (Status::Offline, 0));
        assert!(p.list("acme").is_empty());
    }

    #[test]
    fn a_call_rings_the_available_devices_that_may_take_it() {
        let mut p = Presence::default();
        let offline = p.ringable("acme", "alice").unwrap_err();
        assert_eq!(offline, NotRung::Offline("alice".into()));
        let browser = p.connect("acme", "alice").unwrap();
        let phone = p.connect("acme", "alice").unwrap();
        let tablet = p.connect("acme", "alice").unwrap();
        assert_eq!(
            p.ringable("acme", "alice"),
            Err(NotRung::NotAllowed("alice".into()))
        );
        for device in [browser, phone, tablet] {
            p.set_incoming(device, device != tablet);
        }
        assert_eq!(p.ringable("acme", "alice"), Ok(vec![browser, phone]));
        p.set(phone, Status::Away, None).unwrap();
        assert_eq!(p.ringable("acme", "alice"), Ok(vec![browser]));
        p.set(browser, Status::Away, None).unwrap();
        assert_eq!(
            p.ringable("acme", "alice"),
            Err(NotRung::Away("alice".into()))
        );
        p.set(browser, Status::Available, None).unwrap();
        // A call on any device (even one that takes none) makes alice busy.
        p.in_call(tablet, true);
        assert_eq!(
            p.ringable("acme", "alice"),
            Err(NotRung::Busy("alice".into()))
        );
        p.in_call(tablet, false);
        assert_eq!(p.ringable("acme", "alice"), Ok(vec![browser]));
        assert!(p.ringable("globex", "alice").is_err(), "per tenant");

        // A tenant may keep its clients reachable on their other devices.
        p.set_busy_in_call("acme", false);
        p.set(phone, Status::Available, None).unwrap();
        p.in_call(phone, true);
        assert_eq!(p.view("acme", "alice").status, Status::Available);
        assert_eq!(p.ringable("acme", "alice"), Ok(vec![browser]));
        p.in_call(browser, true);
        assert_eq!(
            p.ringable("acme", "alice"),
            Err(NotRung::Busy("alice".into()))
        );
        p.set_busy_in_call("acme", true);
        assert_eq!(p.view("acme", "alice").status, Status::Busy);
    }

    #[test]
    fn tenants_never_see_each_others_identities() {
        let mut p = Presence::default();
        p.connect("acme", "alice").unwrap();
        p.connect("globex", "bob").unwrap();
        let names = |t| {
            p.list(t)
                .into_iter()
                .map(|v| v.identity)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("acme"), ["alice"]);
        assert_eq!(names("globex"), ["bob"]);
        assert_eq!(p.view("globex", "alice").status, Status::Offline);
    }

    #[test]
    fn bad_changes_are_refused() {
        let mut p = Presence::default();
        let d = p.connect("acme", "alice").unwrap();
        assert_eq!(p.set(d, Status::Offline, None), Err(PresenceError::Offline));
        let long = "x".repeat(MAX_TEXT + 1);
        assert_eq!(
            p.set(d, Status::Away, Some(long)),
            Err(PresenceError::TextTooLong)
        );
        assert_eq!(p.set(99, Status::Away, None), Err(PresenceError::NoDevice));
        p.in_call(d, false);
        assert_eq!(
            p.view("acme", "alice").status,
            Status::Available,
            "never below zero"
        );
        for _ in 1..MAX_DEVICES {
            p.connect("acme", "alice").unwrap();
        }
        assert!(matches!(
            p.connect("acme", "alice"),
            Err(PresenceError::TooManyDevices { .. })
        ));
        assert!(p.connect("acme", "bob").is_ok(), "the cap is per identity");
    }
}
