//! Caller scripts come from guest authors' files: any text parses or is
//! refused with a line number, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::simulate::Script;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Script::parse(text);
    }
});
