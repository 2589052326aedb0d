//! The call placement directory's signed messages come from anyone: a
//! provider's update, an asker's query, a provider's reply. Any bytes are
//! parsed or refused with the reason, never a panic — as an update
//! (first registration and against a key on record, through the
//! registry), a query, a reply, and as identifiers and callers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_directory::{
    Identifier, ProviderUpdate, Query, Registry, Reply, SigningKey, caller_key,
};

const NOW: i64 = 1_767_603_600;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_slice(&[7; 32]).unwrap();
    let vk = *key.verifying_key();
    let text = String::from_utf8_lossy(data);
    let _ = ProviderUpdate::peek(&text);
    let _ = ProviderUpdate::verify(&text, None, NOW);
    let _ = ProviderUpdate::verify(&text, Some(&vk), NOW);
    let registry = Registry::new();
    let _ = registry.check("a.example", &text, NOW);
    if let Ok(asker) = Query::peek(&text) {
        let _ = Query::verify(&text, &asker, &vk, NOW);
    }
    let query = Query {
        asker: "b.example".into(),
        orig: "+15551230001".into(),
        dest: "+16669990001".into(),
        at: NOW,
        iat: NOW,
        nonce: "n0nce-0123".into(),
    };
    let _ = Reply::verify(&text, "a.example", &vk, &query, NOW);
    if let Ok(id) = Identifier::parse(&text) {
        let _ = id.candidates();
        assert_eq!(Identifier::parse(&id.to_string()), Ok(id));
    }
    if let Ok(id) = Identifier::caller(&text) {
        let _ = id.to_string();
    }
    let _ = caller_key(&text);
});
