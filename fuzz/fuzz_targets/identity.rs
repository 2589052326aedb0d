//! An `Identity` header and the certificate chain its x5u serves come
//! from anyone: any header is parsed or refused with the reason, any PEM
//! is a chain or an error, a PASSporT that parses is verified or refused;
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_shaken::{Call, Identity, Roots, chain_key};

const CA: &[u8] = include_bytes!("../../runtime/shaken/tests/data/ca_ca.pem");
const SP: &[u8] = include_bytes!("../../runtime/shaken/tests/data/sp_sp.pem");

fuzz_target!(|data: &[u8]| {
    let roots = Roots::from_pem(CA).unwrap();
    let now = 1_796_601_600;
    let _ = chain_key(data, &roots, now);
    let _ = Roots::from_pem(data);
    let text = String::from_utf8_lossy(data);
    let call = Call {
        from: "+15550100".into(),
        to: "+15550200".into(),
    };
    if let Ok(identity) = Identity::parse(&text) {
        let _ = identity.x5u();
        let _ = identity.verify(SP, &roots, &call, now);
    }
});
