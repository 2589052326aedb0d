//! Client signalling frames come from any browser: any text is a message
//! or an error saying why, never a panic; tokens likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::clients::message;
use switchyard::tenancy::TokenKey;
use switchyard::tokens;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = message::parse(text);
    let key = |_: &str| TokenKey::Live {
        account: "AC1".into(),
        secret: "0".repeat(64),
    };
    let _ = tokens::verify(text, 1_800_000_000, key);
});
