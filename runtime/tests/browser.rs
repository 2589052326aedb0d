//! The softphone page (`/phone`) and the client SDK (`/switchyard.js`) in
//! headless Chromium (Debian `chromium`) against a real `switchyard serve`:
//! a token in the link registers the browser as client alice, present
//! while the page is open, offline once the browser is gone.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
// The launcher the WebRTC spike uses too (same flags).
#[path = "../webrtc/tests/common/chromium.rs"]
mod chromium;

use std::time::Duration;

use chromium::chromium;
use http::{ADMIN_KEY, Auth, client_token, get, new_key_secret};
use sip_common::{Config, Server, wait_until};

#[test]
fn the_phone_page_registers_the_browser_as_a_client() {
    let server = Server::serve(
        &Config::new()
            .api(&format!("admin_key = \"{ADMIN_KEY}\""))
            .tenant("acme", &[]),
    );
    let addr = server.http;
    let (_, _, acme) = new_key_secret(addr, "acme");
    let token = client_token(addr, &acme, "alice");

    // The page and the SDK are served as what they are.
    let page = get(addr, "/phone", &Auth::none());
    assert_eq!(page.status, 200);
    assert!(
        page.head.contains("content-type: text/html"),
        "{}",
        page.head
    );
    let sdk = get(addr, "/switchyard.js", &Auth::none());
    assert!(
        sdk.head.contains("content-type: text/javascript"),
        "{}",
        sdk.head
    );
    assert!(sdk.text().contains("export class Client"));

    let profile = tempfile::tempdir().unwrap();
    let mut browser = chromium(
        &format!("http://{addr}/phone#token={token}"),
        profile.path(),
    );
    let presence = || get(addr, "/v1/presence/alice", &acme).json();
    let present = wait_until(Duration::from_secs(30), || {
        presence()["status"] == "available"
    });
    let devices = presence()["devices"].clone();
    let _ = browser.kill();
    let _ = browser.wait();
    assert!(present, "the page never registered: {}", presence());
    assert_eq!(devices, 1);
    let gone = wait_until(Duration::from_secs(15), || {
        presence()["status"] == "offline"
    });
    assert!(gone, "the closed browser stays present: {}", presence());
}
