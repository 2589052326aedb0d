//! WAV files come from tenants (uploads, prompt URLs): any bytes decode to
//! 8 kHz samples or are refused with an `AudioError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::media::audio::{decode_wav, encode_wav};

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = decode_wav(data) {
        // What we store must read back exactly.
        let stored = encode_wav(&samples);
        assert_eq!(decode_wav(&stored).expect("our WAV decodes"), samples);
    }
});
