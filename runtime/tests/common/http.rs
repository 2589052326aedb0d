//! A small HTTP/1.1 client for the REST tests: one request per
//! connection, Basic auth, JSON helpers.
//!
//! Include with `#[path = "common/http.rs"] mod http;` next to
//! `common/sip.rs` (included as `sip_common`), whose `basic_auth` it uses.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::sip_common::{Config, Server, basic_auth, guest, wait_until};

/// The operator key the REST tests configure.
pub const ADMIN_KEY: &str = "operator-key-0123456789";

pub struct Answer {
    pub status: u16,
    /// The response head, lower-cased.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The stable error code of a JSON error.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The `Authorization` header value to send, if any.
#[derive(Clone)]
pub struct Auth(pub Option<String>);

impl Auth {
    pub fn admin() -> Auth {
        Auth::account("admin", ADMIN_KEY)
    }

    pub fn none() -> Auth {
        Auth(None)
    }

    /// HTTP Basic `id:secret`.
    pub fn account(id: &str, secret: &str) -> Auth {
        Auth(Some(basic_auth(id, secret)))
    }
}

/// One request with `body` (sent as `content_type`).
pub fn request_typed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &Auth,
    content_type: &str,
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = auth
        .0
        .as_ref()
        .map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer 413 before reading a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    Answer { status, head, body }
}

fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 4 + size..];
    }
}

/// One JSON request.
pub fn request(addr: SocketAddr, method: &str, path: &str, auth: &Auth, body: &[u8]) -> Answer {
    request_typed(addr, method, path, auth, "application/json", body)
}

pub fn get(addr: SocketAddr, path: &str, auth: &Auth) -> Answer {
    request(addr, "GET", path, auth, b"")
}

pub fn post(addr: SocketAddr, path: &str, auth: &Auth, body: &Value) -> Answer {
    request(addr, "POST", path, auth, body.to_string().as_bytes())
}

pub fn put(addr: SocketAddr, path: &str, auth: &Auth, body: &Value) -> Answer {
    request(addr, "PUT", path, auth, body.to_string().as_bytes())
}

/// A new key of `account`, made by the operator: its id and Basic auth.
pub fn new_key(addr: SocketAddr, account: &str) -> (String, Auth) {
    let (id, _, auth) = new_key_secret(addr, account);
    (id, auth)
}

/// A new key of `account`, made by the operator: its id, its secret (what
/// signs access tokens) and Basic auth.
pub fn new_key_secret(addr: SocketAddr, account: &str) -> (String, String, Auth) {
    let got = post(
        addr,
        &format!("/v1/accounts/{account}/keys"),
        &Auth::admin(),
        &serde_json::json!({}),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    let key = got.json();
    assert_eq!(key["account"], account);
    let secret = key["secret"].as_str().unwrap().to_owned();
    let auth = Auth::account(account, &secret);
    (key["id"].as_str().unwrap().to_owned(), secret, auth)
}

/// `config` with the operator key and account acme, whose `number` is
/// answered by the example guest `name`.
pub fn acme(config: Config, number: &str, name: &str) -> Config {
    config
        .api(&format!("admin_key = \"{ADMIN_KEY}\""))
        .tenant("acme", &[])
        .number(number, name)
}

/// An access token for client `identity`, allowed incoming calls, minted
/// by `POST /v1/tokens`.
pub fn client_token(addr: SocketAddr, auth: &Auth, identity: &str) -> String {
    let body = serde_json::json!({"identity": identity, "incoming": true});
    let got = post(addr, "/v1/tokens", auth, &body);
    assert_eq!(got.status, 201, "{}", got.text());
    got.json()["token"].as_str().unwrap().to_owned()
}

/// A token as a tenant's own server signs it: HS256 over `claims` with
/// the key's secret (the 64 hex digits as text), `kid` = the key id.
pub fn signed_token(key_id: &str, secret: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key_id.to_owned());
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A new account made by the operator, with a key: its id and Basic auth.
pub fn account(addr: SocketAddr, name: &str) -> (String, Auth) {
    let got = post(
        addr,
        "/v1/accounts",
        &Auth::admin(),
        &serde_json::json!({ "name": name }),
    );
    assert_eq!(got.status, 201, "{}", got.text());
    let id = got.json()["id"].as_str().unwrap().to_owned();
    let (_, auth) = new_key(addr, &id);
    (id, auth)
}

/// Uploads example guest `guest_name` as component `name`.
pub fn upload(addr: SocketAddr, auth: &Auth, name: &str, guest_name: &str) -> Answer {
    let bytes = std::fs::read(guest(guest_name)).unwrap();
    let path = format!("/v1/components/{name}");
    request_typed(addr, "POST", &path, auth, "application/wasm", &bytes)
}

/// Basic auth for `account` of the server's own accounts store (a tenant
/// of its config), with a key made there.
pub fn account_auth(server: &Server, account: &str) -> Auth {
    let path = server.dir.path().join("data/accounts.sqlite3");
    let accounts = switchyard::tenancy::Accounts::open(&path).unwrap();
    let key = accounts.create_key(account).unwrap().expect("the account");
    Auth::account(account, &key.secret)
}

/// Call `call`'s decision log as JSON text, once it holds the call's end
/// (its rows land within a batch after the call); what there is after 20 s.
pub fn decision_log(server: &Server, auth: &Auth, call: &str) -> String {
    let mut text = String::new();
    wait_until(Duration::from_secs(20), || {
        let got = get(server.http, &format!("/v1/calls/{call}/log"), auth);
        text = got.text();
        got.status == 200 && text.contains(r#""kind":"ended""#)
    });
    text
}

/// The decision log of the account's newest call, once it holds `needle`
/// (whatever it holds after 20 s otherwise).
pub fn newest_log(server: &Server, auth: &Auth, needle: &str) -> String {
    let mut log = String::new();
    wait_until(Duration::from_secs(20), || {
        let calls = get(server.http, "/v1/calls", auth).json();
        let newest = calls["data"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        log = decision_log(server, auth, &newest);
        log.contains(needle)
    });
    log
}
