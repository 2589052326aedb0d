//! The REST API against a real `switchyard serve`: accounts, keys, auth,
//! account scoping, body limits, pagination and the OpenAPI document.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;

use http::{ADMIN_KEY, Auth, get, new_key, post, request};
use serde_json::{Value, json};
use sip_common::{Config, Server};
use switchyard::store::recordings::RecordingStore;

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
