//! `switchyard serve` over real sockets on 127.0.0.1, without SIPp: TLS,
//! call detail records, the connection cap, idle reaping, config errors.

#[path = "common/sip.rs"]
mod sip_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use sip_common::{Config, Server, guest, invite_without_sdp};

fn options(transport: &str, via: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {via};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:test@127.0.0.1>;tag=t-{call_id}\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads one response head from a stream (bounded by the socket timeout).
fn read_status(stream: &mut impl Read) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().map(str::to_string)
}

/// Sends an OPTIONS on `stream` (whose local address is `via`) and reads
/// the status line of the answer.
fn ask_options(
    stream: &mut (impl Read + Write),
    transport: &str,
    via: SocketAddr,
    call_id: &str,
) -> Option<String> {
    stream
        .write_all(options(transport, via, call_id).as_bytes())
        .unwrap();
    read_status(stream)
}

/// An OPTIONS on a TCP connection is answered 200.
fn assert_options_answered(stream: &mut TcpStream, call_id: &str) {
    let via = stream.local_addr().unwrap();
    assert_eq!(
        ask_options(stream, "TCP", via, call_id).as_deref(),
        Some("SIP/2.0 200 OK"),
        "OPTIONS {call_id}"
    );
}

/// The server closes `stream`: a read gets end of file (within the read
/// timeout of `tcp_client`).
fn assert_closed(stream: &mut TcpStream, why: &str) {
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).ok(), Some(0), "{why}");
}

fn tcp_client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn tls_listener_answers_options() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let server = Server::serve(
        &Config::new()
            .sip(r#"tls = ["127.0.0.1:0"]"#)
            .sip(&format!("tls_cert = \"{}\"", cert_path.display()))
            .sip(&format!("tls_key = \"{}\"", key_path.display())),
    );
    let tls: SocketAddr = server
        .output()
        .lines()
        .find_map(|l| l.strip_prefix("switchyard: listening sip tls "))
        .expect("a TLS listening line")
        .trim()
        .parse()
        .unwrap();

    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = tcp_client(tls);
    let local = socket.local_addr().unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    assert_eq!(
        ask_options(&mut stream, "TLS", local, "tls1").as_deref(),
        Some("SIP/2.0 200 OK"),
        "{}",
        server.output()
    );
}

#[test]
fn every_call_leaves_a_cdr_with_its_handler_and_version() {
    let storage = tempfile::tempdir().unwrap();
    let server = Server::serve(
        &Config::new()
            .storage(storage.path())
            .tenant("acme", &[])
            .number("486", "busy"),
    );
    let (socket, busy_response) = invite_without_sdp(&server, "486", "cdr-call-1");
    assert!(busy_response.starts_with("SIP/2.0 486"), "{busy_response}");
    let me = socket.local_addr().unwrap();
    let to = busy_response
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    let ack = format!(
        "ACK sip:486@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-cdr-call-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         {to}\r\n\
         Call-ID: cdr-call-1\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket.send_to(ack.as_bytes(), server.udp).unwrap();
    // SIGTERM: serve writes every queued record before it exits.
    drop(server);

    let db = rusqlite::Connection::open(storage.path().join("cdr.sqlite3")).unwrap();
    let (tenant, from, outcome, status, handler, version): (
        String,
        String,
        String,
        u16,
        String,
        String,
    ) = db
        .query_row(
            "SELECT tenant, from_uri, outcome, sip_status, handler, handler_version FROM cdr",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("one call record");
    use sha2::Digest;
    let expected_version = hex::encode(sha2::Sha256::digest(std::fs::read(guest("busy")).unwrap()));
    assert_eq!(
        (
            tenant.as_str(),
            from.as_str(),
            outcome.as_str(),
            status,
            handler.as_str()
        ),
        ("acme", "sip:alice@127.0.0.1", "busy", 486, "guest_busy")
    );
    assert_eq!(version, expected_version);

    // guest_busy is built with `#[call_handler(notices = false)]`: it
    // decided `incoming` and was not run again for the hangup.
    let lines: String = db
        .query_row("SELECT log FROM cdr", [], |r| r.get(0))
        .expect("one decision log");
    let events: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains(r#""kind":"event""#))
        .collect();
    assert_eq!(events.len(), 1, "{lines}");
    assert!(events[0].contains(r#""Incoming""#), "{lines}");
    assert!(lines.contains(r#""kind":"ended""#), "{lines}");
}

#[test]
fn connections_above_the_cap_are_refused_and_the_others_keep_working() {
    let server = Server::serve(&Config::new().sip("max_connections = 2"));
    let mut open = Vec::new();
    for i in 0..2 {
        let mut stream = tcp_client(server.tcp);
        assert_options_answered(&mut stream, &format!("cap{i}"));
        open.push(stream);
    }
    assert_closed(
        &mut tcp_client(server.tcp),
        "the third connection is closed at once",
    );
    assert_options_answered(&mut open[0], "cap-again");
}

#[test]
fn an_idle_connection_is_closed() {
    let server = Server::serve(&Config::new().sip("idle_secs = 1"));
    assert_closed(&mut tcp_client(server.tcp), "closed after 1 s idle");
}

#[test]
fn an_oversized_tcp_message_closes_the_connection_and_the_server_lives_on() {
    let mut server = Server::serve(&Config::new().sip("max_message_bytes = 2048"));
    let mut stream = tcp_client(server.tcp);
    let huge = format!(
        "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nX-Pad: {}\r\n",
        "a".repeat(8192)
    );
    let _ = stream.write_all(huge.as_bytes());
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    server.assert_alive();
    assert_options_answered(&mut tcp_client(server.tcp), "after-huge");
}

#[test]
fn a_config_error_names_the_bad_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let config = format!(
        "[storage]\npath = \"{}\"\n[[tenant]]\nid = \"a\"\n[[tenant.number]]\nnumber = \"1\"\ncomponent = \"/nonexistent/x.wasm\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tenant a: number 1: cannot read component /nonexistent/x.wasm"),
        "{stderr}"
    );
}
