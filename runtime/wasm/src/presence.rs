//! Where `presence.lookup` gets its answers: the runtime's client
//! registry behind [`PresenceBackend`] (the wasm crate knows no clients),
//! or, on a replay, what the call's log says the guest was told.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_contract::guest::ImportRecord;
use switchyard_contract::imports::presence::{ClientPresence, Status};

/// Answers presence lookups for a tenant's guests.
pub trait PresenceBackend: Send + Sync + 'static {
    /// `identity`'s presence among `tenant`'s clients.
    fn lookup(&self, tenant: &str, identity: &str) -> ClientPresence;
}

pub type Presence = Arc<dyn PresenceBackend>;

/// No clients at all: every identity is offline (a host without client
/// signalling, `switchyard simulate`).
pub struct Nobody;

impl PresenceBackend for Nobody {
    fn lookup(&self, _: &str, identity: &str) -> ClientPresence {
        offline(identity)
    }
}

pub fn offline(identity: &str) -> ClientPresence {
    ClientPresence {
        identity: identity.to_owned(),
        status: Status::Offline,
        text: None,
        devices: 0,
    }
}

/// The answers a recorded event got, by identity (the last one wins);
/// offline for an identity the recording never looked up.
pub struct Replayed(HashMap<String, ClientPresence>);

impl Replayed {
    pub fn of(imports: &[ImportRecord]) -> Self {
        let answers = imports.iter().filter_map(|import| match import {
            ImportRecord::PresenceLookup {
                identity,
                status,
                text,
                devices,
            } => Some((
                identity.clone(),
                ClientPresence {
                    identity: identity.clone(),
                    status: status_named(status),
                    text: text.clone(),
                    devices: *devices,
                },
            )),
            _ => None,
        });
        Self(answers.collect())
    }
}

impl PresenceBackend for Replayed {
    fn lookup(&self, _: &str, identity: &str) -> ClientPresence {
        (self.0.get(identity).cloned()).unwrap_or_else(|| offline(identity))
    }
}

/// The WIT name of `status`, as the decision log records it.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Available => "available",
        Status::Busy => "busy",
        Status::Away => "away",
        Status::Offline => "offline",
    }
}

fn status_named(name: &str) -> Status {
    match name {
        "available" => Status::Available,
        "busy" => Status::Busy,
        "away" => Status::Away,
        _ => Status::Offline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_answers_what_the_call_was_told() {
        let told = ImportRecord::PresenceLookup {
            identity: "alice".into(),
            status: status_name(Status::Busy).into(),
            text: Some("on a call".into()),
            devices: 2,
        };
        let replayed = Replayed::of(&[told]);
        let alice = replayed.lookup("acme", "alice");
        assert_eq!((alice.status, alice.devices), (Status::Busy, 2));
        assert_eq!(alice.text.as_deref(), Some("on a call"));
        assert_eq!(replayed.lookup("acme", "bob").status, Status::Offline);
        assert_eq!(Nobody.lookup("acme", "alice"), offline("alice"));
    }
}
