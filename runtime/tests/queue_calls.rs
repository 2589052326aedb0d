//! Call queues with real audio: test user agents (`common/ua.rs`) call
//! `switchyard serve` over 127.0.0.1 into the `player` guest, which
//! queues them (`X-Enqueue`) or makes them an agent (`X-Dial-Queue`).
//!
//! * Two callers wait in `support`; the REST API shows them in order.
//!   An agent's `dial queue:support` takes the first: the two calls (on
//!   different media workers) hear each other. The agent hangs up: the
//!   caller's guest hears `queue-complete` (bridged, with its wait).
//! * `POST /v1/queues/support/dequeue` sends the second caller to a
//!   handler, which hears `redirected`; another account sees no queue.
//! * A caller with `max-wait-secs` times out; an agent dialling an empty
//!   queue gets `no-answer` at once.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::thread;
use std::time::Duration;

use http::{Auth, account_auth};
use serde_json::{Value, json};
use sip_common::{Config, Server, wait_until};
use switchyard::media::tone::sine;
use switchyard::sip::sdp::Codec;
use ua::{Call, Ua};

const WAIT: Duration = Duration::from_secs(20);

fn call(ua: &Ua, server: &Server, headers: &[(&str, &str)]) -> Call {
    let call = ua
        .call_with(server.udp, "600", &[Codec::PCMU], true, headers)
        .unwrap_or_else(|e| panic!("calling: {e}\n{}", server.output()));
    call.start_silence();
    call
}

fn queue(server: &Server, auth: &Auth) -> (u16, Value) {
    let got = http::get(server.http, "/v1/queues/support", auth);
    (got.status, got.json())
}

/// The call ids waiting in `support`, head first.
fn members(server: &Server, auth: &Auth) -> Vec<String> {
    let (status, q) = queue(server, auth);
    if status != 200 {
        return Vec::new();
    }
    (q["members"].as_array().unwrap().iter())
        .map(|m| m["call_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_agent_takes_the_first_caller_and_rest_dequeues_the_second() {
    let server = Server::serve(&Config::players());
    let (acme, globex) = (
        account_auth(&server, "acme"),
        account_auth(&server, "globex"),
    );
    let ua = Ua::new();
    let enqueue = [("X-Enqueue", "support")];
    let first = call(&ua, &server, &enqueue);
    assert!(
        wait_until(WAIT, || members(&server, &acme).len() == 1),
        "{}",
        server.output()
    );
    let second = call(&ua, &server, &enqueue);
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 2));
    let waiting = members(&server, &acme);
    let (_, q) = queue(&server, &acme);
    assert_eq!(
        (q["size"].as_u64(), q["members"][1]["position"].as_u64()),
        (Some(2), Some(2))
    );
    let listed = http::get(server.http, "/v1/queues", &acme).json();
    assert_eq!(listed["data"][0]["name"], "support", "{listed}");
    assert_eq!(listed["data"][0]["size"], 2);
    // The wait prompts play (the tone synthesizer speaks them).
    assert!(first.wait_for_audio(1_000, WAIT), "no wait prompt");
    // Another account has no such queue.
    assert_eq!(queue(&server, &globex).0, 404);
    let dequeue = json!({"handler": "guest_player"});
    let other = http::post(server.http, "/v1/queues/support/dequeue", &globex, &dequeue);
    assert_eq!(other.status, 404, "{}", other.text());

    // The agent takes the head: the first caller.
    let agent = call(&ua, &server, &[("X-Dial-Queue", "support")]);
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 1));
    assert_eq!(members(&server, &acme), [waiting[1].clone()]);
    for (c, hz) in [(&first, 600.0), (&agent, 1_300.0)] {
        c.stop_silence();
        c.send_audio(&sine(hz, 4_000, 0.25));
    }
    let bridged = wait_until(WAIT, || {
        first.recent(1_300.0, 500) > 0.01 && agent.recent(600.0, 500) > 0.01
    });
    assert!(
        bridged,
        "caller and agent hear each other\n{}",
        server.output()
    );
    assert!(
        second.recent(1_300.0, 500) < 0.001,
        "the second caller hears nobody"
    );
    thread::sleep(Duration::from_millis(1_000));
    agent.bye().unwrap();
    first.wait_bye(WAIT).unwrap_or_else(|e| {
        panic!(
            "the caller's guest did not end it: {e}\n{}",
            server.output()
        )
    });
    let log_first = http::decision_log(&server, &acme, &waiting[0]);
    assert!(
        log_first.contains(r#""QueueComplete":{"queue":"support","outcome":"Bridged""#),
        "{log_first}"
    );

    // REST sends the second caller to a handler.
    let got = http::post(server.http, "/v1/queues/support/dequeue", &acme, &dequeue);
    assert_eq!(got.status, 202, "{}", got.text());
    assert_eq!(got.json()["id"], waiting[1].as_str());
    second
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the redirected caller's plan did not end: {e}"));
    let log_second = http::decision_log(&server, &acme, &waiting[1]);
    assert!(log_second.contains("Redirected"), "{log_second}");
    assert!(!log_second.contains("QueueComplete"), "{log_second}");
    let (_, q) = queue(&server, &acme);
    assert_eq!(q["size"], 0);
    assert!(
        q["average_wait_secs"].is_u64(),
        "one caller was handed out: {q}"
    );
    let empty = http::post(server.http, "/v1/queues/support/dequeue", &acme, &dequeue);
    assert_eq!(empty.status, 409, "{}", empty.text());
}

#[test]
fn a_caller_times_out_and_an_agent_finds_the_queue_empty() {
    let server = Server::serve(&Config::players());
    let acme = account_auth(&server, "acme");
    let ua = Ua::new();
    let caller = call(
        &ua,
        &server,
        &[("X-Enqueue", "support"), ("X-Max-Wait", "1")],
    );
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 1));
    let id = members(&server, &acme).remove(0);
    caller
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("no hangup after the max wait: {e}\n{}", server.output()));
    let text = http::decision_log(&server, &acme, &id);
    assert!(
        text.contains(r#""QueueComplete":{"queue":"support","outcome":"Timeout","wait_secs":1"#),
        "{text}"
    );

    let agent = call(&ua, &server, &[("X-Dial-Queue", "support")]);
    agent
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the agent's dial did not end: {e}\n{}", server.output()));
    let mut newest = String::new();
    wait_until(WAIT, || {
        let calls = http::get(server.http, "/v1/calls", &acme).json();
        newest = calls["data"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        !newest.is_empty() && newest != id
    });
    let text = http::decision_log(&server, &acme, &newest);
    assert!(
        text.contains(r#""DialComplete":{"status":"NoAnswer""#),
        "{text}"
    );
}

#[test]
fn a_higher_priority_caller_is_taken_first_and_waiting_callers_hear_their_place() {
    let server = Server::serve(&Config::players());
    let acme = account_auth(&server, "acme");
    let ua = Ua::new();
    let updates = ("X-Wait-Updates", "5");
    let first = call(&ua, &server, &[("X-Enqueue", "support"), updates]);
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 1));
    let low = members(&server, &acme).remove(0);
    let urgent = call(
        &ua,
        &server,
        &[("X-Enqueue", "support"), ("X-Priority", "5"), updates],
    );
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 2));
    let waiting = members(&server, &acme);
    assert_eq!(
        waiting[1], low,
        "the later, higher-priority caller is first"
    );
    let high = waiting[0].clone();
    // Both have heard one update (5 s after each joined).
    let waited = |s: &Server| {
        let (_, q) = queue(s, &acme);
        (q["members"].as_array().unwrap().iter())
            .filter_map(|m| m["wait_secs"].as_u64())
            .min()
            .unwrap_or(0)
    };
    assert!(
        wait_until(WAIT, || waited(&server) >= 6),
        "{}",
        server.output()
    );

    let agent = call(&ua, &server, &[("X-Dial-Queue", "support")]);
    assert!(wait_until(WAIT, || members(&server, &acme) == [low.clone()]));
    agent.bye().unwrap();
    urgent
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the bridged caller's guest did not end it: {e}"));
    first.bye().unwrap();
    let log_low = http::decision_log(&server, &acme, &low);
    assert!(
        log_low.contains(r#""QueueWait":{"queue":"support","position":2,"size":2"#),
        "{log_low}"
    );
    assert!(log_low.contains("You are number 2 in line"), "{log_low}");
    let log_high = http::decision_log(&server, &acme, &high);
    assert!(
        log_high.contains(r#""QueueWait":{"queue":"support","position":1,"size":2"#),
        "{log_high}"
    );
    assert!(
        log_high.contains(r#""QueueComplete":{"queue":"support","outcome":"Bridged""#),
        "{log_high}"
    );
}

#[test]
fn a_guest_built_against_wit_0_1_waits_in_the_same_queue_as_current_ones() {
    let old = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wit-0.1.1/guest_player.wasm"
    );
    let config = Config::new()
        .media("workers = 3")
        .tenant("acme", &[])
        .number("600", "player")
        .number_component("601", old);
    let server = Server::serve(&config);
    let acme = account_auth(&server, "acme");
    let ua = Ua::new();
    let caller = ua
        .call_with(
            server.udp,
            "601",
            &[Codec::PCMU],
            true,
            &[("X-Enqueue", "support")],
        )
        .unwrap_or_else(|e| panic!("calling the 0.1 guest: {e}\n{}", server.output()));
    caller.start_silence();
    assert!(
        wait_until(WAIT, || members(&server, &acme).len() == 1),
        "{}",
        server.output()
    );
    let id = members(&server, &acme).remove(0);
    let agent = call(&ua, &server, &[("X-Dial-Queue", "support")]);
    assert!(wait_until(WAIT, || members(&server, &acme).is_empty()));
    agent.bye().unwrap();
    caller
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the 0.1 guest did not end its call: {e}"));
    let log = http::decision_log(&server, &acme, &id);
    assert!(
        log.contains(r#""QueueComplete":{"queue":"support","outcome":"Bridged""#),
        "{log}"
    );
}

#[test]
fn an_agent_takes_a_named_caller_wherever_it_waits() {
    let server = Server::serve(&Config::players());
    let acme = account_auth(&server, "acme");
    let ua = Ua::new();
    let enqueue = [("X-Enqueue", "support")];
    let _first = call(&ua, &server, &enqueue);
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 1));
    let second = call(&ua, &server, &enqueue);
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 2));
    let waiting = members(&server, &acme);
    let headers = [
        ("X-Dial-Queue", "support"),
        ("X-Queue-Call", waiting[1].as_str()),
    ];
    let agent = call(&ua, &server, &headers);
    assert!(wait_until(WAIT, || members(&server, &acme) == [waiting[0].clone()]));
    // The named caller hangs up: the agent's guest hears whom it took
    // (and then hangs up).
    second.bye().unwrap();
    agent
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the agent's guest did not end its call: {e}"));
    let answered = format!(
        r#""answered":{{"QueueMember":{{"queue":"support","call_id":"{}"}}}}"#,
        waiting[1]
    );
    let told = wait_until(WAIT, || {
        let calls = http::get(server.http, "/v1/calls", &acme).json();
        (calls["data"].as_array().unwrap().iter())
            .filter_map(|c| c["id"].as_str())
            .any(|id| http::decision_log(&server, &acme, id).contains(&answered))
    });
    assert!(told, "no agent log has {answered}");
    // Asking for a caller that does not wait there: no-answer at once.
    let gone = [("X-Dial-Queue", "support"), ("X-Queue-Call", "CA-nobody")];
    let late = call(&ua, &server, &gone);
    late.wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the agent's dial did not end: {e}"));
    assert_eq!(members(&server, &acme), [waiting[0].clone()]);
}

#[test]
fn a_queue_sized_by_rest_turns_away_the_caller_over_its_limit() {
    let server = Server::serve(&Config::players());
    let acme = account_auth(&server, "acme");
    let size = |body: Value| http::put(server.http, "/v1/queues/support", &acme, &body);
    let created = size(json!({"max_size": 1}));
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["max_size"], 1);
    let changed = size(json!({"max_size": 1}));
    assert_eq!(changed.status, 200);
    for bad in [json!({"max_size": 0}), json!({"max_size": 5001})] {
        let got = size(bad);
        assert_eq!(got.status, 400, "{}", got.text());
        assert!(
            got.text().contains("max_size must be 1 to 5000"),
            "{}",
            got.text()
        );
    }
    // The queue exists before anyone waits in it.
    assert_eq!(queue(&server, &acme).1["size"], 0);

    let ua = Ua::new();
    let enqueue = [("X-Enqueue", "support")];
    let _first = call(&ua, &server, &enqueue);
    assert!(wait_until(WAIT, || members(&server, &acme).len() == 1));
    let second = call(&ua, &server, &enqueue);
    second
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the full queue let a second caller wait: {e}"));
    let needle = r#""QueueComplete":{"queue":"support","outcome":"Full""#;
    let log = http::newest_log(&server, &acme, needle);
    assert!(log.contains(needle), "{log}");
    assert_eq!(members(&server, &acme).len(), 1);
}
