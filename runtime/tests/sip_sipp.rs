//! `switchyard serve` against SIPp (Debian package `sip-tester`): calls,
//! registration, CANCEL, BYE from each side, concurrency, packet loss and
//! busy, each test on a server of its own over 127.0.0.1. Scenarios live in
//! tests/sipp/ (see its README); guests are built by `scripts/build-guests`.
//!
//! Without `sipp` on PATH every test prints `skipped: sipp not installed`,
//! except with `CI=true`, where that is a failure.

#[path = "common/sip.rs"]
mod sip_common;

use std::time::Duration;

use sip_common::{Server, Sipp, free_udp_port, guest, have_sipp, wait_udp_bound};

const HOLD: &str = "+15550100";
const BUSY: &str = "+15550186";
const BYE: &str = "+15550111";
const FORWARD: &str = "+15550200";
const RELAYED: &str = "+15557654321";
/// SIPp as alice@acme.test with her password (register_auth.xml, alice_uas.xml).
const ALICE: &str = "-s alice -au alice -ap secret -auth_uri acme.test -key domain acme.test";

/// One tenant `acme` (domain acme.test, user alice/secret) whose numbers are
/// bound to guests; `trunk` is the outbound trunk's address, if any.
fn config(numbers: &[(&str, &str)], trunk: Option<u16>) -> String {
    let mut toml = String::from(
        r#"workers = 2

[sip]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]

[http]
listen = "127.0.0.1:0"

[storage]
path = "{dir}/data"

[[tenant]]
id = "acme"
domains = ["acme.test"]

[[tenant.user]]
username = "alice"
password = "secret"
"#,
    );
    for (number, name) in numbers {
        toml.push_str(&format!(
            "\n[[tenant.number]]\nnumber = \"{number}\"\ncomponent = \"{}\"\n",
            guest(name)
        ));
    }
    if let Some(port) = trunk {
        toml.push_str(&format!(
            "\n[[tenant.trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    toml
}

#[test]
fn sipp_uac_calls_all_succeed_over_udp_and_sipp_hangs_up_with_bye() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(&format!("-sn uac -s {HOLD} -m 20 -r 10 -d 200"))
        .to(server.udp)
        .run();
    run.assert_calls(20, &server);
    server.assert_alive();
}

#[test]
fn sipp_uac_calls_all_succeed_over_tcp() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(&format!("-sn uac -t t1 -s {HOLD} -m 20 -r 10 -d 200"))
        .to(server.tcp)
        .run();
    run.assert_calls(20, &server);
    server.assert_alive();
}

#[test]
fn relayed_calls_reach_a_sipp_uas_over_the_trunk_and_both_legs_succeed() {
    if !have_sipp() {
        return;
    }
    // Caller (SIPp uac) -> switchyard (guest_relay dials the called number
    // over the trunk) -> far end (SIPp uas). The caller's BYE ends both legs.
    let far_port = free_udp_port();
    let far = Sipp::new(&format!("-sn uas -p {far_port} -m 5")).spawn();
    assert!(
        wait_udp_bound(far_port, Duration::from_secs(10)),
        "the SIPp far end did not bind 127.0.0.1:{far_port}"
    );
    // "*" only catches numbers at a tenant domain; SIPp calls 127.0.0.1.
    let mut server = Server::start(&config(&[(RELAYED, "relay")], Some(far_port)));
    let caller = Sipp::new(&format!("-sn uac -s {RELAYED} -m 5 -r 5 -d 500"))
        .to(server.udp)
        .run();
    caller.assert_calls(5, &server);
    far.finish().assert_calls(5, &server);
    server.assert_alive();
}

#[test]
fn register_with_digest_auth_succeeds() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(&format!("{ALICE} -m 1"))
        .sf("register_auth.xml")
        .to(server.udp)
        .run();
    run.assert_calls(1, &server);
    server.assert_alive();
}

#[test]
fn register_with_a_wrong_password_is_refused() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(
        "-s alice -au alice -ap not-the-password -auth_uri acme.test -key domain acme.test -m 1",
    )
    .sf("register_auth.xml")
    .to(server.udp)
    .timeout(Duration::from_secs(20))
    .run();
    // The scenario expects 200 after the challenge: a refusal (401 again or
    // 403) is an unexpected message, which fails the call.
    assert!(
        run.successful() == 0
            && run.failed() == 1
            && (run.errors.contains("SIP/2.0 401") || run.errors.contains("SIP/2.0 403")),
        "a wrong password must be answered 401 or 403\n{}\n{}",
        run.report(),
        server.output()
    );
    server.assert_alive();
}

#[test]
fn caller_cancels_a_call_ringing_at_registered_alice() {
    if !have_sipp() {
        return;
    }
    // guest_forwarder dials client:alice; alice (SIPp, registered from its
    // own socket) rings and never answers; the caller CANCELs after 1 s.
    let mut server = Server::start(&config(&[(FORWARD, "forwarder")], None));
    let mut alice = Sipp::new(&format!("{ALICE} -m 1"))
        .sf("alice_uas.xml")
        .oocsf("alice_ring.xml")
        .to(server.udp)
        .spawn();
    alice.wait_for_line("sipp: registered", Duration::from_secs(10));
    let caller = Sipp::new(&format!("-s {FORWARD} -d 1000 -m 1"))
        .sf("cancel.xml")
        .to(server.udp)
        .timeout(Duration::from_secs(30))
        .run();
    caller.assert_calls(1, &server);
    // alice's main call succeeds once her leg was cancelled (200, 487, ACK).
    alice.finish().assert_calls(1, &server);
    server.assert_alive();
}

#[test]
fn forwarded_call_is_answered_by_registered_alice_and_the_callers_bye_reaches_her() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(FORWARD, "forwarder")], None));
    let mut alice = Sipp::new(&format!("{ALICE} -m 1"))
        .sf("alice_uas.xml")
        .oocsf("alice_answer.xml")
        .to(server.udp)
        .spawn();
    alice.wait_for_line("sipp: registered", Duration::from_secs(10));
    let caller = Sipp::new(&format!("-sn uac -s {FORWARD} -d 1000 -m 1"))
        .to(server.udp)
        .timeout(Duration::from_secs(30))
        .run();
    caller.assert_calls(1, &server);
    alice.finish().assert_calls(1, &server);
    server.assert_alive();
}

#[test]
fn guest_hangs_up_and_the_server_sends_bye() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(BYE, "bye")], None));
    let run = Sipp::new(&format!("-s {BYE} -m 5 -r 5"))
        .sf("recv_bye.xml")
        .to(server.udp)
        .timeout(Duration::from_secs(30))
        .run();
    run.assert_calls(5, &server);
    server.assert_alive();
}

#[test]
fn a_hundred_concurrent_calls_all_succeed() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(&format!("-sn uac -s {HOLD} -l 100 -m 100 -r 100 -d 2000"))
        .to(server.udp)
        .run();
    run.assert_calls(100, &server);
    server.assert_alive();
}

#[test]
fn five_percent_packet_loss_is_recovered_by_retransmissions_without_a_failed_call() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(&format!("-sn uac -s {HOLD} -lost 5 -m 50 -r 10 -d 200"))
        .to(server.udp)
        .timeout(Duration::from_secs(90))
        .run();
    run.assert_calls(50, &server);
    assert!(
        run.retransmissions() > 0,
        "with 5% loss SIPp should have retransmitted something\n{}",
        run.report()
    );
    server.assert_alive();
}

#[test]
fn busy_guest_rejects_every_call_with_486() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(BUSY, "busy")], None));
    let run = Sipp::new(&format!("-s {BUSY} -m 10 -r 10"))
        .sf("invite_486.xml")
        .to(server.udp)
        .run();
    run.assert_calls(10, &server);
    server.assert_alive();
}

#[test]
fn dtmf_sent_as_sip_info_is_answered_200_during_a_call() {
    if !have_sipp() {
        return;
    }
    let mut server = Server::start(&config(&[(HOLD, "hold")], None));
    let run = Sipp::new(&format!("-s {HOLD} -d 300 -m 1"))
        .sf("info_dtmf.xml")
        .to(server.udp)
        .run();
    run.assert_calls(1, &server);
    server.assert_alive();
}
