//! Conferences with real audio: test user agents (`common/ua.rs`) call
//! `switchyard serve` over 127.0.0.1 into the `player` guest, which puts
//! them in the conference their `X-Conference` header names.
//!
//! * Three callers on three media workers (the engine moves each into the
//!   conference's worker) each send their own tone: each hears the other
//!   two and not its own, within a few dB.
//! * The REST API lists the conference with its participants; another
//!   account sees none of it. Muting one over REST takes its tone out of
//!   what the others hear; kicking one ends its call with
//!   `conference-complete` (kicked) in its decision log; ending the
//!   conference lets everyone out (`ended`), and the mixed recording is
//!   stored under the conference's sid.
//! * A participant joining with `wait` hears the wait music, not the
//!   others, until one who starts the conference enters; an end-on-exit
//!   participant leaving ends it for everyone.
//! * A coach is heard by its target only; a held participant hears the
//!   hold music and leaves the mix; a full conference turns a caller
//!   away; another account's conference of the same name is another
//!   conference.

#[path = "common/far.rs"]
mod far;
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
use switchyard::media::tone::{goertzel, sine};
use switchyard::sip::sdp::Codec;
use ua::{Call, Ua};

const WAIT: Duration = Duration::from_secs(20);
/// Each caller's tone.
const TONES: [f64; 3] = [500.0, 1_100.0, 1_700.0];

fn join(ua: &Ua, server: &Server, number: &str, headers: &[(&str, &str)]) -> Call {
    let call = ua
        .call_with(server.udp, number, &[Codec::PCMU], true, headers)
        .unwrap_or_else(|e| panic!("calling {number}: {e}\n{}", server.output()));
    call.start_silence();
    call
}

/// Whether the runtime's music (a 660 + 880 Hz chime every four seconds)
/// is in the last four seconds `call` received.
fn chimed(call: &Call) -> bool {
    let audio = call.audio();
    let tail = &audio[audio.len().saturating_sub(32_000)..];
    tail.chunks(2_000).any(|w| goertzel(w, 660.0) > 0.001)
}

/// The conference named `name` as the REST API shows it to `auth`.
fn conference(server: &Server, auth: &Auth, name: &str) -> Value {
    let got = http::get(server.http, &format!("/v1/conferences/{name}"), auth);
    assert_eq!(got.status, 200, "{}", got.text());
    got.json()
}

fn participants(c: &Value) -> Vec<String> {
    let mut calls: Vec<String> = (c["participants"].as_array().unwrap().iter())
        .map(|p| p["call_id"].as_str().unwrap().to_owned())
        .collect();
    calls.sort();
    calls
}

/// Sends a tone on each call, for as long as the test listens.
fn talk(calls: &[&Call], secs: u32) {
    for (call, hz) in calls.iter().zip(TONES) {
        call.stop_silence();
        call.send_audio(&sine(hz, secs * 1000, 0.25));
    }
}

#[test]
fn three_callers_hear_each_other_and_the_rest_api_mutes_kicks_and_ends() {
    let server = Server::serve(&Config::players());
    let (acme, globex) = (
        account_auth(&server, "acme"),
        account_auth(&server, "globex"),
    );
    let ua = Ua::new();
    let headers = [("X-Conference", "standup"), ("X-Record", "yes")];
    let mut ids = Vec::new();
    let calls: Vec<Call> = (0..3)
        .map(|_| join_as(&ua, &server, &acme, &headers, &mut ids).0)
        .collect();
    let live = wait_until(WAIT, || {
        let got = http::get(server.http, "/v1/conferences/standup", &acme);
        got.status == 200 && got.json()["participants"].as_array().unwrap().len() == 3
    });
    assert!(live, "three participants\n{}", server.output());
    let c = conference(&server, &acme, "standup");
    assert_eq!(c["status"], "in-progress");
    let sid = c["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("CF"), "{sid}");
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(participants(&c), expected);

    // Another account: nothing, by name or sid.
    for path in [
        "/v1/conferences/standup".to_string(),
        format!("/v1/conferences/{sid}"),
    ] {
        assert_eq!(http::get(server.http, &path, &globex).status, 404, "{path}");
    }
    let theirs = http::get(server.http, "/v1/conferences", &globex).json();
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    let mute = json!({"muted": true});
    let path = format!("/v1/conferences/{sid}/participants/{}", ids[1]);
    assert_eq!(http::post(server.http, &path, &globex, &mute).status, 404);

    // Everyone hears the other two and not themselves.
    let c: Vec<&Call> = calls.iter().collect();
    talk(&c, 12);
    thread::sleep(Duration::from_millis(1_500));
    for (i, call) in calls.iter().enumerate() {
        for (j, hz) in TONES.iter().enumerate() {
            let power = call.recent(*hz, 1_000);
            if i == j {
                assert!(power < 0.001, "caller {i} hears itself: {power}");
            } else {
                assert!(power > 0.01, "caller {i} does not hear caller {j}: {power}");
            }
        }
    }
    let (a, b) = (
        calls[0].recent(TONES[1], 1_000),
        calls[0].recent(TONES[2], 1_000),
    );
    let db = 10.0 * (a / b).log10();
    assert!(
        db.abs() < 3.0,
        "two callers at the same level differ by {db:.1} dB"
    );

    // Muted over REST: caller 1 is no longer heard.
    let got = http::post(server.http, &path, &acme, &mute);
    assert_eq!(got.status, 202, "{}", got.text());
    let muted = wait_until(WAIT, || calls[0].recent(TONES[1], 500) < 0.001);
    assert!(muted, "caller 1 is still heard after mute");
    assert!(calls[0].recent(TONES[2], 500) > 0.01, "caller 2 still is");
    let shown = conference(&server, &acme, "standup");
    let one = shown["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["call_id"] == ids[1].as_str());
    assert_eq!(one.unwrap()["muted"], true, "{shown}");

    // Kicked: the guest hears conference-complete (kicked) and hangs up.
    let kick = json!({"kick": true});
    let path = format!("/v1/conferences/{sid}/participants/{}", ids[2]);
    assert_eq!(http::post(server.http, &path, &acme, &kick).status, 202);
    calls[2]
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the kicked caller got no BYE: {e}\n{}", server.output()));
    let log = http::decision_log(&server, &acme, &ids[2]);
    assert!(
        log.contains(r#""ConferenceComplete":{"name":"standup","ended_by":"Kicked""#),
        "{log}"
    );

    // Ended: everyone left is let out.
    let path = format!("/v1/conferences/{sid}");
    let end = json!({"status": "completed"});
    assert_eq!(http::post(server.http, &path, &acme, &end).status, 202);
    for call in &calls[..2] {
        call.wait_bye(WAIT)
            .unwrap_or_else(|e| panic!("no BYE after the end: {e}\n{}", server.output()));
    }
    let log = http::decision_log(&server, &acme, &ids[0]);
    assert!(
        log.contains(r#""ConferenceComplete":{"name":"standup","ended_by":"Ended""#),
        "{log}"
    );

    // Completed, with its recording (source conference) under its sid.
    let done = wait_until(WAIT, || {
        let c = conference(&server, &acme, &sid);
        c["status"] == "completed" && c["recording_id"].is_string()
    });
    assert!(done, "{}", conference(&server, &acme, &sid));
    let c = conference(&server, &acme, &sid);
    assert_eq!(c["ended_by"], "ended");
    let recording = c["recording_id"].as_str().unwrap();
    let got = http::get(server.http, &format!("/v1/recordings/{recording}"), &acme);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["source"], "conference");
    assert_eq!(got.json()["call_id"], sid.as_str());
    let audio = http::get(
        server.http,
        &format!("/v1/recordings/{recording}/audio"),
        &acme,
    );
    let mix = switchyard::media::audio::decode_wav(&audio.body).unwrap();
    // All three talked together for a while (then one was muted).
    for hz in TONES {
        let peak = (mix.chunks(4_000))
            .map(|w| goertzel(w, hz))
            .fold(0.0, f64::max);
        assert!(peak > 0.01, "{hz} Hz is in the recording: {peak}");
    }
    let listed = http::get(server.http, "/v1/conferences?status=completed", &acme).json();
    assert_eq!(listed["data"][0]["sid"], sid.as_str(), "{listed}");
}

#[test]
fn a_waiting_caller_hears_music_until_the_moderator_and_leaves_with_them() {
    let server = Server::serve(&Config::players());
    let acme = account_auth(&server, "acme");
    let ua = Ua::new();
    let waiting = join(
        &ua,
        &server,
        "600",
        &[
            ("X-Conference", "class"),
            ("X-Conference-Options", "wait,no-beep"),
        ],
    );
    waiting.stop_silence();
    waiting.send_audio(&sine(TONES[0], 20_000, 0.25));
    let c = {
        let mut c = Value::Null;
        let open = wait_until(WAIT, || {
            let got = http::get(server.http, "/v1/conferences/class", &acme);
            c = got.json();
            got.status == 200
        });
        assert!(open, "{}", server.output());
        c
    };
    assert_eq!(c["status"], "init", "{c}");
    // The runtime's wait music: a 660 + 880 Hz chime every four seconds.
    let music = wait_until(WAIT, || chimed(&waiting));
    assert!(music, "no wait music\n{}", server.output());

    let moderator = join(
        &ua,
        &server,
        "600",
        &[
            ("X-Conference", "class"),
            ("X-Conference-Options", "end-on-exit,no-beep"),
        ],
    );
    moderator.stop_silence();
    moderator.send_audio(&sine(TONES[1], 20_000, 0.25));
    let started = wait_until(WAIT, || waiting.recent(TONES[1], 500) > 0.01);
    assert!(started, "the waiting caller never heard the moderator");
    assert!(moderator.recent(TONES[0], 500) > 0.01, "nor they it");
    assert_eq!(conference(&server, &acme, "class")["status"], "in-progress");

    moderator.bye().unwrap();
    waiting
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("end-on-exit did not end it: {e}\n{}", server.output()));
    let sid = c["sid"].as_str().unwrap();
    let ended = wait_until(WAIT, || {
        conference(&server, &acme, sid)["status"] == "completed"
    });
    assert!(ended);
    assert_eq!(conference(&server, &acme, sid)["ended_by"], "end-on-exit");

    // The history outlives the process: restarted on the same storage,
    // the runtime still shows the ended conference (and lists it).
    let other = account_auth(&server, "globex");
    let mut server = server;
    let kept = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    drop(server);
    let again = Server::serve(&Config::players().storage(&kept.path().join("data")));
    let c = conference(&again, &acme, sid);
    assert_eq!(c["status"], "completed", "{c}");
    assert_eq!(c["ended_by"], "end-on-exit", "{c}");
    assert_eq!(c["name"], "class", "{c}");
    let listed = http::get(again.http, "/v1/conferences", &acme).json();
    assert_eq!(listed["data"][0]["sid"], sid, "{listed}");
    let hidden = http::get(again.http, &format!("/v1/conferences/{sid}"), &other);
    assert_eq!(hidden.status, 404, "another account's history");
}

/// Calls into conference `name` and waits until it shows a participant
/// not in `seen`: the runtime's id of this call (`GET /v1/calls` lists
/// finished calls only).
fn join_as(
    ua: &Ua,
    server: &Server,
    auth: &Auth,
    headers: &[(&str, &str)],
    seen: &mut Vec<String>,
) -> (Call, String) {
    join_number(ua, server, "600", auth, headers, seen)
}

/// [`join_as`] through `number`.
fn join_number(
    ua: &Ua,
    server: &Server,
    number: &str,
    auth: &Auth,
    headers: &[(&str, &str)],
    seen: &mut Vec<String>,
) -> (Call, String) {
    let call = join(ua, server, number, headers);
    let name = headers[0].1;
    let mut id = None;
    let found = wait_until(WAIT, || {
        let got = http::get(server.http, &format!("/v1/conferences/{name}"), auth);
        id = (got.status == 200)
            .then(|| participants(&got.json()))
            .and_then(|all| all.into_iter().find(|p| !seen.contains(p)));
        id.is_some()
    });
    assert!(
        found,
        "call {} never joined\n{}",
        call.call_id(),
        server.output()
    );
    let id = id.unwrap();
    seen.push(id.clone());
    (call, id)
}

#[test]
fn a_coach_whispers_a_held_caller_hears_music_a_full_room_refuses_and_tenants_never_share() {
    let server = Server::serve(&Config::players());
    let (acme, globex) = (
        account_auth(&server, "acme"),
        account_auth(&server, "globex"),
    );
    let ua = Ua::new();
    let headers = [
        ("X-Conference", "room"),
        ("X-Conference-Options", "no-beep,max=3"),
    ];
    let mut ids = Vec::new();
    let calls: Vec<Call> = (0..3)
        .map(|_| join_as(&ua, &server, &acme, &headers, &mut ids).0)
        .collect();
    // Globex's "room" is its own conference: acme's callers never hear it.
    let mut theirs = Vec::new();
    let (stranger, _) = join_number(&ua, &server, "700", &globex, &headers, &mut theirs);
    let (ours, other) = (
        conference(&server, &acme, "room"),
        conference(&server, &globex, "room"),
    );
    assert_ne!(ours["sid"], other["sid"]);
    assert_eq!(participants(&other).len(), 1, "{other}");
    // Full: a fourth acme caller is turned away (the guest then hangs up).
    let fourth = join(&ua, &server, "600", &headers);
    fourth
        .wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the full conference let a fourth in: {e}"));
    assert_eq!(participants(&conference(&server, &acme, "room")).len(), 3);
    // Its guest heard why (`full`, since WIT 0.2.0): the newest call.
    let needle = r#""ConferenceComplete":{"name":"room","ended_by":"Full""#;
    let log = http::newest_log(&server, &acme, needle);
    assert!(log.contains(needle), "{log}");

    let all: Vec<&Call> = calls.iter().collect();
    talk(&all, 15);
    stranger.stop_silence();
    stranger.send_audio(&sine(2_300.0, 15_000, 0.25));
    let heard = wait_until(WAIT, || calls[0].recent(TONES[2], 500) > 0.01);
    assert!(heard, "the conference mixes\n{}", server.output());
    assert!(
        calls[0].recent(2_300.0, 1_000) < 0.001,
        "globex's caller is not in it"
    );

    // Caller 2 coaches caller 0: only caller 0 hears it.
    let path = |i: usize| format!("/v1/conferences/room/participants/{}", ids[i]);
    let coach = json!({"coach": ids[0]});
    assert_eq!(http::post(server.http, &path(2), &acme, &coach).status, 202);
    let whispering = wait_until(WAIT, || calls[1].recent(TONES[2], 500) < 0.001);
    assert!(whispering, "caller 1 still hears the coach");
    assert!(
        calls[0].recent(TONES[2], 500) > 0.01,
        "the target hears the coach"
    );
    assert!(
        calls[2].recent(TONES[0], 500) > 0.01,
        "the coach hears everyone"
    );

    // Caller 1 on hold: hears the chime, and nobody hears it.
    let hold = json!({"hold": true});
    assert_eq!(http::post(server.http, &path(1), &acme, &hold).status, 202);
    let held = wait_until(WAIT, || calls[0].recent(TONES[1], 500) < 0.001);
    assert!(held, "the held caller is still heard");
    let music = wait_until(WAIT, || chimed(&calls[1]));
    assert!(music, "no hold music");
    assert!(
        calls[1].recent(TONES[0], 500) < 0.001,
        "a held caller hears nobody"
    );
    let shown = conference(&server, &acme, "room");
    let held_one = (shown["participants"].as_array().unwrap().iter())
        .find(|p| p["call_id"] == ids[1].as_str())
        .cloned();
    assert_eq!(held_one.unwrap()["held"], true, "{shown}");
    assert_eq!(
        http::post(server.http, &path(1), &acme, &json!({"kick": false})).status,
        400
    );
}

#[test]
fn a_call_placed_over_rest_joins_the_conference_and_ends_with_it() {
    let far = far::FarEnd::start(far::Answer::Tone {
        hz: 2_000.0,
        hangup_after: None,
    });
    // The far end is on loopback, which tenants may not call by default.
    let server = Server::serve(&Config::players().sip("private_destinations = true"));
    let acme = account_auth(&server, "acme");
    let ua = Ua::new();
    let headers = [
        ("X-Conference", "standup"),
        ("X-Conference-Options", "no-beep"),
    ];
    let mut ids = Vec::new();
    let (caller, _) = join_as(&ua, &server, &acme, &headers, &mut ids);
    let body = json!({
        "to": format!("sip:bob@{}", far.sip),
        "conference": {"name": "standup", "beep": false},
    });
    let got = http::post(server.http, "/v1/calls", &acme, &body);
    assert_eq!(got.status, 201, "{}", got.text());
    let placed = got.json()["id"].as_str().unwrap().to_owned();
    let joined = wait_until(WAIT, || {
        let c = conference(&server, &acme, "standup");
        participants(&c).contains(&placed)
    });
    assert!(joined, "{}", server.output());
    let heard = wait_until(WAIT, || caller.recent(2_000.0, 500) > 0.01);
    assert!(
        heard,
        "the caller hears the far end's tone\n{}",
        server.output()
    );

    // Ending the conference ends the placed call too (no handler decides).
    let sid = conference(&server, &acme, "standup")["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = json!({"status": "completed"});
    assert_eq!(
        http::post(server.http, &format!("/v1/conferences/{sid}"), &acme, &end).status,
        202
    );
    far.wait("a BYE for the placed call", |log| {
        log.requests.iter().any(|(method, _)| method == "BYE")
    });
    let log = http::decision_log(&server, &acme, &placed);
    assert!(log.contains(r#""verb":{"Conference""#), "{log}");
    // A plan a real call could not run is refused before dialling.
    let bad = json!({"to": format!("sip:bob@{}", far.sip), "conference": {"name": " "}});
    let got = http::post(server.http, "/v1/calls", &acme, &bad);
    assert_eq!(got.status, 400, "{}", got.text());
    assert!(
        got.text().contains("empty conference name"),
        "{}",
        got.text()
    );
    let neither = json!({"to": format!("sip:bob@{}", far.sip)});
    assert_eq!(
        http::post(server.http, "/v1/calls", &acme, &neither).status,
        400
    );
}
