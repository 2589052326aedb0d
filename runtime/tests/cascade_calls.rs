//! Conferences across regions: two and three `switchyard serve`
//! processes on loopback, each its own region, with the same
//! `[conference]` peers and directory in their configs. Test user agents
//! (`common/ua.rs`) call each runtime into the `player` guest, which puts
//! them in conference `standup`.
//!
//! * Each region runs its own mixer; the mixers are linked by RTP, so
//!   every caller hears every other caller, in whatever region, once (not
//!   doubled through a third region: the levels agree within 3 dB), and
//!   never itself.
//! * A region whose callers wait for a moderator starts when the
//!   moderator's region does.
//! * The REST API of a region shows its own participants and the regions
//!   it is linked to; when the last caller of a region hangs up, its
//!   mixer closes and the other regions drop their link to it.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::thread;
use std::time::Duration;

use http::{Auth, account_auth};
use serde_json::Value;
use sip_common::{Config, Server, free_port, udp_ports, wait_until};
use switchyard::media::tone::sine;
use switchyard::sip::sdp::Codec;
use ua::{Call, Ua};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "cascade-secret-0123456789";
const TONES: [f64; 3] = [500.0, 1_100.0, 1_700.0];

/// One runtime per region, the first keeping the conference directory.
fn regions(names: &[&str]) -> Vec<Server> {
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let peers: Vec<String> = (names.iter().zip(&ports))
        .map(|(region, port)| format!("{region} = \"http://127.0.0.1:{port}\""))
        .collect();
    let table = format!(
        "[conference]\nsecret = \"{SECRET}\"\ndirectory = \"{}\"\n\n[conference.peers]\n{}\n",
        names[0],
        peers.join("\n")
    );
    (names.iter().zip(&ports))
        .map(|(region, port)| {
            let config = Config::players()
                .top(&format!("region = \"{region}\""))
                .http(&format!("127.0.0.1:{port}"))
                .table(&table);
            Server::serve(&config)
        })
        .collect()
}

/// A caller in `server`'s region joins `standup` and sends its tone.
fn join(ua: &Ua, server: &Server, hz: f64) -> Call {
    join_with(ua, server, hz, "no-beep")
}

fn join_with(ua: &Ua, server: &Server, hz: f64, options: &str) -> Call {
    let headers = [
        ("X-Conference", "standup"),
        ("X-Conference-Options", options),
    ];
    let call = ua
        .call_with(server.udp, "600", &[Codec::PCMU], true, &headers)
        .unwrap_or_else(|e| panic!("calling: {e}\n{}", server.output()));
    call.send_audio(&sine(hz, 30_000, 0.25));
    call
}

fn standup(server: &Server, auth: &Auth) -> Value {
    http::get(server.http, "/v1/conferences/standup", auth).json()
}

/// Every caller hears every other one, each once, and never itself.
fn assert_mesh(calls: &[Call], servers: &[Server]) {
    let logs = || {
        servers
            .iter()
            .map(Server::output)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let all = wait_until(WAIT, || {
        (calls.iter().enumerate())
            .all(|(i, c)| (0..calls.len()).all(|j| i == j || c.recent(TONES[j], 500) > 0.005))
    });
    assert!(all, "not everyone hears everyone\n{}", logs());
    thread::sleep(Duration::from_millis(500));
    for (i, call) in calls.iter().enumerate() {
        assert!(
            call.recent(TONES[i], 500) < 0.001,
            "caller {i} hears itself"
        );
        let levels: Vec<f64> = (0..calls.len())
            .filter(|&j| j != i)
            .map(|j| call.recent(TONES[j], 500))
            .collect();
        let (lo, hi) = (
            levels.iter().cloned().fold(f64::MAX, f64::min),
            levels.iter().cloned().fold(0.0, f64::max),
        );
        assert!(
            10.0 * (hi / lo).log10() < 3.0,
            "caller {i} hears the others at {levels:?}: one came twice"
        );
    }
}

#[test]
fn two_regions_mix_across_a_link_that_closes_with_the_last_caller_of_one() {
    let servers = regions(&["us", "eu"]);
    let (us, eu) = (&servers[0], &servers[1]);
    let (auth_us, auth_eu) = (account_auth(us, "acme"), account_auth(eu, "acme"));
    let ua = Ua::new();
    let calls = vec![join(&ua, us, TONES[0]), join(&ua, eu, TONES[1])];
    assert_mesh(&calls, &servers);
    let shown = standup(us, &auth_us);
    assert_eq!(
        shown["linked_regions"],
        serde_json::json!(["eu"]),
        "{shown}"
    );
    assert_eq!(
        shown["participants"].as_array().unwrap().len(),
        1,
        "{shown}"
    );
    assert_eq!(
        standup(eu, &auth_eu)["linked_regions"],
        serde_json::json!(["us"])
    );
    // Every UDP socket of either runtime is a SIP listener or in its
    // [media] ports, link streams included (a firewall opens just those).
    for server in &servers {
        let (first, last) = media_range(server);
        for port in udp_ports(server.pid()) {
            assert!(
                port == server.udp.port() || (first..=last).contains(&port),
                "UDP port {port} outside {first}-{last}"
            );
        }
    }

    // The last caller in eu leaves: eu's mixer closes, us drops the link.
    calls[1].bye().unwrap();
    let unlinked = wait_until(WAIT, || {
        standup(us, &auth_us)["linked_regions"] == serde_json::json!([])
    });
    assert!(unlinked, "{}\n{}", standup(us, &auth_us), eu.output());
    thread::sleep(Duration::from_millis(500));
    assert!(
        calls[0].recent(TONES[1], 500) < 0.001,
        "eu's caller is gone"
    );
    // A peer without the secret is refused.
    let got = http::request(
        us.http,
        "POST",
        "/internal/v1/placements",
        &Auth::none(),
        b"{}",
    );
    assert_eq!(got.status, 401, "{}", got.text());
}

/// The `[media] ports` range written in `server`'s config.
fn media_range(server: &Server) -> (u16, u16) {
    let toml = std::fs::read_to_string(server.dir.path().join("switchyard.toml")).unwrap();
    let line = toml.lines().find(|l| l.starts_with("ports = ")).unwrap();
    let (first, last) = line
        .trim_start_matches("ports = ")
        .trim_matches('"')
        .split_once('-')
        .unwrap();
    (first.parse().unwrap(), last.parse().unwrap())
}

#[test]
fn three_regions_hear_each_other_once() {
    let servers = regions(&["us", "eu", "ap"]);
    let ua = Ua::new();
    let calls: Vec<Call> = (servers.iter().zip(TONES))
        .map(|(server, hz)| join(&ua, server, hz))
        .collect();
    assert_mesh(&calls, &servers);
    let auth = account_auth(&servers[2], "acme");
    let shown = standup(&servers[2], &auth);
    assert_eq!(
        shown["linked_regions"],
        serde_json::json!(["eu", "us"]),
        "{shown}"
    );
}

#[test]
fn a_region_waiting_for_its_moderator_starts_when_the_moderators_region_does() {
    let servers = regions(&["us", "eu"]);
    let (us, eu) = (&servers[0], &servers[1]);
    let auth_us = account_auth(us, "acme");
    let ua = Ua::new();
    let waiting = join_with(&ua, us, TONES[0], "no-beep,wait");
    let opened = wait_until(WAIT, || standup(us, &auth_us)["status"] == "init");
    assert!(opened, "{}", us.output());
    let moderator = join(&ua, eu, TONES[1]);
    let started = wait_until(WAIT, || standup(us, &auth_us)["status"] == "in-progress");
    assert!(started, "{}\n{}", standup(us, &auth_us), eu.output());
    assert_mesh(&[waiting, moderator], &servers);
}
