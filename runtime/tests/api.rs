//! The REST API against a real `switchyard serve`: accounts, keys, auth,
//! account scoping, body limits, pagination and the OpenAPI document.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;

use http::{
    ADMIN_KEY, Auth, account, get, new_key, new_key_secret, post, put, request, request_typed,
    signed_token, upload,
};
use serde_json::{Value, json};
use sip_common::{Config, Server};
use switchyard::router::DecisionLog;
use switchyard::store::{Cdr, CdrStore, recordings::RecordingStore};

fn server() -> Server {
    Server::serve(
        &Config::new()
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .tenant("acme", &[]),
    )
}

#[test]
fn operator_creates_accounts_and_keys_and_accounts_see_only_their_own() {
    let server = server();
    let addr = server.http;

    // The config's tenant is an account.
    let got = get(addr, "/v1/accounts/acme", &Auth::admin());
    assert_eq!(
        (got.status, got.json()["status"].as_str()),
        (200, Some("active"))
    );

    let got = post(
        addr,
        "/v1/accounts",
        &Auth::admin(),
        &json!({"name": "Globex"}),
    );
    assert_eq!(got.status, 201);
    let globex = got.json()["id"].as_str().unwrap().to_owned();
    assert!(globex.starts_with("AC"), "{globex}");

    let (key_id, globex_auth) = new_key(addr, &globex);
    let got = get(addr, &format!("/v1/accounts/{globex}/keys"), &globex_auth);
    assert_eq!(got.status, 200);
    let keys = got.json();
    assert_eq!(keys["data"][0]["id"], key_id.as_str());
    assert!(keys["data"][0].get("secret").is_none(), "{keys}");
    assert_eq!(keys["next"], Value::Null);
    let got = get(addr, &format!("/v1/accounts/{globex}"), &globex_auth);
    assert_eq!(
        (got.status, got.json()["name"].as_str()),
        (200, Some("Globex"))
    );

    // Missing and wrong credentials.
    let got = get(addr, &format!("/v1/accounts/{globex}"), &Auth::none());
    assert_eq!((got.status, got.code().as_str()), (401, "unauthorized"));
    assert!(
        got.head
            .contains("www-authenticate: basic realm=\"switchyard\""),
        "{}",
        got.head
    );
    let wrong = Auth::account(&globex, &"0".repeat(64));
    assert_eq!(
        get(addr, &format!("/v1/accounts/{globex}"), &wrong).status,
        401
    );
    let wrong_admin = Auth::account("admin", "not-the-key-at-all");
    assert_eq!(get(addr, "/v1/accounts", &wrong_admin).status, 401);

    // Another account's things are 404; operator routes are 403.
    let (_, acme_auth) = new_key(addr, "acme");
    for path in [
        format!("/v1/accounts/{globex}"),
        format!("/v1/accounts/{globex}/keys"),
    ] {
        let got = get(addr, &path, &acme_auth);
        assert_eq!(
            (got.status, got.code().as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    let got = request(
        addr,
        "DELETE",
        &format!("/v1/accounts/{globex}/keys/{key_id}"),
        &acme_auth,
        b"",
    );
    assert_eq!(got.status, 404);
    let recordings = RecordingStore::open(&server.dir.path().join("data/recordings")).unwrap();
    let theirs = recordings
        .save(&globex, "CA1", &[0i16; 800], "record")
        .unwrap();
    let path = format!("/v1/recordings/{}", theirs.id);
    assert_eq!(get(addr, &path, &acme_auth).status, 404);
    assert_eq!(get(addr, &format!("{path}/audio"), &acme_auth).status, 404);
    assert_eq!(request(addr, "DELETE", &path, &acme_auth, b"").status, 404);
    assert_eq!(get(addr, &path, &globex_auth).status, 200);
    let got = get(addr, "/v1/recordings?call=CA1", &globex_auth);
    assert_eq!(got.json()["data"][0]["id"], theirs.id.as_str());
    let got = get(addr, "/v1/recordings", &acme_auth);
    assert_eq!(got.json()["data"], json!([]));

    for (method, path) in [
        ("GET", "/v1/accounts".to_string()),
        ("POST", "/v1/accounts/acme/suspend".to_string()),
    ] {
        let got = request(addr, method, &path, &acme_auth, b"");
        assert_eq!(
            (got.status, got.code().as_str()),
            (403, "forbidden"),
            "{path}"
        );
    }
    let got = post(addr, "/v1/accounts", &acme_auth, &json!({"name": "x"}));
    assert_eq!(got.status, 403);
}

#[test]
fn bodies_are_checked() {
    let server = server();
    let addr = server.http;
    let got = request(addr, "POST", "/v1/accounts", &Auth::admin(), b"{\"name\":");
    assert_eq!((got.status, got.code().as_str()), (400, "bad_request"));
    let got = post(
        addr,
        "/v1/accounts",
        &Auth::admin(),
        &json!({"name": "a", "plan": "gold"}),
    );
    assert_eq!(got.status, 400);
    let message = got.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("plan"), "{message}");
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let got = request(addr, "POST", "/v1/accounts", &Auth::admin(), big.as_bytes());
    assert_eq!(
        (got.status, got.code().as_str()),
        (413, "payload_too_large")
    );
    let got = get(addr, "/v1/accounts?limit=5000", &Auth::admin());
    assert_eq!(got.status, 400);
    // An oversized head is refused before any handler runs.
    let long = format!("/v1/accounts?after={}", "a".repeat(32 * 1024));
    assert_eq!(get(addr, &long, &Auth::admin()).status, 431);
}

#[test]
fn suspension_rotation_and_pagination() {
    let server = server();
    let addr = server.http;
    let (old_id, old) = new_key(addr, "acme");
    assert_eq!(get(addr, "/v1/accounts/acme", &old).status, 200);

    // Suspended: the key is refused with 403 until resumed.
    let got = post(
        addr,
        "/v1/accounts/acme/suspend",
        &Auth::admin(),
        &json!({}),
    );
    assert_eq!(
        (got.status, got.json()["status"].as_str()),
        (200, Some("suspended"))
    );
    let got = get(addr, "/v1/accounts/acme", &old);
    assert_eq!(got.status, 403);
    assert!(
        got.json()["message"]
            .as_str()
            .unwrap()
            .contains("suspended")
    );
    let got = post(addr, "/v1/accounts/acme/resume", &Auth::admin(), &json!({}));
    assert_eq!(
        (got.status, got.json()["status"].as_str()),
        (200, Some("active"))
    );
    assert_eq!(get(addr, "/v1/accounts/acme", &old).status, 200);

    // Rotation: a new key, then the old one deleted.
    let got = post(addr, "/v1/accounts/acme/keys", &old, &json!({}));
    assert_eq!(got.status, 201);
    let new = Auth::account("acme", got.json()["secret"].as_str().unwrap());
    let path = format!("/v1/accounts/acme/keys/{old_id}");
    assert_eq!(request(addr, "DELETE", &path, &new, b"").status, 204);
    assert_eq!(get(addr, "/v1/accounts/acme", &old).status, 401);
    assert_eq!(get(addr, "/v1/accounts/acme", &new).status, 200);
    assert_eq!(request(addr, "DELETE", &path, &new, b"").status, 404);

    // Pagination: 3 keys, 2 a page.
    new_key(addr, "acme");
    new_key(addr, "acme");
    let got = get(addr, "/v1/accounts/acme/keys?limit=2", &new).json();
    let first: Vec<&str> = got["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(first.len(), 2);
    let next = got["next"].as_str().unwrap();
    assert_eq!(next, first[1]);
    let rest = get(
        addr,
        &format!("/v1/accounts/acme/keys?limit=2&after={next}"),
        &new,
    )
    .json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next"], Value::Null);
    assert!(!first.contains(&rest["data"][0]["id"].as_str().unwrap()));
}

#[test]
fn openapi_is_served_without_auth_and_operator_routes_need_an_admin_key() {
    let server = server();
    let got = get(server.http, "/v1/openapi.json", &Auth::none());
    assert_eq!(got.status, 200);
    let doc = got.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/accounts"].is_object());
    assert_eq!(get(server.http, "/health", &Auth::none()).status, 200);

    let unset = Server::serve(&Config::new());
    let got = get(unset.http, "/v1/accounts", &Auth::admin());
    assert_eq!(got.status, 403);
    let message = got.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("admin_key"), "{message}");
}

/// Routes only the operator may use: an account gets 403 on them (the
/// role is wrong), except where the id is another account's (404).
const OPERATOR_ONLY: &[(&str, &str)] = &[
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts/{id}/suspend"),
    ("POST", "/v1/accounts/{id}/resume"),
    ("PUT", "/v1/accounts/{id}/limits"),
];

/// A finished call of `tenant` with an (empty) decision log, written
/// straight into the server's stores as a real call would leave it.
fn finished_call(server: &Server, tenant: &str, call_id: &str) {
    let data = server.dir.path().join("data");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    CdrStore::open(&data.join("cdr.sqlite3")).unwrap().record(
        Cdr {
            call_id: call_id.into(),
            tenant: tenant.into(),
            from: "sip:caller@127.0.0.1".into(),
            to: "+15550100".into(),
            started_ms: now,
            answered_ms: Some(now),
            ended_ms: now + 1000,
            duration_secs: 1,
            outcome: "completed".into(),
            sip_status: Some(200),
            handler: "main".into(),
            handler_version: "0".repeat(64),
        },
        DecisionLog::default(),
    );
}

/// The path of `template` for one account's resources.
fn fill(template: &str, ids: &[(&str, &str)]) -> String {
    let mut path = template.to_owned();
    for (param, value) in ids {
        path = path.replace(param, value);
    }
    assert!(
        !path.contains('{'),
        "no value for a parameter of {template}"
    );
    path
}

/// Every operation of the OpenAPI document, swept against a live server:
/// without credentials it is 401; on another account's resource it is 404
/// (403 only where the route is the operator's); a JSON body that does not
/// parse, has an unknown field or is too large is 400, 400 naming the
/// field, 413; and every status seen is one the document lists.
#[test]
fn every_route_refuses_missing_auth_other_accounts_and_bad_bodies() {
    let server = server();
    let addr = server.http;
    let doc = get(addr, "/v1/openapi.json", &Auth::none()).json();
    let acme = new_key(addr, "acme").1;
    let (globex, theirs) = account(addr, "Globex");

    // Globex owns one resource of every kind.
    let (their_key, _) = new_key(addr, &globex);
    assert_eq!(upload(addr, &theirs, "main", "bye").status, 201);
    let number = json!({"component": "main"});
    assert_eq!(
        put(addr, "/v1/numbers/%2B15550199", &theirs, &number).status,
        201
    );
    let password = json!({"password": "correct-horse"});
    assert_eq!(
        put(addr, "/v1/sip/credentials/bob", &theirs, &password).status,
        201
    );
    assert_eq!(
        put(
            addr,
            "/v1/sip/domains/globex.example.net",
            &theirs,
            &json!({})
        )
        .status,
        201
    );
    let recordings = RecordingStore::open(&server.dir.path().join("data/recordings")).unwrap();
    let recording = recordings
        .save(&globex, "CAglobex1", &[0i16; 800], "record")
        .unwrap();
    finished_call(&server, &globex, "CAglobex1");
    finished_call(&server, "acme", "CAacme1");
    // The stores' writers land their rows within a batch.
    for _ in 0..100 {
        if get(addr, "/v1/calls/CAglobex1/log", &theirs).status == 200
            && get(addr, "/v1/calls/CAacme1", &acme).status == 200
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let their_ids = [
        ("{key}", their_key.as_str()),
        ("/v1/accounts/{id}", &format!("/v1/accounts/{globex}")),
        ("/v1/calls/{id}", "/v1/calls/CAglobex1"),
        (
            "/v1/recordings/{id}",
            &format!("/v1/recordings/{}", recording.id),
        ),
        ("{name}", "main"),
        ("{version}", "1"),
        ("{number}", "%2B15550199"),
        ("{username}", "bob"),
        ("{domain}", "globex.example.net"),
        // Conferences live only while calls are in them
        // (`conference_calls.rs` sweeps them across accounts with calls).
        ("/v1/conferences/{id}", "/v1/conferences/CFglobex"),
        ("{call}", "CAglobex1"),
        ("{identity}", "bob"),
    ];
    let own_ids = [
        ("/v1/accounts/{id}", "/v1/accounts/acme"),
        ("/v1/calls/{id}", "/v1/calls/CAacme1"),
        ("{number}", "%2B15550100"),
        ("{username}", "alice"),
        ("{domain}", "acme.example.net"),
        ("/v1/conferences/{id}", "/v1/conferences/CFacme"),
        ("{call}", "CAacme1"),
        ("{name}", "support"),
        ("{identity}", "alice"),
    ];

    let mut swept = 0;
    for (template, operations) in doc["paths"].as_object().unwrap() {
        if template == "/v1/openapi.json" {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            // Documented without account auth (`security: []`): the call
            // placement directory's signed routes (tests/directory.rs).
            if operation["security"].as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            let method = method.to_uppercase();
            let listed = |status: u16| {
                assert!(
                    operation["responses"].get(status.to_string()).is_some(),
                    "{method} {template} answered {status}, which the document does not list"
                );
            };
            let operator_only = OPERATOR_ONLY.contains(&(method.as_str(), template.as_str()));
            let json_body = operation["requestBody"]["content"]
                .get("application/json")
                .is_some();
            // A valid body where one is needed, so only the resource's
            // owner can make the difference.
            let body: &[u8] = match (method.as_str(), template.as_str()) {
                ("POST", "/v1/calls/{id}" | "/v1/conferences/{id}") => {
                    br#"{"status": "completed"}"#
                }
                ("POST", "/v1/conferences/{id}/participants/{call}") => br#"{"muted": true}"#,
                ("POST", "/v1/queues/{name}/dequeue") => br#"{"handler": "main"}"#,
                _ if json_body => b"{}",
                _ => b"",
            };
            swept += 1;

            let path = fill(template, &their_ids);
            let got = request(addr, &method, &path, &Auth::none(), body);
            assert_eq!(
                (got.status, got.code().as_str()),
                (401, "unauthorized"),
                "{method} {path}"
            );
            listed(401);

            // Another account's resource. A PUT or an upload names the
            // caller's own resource (their names are per account), so
            // only reads, deletes and actions are tried.
            // Even on operator-only routes another account's id answers
            // 404: a tenant learns nothing about who else exists.
            let creates = method == "PUT" || template == "/v1/components/{name}";
            // An identity is no resource: any account reads any name as
            // its own client's presence (`clients.rs` checks isolation).
            let per_account = template == "/v1/presence/{identity}";
            if template.contains('{') && (!creates || operator_only) && !per_account {
                let got = request(addr, &method, &path, &acme, body);
                assert_eq!(
                    (got.status, got.code().as_str()),
                    (404, "not_found"),
                    "{method} {path}: {}",
                    got.text()
                );
                listed(404);
            }
            // On its own id (or no id) an account hits the wrong role.
            if operator_only {
                let own = fill(template, &own_ids);
                let got = request(addr, &method, &own, &acme, body);
                assert_eq!(
                    (got.status, got.code().as_str()),
                    (403, "forbidden"),
                    "{method} {own}: {}",
                    got.text()
                );
                listed(403);
            }

            if !json_body {
                continue;
            }
            let (path, auth) = if operator_only {
                (fill(template, &own_ids), Auth::admin())
            } else {
                (fill(template, &own_ids), acme.clone())
            };
            let got = request(addr, &method, &path, &auth, b"{\"to\":");
            assert_eq!(
                (got.status, got.code().as_str()),
                (400, "bad_request"),
                "{method} {path}"
            );
            let got = request(addr, &method, &path, &auth, b"{\"surprise\": 1}");
            assert_eq!(got.status, 400, "{method} {path}: {}", got.text());
            let message = got.json()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains("surprise"), "{method} {path}: {message}");
            let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
            let got = request(addr, &method, &path, &auth, big.as_bytes());
            assert_eq!(
                (got.status, got.code().as_str()),
                (413, "payload_too_large"),
                "{method} {path}"
            );
            listed(400);
            listed(413);
        }
    }
    assert!(swept >= 35, "the document lists {swept} operations");

    // An upload that is no component is refused with the reason.
    let got = request_typed(
        addr,
        "POST",
        "/v1/components/x",
        &acme,
        "application/wasm",
        b"\0asm junk",
    );
    assert_eq!(
        (got.status, got.code().as_str()),
        (400, "bad_request"),
        "{}",
        got.text()
    );
}

#[test]
fn access_tokens_are_minted_checked_and_refused_with_their_reasons() {
    let server = server();
    let addr = server.http;
    let (key_id, secret, acme) = new_key_secret(addr, "acme");
    let (key_id, secret) = (key_id.as_str(), secret.as_str());
    let check = |auth: &Auth, token: &str| {
        let got = post(addr, "/v1/tokens/check", auth, &json!({ "token": token }));
        assert_eq!(got.status, 200, "{}", got.text());
        got.json()
    };

    // Minted by the runtime: signed with the account's key, readable by
    // any JWT library with that key's secret.
    let ask = json!({
        "identity": "alice",
        "incoming": true,
        "outgoing": {"handler": "ivr", "params": {"team": "sales"}},
        "ttl_secs": 600,
    });
    let got = post(addr, "/v1/tokens", &acme, &ask);
    assert_eq!(got.status, 201, "{}", got.text());
    let minted = got.json();
    assert_eq!(minted["key_id"], key_id);
    let token = minted["token"].as_str().unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let read = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .unwrap();
    assert_eq!(read.header.kid.as_deref(), Some(key_id));
    let claims = read.claims;
    assert_eq!(claims["sub"], "acme");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert_eq!(claims["grants"]["outgoing"]["params"]["team"], "sales");
    let verdict = check(&acme, token);
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["token"]["grants"]["identity"], "alice");
    assert_eq!(verdict["token"]["grants"]["incoming"], true);

    // Signed by the tenant's own server: the runtime takes it.
    let now = claims["iat"].as_u64().unwrap();
    let own = json!({"sub": "acme", "iat": now, "exp": now + 60, "grants": {"identity": "bob"}});
    let verdict = check(&acme, &signed_token(key_id, secret, &own));
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["token"]["grants"]["incoming"], false);

    // Refused, each with its reason.
    let expired =
        json!({"sub": "acme", "iat": now - 7200, "exp": now - 3600, "grants": {"identity": "bob"}});
    let wrong_kid = signed_token("SK0000000000000000", secret, &own);
    let forged = signed_token(key_id, &"0".repeat(64), &own);
    let too_long =
        json!({"sub": "acme", "iat": now, "exp": now + 90_000, "grants": {"identity": "bob"}});
    for (token, reason) in [
        (signed_token(key_id, secret, &expired), "expired"),
        (wrong_kid, "no API key SK0000000000000000"),
        (forged, "signature does not match"),
        (signed_token(key_id, secret, &too_long), "at most 86400 s"),
        ("not.a.jwt".to_owned(), "not a JWT"),
    ] {
        let verdict = check(&acme, &token);
        assert_eq!(verdict["valid"], false, "{verdict}");
        let said = verdict["reason"].as_str().unwrap();
        assert!(said.contains(reason), "{said:?} should say {reason:?}");
    }
    for (ask, says) in [
        (json!({"identity": "a b"}), "identity must be"),
        (
            json!({"identity": "alice", "ttl_secs": 90_000}),
            "at most 86400",
        ),
        (
            json!({"identity": "alice", "outgoing": {"handler": ""}}),
            "must name a component",
        ),
        (json!({"identity": "alice", "key_id": "SKnope"}), "SKnope"),
    ] {
        let got = post(addr, "/v1/tokens", &acme, &ask);
        assert!(matches!(got.status, 400 | 404), "{ask}: {}", got.text());
        assert!(got.text().contains(says), "{ask}: {}", got.text());
    }

    // Another account sees acme's token as signed by a key it does not know,
    // and cannot mint with acme's key.
    let (_, globex) = account(addr, "Globex");
    let verdict = check(&globex, token);
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], format!("no API key {key_id}"));
    let got = post(
        addr,
        "/v1/tokens",
        &globex,
        &json!({"identity": "x", "key_id": key_id}),
    );
    assert_eq!(got.status, 404, "{}", got.text());

    // A revoked key's tokens stop working at once; the account's other
    // key signs new ones.
    let (other_id, _, other_auth) = new_key_secret(addr, "acme");
    let path = format!("/v1/accounts/acme/keys/{key_id}");
    assert_eq!(request(addr, "DELETE", &path, &other_auth, b"").status, 204);
    let verdict = check(&other_auth, token);
    assert_eq!(verdict["reason"], format!("API key {key_id} is revoked"));
    let got = post(
        addr,
        "/v1/tokens",
        &other_auth,
        &json!({"identity": "alice"}),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    assert_eq!(got.json()["key_id"], other_id);
    let got = post(
        addr,
        "/v1/tokens",
        &other_auth,
        &json!({"identity": "alice", "key_id": key_id}),
    );
    assert_eq!(got.status, 409, "{}", got.text());
    assert!(got.text().contains("revoked"), "{}", got.text());
}
