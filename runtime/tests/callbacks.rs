//! Status callbacks against a real `switchyard serve` and real SIP calls
//! (SIPp): a receiver on 127.0.0.1 gets initiated/answered/completed for
//! each call, checks every signature with the key read over the REST API
//! (before and after a rotation), gets a retry after answering 503, and a
//! receiver that never answers does not hold a call up.
//!
//! Calls go to guest_hold (answered at once, no 18x: the ringing status of
//! a dial is covered by the endpoint's own tests). Without `sipp` on PATH
//! the tests fail, naming the package to install. A conference's events
//! (start, join, mute, leave, end) reach the status callback of each
//! participant's number, signed the same way; there the callers are the
//! test UA (`common/ua.rs`).

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::{ADMIN_KEY, Auth, get, new_key, post};
use serde_json::json;
use sha2::Sha256;
use sip_common::{Config, Server, Sipp, require_sipp};

const HOLD: &str = "+15550100";

/// What the receiver does with its n-th request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Read the request, never answer, keep the connection open.
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    /// Path and query, as sent.
    target: String,
    content_type: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Hit {
    fn fields(&self) -> HashMap<String, String> {
        form_decode(&self.body)
    }

    fn field(&self, name: &str) -> String {
        self.fields().remove(name).unwrap_or_default()
    }
}

/// A plain HTTP/1.1 receiver on 127.0.0.1: one request per connection,
/// answered as the script says (its last entry for the rest).
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let log = Arc::clone(&hits);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (log, script) = (Arc::clone(&log), script.clone());
                thread::spawn(move || serve(stream, &log, &script));
            }
        });
        Receiver { addr, hits }
    }

    /// The callback URL (a query too: the signature covers it).
    fn url(&self) -> String {
        format!("http://{}/hooks/status?tenant=acme", self.addr)
    }

    /// Waits (at most `timeout`) for `n` requests; all of them so far.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits = self.hits.lock().unwrap().clone();
            if hits.len() >= n || Instant::now() > deadline {
                return hits;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<Hit>>, script: &[Reply]) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let reply = {
        let mut log = log.lock().unwrap();
        log.push(Hit {
            at: Instant::now(),
            target,
            content_type: headers.get("content-type").cloned(),
            signature: headers.get("x-switchyard-signature").cloned(),
            body,
        });
        script[(log.len() - 1).min(script.len() - 1)]
    };
    match reply {
        Reply::Status(status) => {
            let answer =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
        }
        Reply::Hang => thread::sleep(Duration::from_secs(120)),
    }
}

/// application/x-www-form-urlencoded, decoded.
fn form_decode(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, v)| (decode(n), decode(v)))
        .collect()
}

/// What a receiver computes: base64(HMAC-SHA256(key, URL + body)), with
/// an encoder of its own.
fn expected_signature(key: &str, url: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    sip_common::base64(&digest)
}

fn verified(hit: &Hit, key: &str, url: &str) -> bool {
    hit.signature.as_deref() == Some(expected_signature(key, url, &hit.body).as_str())
}

/// A server whose tenant `acme` has `HOLD` answered by guest_hold, with
/// its status callback at `url`; private callback targets allowed (the
/// receiver is on 127.0.0.1).
fn server(url: &str) -> Server {
    Server::serve(
        &Config::new()
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .api("callbacks_private = true")
            .tenant("acme", &[])
            .number(HOLD, "hold")
            // Lands in the [[tenant.number]] table just opened.
            .tenant_key(&format!("status_callback = \"{url}\"")),
    )
}

/// The signing key of `acme` as `auth` reads it.
fn signing_key(server: &Server, auth: &Auth) -> String {
    let got = get(server.http, "/v1/accounts/acme", auth);
    assert_eq!(got.status, 200, "{}", got.text());
    let key = got.json()["signing_key"].as_str().unwrap().to_owned();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    key
}

/// One SIPp call to `HOLD` that hangs up after `ms`; it must succeed.
fn call(server: &Server, ms: u64) -> Duration {
    let started = Instant::now();
    Sipp::new(&format!("-sn uac -s {HOLD} -m 1 -d {ms}"))
        .to(server.udp)
        .timeout(Duration::from_secs(30))
        .run()
        .assert_calls(1, server);
    started.elapsed()
}

/// The Prometheus line of status callbacks with `result`.
fn metric(server: &Server, result: &str) -> String {
    let text = get(server.http, "/metrics", &Auth::none()).text();
    let prefix = format!("switchyard_status_callbacks_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

/// Checks one call's hits: the statuses in order with sequence numbers
/// 0.., one call id, the form fields, each signature under `key`.
fn check_call(hits: &[Hit], key: &str, url: &str) {
    let statuses: Vec<String> = hits.iter().map(|h| h.field("CallStatus")).collect();
    assert_eq!(statuses, ["initiated", "answered", "completed"], "{hits:?}");
    let call_id = hits[0].field("CallSid");
    assert!(call_id.starts_with("CA"), "{call_id}");
    for (n, hit) in hits.iter().enumerate() {
        assert!(verified(hit, key, url), "bad signature on {hit:?}");
        assert_eq!(
            hit.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(hit.target, "/hooks/status?tenant=acme");
        let fields = hit.fields();
        assert_eq!(fields["CallSid"], call_id);
        assert_eq!(fields["AccountSid"], "acme");
        assert_eq!(fields["To"], HOLD);
        assert!(fields["From"].starts_with("sip:"), "{fields:?}");
        assert_eq!(fields["SequenceNumber"], n.to_string());
        assert!(fields["Timestamp"].parse::<u64>().unwrap() > 1_600_000_000_000);
    }
    let end = hits[2].fields();
    assert_eq!(end["Outcome"], "completed");
    assert_eq!(end["SipResponseCode"], "200");
    assert!(end["Duration"].parse::<u64>().is_ok(), "{end:?}");
}

#[test]
fn a_real_call_reports_signed_statuses_verified_with_the_key_from_the_api() {
    require_sipp();
    let receiver = Receiver::start(vec![Reply::Status(200)]);
    let url = receiver.url();
    let mut server = server(&url);

    // The operator and the account itself read the same key; another
    // account cannot see it.
    let key = signing_key(&server, &Auth::admin());
    let (_, acme) = new_key(server.http, "acme");
    assert_eq!(signing_key(&server, &acme), key);
    let got = post(
        server.http,
        "/v1/accounts",
        &Auth::admin(),
        &json!({"name": "Globex"}),
    );
    let globex = got.json()["id"].as_str().unwrap().to_owned();
    let (_, globex_auth) = new_key(server.http, &globex);
    assert_eq!(
        get(server.http, "/v1/accounts/acme", &globex_auth).status,
        404
    );
    let listed = get(server.http, "/v1/accounts", &Auth::admin()).json();
    assert!(
        listed["data"][0].get("signing_key").is_none(),
        "lists leave the key out: {listed}"
    );

    call(&server, 300);
    let hits = receiver.wait_for(3, Duration::from_secs(10));
    check_call(&hits, &key, &url);

    // Rotation by the account: the next call is signed with the new key only.
    let got = post(
        server.http,
        "/v1/accounts/acme/signing_key",
        &acme,
        &json!({}),
    );
    assert_eq!(got.status, 200, "{}", got.text());
    let rotated = got.json()["signing_key"].as_str().unwrap().to_owned();
    assert_ne!(rotated, key);
    assert_eq!(signing_key(&server, &Auth::admin()), rotated);
    assert_eq!(
        post(
            server.http,
            "/v1/accounts/acme/signing_key",
            &globex_auth,
            &json!({})
        )
        .status,
        404
    );
    call(&server, 300);
    let hits = receiver.wait_for(6, Duration::from_secs(10));
    check_call(&hits[3..], &rotated, &url);
    assert!(
        !verified(&hits[3], &key, &url),
        "the old key still verifies"
    );
    assert_ne!(hits[0].field("CallSid"), hits[3].field("CallSid"));

    assert_eq!(metric(&server, "delivered"), "6");
    assert_eq!(metric(&server, "failed"), "0");
    assert_eq!(metric(&server, "dropped"), "0");
    server.assert_alive();
}

#[test]
fn a_receiver_answering_503_gets_the_event_again_after_a_back_off() {
    require_sipp();
    let receiver = Receiver::start(vec![Reply::Status(503), Reply::Status(204)]);
    let url = receiver.url();
    let mut server = server(&url);
    let key = signing_key(&server, &Auth::admin());
    call(&server, 300);
    let hits = receiver.wait_for(4, Duration::from_secs(15));
    let statuses: Vec<String> = hits.iter().map(|h| h.field("CallStatus")).collect();
    assert_eq!(
        statuses,
        ["initiated", "initiated", "answered", "completed"],
        "{hits:?}"
    );
    // The same event again, signed again, after 1 s × jitter [½, 1].
    assert_eq!(hits[0].body, hits[1].body);
    assert!(verified(&hits[1], &key, &url));
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    check_call(&hits[1..], &key, &url);
    assert_eq!(metric(&server, "retried"), "1");
    assert_eq!(metric(&server, "delivered"), "3");
    server.assert_alive();
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_calls_up() {
    require_sipp();
    let receiver = Receiver::start(vec![Reply::Hang]);
    let mut server = server(&receiver.url());
    // Each callback attempt may take 5 s before it times out; the calls
    // take their 300 ms regardless.
    for _ in 0..3 {
        let took = call(&server, 300);
        assert!(took < Duration::from_secs(3), "a call took {took:?}");
    }
    let hits = receiver.wait_for(3, Duration::from_secs(5));
    // Each call's first event hangs (retried for tens of seconds) and
    // holds its call's later ones back; calls do not wait for each other.
    assert!(
        hits.iter().all(|h| h.field("CallStatus") == "initiated"),
        "{hits:?}"
    );
    let calls: std::collections::HashSet<String> =
        hits.iter().map(|h| h.field("CallSid")).collect();
    assert_eq!(calls.len(), 3, "{hits:?}");
    assert_eq!(metric(&server, "delivered"), "0");
    server.assert_alive();
}

#[test]
fn a_conference_reports_start_join_mute_leave_and_end_signed() {
    let receiver = Receiver::start(vec![Reply::Status(200)]);
    let url = receiver.url();
    let server = Server::serve(
        &Config::new()
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .api("callbacks_private = true")
            .tenant("acme", &[])
            .number("600", "player")
            .tenant_key(&format!("status_callback = \"{url}\"")),
    );
    let key = signing_key(&server, &Auth::admin());
    let (_, acme) = new_key(server.http, "acme");
    let phone = ua::Ua::new();
    let headers = [
        ("X-Conference", "standup"),
        ("X-Conference-Options", "no-beep"),
    ];
    let codecs = [switchyard::sip::sdp::Codec::PCMU];
    let calls: Vec<ua::Call> = (0..2)
        .map(|_| {
            phone
                .call_with(server.udp, "600", &codecs, true, &headers)
                .unwrap()
        })
        .collect();
    let conference_events = |hits: &[Hit]| -> Vec<HashMap<String, String>> {
        (hits.iter())
            .map(Hit::fields)
            .filter(|f| f.contains_key("ConferenceSid"))
            .collect()
    };
    let joined = sip_common::wait_until(Duration::from_secs(20), || {
        let hits = receiver.hits.lock().unwrap().clone();
        conference_events(&hits)
            .iter()
            .filter(|f| f["StatusCallbackEvent"] == "participant-join")
            .count()
            == 2
    });
    assert!(joined, "{}", server.output());
    let conference = get(server.http, "/v1/conferences/standup", &acme).json();
    let sid = conference["sid"].as_str().unwrap().to_owned();
    let muted = conference["participants"][0]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/conferences/{sid}/participants/{muted}");
    assert_eq!(
        post(server.http, &path, &acme, &json!({"muted": true})).status,
        202
    );
    let end = post(
        server.http,
        &format!("/v1/conferences/{sid}"),
        &acme,
        &json!({"status": "completed"}),
    );
    assert_eq!(end.status, 202);
    for call in &calls {
        call.wait_bye(Duration::from_secs(20)).unwrap();
    }
    let ended = sip_common::wait_until(Duration::from_secs(20), || {
        let hits = receiver.hits.lock().unwrap().clone();
        conference_events(&hits)
            .iter()
            .any(|f| f["StatusCallbackEvent"] == "conference-end")
    });
    assert!(ended, "{}", server.output());
    let hits: Vec<Hit> = receiver.hits.lock().unwrap().clone();
    let ours: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.body.starts_with(b"ConferenceSid"))
        .collect();
    assert!(
        ours.iter().all(|h| verified(h, &key, &url)),
        "every event is signed"
    );
    let events = conference_events(&hits);
    let names: Vec<&str> = events
        .iter()
        .map(|f| f["StatusCallbackEvent"].as_str())
        .collect();
    for expected in [
        "participant-join",
        "conference-start",
        "participant-mute",
        "participant-leave",
        "conference-end",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let mute = events
        .iter()
        .find(|f| f["StatusCallbackEvent"] == "participant-mute")
        .unwrap();
    assert_eq!(
        (mute["CallSid"].as_str(), mute["Muted"].as_str()),
        (muted.as_str(), "true")
    );
    let last = events
        .iter()
        .find(|f| f["StatusCallbackEvent"] == "conference-end")
        .unwrap();
    assert_eq!(last["ReasonConferenceEnded"], "conference-ended-via-api");
    assert_eq!(
        (
            last["ConferenceSid"].as_str(),
            last["FriendlyName"].as_str()
        ),
        (sid.as_str(), "standup")
    );
    let mut sequence: Vec<u32> = events
        .iter()
        .map(|f| f["SequenceNumber"].parse().unwrap())
        .collect();
    sequence.sort();
    assert_eq!(
        sequence,
        (0..events.len() as u32).collect::<Vec<_>>(),
        "numbered without gaps"
    );
}
