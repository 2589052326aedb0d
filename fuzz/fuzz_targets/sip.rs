//! SIP arrives from anyone on the network: any bytes parse, are answered or
//! are dropped, on UDP and on a stream cut anywhere, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::sip::message::{self, Inbound, Limits, StreamFramer};

fn check(inbound: &Inbound) {
    if let Inbound::Message(msg) = inbound {
        // The request type is inferred from check_request, so this crate
        // needs no rsip dependency of its own.
        if let Ok(req) = msg.clone().try_into() {
            match message::check_request(&req, &["timer", "100rel"]) {
                Ok(()) => drop(message::response(&req, 200, "OK", Some("t")).to_string()),
                Err(refusal) => drop(message::refuse(&req, &refusal, Some("t")).to_string()),
            }
        }
        let _ = (message::call_id(msg), message::cseq(msg), message::from_tag(msg));
        let _ = (message::to_tag(msg), message::top_via_branch(msg), msg.to_string());
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(inbound) = message::parse_datagram(data, &limits) {
        check(&inbound);
    }
    // The first byte picks where the stream is cut.
    let cut = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut framer = StreamFramer::new(limits);
    for piece in [&data[..cut], &data[cut..]] {
        framer.push(piece);
        while let Some(item) = framer.next() {
            match item {
                Ok(inbound) => check(&inbound),
                Err(message::StreamError::Fatal(_)) => return,
                Err(_) => {}
            }
        }
    }
});
