//! Outbound calls over REST against a real `switchyard serve`: `POST
//! /v1/calls` rings a fake far end, the handler runs once it answers, the
//! call is recorded with its decision log; a number through a trunk that
//! challenges; a busy far end, the account's call limit (429 +
//! Retry-After), request errors and tenant isolation.

#[path = "common/far.rs"]
mod far;
#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use far::{Answer, FarEnd, TRUNK_PASSWORD, TRUNK_USER};
use http::{ADMIN_KEY, Auth, account, get, new_key, post, put, upload};
use serde_json::{Value, json};
use sip_common::{Config, Server};

/// A server whose REST calls may reach the far ends on loopback.
fn server(config: Config) -> Server {
    strict_server(config.sip("private_destinations = true"))
}

/// A server with the default outbound policy: public addresses and trunks.
fn strict_server(config: Config) -> Server {
    Server::serve(
        &config
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .api("max_component_kb = 2048")
            .media(&sip_common::media_ports()),
    )
}

/// Uploads guest `guest_name` as component `name` and binds it to `number`.
fn deploy(addr: SocketAddr, auth: &Auth, name: &str, guest_name: &str, number: &str) {
    let got = upload(addr, auth, name, guest_name);
    assert_eq!(got.status, 201, "{}", got.text());
    let got = put(
        addr,
        &format!("/v1/numbers/{number}"),
        auth,
        &json!({ "component": name }),
    );
    assert_eq!(got.status, 201, "{}", got.text());
}

/// `POST /v1/calls` to the far end; the new call's id.
fn place(addr: SocketAddr, auth: &Auth, far: &FarEnd, handler: &str) -> String {
    place_to(addr, auth, &format!("sip:bob@{}", far.sip), handler)
}

/// `POST /v1/calls` to `to`; the new call's id.
fn place_to(addr: SocketAddr, auth: &Auth, to: &str, handler: &str) -> String {
    let got = post(
        addr,
        "/v1/calls",
        auth,
        &json!({ "to": to, "handler": handler, "timeout_secs": 10 }),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    let body = got.json();
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("CA"), "{id}");
    id
}

/// The call's record once it has one (it ended), within 10 s.
fn finished(server: &Server, auth: &Auth, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get(server.http, &format!("/v1/calls/{id}"), auth);
        if got.status == 200 && got.json()["ended_ms"].is_u64() {
            return got.json();
        }
        assert!(
            Instant::now() < deadline,
            "call {id} did not end: {} {}\n{}",
            got.status,
            got.text(),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_outbound_call_runs_its_handler_once_answered_and_is_recorded_with_its_log() {
    let server = server(Config::new());
    let addr = server.http;
    let (_, auth) = account(addr, "Globex");
    let (_, other) = account(addr, "Initech");
    // `bye` answers, pauses a second and hangs up.
    deploy(addr, &auth, "main", "bye", "2000");
    let far = FarEnd::start(Answer::Tone {
        hz: 440.0,
        hangup_after: None,
    });

    let id = place(addr, &auth, &far, "main");
    far.wait("the INVITE, answered and ACKed", |log| {
        log.invites == 1 && log.acks == 1
    });
    let live = get(addr, &format!("/v1/calls/{id}"), &auth).json();
    assert_eq!(live["status"], "in-progress", "{live}");
    assert_eq!(live["to"], format!("sip:bob@{}", far.sip));
    // The handler's plan runs on the answered leg: its hangup is our BYE.
    far.wait("our BYE after the handler's pause", |log| {
        log.requests.iter().any(|(method, _)| method == "BYE")
    });
    assert!(
        !far.log().rtp.is_empty(),
        "our stream sent RTP to the far end"
    );

    let call = finished(&server, &auth, &id);
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["sip_status"], 200);
    assert!(call["answered_ms"].is_u64(), "{call}");
    assert_eq!(call["handler"], "main");
    assert_eq!(
        call["handler_version"].as_str().map(str::len),
        Some(64),
        "the component's content hash: {call}"
    );
    let log = get(addr, &format!("/v1/calls/{id}/log"), &auth);
    assert_eq!(log.status, 200, "{}", log.text());
    let log = log.json();
    let entries = log.as_array().unwrap();
    let incoming = entries
        .iter()
        .find(|e| e["kind"] == "event" && e["event"]["Incoming"].is_object())
        .unwrap_or_else(|| panic!("no incoming event: {log}"));
    assert_eq!(
        incoming["event"]["Incoming"]["direction"], "Outbound",
        "{incoming}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "verb" && e.to_string().contains("Hangup")),
        "the plan's hangup is logged: {log}"
    );

    // Another account sees none of it.
    for path in [format!("/v1/calls/{id}"), format!("/v1/calls/{id}/log")] {
        let got = get(addr, &path, &other);
        assert_eq!(
            (got.status, got.code()),
            (404, "not_found".into()),
            "{path}"
        );
    }
    // Nor may it run this account's handler.
    let got = post(
        addr,
        "/v1/calls",
        &other,
        &json!({ "to": format!("sip:bob@{}", far.sip), "handler": "main" }),
    );
    assert_eq!(got.status, 400, "{}", got.text());
    assert_eq!(far.log().invites, 1);
}

#[test]
fn a_number_is_called_through_the_accounts_trunk_which_challenges_for_its_credentials() {
    let far = FarEnd::start(Answer::Challenge { hz: 1000.0 });
    let server = server(
        Config::new()
            .tenant("acme", &["acme.test"])
            .trunk("carrier", far.sip.port())
            .trunk_credentials(TRUNK_USER, TRUNK_PASSWORD),
    );
    let addr = server.http;
    let (_, auth) = new_key(addr, "acme");
    deploy(addr, &auth, "main", "bye", "2000");
    let id = place_to(addr, &auth, "+15550199", "main");
    far.wait(
        "a challenge, then the INVITE with credentials answered",
        |log| log.challenged == 1 && log.invites == 2 && log.acks >= 2,
    );
    let call = finished(&server, &auth, &id);
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["to"], "+15550199");

    assert_eq!(far.log().invites, 2);
}

#[test]
fn bad_requests_to_place_a_call_say_why() {
    let server = strict_server(Config::new());
    let addr = server.http;
    let (_, auth) = account(addr, "Globex");
    deploy(addr, &auth, "main", "bye", "2000");
    for (body, why) in [
        (
            json!({ "to": "sip:bob@127.0.0.1:9", "handler": "nope" }),
            "no handler named",
        ),
        (
            json!({ "to": "tel:+15550100", "handler": "main" }),
            "sip: URI",
        ),
        (
            json!({ "to": "+15550100", "handler": "main" }),
            "no trunk to call numbers",
        ),
        (
            json!({ "to": "sip:bob@example.com", "handler": "main" }),
            "DNS",
        ),
        (
            json!({ "to": "sip:bob@127.0.0.1:9", "handler": "main", "timeout_secs": 0 }),
            "timeout_secs",
        ),
        (
            json!({ "to": "sip:bob@127.0.0.1:9", "handler": "main", "status_callback": "ftp://x" }),
            "http(s)",
        ),
        (
            json!({ "to": "sip:bob@127.0.0.1:9", "handler": "main", "colour": "red" }),
            "unknown field",
        ),
        (json!({ "handler": "main" }), "missing field"),
        (
            json!({ "to": "sip:bob@127.0.0.1:9", "handler": "main" }),
            "private_destinations",
        ),
        (
            json!({ "to": "sip:bob@10.0.0.1", "handler": "main" }),
            "not a public address",
        ),
    ] {
        let got = post(addr, "/v1/calls", &auth, &body);
        assert_eq!(
            (got.status, got.code()),
            (400, "bad_request".into()),
            "{body}"
        );
        assert!(got.text().contains(why), "{body}: {}", got.text());
    }
    let got = post(
        addr,
        "/v1/calls",
        &Auth::none(),
        &json!({ "to": "sip:bob@127.0.0.1:9", "handler": "main" }),
    );
    assert_eq!(got.status, 401);
}

#[test]
fn a_busy_far_end_gives_a_busy_call_and_no_plan() {
    let server = server(Config::new());
    let addr = server.http;
    let (_, auth) = account(addr, "Globex");
    deploy(addr, &auth, "main", "bye", "2000");
    let far = FarEnd::start(Answer::Refuse(486));

    let id = place(addr, &auth, &far, "main");
    let call = finished(&server, &auth, &id);
    assert_eq!(
        (call["status"].as_str(), call["sip_status"].as_u64()),
        (Some("busy"), Some(486)),
        "{call}"
    );
    assert!(call["answered_ms"].is_null());
    assert_eq!(far.log().invites, 1);
    // No handler ran: the decision log is empty.
    let log = get(addr, &format!("/v1/calls/{id}/log"), &auth);
    assert_eq!((log.status, log.json()), (200, json!([])));
    let busy = get(addr, "/v1/calls?status=busy", &auth).json();
    assert_eq!(busy["data"][0]["id"], id.as_str(), "{busy}");
}

#[test]
fn at_the_accounts_call_limit_a_new_call_is_429_with_retry_after() {
    // A config tenant with a limit of one call; `hold` pauses a minute.
    let server = server(
        Config::new()
            .tenant("acme", &[])
            .tenant_key("max_calls = 1\nqueue = 5\nqueue_wait_ms = 5000")
            .number("1000", "hold"),
    );
    let addr = server.http;
    let (_, auth) = new_key(addr, "acme");
    let far = FarEnd::start(Answer::Tone {
        hz: 440.0,
        hangup_after: None,
    });

    let first = place(addr, &auth, &far, "guest_hold");
    // Outbound calls never wait in the admission queue.
    let to = format!("sip:bob@{}", far.sip);
    let body = json!({ "to": to, "handler": "guest_hold" });
    let got = post(addr, "/v1/calls", &auth, &body);
    assert_eq!(
        (got.status, got.code()),
        (429, "too_many_requests".into()),
        "{}",
        got.text()
    );
    assert!(got.head.contains("retry-after: 1"), "{}", got.head);

    // Hung up over REST, the call gives its place back.
    far.wait("the first call answered", |log| log.acks == 1);
    let got = post(
        addr,
        &format!("/v1/calls/{first}"),
        &auth,
        &json!({ "status": "completed" }),
    );
    assert_eq!(got.status, 202, "{}", got.text());
    far.wait("our BYE", |log| {
        log.requests.iter().any(|(method, _)| method == "BYE")
    });
    assert_eq!(finished(&server, &auth, &first)["status"], "completed");
    let again = place(addr, &auth, &far, "guest_hold");
    let got = post(
        addr,
        &format!("/v1/calls/{again}"),
        &auth,
        &json!({ "status": "completed" }),
    );
    assert_eq!(got.status, 202, "{}", got.text());
}
