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
