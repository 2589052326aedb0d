//! SDP bodies come from any caller: any bytes are answered or refused with
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::sip::sdp;

fuzz_target!(|data: &[u8]| {
    let local = "192.0.2.1:40000".parse().unwrap();
    if let Ok((answer, _)) = sdp::answer(data, local, 1, 1) {
        // What we answer must read back.
        sdp::parse_answer(answer.as_bytes()).expect("our answer parses");
    }
    let _ = sdp::parse_answer(data);
});
