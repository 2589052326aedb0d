//! `switchyard serve` against SIPp (Debian package `sip-tester`): calls,
//! registration, CANCEL, BYE from each side, concurrency, packet loss and
//! busy, each test on a server of its own over 127.0.0.1. Scenarios live in
//! tests/sipp/ (see its README); guests are built by `scripts/build-guests`.
//!
//! Every test needs `sipp` on PATH and fails, naming the package, without it.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;

use std::time::Duration;

use sip_common::{
    Config, Server, Sipp, SippRun, Transport, free_port, require_sipp, wait_udp_bound,
};

const HOLD: &str = "+15550100";
const BUSY: &str = "+15550186";
const BYE: &str = "+15550111";
const FORWARD: &str = "+15550200";
const RELAYED: &str = "+15557654321";
/// SIPp as alice@acme.test with her password (register_auth.xml, alice_uas.xml).
const ALICE: &str = "-s alice -au alice -ap secret -auth_uri acme.test -key domain acme.test";

/// One tenant `acme` (domain acme.test, user alice/secret) whose `number`
/// is answered by the example guest `name`.
fn acme(number: &str, name: &str) -> Config {
    Config::new()
        .tenant("acme", &["acme.test"])
        .user("alice", "secret")
        .number(number, name)
}

/// A server for `acme(number, name)` and `sipp` against it over
/// `transport`: exactly `calls` calls succeed, none fails, and the server
/// is still up. The run, for more checks.
fn calls_succeed(
    (number, name): (&str, &str),
    transport: Transport,
    sipp: Sipp,
    calls: u64,
) -> SippRun {
    require_sipp();
    let mut server = Server::serve(&acme(number, name));
    let run = sipp.to(server.addr(transport)).run();
    run.assert_calls(calls, &server);
    server.assert_alive();
    run
}

#[test]
fn sipp_uac_calls_all_succeed_over_udp_and_sipp_hangs_up_with_bye() {
    let sipp = Sipp::new(&format!("-sn uac -s {HOLD} -m 20 -r 10 -d 200"));
    calls_succeed((HOLD, "hold"), Transport::Udp, sipp, 20);
}

#[test]
fn a_media_port_another_process_holds_is_skipped_not_a_failed_call() {
    require_sipp();
    // Another process holds the first pair of the range (its RTP or its
    // RTCP port, whichever the system gave us).
    let squatter = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let held = squatter.local_addr().unwrap().port();
    let first = held - (held & 1);
    let config = acme(HOLD, "hold").media(&format!("ports = \"{first}-{}\"", first + 7));
    let mut server = Server::serve(&config);
    let run = Sipp::new(&format!("-sn uac -s {HOLD} -m 3 -l 1 -d 200"))
        .to(server.udp)
        .run();
    run.assert_calls(3, &server);
    server.assert_alive();
    drop(squatter);
}

#[test]
fn sipp_uac_calls_all_succeed_over_tcp() {
    let sipp = Sipp::new(&format!("-sn uac -t t1 -s {HOLD} -m 20 -r 10 -d 200"));
    calls_succeed((HOLD, "hold"), Transport::Tcp, sipp, 20);
}

#[test]
fn relayed_calls_reach_a_sipp_uas_over_the_trunk_and_both_legs_succeed() {
    require_sipp();
    // Caller (SIPp uac) -> switchyard (guest_relay dials the called number
    // over the trunk) -> far end (SIPp uas). The caller's BYE ends both legs.
    let far_port = free_port();
    let far = Sipp::new(&format!("-sn uas -p {far_port} -m 5")).spawn();
    assert!(
        wait_udp_bound(far_port, Duration::from_secs(10)),
        "the SIPp far end did not bind 127.0.0.1:{far_port}"
    );
    // "*" only catches numbers at a tenant domain; SIPp calls 127.0.0.1.
    let mut server = Server::serve(&acme(RELAYED, "relay").trunk("carrier", far_port));
    let caller = Sipp::new(&format!("-sn uac -s {RELAYED} -m 5 -r 5 -d 500"))
        .to(server.udp)
        .run();
    caller.assert_calls(5, &server);
    far.finish().assert_calls(5, &server);
    server.assert_alive();
}

#[test]
fn register_with_digest_auth_succeeds() {
    let sipp = Sipp::new(&format!("{ALICE} -m 1")).sf("register_auth.xml");
    calls_succeed((HOLD, "hold"), Transport::Udp, sipp, 1);
}

#[test]
fn register_with_a_wrong_password_is_refused() {
    require_sipp();
    let mut server = Server::serve(&acme(HOLD, "hold"));
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

/// A call from a SIPp caller (`caller`) to `FORWARD`, which guest_forwarder
/// dials on to client:alice: alice (SIPp, registered from its own socket)
/// handles it with `alice_scenario`. Both SIPp runs succeed with one call
/// each and the server is still up.
fn forwarded_to_alice(alice_scenario: &str, caller: Sipp) {
    require_sipp();
    let mut server = Server::serve(&acme(FORWARD, "forwarder"));
    let mut alice = Sipp::new(&format!("{ALICE} -m 1"))
        .sf("alice_uas.xml")
        .oocsf(alice_scenario)
        .to(server.udp)
        .spawn();
    alice.wait_for_line("sipp: registered", Duration::from_secs(10));
    let caller = caller.to(server.udp).timeout(Duration::from_secs(30)).run();
    caller.assert_calls(1, &server);
    alice.finish().assert_calls(1, &server);
    server.assert_alive();
}

#[test]
fn caller_cancels_a_call_ringing_at_registered_alice() {
    // alice rings and never answers; the caller CANCELs after 1 s. alice's
    // main call succeeds once her leg was cancelled (200, 487, ACK).
    let caller = Sipp::new(&format!("-s {FORWARD} -d 1000 -m 1")).sf("cancel.xml");
    forwarded_to_alice("alice_ring.xml", caller);
}

#[test]
fn forwarded_call_is_answered_by_registered_alice_and_the_callers_bye_reaches_her() {
    let caller = Sipp::new(&format!("-sn uac -s {FORWARD} -d 1000 -m 1"));
    forwarded_to_alice("alice_answer.xml", caller);
}

#[test]
fn guest_hangs_up_and_the_server_sends_bye() {
    let sipp = Sipp::new(&format!("-s {BYE} -m 5 -r 5"))
        .sf("recv_bye.xml")
        .timeout(Duration::from_secs(30));
    calls_succeed((BYE, "bye"), Transport::Udp, sipp, 5);
}

#[test]
fn a_hundred_concurrent_calls_all_succeed() {
    let sipp = Sipp::new(&format!("-sn uac -s {HOLD} -l 100 -m 100 -r 100 -d 2000"));
    calls_succeed((HOLD, "hold"), Transport::Udp, sipp, 100);
}

#[test]
fn five_percent_packet_loss_is_recovered_by_retransmissions_without_a_failed_call() {
    let sipp = Sipp::new(&format!("-sn uac -s {HOLD} -lost 5 -m 50 -r 10 -d 200"))
        .timeout(Duration::from_secs(90));
    let run = calls_succeed((HOLD, "hold"), Transport::Udp, sipp, 50);
    assert!(
        run.retransmissions() > 0,
        "with 5% loss SIPp should have retransmitted something\n{}",
        run.report()
    );
}

#[test]
fn busy_guest_rejects_every_call_with_486() {
    let sipp = Sipp::new(&format!("-s {BUSY} -m 10 -r 10")).sf("invite_486.xml");
    calls_succeed((BUSY, "busy"), Transport::Udp, sipp, 10);
}

#[test]
fn dtmf_sent_as_sip_info_is_answered_200_during_a_call() {
    let sipp = Sipp::new(&format!("-s {HOLD} -d 300 -m 1")).sf("info_dtmf.xml");
    calls_succeed((HOLD, "hold"), Transport::Udp, sipp, 1);
}

#[test]
fn a_tenant_at_its_call_limit_gets_503s_while_another_tenant_is_untouched() {
    require_sipp();
    let mut server = Server::serve(
        &Config::new()
            .tenant("limited", &[])
            .tenant_key("max_calls = 5")
            .number("700", "hold")
            .tenant("free", &[])
            .number("800", "hold"),
    );
    // Each: 20 calls in one second, held 2 s, so 20 would be up at once.
    let limited = Sipp::new("-sn uac -s 700 -m 20 -r 20 -d 2000")
        .to(server.udp)
        .spawn();
    let free = Sipp::new("-sn uac -s 800 -m 20 -r 20 -d 2000")
        .to(server.udp)
        .spawn();
    let (limited, free) = (limited.finish(), free.finish());
    assert_eq!(
        (free.successful(), free.failed()),
        (20, 0),
        "the other tenant is not limited\n{}",
        free.report()
    );
    assert!(
        (5..20).contains(&limited.successful()) && limited.failed() > 0,
        "at most 5 at once: some succeed, the rest get 503\n{}",
        limited.report()
    );
    let metrics = http::get(server.http, "/metrics", &http::Auth::none()).text();
    // Refused at once (queue full) or after waiting (timeout).
    let refused = metric_sum(&metrics, "switchyard_admission_refused_calls_total");
    assert_eq!(refused as u64, limited.failed(), "{metrics}");
    server.assert_alive();
}

/// The sum of a metric's samples (every label set).
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// SIPp's mean INVITE→200 time (`ResponseTime1(C)`, `HH:MM:SS:micros`).
fn mean_response(run: &SippRun) -> Duration {
    let text = run
        .stats
        .get("ResponseTime1(C)")
        .cloned()
        .unwrap_or_default();
    let parts: Vec<u64> = text
        .trim()
        .split(':')
        .filter_map(|p| p.parse().ok())
        .collect();
    let [h, m, s, micros] = parts[..] else {
        panic!("ResponseTime1(C) {text:?}\n{}", run.report());
    };
    Duration::from_micros(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

#[test]
fn a_flooding_tenant_waits_in_its_queue_without_slowing_another_and_every_call_succeeds() {
    require_sipp();
    let mut server = Server::serve(
        &Config::new()
            .tenant("flood", &[])
            .tenant_key("max_calls = 5\nqueue = 20\nqueue_wait_ms = 8000")
            .number("700", "hold")
            .tenant("calm", &[])
            .number("800", "hold"),
    );
    // 20 calls in one second, held 1 s: 5 at a time, the other 15 wait
    // (100 Trying) and start as the first ones end, 5 per second.
    let flood = Sipp::new("-sn uac -s 700 -l 20 -m 20 -r 20 -d 1000")
        .to(server.udp)
        .spawn();
    let calm = Sipp::new("-sn uac -s 800 -l 20 -m 20 -r 20 -d 1000")
        .to(server.udp)
        .spawn();
    let (flood, calm) = (flood.finish(), calm.finish());
    calm.assert_calls(20, &server);
    flood.assert_calls(20, &server);
    let (flood_wait, calm_wait) = (mean_response(&flood), mean_response(&calm));
    assert!(
        calm_wait < Duration::from_millis(250) && flood_wait > Duration::from_millis(500),
        "the flood waits (mean INVITE→200 {flood_wait:?}), the other tenant does not ({calm_wait:?})"
    );
    let metrics = http::get(server.http, "/metrics", &http::Auth::none()).text();
    for (name, value) in [
        ("switchyard_admission_admitted_after_wait_calls_total", 15.0),
        ("switchyard_admission_refused_calls_total", 0.0),
        ("switchyard_admission_queue_depth", 0.0),
    ] {
        assert_eq!(metric_sum(&metrics, name), value, "{name}\n{metrics}");
    }
    assert!(
        metrics.contains("switchyard_admission_queue_depth{tenant=\"flood\"} 0"),
        "{metrics}"
    );
    server.assert_alive();
}

#[test]
fn under_a_global_capacity_both_tenants_queued_calls_succeed_as_places_free() {
    require_sipp();
    let config = Config::new()
        .tenant("a", &[])
        .number("700", "hold")
        .tenant("b", &[])
        .number("800", "hold")
        .toml();
    // Top-level tables may follow the tenants' array of tables.
    let mut server = Server::start(&format!(
        "{config}\n[admission]\nmax_calls = 4\nqueue = 20\nqueue_wait_ms = 8000\n"
    ));
    let a = Sipp::new("-sn uac -s 700 -l 12 -m 12 -r 12 -d 1000")
        .to(server.udp)
        .spawn();
    let b = Sipp::new("-sn uac -s 800 -l 12 -m 12 -r 12 -d 1000")
        .to(server.udp)
        .spawn();
    let (a, b) = (a.finish(), b.finish());
    a.assert_calls(12, &server);
    b.assert_calls(12, &server);
    let metrics = http::get(server.http, "/metrics", &http::Auth::none()).text();
    let waited = metric_sum(
        &metrics,
        "switchyard_admission_admitted_after_wait_calls_total",
    );
    assert!(
        waited >= 16.0,
        "4 places for 24 calls: most waited ({waited})\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "switchyard_admission_refused_calls_total"),
        0.0,
        "{metrics}"
    );
    server.assert_alive();
}
