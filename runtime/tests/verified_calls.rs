//! Verified incoming calls across two providers (issue 17, C11), end to
//! end on 127.0.0.1: runtime B is the call placement directory and a
//! provider (+1666*); runtime A is a provider (+1555*) that publishes
//! its entry to B at start and reaches B through a trunk. B screens every
//! incoming call: it asks the directory who manages the caller id, asks
//! that provider whether it placed the call, and its account's policy
//! (the sample `guests/screen`) rules.
//!
//! * A caller of A's is relayed to B: A recorded the placement, confirms
//!   it, and B's handler sees the call labelled `verified`.
//! * A caller claiming one of A's numbers calls B directly: A denies
//!   having placed it, and the policy rejects it with 608 before any
//!   handler runs; the decision log says why.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::time::Duration;

use http::{ADMIN_KEY, Auth, get, new_key_secret, newest_log};
use sip_common::{Config, Server, free_port, wait_until};
use switchyard::sip::sdp::Codec;

/// A fresh P-256 key as PKCS#8 PEM, written to `dir/name`.
fn key_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// `[directory]` (asking `directory`) and `[provider]` for `id` at
/// `http_port`, managing `range`.
fn provider(
    id: &str,
    key: &std::path::Path,
    http_port: u16,
    range: &str,
    directory: &str,
) -> String {
    format!(
        "[directory]\nurl = \"{directory}\"\nprivate = true\ntimeout_ms = 2000\n\
         \n[provider]\nid = \"{id}\"\nkey = \"{}\"\n\
         confirm_url = \"http://127.0.0.1:{http_port}/v1/confirmations\"\n\
         identifiers = [\"{range}\"]\n",
        key.display()
    )
}

#[test]
fn a_placed_call_is_confirmed_and_a_spoofed_one_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let directory = format!("http://127.0.0.1:{b_port}");
    let b_table = provider(
        "b.example",
        &key_file(dir.path(), "b.pem"),
        b_port,
        "+1666*",
        &directory,
    )
    .replace("[directory]\n", "[directory]\nserve = true\n");
    let mut b = Server::serve(
        &Config::new()
            .http(&format!("127.0.0.1:{b_port}"))
            .table(&b_table)
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .tenant("acme", &[])
            .tenant_key(&format!("policy = \"{}\"", sip_common::guest("screen")))
            .number("100", "ivr"),
    );
    let a_table = provider(
        "a.example",
        &key_file(dir.path(), "a.pem"),
        a_port,
        "+1555*",
        &directory,
    );
    let mut a = Server::serve(
        &Config::new()
            .http(&format!("127.0.0.1:{a_port}"))
            .table(&a_table)
            .tenant("acme", &[])
            .number("100", "relay")
            .trunk("carrier", b.udp.port()),
    );
    // A publishes its entry at start.
    let published = wait_until(Duration::from_secs(10), || {
        get(b.http, "/v1/directory/lookup?id=%2B15550100", &Auth::none()).status == 200
    });
    assert!(
        published,
        "A never published: {}\n{}",
        a.output(),
        b.output()
    );
    let (_, _, acme_b) = new_key_secret(b.http, "acme");

    // A placed it: confirmed, labelled verified by B's policy.
    let ua = ua::Ua::new().calling_as("+15550100");
    let call = ua
        .call(a.udp, "100", &[Codec::PCMU], true)
        .unwrap_or_else(|e| panic!("calling A: {e}\n{}", a.output()));
    let at_b = wait_until(Duration::from_secs(10), || {
        let metrics = get(b.http, "/metrics", &Auth::none()).text();
        (metrics.lines()).any(|l| l.starts_with("switchyard_media_streams ") && !l.ends_with(" 0"))
    });
    assert!(
        at_b,
        "the call never reached B: {}\n{}",
        a.output(),
        b.output()
    );
    let _ = call.bye();
    let log = newest_log(&b, &acme_b, "\"kind\":\"ended\"");
    assert!(
        log.contains("\"answer\":\"Confirmed\""),
        "{log}\nA: {}\nB: {}",
        a.output(),
        b.output()
    );
    assert!(log.contains("\"provider\":\"a.example\""), "{log}");
    assert!(log.contains("\"label\":\"verified\""), "{log}");
    assert!(log.contains("\"by\":\"the account's policy\""), "{log}");

    // Nobody placed this one: A denies it, B's policy rejects it.
    let spoofer = ua::Ua::new().calling_as("+15559999");
    match spoofer.call(b.udp, "100", &[Codec::PCMU], true) {
        Err(ua::UaError::Status { status: 608, .. }) => {}
        Err(e) => panic!("expected 608, got {e}\n{}", b.output()),
        Ok(_) => panic!("a spoofed caller id was let through\n{}", b.output()),
    }
    let log = newest_log(&b, &acme_b, "\"answer\":\"Denied\"");
    assert!(log.contains("\"Reject\""), "{log}");
    assert!(
        log.contains("caller id not placed by its provider"),
        "{log}"
    );
    assert!(
        !log.contains("\"kind\":\"event\""),
        "no handler heard of it: {log}"
    );
    a.assert_alive();
    b.assert_alive();
}
