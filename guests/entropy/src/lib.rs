//! Says what std and `rand` give it — wall time, a monotonic interval, a
//! random number and a `HashMap`'s order — so any difference in them is a
//! different plan: the guest of the replay-faithfulness tests.
//!
//! The sentence reads `wall W clock C elapsed E random R order O`:
//! `SystemTime::now()` and the `clock` import in ms since 1970, the
//! nanoseconds between two `Instant::now()`, a `rand::random::<u64>()` in
//! hex, and the iteration order of a `HashMap` of the letters a–h.
//!
//! On the incoming call it says that and gathers a digit; on the gather's
//! result it says it again and hangs up.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use switchyard_sdk::clock;
use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, event: Event) -> Result<Plan, HandlerError> {
    match event {
        Event::Incoming(_) => Ok(Plan::new()
            .say(observed())
            .gather(Gather::digits(1).timeout_secs(1))),
        Event::GatherComplete(_) => Ok(Plan::new().say(observed()).hangup()),
        _ => Ok(Plan::new()),
    }
}

fn observed() -> String {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let clock_ms = clock::now_ms();
    let start = Instant::now();
    let elapsed_ns = start.elapsed().as_nanos();
    let random: u64 = rand::random();
    let letters: HashMap<char, ()> = ('a'..='h').map(|c| (c, ())).collect();
    let order: String = letters.keys().collect();
    format!(
        "wall {wall_ms} clock {clock_ms} elapsed {elapsed_ns} random {random:016x} order {order}"
    )
}
