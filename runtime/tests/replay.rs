//! Decision logs over REST and the CLI as a client, against a real
//! `switchyard serve`: a SIP call into a guest is listed by `GET /v1/calls`,
//! its log read by `GET /v1/calls/{id}/log` and `switchyard logs`, and
//! `switchyard replay` runs it against the same component (no difference)
//! and a changed one (the first differing plan). `switchyard deploy`
//! uploads a component and binds a number a call then reaches.

#[path = "common/http.rs"]
mod http;
#[path = "common/sip.rs"]
mod sip_common;
#[path = "common/ua.rs"]
mod ua;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sip_common::{Config, Server, guest};
use switchyard::sip::sdp::Codec;
use switchyard::tenancy::Accounts;
use ua::Ua;

const WAIT: Duration = Duration::from_secs(20);
const NUMBER: &str = "300";

fn data(server: &Server) -> PathBuf {
    server.dir.path().join("data")
}

/// A new API key of `account` (made in the server's accounts store); a
/// new account first if `account` is `None`. Returns (account, secret).
fn key(server: &Server, account: Option<&str>) -> (String, String) {
    let accounts = Accounts::open(&data(server).join("accounts.sqlite3")).unwrap();
    let id = match account {
        Some(id) => id.to_owned(),
        None => accounts.create("Globex").unwrap().id,
    };
    let key = accounts
        .create_key(&id)
        .unwrap()
        .expect("the account exists");
    (id, key.secret)
}

/// `GET path` as `account:secret`: status and JSON body (null if none).
fn get(addr: SocketAddr, path: &str, (account, secret): &(String, String)) -> (u16, Value) {
    let got = http::get(addr, path, &http::Auth::account(account, secret));
    let body = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
    (got.status, body)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The `switchyard` CLI with `args`, talking to `server` as `auth`.
fn cli(server: &Server, auth: &(String, String), args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_API", format!("http://{}", server.http))
        .env("SWITCHYARD_ACCOUNT", &auth.0)
        .env("SWITCHYARD_KEY", &auth.1)
        .env("XDG_CACHE_HOME", server.dir.path().join("cli-cache"))
        .output()
        .expect("switchyard runs");
    Run {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Waits for `check` to give something, at most `WAIT`.
fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(found) = check() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `bytes` with `from` replaced by `to` (the same length): a new version
/// of a component whose code is the same and whose text differs.
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the text is in the component");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn a_real_calls_log_is_served_and_replays_against_a_changed_component() {
    let mut server = Server::serve(&Config::new().tenant("acme", &[]).number(NUMBER, "player"));
    let acme = key(&server, Some("acme"));

    // The player asks for a digit and says which one it got.
    let ua = Ua::new();
    let headers = [("X-Say", "Press a digit"), ("X-Gather", "yes")];
    let call = ua
        .call_with(server.udp, NUMBER, &Codec::ALL, true, &headers)
        .unwrap_or_else(|e| panic!("calling: {e}\n{}", server.output()));
    call.start_silence();
    assert!(call.wait_for_audio(300, WAIT), "no prompt audio");
    call.send_dtmf('5').unwrap();
    call.wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("no hangup after the digit: {e}\n{}", server.output()));
    drop(call);

    // Listed once its record is written (off the call path).
    let listed = wait_for(|| {
        let (status, page) = get(server.http, &format!("/v1/calls?number={NUMBER}"), &acme);
        assert_eq!(status, 200, "{page}");
        page["data"].as_array().filter(|d| !d.is_empty()).cloned()
    })
    .unwrap_or_else(|| panic!("the call is never listed\n{}", server.output()));
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("CA"), "{id}");
    assert_eq!(
        (listed[0]["to"].as_str(), listed[0]["status"].as_str()),
        (Some(NUMBER), Some("completed"))
    );
    let (status, page) = get(server.http, "/v1/calls?status=busy", &acme);
    assert_eq!(
        (status, page["data"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, one) = get(server.http, &format!("/v1/calls/{id}"), &acme);
    assert_eq!((status, one["id"].as_str()), (200, Some(id.as_str())));

    let log = wait_for(|| {
        let (status, log) = get(server.http, &format!("/v1/calls/{id}/log"), &acme);
        (status == 200).then_some(log)
    })
    .unwrap_or_else(|| panic!("no log for {id}\n{}", server.output()));
    let entries = log.as_array().expect("an array of entries");
    let gathered = entries
        .iter()
        .any(|e| e["kind"] == "event" && e["event"]["GatherComplete"]["digits"] == "5");
    assert!(gathered, "the digit is in the log: {log}");
    assert!(log.to_string().contains("You pressed 5"), "{log}");
    let decisions = entries.iter().filter(|e| e["kind"] == "decision");
    for decision in decisions {
        assert_eq!(
            decision["imports"][0]["import"], "entropy",
            "each decision records its instant and seed: {decision}"
        );
    }

    // Another account sees none of it.
    let globex = key(&server, None);
    for path in [format!("/v1/calls/{id}"), format!("/v1/calls/{id}/log")] {
        let (status, body) = get(server.http, &path, &globex);
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (_, theirs) = get(server.http, "/v1/calls", &globex);
    assert_eq!(theirs["data"].as_array().map(Vec::len), Some(0), "{theirs}");

    // The CLI: list, log, replay.
    let run = cli(&server, &acme, &["calls", "list", "--number", NUMBER]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("CALL "), "{}", run.stdout);
    assert!(
        run.stdout.contains(&id) && run.stdout.contains("completed"),
        "{}",
        run.stdout
    );

    let run = cli(&server, &acme, &["logs", &id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(r#"gather-complete digits="5""#),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(r#"say "You pressed 5""#),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("■ ended"), "{}", run.stdout);
    let run = cli(&server, &acme, &["logs", &id, "--json"]);
    assert_eq!(run.stdout.lines().count(), entries.len(), "{}", run.stdout);

    let dir = server.dir.path().to_owned();
    let player = std::fs::read(guest("player")).unwrap();
    let same = write(&dir, "same.wasm", &player);
    let run = cli(&server, &acme, &["replay", &id, "--component", &same]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("no difference"), "{}", run.stdout);
    assert!(run.stdout.contains("event #0 (incoming"), "{}", run.stdout);

    // Only the sentence after the digit changes: the first event replays
    // the same, the gather's result does not.
    let changed = write(
        &dir,
        "changed.wasm",
        &patched(&player, b"You pressed ", b"You entered "),
    );
    let run = cli(&server, &acme, &["replay", &id, "--component", &changed]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("event #0 (incoming"), "{}", run.stdout);
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains(r#"(gather-complete digits="5""#)
            && last.contains(r#"recorded plan [say "You pressed 5" · hangup] / new plan [say "You entered 5" · hangup]"#),
        "{}",
        run.stdout
    );

    // Wrong credentials, a call that is not there, a server that is not.
    let wrong = (acme.0.clone(), "0".repeat(64));
    let run = cli(&server, &wrong, &["calls", "list"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("check --account/--key"),
        "{}",
        run.stderr
    );
    let run = cli(&server, &globex, &["logs", &id]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
    let refused = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["calls", "list", "--api", "http://127.0.0.1:1"])
        .args(["--account", "acme", "--key", "k"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("is switchyard serve running at http://127.0.0.1:1/?"),
        "{stderr}"
    );

    drop(ua);
    server.assert_alive();
}

#[test]
fn deploy_uploads_a_component_and_a_call_to_its_number_reaches_it() {
    let mut server = Server::serve(&Config::new().tenant("acme", &[]));
    let acme = key(&server, Some("acme"));
    let ua = Ua::new();
    let status = ua
        .call(server.udp, "777", &Codec::ALL, true)
        .err()
        .and_then(|e| e.status());
    assert_eq!(status, Some(404), "nothing is bound to 777 yet");

    // `bye` answers, pauses a second and hangs up.
    let component = guest("bye");
    let args = ["deploy", &component, "--number", "777", "--name", "greeter"];
    let run = cli(&server, &acme, &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("uploaded greeter version 1 (sha256 "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("777 now runs greeter version 1"),
        "{}",
        run.stdout
    );

    let call = ua
        .call(server.udp, "777", &Codec::ALL, true)
        .unwrap_or_else(|e| panic!("calling the deployed number: {e}\n{}", server.output()));
    call.start_silence();
    call.wait_bye(WAIT)
        .unwrap_or_else(|e| panic!("the component did not hang up: {e}\n{}", server.output()));
    drop(call);

    // The same bytes again are the same version; new bytes the next one.
    let run = cli(&server, &acme, &args);
    assert!(run.stdout.contains("greeter version 1 "), "{}", run.stdout);
    // A custom section appended: other bytes, the same code.
    let mut bytes = std::fs::read(&component).unwrap();
    bytes.extend_from_slice(&[0, 3, 1, b'x', b'2']);
    let changed = write(server.dir.path(), "greeter.wasm", &bytes);
    let run = cli(&server, &acme, &["deploy", &changed, "--number", "777"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("777 now runs greeter version 2"),
        "the name defaults to the file stem: {}",
        run.stdout
    );

    let listed = wait_for(|| {
        let (_, page) = get(server.http, "/v1/calls?number=777", &acme);
        page["data"].as_array().filter(|d| !d.is_empty()).cloned()
    })
    .expect("the call is listed");
    assert_eq!(listed[0]["status"], "completed", "{listed:?}");

    drop(ua);
    server.assert_alive();
}
