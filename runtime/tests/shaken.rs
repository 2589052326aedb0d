//! Verified incoming calls (issue 17, C11), end to end: a runtime with
//! `[shaken] verify` checks each incoming INVITE's Identity header before
//! its handler runs. The PASSporTs are signed with the SHAKEN test key
//! (`runtime/shaken/tests/data`, from libstirshaken); the certificate is
//! served over https by a server in this test, on 127.0.0.1 (its TLS
//! certificate trusted through `[shaken] fetch_ca`; loopback allowed by
//! `[shaken] fetch_private`). The handler's `incoming.verification` is
//! read from the call's decision log.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{acme, new_key_secret, newest_log};
use sip_common::{Config, Server};
use switchyard::sip::sdp::Codec;
use switchyard_shaken::{Attestation, Claims, Signer};
use tokio_rustls::rustls;

const CA: &str = include_str!("../shaken/tests/data/ca_ca.pem");
const SP: &str = include_str!("../shaken/tests/data/sp_sp.pem");
const KEY: &str = include_str!("../shaken/tests/data/sp_sp.priv");
const CALLER: &str = "+15550100";

/// An https server on 127.0.0.1 serving `/sp.pem`; the PEM of its
/// self-signed TLS certificate. Serves for at most a minute.
fn certificate_server() -> (SocketAddr, String) {
    let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let certs = vec![tls.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(tls.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut request = String::new();
            let mut reader = BufReader::new(&mut tls);
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = match request.split_whitespace().nth(1) {
                Some("/sp.pem") => ("200 OK", SP),
                _ => ("404 Not Found", ""),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/x-pem-file\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(answer.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (addr, tls.cert.pem())
}

/// acme's IVR on 100, in a runtime checking Identity headers.
fn verifying_runtime(dir: &std::path::Path, tls_ca: &str, fetch_private: bool) -> Server {
    verifying_runtime_with(dir, tls_ca, fetch_private, None)
}

/// [`verifying_runtime`], acme ruled by the verification policy at `policy`.
fn verifying_runtime_with(
    dir: &std::path::Path,
    tls_ca: &str,
    fetch_private: bool,
    policy: Option<&str>,
) -> Server {
    let roots = dir.join("roots.pem");
    let fetch_ca = dir.join("fetch-ca.pem");
    std::fs::write(&roots, CA).unwrap();
    std::fs::write(&fetch_ca, tls_ca).unwrap();
    let table = format!(
        "[shaken]\nverify = true\nroots = \"{}\"\nfetch_ca = \"{}\"\nfetch_private = {fetch_private}\ntimeout_ms = 1500\n",
        roots.display(),
        fetch_ca.display()
    );
    let config = Config::new().table(&table);
    match policy {
        None => Server::serve(&acme(config, "100", "ivr")),
        Some(path) => Server::serve(
            &config
                .api(&format!("admin_key = \"{}\"", http::ADMIN_KEY))
                .tenant("acme", &[])
                .tenant_key(&format!("policy = \"{path}\""))
                .number("100", "ivr"),
        ),
    }
}

/// A verifying runtime whose acme is ruled by the policy at `policy`,
/// and the x5u of its certificate server (the directory keeps its files).
fn ruled_by(policy: &str) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let (https, tls_ca) = certificate_server();
    let server = verifying_runtime_with(dir.path(), &tls_ca, true, Some(policy));
    (dir, server, format!("https://{https}/sp.pem"))
}

fn identity(x5u: &str, iat: i64) -> String {
    let claims = Claims {
        attest: Attestation::A,
        orig: CALLER.into(),
        dest: vec!["100".into()],
        iat,
        origid: "shaken-test".into(),
    };
    Signer::from_pem(KEY, x5u).unwrap().sign(&claims)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Calls 100 with `headers`, hangs up, and returns the call's decision
/// log once it contains `expect` (the newest log, whatever it says, after
/// 20 s).
fn call(server: &Server, headers: &[(&str, &str)], expect: &str) -> String {
    let (_, _, acme) = new_key_secret(server.http, "acme");
    let ua = ua::Ua::new().calling_as(CALLER);
    let call = ua
        .call_with(server.udp, "100", &[Codec::PCMU], true, headers)
        .unwrap_or_else(|e| panic!("calling: {e}\n{}", server.output()));
    call.bye().unwrap();
    newest_log(server, &acme, expect)
}

#[test]
fn identity_headers_are_checked_before_the_handler_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (https, tls_ca) = certificate_server();
    let mut server = verifying_runtime(dir.path(), &tls_ca, true);
    let x5u = format!("https://{https}/sp.pem");

    let log = call(
        &server,
        &[("Identity", &identity(&x5u, unix_now()))],
        "attestation A",
    );
    assert!(
        log.contains("\"status\":\"Passed\"") && log.contains("\"attestation\":\"A\""),
        "{log}\n{}",
        server.output()
    );
    assert!(log.contains("passport valid: attestation A"), "{log}");
    // Without a policy component the default rules: valid, attestation A
    // is labelled verified.
    assert!(log.contains("\"label\":\"verified\""), "{log}");
    assert!(log.contains("\"by\":\"the default policy\""), "{log}");
    // Stale (iat 10 minutes ago), an unknown certificate URL, plain http
    // (the libstirshaken corpus header): each fails, saying why; no
    // header at all is no evidence.
    let stale = identity(&x5u, unix_now() - 600);
    let missing = identity(&format!("https://{https}/gone.pem"), unix_now());
    let corpus = include_str!("../shaken/tests/data/sp_passport.txt");
    let http = corpus
        .lines()
        .skip_while(|l| !l.starts_with("SIP Identity"))
        .nth(1)
        .unwrap();
    let cases = [
        (stale.as_str(), "is stale"),
        (missing.as_str(), "answered 404"),
        (http, "is not https"),
    ];
    for (header, why) in cases {
        let log = call(&server, &[("Identity", header)], why);
        assert!(
            log.contains("\"status\":\"Failed\"") && log.contains(why),
            "{why}: {log}"
        );
    }
    let log = call(&server, &[], "no Identity header");
    assert!(log.contains("\"status\":\"NoEvidence\""), "{log}");
    assert!(log.contains("no Identity header"), "{log}");
    server.assert_alive();
}

/// Without `[shaken] fetch_private`, an x5u on loopback is refused by the
/// egress policy: the call is not verified.
#[test]
fn an_x5u_on_a_private_address_is_refused_by_the_egress_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (https, tls_ca) = certificate_server();
    let mut server = verifying_runtime(dir.path(), &tls_ca, false);
    let x5u = format!("https://{https}/sp.pem");
    let log = call(
        &server,
        &[("Identity", &identity(&x5u, unix_now()))],
        "fetch_private",
    );
    assert!(log.contains("\"status\":\"Failed\""), "{log}");
    assert!(
        log.contains("fetch_private"),
        "the refusal names the key: {log}"
    );
    server.assert_alive();
}

/// Two providers: runtime A signs the calls its tenant places through
/// its trunk (`[tenant.shaken]`, the SHAKEN test key, attestation A);
/// the trunk leads to runtime B, which verifies them. A caller reaches
/// A's relay guest, which dials the number through the trunk: B's
/// handler sees the call verified, attestation A.
#[test]
fn a_call_signed_by_one_runtime_is_verified_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let (https, tls_ca) = certificate_server();
    let mut b = verifying_runtime(dir.path(), &tls_ca, true);
    let key = dir.path().join("sp.priv");
    std::fs::write(&key, KEY).unwrap();
    let signing = format!(
        "shaken = {{ key = \"{}\", x5u = \"https://{https}/sp.pem\", attest = \"A\" }}",
        key.display()
    );
    let mut a = Server::serve(
        &Config::new()
            .tenant("acme", &[])
            .tenant_key(&signing)
            .number("100", "relay")
            .trunk("carrier", b.udp.port()),
    );
    let (_, _, acme_b) = new_key_secret(b.http, "acme");
    let ua = ua::Ua::new().calling_as(CALLER);
    let call = ua
        .call(a.udp, "100", &[Codec::PCMU], true)
        .unwrap_or_else(|e| panic!("calling A: {e}\n{}", a.output()));
    // B's log is stored when its call ends: once B answered (its IVR
    // has a media stream open), hang up.
    let at_b = sip_common::wait_until(Duration::from_secs(10), || {
        let metrics = http::get(b.http, "/metrics", &http::Auth::none()).text();
        (metrics.lines()).any(|l| l.starts_with("switchyard_media_streams ") && !l.ends_with(" 0"))
    });
    assert!(
        at_b,
        "the call never reached B: {}\n{}",
        a.output(),
        http::get(b.http, "/metrics", &http::Auth::none()).text()
    );
    let _ = call.bye();
    let log = newest_log(&b, &acme_b, "\"kind\":\"ended\"");
    assert!(
        log.contains("\"status\":\"Passed\"") && log.contains("\"attestation\":\"A\""),
        "{log}\nA: {}\nB: {}",
        a.output(),
        b.output()
    );
    a.assert_alive();
    b.assert_alive();
}

/// The account's policy component rules on its calls: the sample policy
/// (`guests/screen`) labels an invalid PASSporT likely-spoofed and a
/// valid A verified.
#[test]
fn the_accounts_policy_component_labels_the_caller() {
    let (_dir, mut server, x5u) = ruled_by(&sip_common::guest("screen"));
    let valid = identity(&x5u, unix_now());
    let log = call(&server, &[("Identity", &valid)], "\"kind\":\"ended\"");
    assert!(log.contains("\"label\":\"verified\""), "{log}");
    assert!(log.contains("\"by\":\"the account's policy\""), "{log}");
    let stale = identity(&x5u, unix_now() - 600);
    let log = call(&server, &[("Identity", &stale)], "is stale");
    assert!(log.contains("\"label\":\"likely-spoofed\""), "{log}");
    assert!(log.contains("\"status\":\"Failed\""), "{log}");
    server.assert_alive();
}

/// A policy that traps, or runs past its deadline, is replaced by the
/// default policy for that call, never by plain accept: the stale
/// PASSporT is labelled likely-spoofed all the same, and the log says
/// why the default ruled. (`guests/screen-fault` traps for callers
/// starting +1999 and spins for everyone else.)
#[test]
fn a_failing_policy_falls_back_to_the_default() {
    let (_dir, mut server, x5u) = ruled_by(&sip_common::guest("screen_fault"));
    let stale = identity(&x5u, unix_now() - 600);
    let log = call(&server, &[("Identity", &stale)], "is stale");
    assert!(log.contains("\"label\":\"likely-spoofed\""), "{log}");
    assert!(
        log.contains("the default policy (the account's policy failed: guest exceeded its"),
        "the spinning policy was stopped by its deadline: {log}"
    );

    let (_, _, acme) = new_key_secret(server.http, "acme");
    let ua = ua::Ua::new().calling_as("+19995550100");
    let call = ua
        .call(server.udp, "100", &[Codec::PCMU], true)
        .unwrap_or_else(|e| panic!("calling: {e}\n{}", server.output()));
    call.bye().unwrap();
    let log = newest_log(&server, &acme, "guest trapped");
    assert!(
        log.contains("the default policy (the account's policy failed: guest trapped"),
        "{log}"
    );
    assert!(
        log.contains("\"label\":\"unverified\""),
        "no evidence: {log}"
    );
    server.assert_alive();
}

/// A policy built against 0.2.0 (`verify`, free-text labels) still runs
/// (`tests/fixtures/wit-0.2.0/guest_verify.wasm`): a valid PASSporT is
/// labelled "verified", anything short of a denial is accepted unlabelled.
#[test]
fn a_policy_built_against_0_2_0_still_runs() {
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wit-0.2.0/guest_verify.wasm"
    );
    let (_dir, mut server, x5u) = ruled_by(policy);
    let valid = identity(&x5u, unix_now());
    let log = call(&server, &[("Identity", &valid)], "\"kind\":\"ended\"");
    assert!(log.contains("\"label\":\"verified\""), "{log}");
    assert!(log.contains("\"by\":\"the account's policy\""), "{log}");
    let stale = identity(&x5u, unix_now() - 600);
    let log = call(&server, &[("Identity", &stale)], "is stale");
    assert!(log.contains("\"label\":null"), "accepted unlabelled: {log}");
    server.assert_alive();
}
