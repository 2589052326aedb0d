//! Components and numbers over REST against a real `switchyard serve`:
//! upload (checked, versioned, idempotent), bind a number, SIP calls reach
//! the bound version, rebind, roll back, suspension, tenant isolation,
//! canary with automatic rollback and a fallback component.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use http::{ADMIN_KEY, Auth, account, get, new_key, post, put, request, request_typed, upload};
use serde_json::{Value, json};
use sip_common::{Config, Server, Sipp, require_sipp};
use switchyard::sip::sdp::Codec;
use ua::Ua;

fn server() -> Server {
    Server::serve(
        &Config::new()
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .api("max_component_kb = 2048")
            .tenant("acme", &[])
            .number("1000", "busy"),
    )
}

/// The final status of a call to `number`: 200 when answered (then hung
/// up by us), else the failure status.
fn call(ua: &Ua, server: &Server, number: &str) -> u16 {
    match ua.call(server.udp, number, &[Codec::PCMU], false) {
        Ok(call) => {
            let _ = call.bye();
            200
        }
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("call to {number}: {e}")),
    }
}

#[test]
fn uploaded_versions_answer_calls_and_roll_back() {
    let server = server();
    let addr = server.http;
    let (globex, auth) = account(addr, "Globex");
    let ua = Ua::new();

    // Refused uploads say why.
    let got = request_typed(
        addr,
        "POST",
        "/v1/components/main",
        &auth,
        "application/wasm",
        b"not wasm",
    );
    assert_eq!((got.status, got.code()), (400, "bad_request".into()));
    assert!(
        got.json()["message"]
            .as_str()
            .unwrap()
            .contains("component refused")
    );
    let huge = vec![0u8; 2048 * 1024 + 1];
    let got = request_typed(
        addr,
        "POST",
        "/v1/components/big",
        &auth,
        "application/wasm",
        &huge,
    );
    assert_eq!(got.status, 413);
    let got = upload(addr, &auth, "bad name", "busy");
    assert_eq!(got.status, 400);

    // Versions count up; the same bytes are the same version.
    let v1 = upload(addr, &auth, "main", "bye");
    assert_eq!(v1.status, 201, "{}", v1.text());
    let v1 = v1.json();
    assert_eq!(
        (v1["version"].as_u64(), v1["world"].as_str()),
        (Some(1), Some("call-handler"))
    );
    assert_eq!(v1["hash"].as_str().unwrap().len(), 64);
    let again = upload(addr, &auth, "main", "bye");
    assert_eq!(
        (again.status, again.json()["version"].as_u64()),
        (200, Some(1))
    );
    let v2 = upload(addr, &auth, "main", "busy");
    assert_eq!((v2.status, v2.json()["version"].as_u64()), (201, Some(2)));
    let listed = get(addr, "/v1/components", &auth).json();
    assert_eq!(listed["data"][0]["latest_version"], 2);
    let versions = get(addr, "/v1/components/main/versions?limit=1", &auth).json();
    assert_eq!(
        (
            versions["data"][0]["version"].as_u64(),
            versions["next"].as_str()
        ),
        (Some(1), Some("1"))
    );
    let rest = get(addr, "/v1/components/main/versions?after=1", &auth).json();
    assert_eq!(
        (rest["data"][0]["version"].as_u64(), &rest["next"]),
        (Some(2), &Value::Null)
    );
    assert_eq!(
        get(addr, "/v1/components/main/versions/2", &auth).status,
        200
    );
    assert_eq!(
        get(addr, "/v1/components/main/versions/3", &auth).status,
        404
    );

    // Unbound: no route.
    assert_eq!(call(&ua, &server, "2000"), 404);
    // Bound to v1 (answers), live at once.
    let got = put(
        addr,
        "/v1/numbers/2000",
        &auth,
        &json!({ "component": "main", "version": 1 }),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    assert_eq!(call(&ua, &server, "2000"), 200);
    // Rebound to the newest (busy); the old one is kept for rollback.
    let got = put(
        addr,
        "/v1/numbers/2000",
        &auth,
        &json!({ "component": "main" }),
    );
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        (
            got.json()["version"].as_u64(),
            got.json()["previous_version"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(call(&ua, &server, "2000"), 486);
    let got = post(addr, "/v1/numbers/2000/rollback", &auth, &json!({}));
    assert_eq!((got.status, got.json()["version"].as_u64()), (200, Some(1)));
    assert_eq!(call(&ua, &server, "2000"), 200);
    let got = post(addr, "/v1/numbers/2000/rollback", &auth, &json!({}));
    assert_eq!((got.status, got.code()), (409, "conflict".into()));

    // Bad bindings.
    for (body, why) in [
        (json!({ "component": "nope" }), "no component"),
        (json!({ "component": "main", "version": 9 }), "no version 9"),
        (
            json!({ "component": "main", "colour": "red" }),
            "unknown field",
        ),
        (
            json!({ "component": "main", "status_callback": "ftp://x" }),
            "http or https",
        ),
        (
            json!({ "component": "main", "version": 1, "canary": { "version": 2, "percent": 0 } }),
            "percent",
        ),
    ] {
        let got = put(addr, "/v1/numbers/2001", &auth, &body);
        assert_eq!(got.status, 400, "{body}: {}", got.text());
        assert!(
            got.json()["message"].as_str().unwrap().contains(why),
            "{}",
            got.text()
        );
    }
    let got = put(
        addr,
        "/v1/numbers/*",
        &auth,
        &json!({ "component": "main" }),
    );
    assert_eq!(got.status, 400);

    // Another account sees none of it and cannot take the number.
    let (_, acme) = new_key(addr, "acme");
    assert_eq!(get(addr, "/v1/numbers/2000", &acme).status, 404);
    assert_eq!(get(addr, "/v1/components/main/versions", &acme).status, 404);
    assert_eq!(get(addr, "/v1/components", &acme).json()["data"], json!([]));
    assert_eq!(upload(addr, &acme, "main", "bye").json()["version"], 1);
    let got = put(
        addr,
        "/v1/numbers/2000",
        &acme,
        &json!({ "component": "main" }),
    );
    assert_eq!(got.status, 409, "{}", got.text());
    let got = put(
        addr,
        "/v1/numbers/1000",
        &auth,
        &json!({ "component": "main" }),
    );
    assert_eq!(got.status, 409, "numbers of the config file stay");
    assert_eq!(call(&ua, &server, "1000"), 486);
    assert_eq!(call(&ua, &server, "2000"), 200);

    // Suspension stops the account's calls; resuming restores them.
    let got = post(
        addr,
        &format!("/v1/accounts/{globex}/suspend"),
        &Auth::admin(),
        &json!({}),
    );
    assert_eq!(got.status, 200);
    assert_eq!(call(&ua, &server, "2000"), 403);
    post(
        addr,
        &format!("/v1/accounts/{globex}/resume"),
        &Auth::admin(),
        &json!({}),
    );
    assert_eq!(call(&ua, &server, "2000"), 200);

    // Unbound: gone.
    let got = request(addr, "DELETE", "/v1/numbers/2000", &auth, b"");
    assert_eq!(got.status, 204);
    assert_eq!(call(&ua, &server, "2000"), 404);
    assert_eq!(get(addr, "/v1/numbers", &auth).json()["data"], json!([]));
}

#[test]
fn a_failing_canary_is_handed_to_the_fallback_and_rolled_back() {
    let server = server();
    let addr = server.http;
    let (_, auth) = account(addr, "Initech");
    let ua = Ua::new();
    assert_eq!(upload(addr, &auth, "main", "busy").status, 201);
    assert_eq!(upload(addr, &auth, "main", "trap").status, 201);
    assert_eq!(upload(addr, &auth, "backup", "bye").status, 201);
    let got = put(
        addr,
        "/v1/numbers/3000",
        &auth,
        &json!({
            "component": "main",
            "version": 1,
            "fallback": "backup",
            "canary": { "version": 2, "percent": 50, "max_failure_rate": 0.5, "min_calls": 3 }
        }),
    );
    assert_eq!(got.status, 201, "{}", got.text());

    // v1 rejects busy; the canary traps, and its calls are handed to the
    // fallback component, which answers. Three canary calls condemn it.
    let mut answered = 0;
    let mut calls = 0;
    let rolled_back = loop {
        calls += 1;
        assert!(calls <= 60, "the canary was never rolled back");
        match call(&ua, &server, "3000") {
            200 => answered += 1,
            486 => {}
            other => panic!("unexpected {other}"),
        }
        let number = get(addr, "/v1/numbers/3000", &auth).json();
        if number["canary"].is_null() {
            break number["canary_rolled_back"].clone();
        }
    };
    assert!(
        answered >= 3,
        "{answered} canary calls were answered by the fallback"
    );
    assert_eq!(rolled_back["version"], 2);
    assert_eq!(
        (
            rolled_back["calls"].as_u64(),
            rolled_back["failures"].as_u64()
        ),
        (Some(3), Some(3))
    );
    // After the rollback every call runs v1.
    for _ in 0..5 {
        assert_eq!(call(&ua, &server, "3000"), 486);
    }
}

#[test]
fn calls_in_progress_are_listed_hung_up_and_redirected() {
    let server = server();
    let addr = server.http;
    let (_, auth) = account(addr, "Hooli");
    let (_, other) = account(addr, "Umbrella");
    let ua = Ua::new();
    assert_eq!(upload(addr, &auth, "hold", "hold").status, 201);
    assert_eq!(upload(addr, &auth, "busy", "busy").status, 201);
    let got = put(
        addr,
        "/v1/numbers/4000",
        &auth,
        &json!({ "component": "hold" }),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    // `busy` is bound to no number: every uploaded call-handler of the
    // account is a redirect target by its name.

    let held = ua.call(server.udp, "4000", &[Codec::PCMU], false).unwrap();
    let live = get(addr, "/v1/calls?status=in-progress", &auth).json();
    let calls = live["data"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{live}");
    let id = calls[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (calls[0]["to"].as_str(), calls[0]["handler"].as_str()),
        (Some("4000"), Some("hold@1"))
    );
    assert_eq!(
        get(addr, &format!("/v1/calls/{id}"), &auth).json()["status"],
        "in-progress"
    );
    // Another account neither sees nor steers it.
    assert_eq!(
        get(addr, "/v1/calls?status=in-progress", &other).json()["data"],
        json!([])
    );
    let path = format!("/v1/calls/{id}");
    assert_eq!(
        post(addr, &path, &other, &json!({ "status": "completed" })).status,
        404
    );
    // Bad updates.
    for body in [
        json!({}),
        json!({ "status": "ringing" }),
        json!({ "redirect": "nope" }),
    ] {
        assert_eq!(post(addr, &path, &auth, &body).status, 400, "{body}");
    }

    // Redirected to `busy`, whose reject ends the answered call with a BYE.
    let got = post(addr, &path, &auth, &json!({ "redirect": "busy" }));
    assert_eq!(
        (got.status, got.json()["status"].as_str()),
        (202, Some("redirected"))
    );
    held.wait_bye(std::time::Duration::from_secs(5)).unwrap();

    // Hung up over REST.
    let held = ua.call(server.udp, "4000", &[Codec::PCMU], false).unwrap();
    let live = get(addr, "/v1/calls?status=in-progress", &auth).json();
    let id = live["data"][0]["id"].as_str().unwrap().to_owned();
    let got = post(
        addr,
        &format!("/v1/calls/{id}"),
        &auth,
        &json!({ "status": "completed" }),
    );
    assert_eq!(got.status, 202, "{}", got.text());
    held.wait_bye(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(
        post(
            addr,
            &format!("/v1/calls/{id}"),
            &auth,
            &json!({ "status": "completed" })
        )
        .status,
        404
    );
    assert_eq!(
        get(addr, "/v1/calls?status=in-progress", &auth).json()["data"],
        json!([])
    );
}

#[test]
fn the_operator_sets_an_accounts_own_limits() {
    let server = server();
    let addr = server.http;
    let (id, auth) = account(addr, "Wayne");
    let (_, other) = account(addr, "Stark");
    let ua = Ua::new();
    assert_eq!(upload(addr, &auth, "hold", "hold").status, 201);
    let got = put(
        addr,
        "/v1/numbers/5000",
        &auth,
        &json!({ "component": "hold" }),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    let path = format!("/v1/accounts/{id}/limits");
    assert_eq!(get(addr, &path, &auth).json(), json!({}));

    // Only the operator sets them; nobody else sees them.
    let limits = json!({ "max_calls": 1, "queue": 0, "component_kb": 1 });
    assert_eq!(put(addr, &path, &auth, &limits).status, 403);
    assert_eq!(get(addr, &path, &other).status, 404);
    for bad in [
        json!({ "max_calls": 0 }),
        json!({ "queue_wait_ms": 60_000 }),
        json!({ "guest_memory_mb": 1_000_000 }),
        json!({ "component_kb": 0 }),
        json!({ "component_kb": 4096 }),
        json!({ "colour": 1 }),
    ] {
        assert_eq!(put(addr, &path, &Auth::admin(), &bad).status, 400, "{bad}");
    }
    let got = put(addr, &path, &Auth::admin(), &limits);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(get(addr, &path, &auth).json()["max_calls"], 1);
    // Uploads above the account's own size limit are refused unread.
    let got = upload(addr, &auth, "busy", "busy");
    assert_eq!(got.status, 413, "{}", got.text());
    assert!(got.text().contains("1024 bytes"), "{}", got.text());

    // One call at a time, no waiting: the second is refused before any guest.
    let first = ua.call(server.udp, "5000", &[Codec::PCMU], false).unwrap();
    assert_eq!(call(&ua, &server, "5000"), 503);
    first.bye().unwrap();
    let got = put(addr, &path, &Auth::admin(), &json!({}));
    assert_eq!(got.status, 200);
    assert_eq!(upload(addr, &auth, "busy", "busy").status, 201);
    let first = ua.call(server.udp, "5000", &[Codec::PCMU], false).unwrap();
    assert_eq!(call(&ua, &server, "5000"), 200, "limits lifted");
    first.bye().unwrap();
}

/// A REGISTER of `user` with `password` at acme.test: whether it got 200.
fn registers(server: &Server, user: &str, password: &str) -> bool {
    registers_at(server, "acme.test", user, password)
}

/// A REGISTER of `user` with `password` in `domain`: whether it got 200.
fn registers_at(server: &Server, domain: &str, user: &str, password: &str) -> bool {
    let run = Sipp::new(&format!(
        "-s {user} -au {user} -ap {password} -auth_uri {domain} -key domain {domain} -m 1"
    ))
    .sf("register_auth.xml")
    .to(server.udp)
    .timeout(std::time::Duration::from_secs(20))
    .run();
    run.successful() == 1
}

#[test]
fn sip_credentials_and_domains_set_over_rest_register_in_the_accounts_domain() {
    require_sipp();
    let server = Server::serve(
        &Config::new()
            .api(&format!(
                "admin_key = \"{ADMIN_KEY}\"\nsip_domain_suffix = \"sip.test\""
            ))
            .tenant("acme", &["acme.test"])
            .user("alice", "config-secret"),
    );
    let addr = server.http;
    let (_, acme) = new_key(addr, "acme");
    let (_, other) = account(addr, "Globex");
    assert!(
        !registers(&server, "bob", "bob-secret-1"),
        "no such user yet"
    );

    let path = "/v1/sip/credentials/bob";
    for bad in [
        json!({ "password": "short" }),
        json!({ "pw": "long-enough-1" }),
    ] {
        assert_eq!(put(addr, path, &acme, &bad).status, 400, "{bad}");
    }
    let got = put(
        addr,
        "/v1/sip/credentials/b%20b",
        &acme,
        &json!({ "password": "bob-secret-1" }),
    );
    assert_eq!(got.status, 400);
    let got = put(addr, path, &acme, &json!({ "password": "bob-secret-1" }));
    assert_eq!(got.status, 201, "{}", got.text());
    assert!(registers(&server, "bob", "bob-secret-1"));
    assert!(!registers(&server, "bob", "wrong-secret"));

    // A new password takes over; the list never shows one.
    let got = put(addr, path, &acme, &json!({ "password": "bob-secret-2" }));
    assert_eq!(got.status, 200);
    assert!(registers(&server, "bob", "bob-secret-2"));
    let list = get(addr, "/v1/sip/credentials", &acme).json();
    assert_eq!(list["data"][0]["username"], "bob");
    assert!(!list.to_string().contains("secret"), "{list}");
    // The config's user stays as configured.
    let got = put(
        addr,
        "/v1/sip/credentials/alice",
        &acme,
        &json!({ "password": "rest-secret-1" }),
    );
    assert_eq!(got.status, 201);
    assert!(registers(&server, "alice", "config-secret"));

    // Another account sees none of it.
    assert_eq!(
        get(addr, "/v1/sip/credentials", &other).json()["data"],
        json!([])
    );
    assert_eq!(request(addr, "DELETE", path, &other, b"").status, 404);
    assert_eq!(request(addr, "DELETE", path, &acme, b"").status, 204);
    assert!(!registers(&server, "bob", "bob-secret-2"));

    // An account made over REST claims a domain for its users.
    let domain = "/v1/sip/domains/globex.sip.test";
    let got = put(
        addr,
        "/v1/sip/credentials/gina",
        &other,
        &json!({ "password": "gina-secret-1" }),
    );
    assert_eq!(got.status, 201);
    assert!(
        !registers_at(&server, "globex.sip.test", "gina", "gina-secret-1"),
        "no domain yet"
    );
    let got = request(addr, "PUT", domain, &other, b"");
    assert_eq!(got.status, 201, "{}", got.text());
    assert_eq!(got.json()["domain"], "globex.sip.test");
    assert!(registers_at(
        &server,
        "globex.sip.test",
        "gina",
        "gina-secret-1"
    ));
    assert!(!registers_at(
        &server,
        "globex.sip.test",
        "gina",
        "wrong-secret"
    ));
    // Claiming it again is a no-op; names are not case-sensitive.
    let got = put(addr, "/v1/sip/domains/Globex.SIP.test", &other, &json!({}));
    assert_eq!(got.status, 200, "{}", got.text());
    let list = get(addr, "/v1/sip/domains", &other).json();
    assert_eq!(list["data"][0]["domain"], "globex.sip.test", "{list}");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    // Taken, configured, outside the operator's suffix, not a name, a body.
    for (path, body, status) in [
        (domain, &b""[..], 409),
        ("/v1/sip/domains/acme.test", b"", 409),
        ("/v1/sip/domains/globex.example", b"", 400),
        ("/v1/sip/domains/127.0.0.1", b"", 400),
        ("/v1/sip/domains/sip.test", b"", 400),
        ("/v1/sip/domains/acme.sip.test", b"{\"x\":1}", 400),
    ] {
        let got = request(addr, "PUT", path, &acme, body);
        assert_eq!(got.status, status, "{path}: {}", got.text());
    }
    assert_eq!(
        get(addr, "/v1/sip/domains", &acme).json()["data"],
        json!([])
    );
    assert_eq!(request(addr, "DELETE", domain, &acme, b"").status, 404);
    assert_eq!(request(addr, "DELETE", domain, &other, b"").status, 204);
    assert!(!registers_at(
        &server,
        "globex.sip.test",
        "gina",
        "gina-secret-1"
    ));
}
