//! Browser and app clients on the signalling WebSocket (`/v1/client`)
//! against a real `switchyard serve`: access tokens checked at register
//! and on every message, presence per identity across devices, heartbeat
//! expiry, bad frames.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use http::{ADMIN_KEY, Auth, account, client_token, get, new_key_secret, request, signed_token};
use serde_json::{Value, json};
use sip_common::{Config, Server};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Clients must speak every 3 s: 6 s of silence takes them offline.
fn server() -> Server {
    Server::serve(
        &Config::new()
            .api(&format!(
                "admin_key = \"{ADMIN_KEY}\"\nclient_heartbeat_secs = 3"
            ))
            .tenant("acme", &[])
            .number("700", "presence"),
    )
}

/// Calls number 700 (guest `presence`: 603 while client alice is
/// available, else 486) and returns the final status.
fn call_700(server: &Server, call_id: &str) -> u16 {
    let (_, response) = sip_common::invite_without_sdp(server, "700", call_id);
    response[8..11].parse().unwrap()
}

fn connect(addr: SocketAddr) -> Socket {
    open(
        format!("ws://{addr}/v1/client")
            .into_client_request()
            .unwrap(),
    )
}

/// The tenant's presence event stream, with its API credentials.
fn watch(addr: SocketAddr, auth: &Auth) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{addr}/v1/events/presence")
        .into_client_request()
        .unwrap();
    if let Some(header) = &auth.0 {
        request
            .headers_mut()
            .insert("authorization", header.parse().unwrap());
    }
    let mut socket = timed(tungstenite::connect(request)?.0);
    // The present identities, then the stream is live.
    while recv(&mut socket)["type"] != "watching" {}
    Ok(socket)
}

fn open(request: tungstenite::handshake::client::Request) -> Socket {
    let (socket, response) = tungstenite::connect(request).unwrap();
    assert_eq!(response.status(), 101);
    timed(socket)
}

fn timed(socket: Socket) -> Socket {
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    socket
}

fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::text(message.to_string())).unwrap();
}

/// The next text message, as JSON.
fn recv(socket: &mut Socket) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends `message` and returns the answer.
fn ask(socket: &mut Socket, message: Value) -> Value {
    send(socket, message);
    recv(socket)
}

/// Whether the server closes the connection (after any last messages).
fn closed(socket: &mut Socket) -> bool {
    loop {
        match socket.read() {
            Ok(Message::Close(_)) => continue,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return true;
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn presence(addr: SocketAddr, auth: &Auth, identity: &str) -> Value {
    let got = get(addr, &format!("/v1/presence/{identity}"), auth);
    assert_eq!(got.status, 200, "{}", got.text());
    got.json()
}

#[test]
fn two_devices_make_one_presence_and_silence_takes_them_offline() {
    let server = server();
    let addr = server.http;
    let (_, _, acme) = new_key_secret(addr, "acme");
    assert_eq!(presence(addr, &acme, "alice")["status"], "offline");
    let refused = watch(addr, &Auth::none()).unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let mut events = watch(addr, &acme).unwrap();

    let mut browser = connect(addr);
    let registered = ask(
        &mut browser,
        json!({"type": "register", "token": client_token(addr, &acme, "alice")}),
    );
    assert_eq!(registered["type"], "registered", "{registered}");
    assert_eq!(registered["identity"], "alice");
    assert_eq!(registered["heartbeat_secs"], 3);
    let seen = presence(addr, &acme, "alice");
    assert_eq!(
        (seen["status"].as_str(), seen["devices"].as_u64()),
        (Some("available"), Some(1))
    );
    // A guest's presence.lookup sees her too.
    assert_eq!(call_700(&server, "presence-1"), 603, "{}", server.output());

    let mut phone = connect(addr);
    let registered = ask(
        &mut phone,
        json!({"type": "register", "token": client_token(addr, &acme, "alice")}),
    );
    assert_eq!(registered["type"], "registered", "{registered}");
    assert_ne!(registered["device"], Value::Null);
    let said = ask(
        &mut phone,
        json!({"type": "presence", "status": "away", "text": "at lunch"}),
    );
    assert_eq!(said["type"], "presence", "{said}");
    assert_eq!(said["status"], "available", "the browser still is: {said}");
    assert_eq!(said["text"], "at lunch");
    let said = ask(&mut browser, json!({"type": "presence", "status": "away"}));
    assert_eq!(
        (said["status"].as_str(), said["devices"].as_u64()),
        (Some("away"), Some(2))
    );
    let listed = get(addr, "/v1/presence", &acme).json();
    assert_eq!(listed["data"][0]["identity"], "alice", "{listed}");
    assert_eq!(listed["data"][0]["status"], "away");
    // The tenant's stream saw each change of alice's presence, in order
    // (the phone's text came with no change of status).
    let seen: Vec<(Value, Value, Value)> = (0..4)
        .map(|_| recv(&mut events))
        .map(|e| (e["status"].clone(), e["devices"].clone(), e["text"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!("available"), json!(1), Value::Null),
            (json!("available"), json!(2), Value::Null),
            (json!("available"), json!(2), json!("at lunch")),
            (json!("away"), json!(2), json!("at lunch")),
        ]
    );
    // A watcher that comes later starts from the present.
    let request = format!("ws://{addr}/v1/events/presence").into_client_request();
    let mut request = request.unwrap();
    let basic = acme.0.as_ref().unwrap().parse().unwrap();
    request.headers_mut().insert("authorization", basic);
    let mut late = open(request);
    assert_eq!(recv(&mut late)["status"], "away");
    assert_eq!(recv(&mut late), json!({"type": "watching", "present": 1}));

    // Another account sees none of it.
    let (_, globex) = account(addr, "Globex");
    let mut theirs = watch(addr, &globex).unwrap();
    assert_eq!(presence(addr, &globex, "alice")["status"], "offline");
    assert_eq!(get(addr, "/v1/presence", &globex).json()["data"], json!([]));

    // Bad input gets an error and the session goes on.
    for (frame, code) in [
        (Message::text("{"), "bad_message"),
        (Message::text(r#"{"type":"dance"}"#), "bad_message"),
        (
            Message::text(r#"{"type":"presence","status":"offline"}"#),
            "bad_message",
        ),
        (Message::binary(vec![0u8, 1, 2]), "bad_message"),
        (
            Message::text(r#"{"type":"invite","sdp":"v=0"}"#),
            "bad_message",
        ),
        // Its token grants no outgoing calls.
        (
            Message::text(r#"{"type":"invite","call":"c1","to":"700","sdp":"v=0"}"#),
            "forbidden",
        ),
        (Message::text(r#"{"type":"hangup","call":"c9"}"#), "no_call"),
    ] {
        phone.send(frame).unwrap();
        let answer = recv(&mut phone);
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some(code)),
            "{answer}"
        );
    }
    assert_eq!(
        ask(&mut phone, json!({"type": "heartbeat"}))["type"],
        "heartbeat"
    );

    // One device leaves; the other falls silent and is taken offline.
    browser.close(None).unwrap();
    let one_left = sip_common::wait_until(Duration::from_secs(5), || {
        presence(addr, &acme, "alice")["devices"] == 1
    });
    assert!(one_left, "{}", presence(addr, &acme, "alice"));
    let timeout = recv(&mut phone);
    assert_eq!(timeout["code"], "timeout", "{timeout}");
    assert!(closed(&mut phone));
    assert_eq!(presence(addr, &acme, "alice")["status"], "offline");
    assert_eq!(call_700(&server, "presence-2"), 486, "{}", server.output());
    assert_eq!(recv(&mut events)["devices"], 1);
    assert_eq!(recv(&mut events)["status"], "offline");
    // Globex's stream heard nothing of acme's clients.
    if let MaybeTlsStream::Plain(tcp) = theirs.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    match theirs.read() {
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("globex's stream got {other:?}"),
    }
}

#[test]
fn bad_tokens_are_refused_and_a_revoked_key_ends_the_session() {
    let server = server();
    let addr = server.http;
    let (key_id, secret, acme) = new_key_secret(addr, "acme");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let mut socket = connect(addr);
    let answer = ask(&mut socket, json!({"type": "heartbeat"}));
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("register first"),
        "{answer}"
    );

    let expired =
        json!({"sub": "acme", "iat": now - 7200, "exp": now - 3600, "grants": {"identity": "eve"}});
    let forged = json!({"sub": "acme", "iat": now, "exp": now + 60, "grants": {"identity": "eve"}});
    for (token, reason) in [
        ("junk".to_owned(), "not a JWT"),
        (signed_token(&key_id, &secret, &expired), "expired"),
        (
            signed_token(&key_id, &"0".repeat(64), &forged),
            "signature does not match",
        ),
        (
            signed_token("SK0000000000000000", &secret, &forged),
            "no API key",
        ),
    ] {
        let mut socket = connect(addr);
        let answer = ask(&mut socket, json!({"type": "register", "token": token}));
        assert_eq!(answer["code"], "unauthorized", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(reason),
            "{answer}"
        );
        assert!(closed(&mut socket), "a refused client is let go");
    }
    assert_eq!(get(addr, "/v1/presence", &acme).json()["data"], json!([]));

    // Registered, then the key is revoked: the next message ends it.
    let registered = ask(
        &mut socket,
        json!({"type": "register", "token": client_token(addr, &acme, "carol")}),
    );
    assert_eq!(registered["type"], "registered", "{registered}");
    assert_eq!(presence(addr, &acme, "carol")["status"], "available");
    let (_, _, other) = new_key_secret(addr, "acme");
    let path = format!("/v1/accounts/acme/keys/{key_id}");
    assert_eq!(request(addr, "DELETE", &path, &other, b"").status, 204);
    let answer = ask(&mut socket, json!({"type": "heartbeat"}));
    assert_eq!(answer["code"], "unauthorized", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("revoked"),
        "{answer}"
    );
    assert!(closed(&mut socket));
    let gone = sip_common::wait_until(Duration::from_secs(5), || {
        presence(addr, &other, "carol")["status"] == "offline"
    });
    assert!(gone);
}

/// The IVR's "1" dials client:sales; each time sales cannot be rung the
/// decision log says why, and the handler hears the matching status.
#[test]
fn dial_client_says_why_no_device_rang() {
    let mut server = Server::serve(&http::acme(Config::new(), "100", "ivr"));
    let addr = server.http;
    let (_, _, acme) = new_key_secret(addr, "acme");
    let ua = ua::Ua::new();
    let press_1 = |expect: &str, status: &str| {
        let call = ua
            .call(
                server.udp,
                "100",
                &[switchyard::sip::sdp::Codec::PCMU],
                true,
            )
            .unwrap_or_else(|e| panic!("calling the IVR: {e}\n{}", server.output()));
        call.start_silence();
        assert!(call.wait_for_audio(2_500, Duration::from_secs(10)));
        call.send_dtmf('1').unwrap();
        // "Connecting you to sales", the dial, then what the IVR says to a
        // dial that failed: the dial is over by then.
        assert!(call.wait_for_audio(6_000, Duration::from_secs(15)));
        drop(call);
        let log = http::newest_log(&server, &acme, expect);
        assert!(log.contains(expect), "{expect} not in\n{log}");
        assert!(
            log.contains(&format!("\"status\":\"{status}\"")),
            "{status} not in\n{log}"
        );
    };
    press_1("sales is offline (no device connected)", "NoAnswer");

    // Connected, with a token that grants no incoming calls.
    let claims = json!({"identity": "sales", "incoming": false});
    let minted = http::post(addr, "/v1/tokens", &acme, &claims);
    let mut phone = connect(addr);
    let token = minted.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        ask(&mut phone, json!({"type": "register", "token": token}))["type"],
        "registered"
    );
    press_1("sales may not receive calls", "Failed");

    // A device that may, set busy.
    let mut desk = connect(addr);
    let token = client_token(addr, &acme, "sales");
    assert_eq!(
        ask(&mut desk, json!({"type": "register", "token": token}))["type"],
        "registered"
    );
    let busy = ask(&mut desk, json!({"type": "presence", "status": "busy"}));
    assert_eq!(busy["status"], "busy");
    press_1("sales is busy", "Busy");
    server.assert_alive();
}
