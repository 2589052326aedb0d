//! `switchyard serve` over real sockets on 127.0.0.1, without SIPp: TLS,
//! call detail records, the connection cap, idle reaping, config errors.

#[path = "common/sip.rs"]
mod sip_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use sip_common::{Server, guest};

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
    let server = Server::start(&format!(
        r#"
        [sip]
        udp = ["127.0.0.1:0"]
        tcp = ["127.0.0.1:0"]
        tls = ["127.0.0.1:0"]
        tls_cert = "{}"
        tls_key = "{}"
        [http]
        listen = "127.0.0.1:0"
        "#,
        cert_path.display(),
        key_path.display()
    ));
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
    stream
        .write_all(options("TLS", local, "tls1").as_bytes())
        .unwrap();
    assert_eq!(
        read_status(&mut stream).as_deref(),
        Some("SIP/2.0 200 OK"),
        "{}",
        server.output()
    );
}

#[test]
fn every_call_leaves_a_cdr_with_its_handler_and_version() {
    let storage = tempfile::tempdir().unwrap();
    let busy = guest("busy");
    let server = Server::start(&format!(
        r#"
        [sip]
        udp = ["127.0.0.1:0"]
        tcp = ["127.0.0.1:0"]
        [http]
        listen = "127.0.0.1:0"
        [storage]
        path = "{}"
        [[tenant]]
        id = "acme"
        [[tenant.number]]
        number = "486"
        component = "{busy}"
        "#,
        storage.path().display()
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = socket.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:486@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-cdr1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:486@127.0.0.1>\r\n\
         Call-ID: cdr-call-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket.send_to(invite.as_bytes(), server.udp).unwrap();
    let mut buf = [0u8; 4096];
    let busy_response = loop {
        let (n, _) = socket.recv_from(&mut buf).expect("a response");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 486") {
            break text;
        }
    };
    let to = busy_response
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    let ack = format!(
        "ACK sip:486@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-cdr1\r\n\
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
    let expected_version = hex::encode(sha2::Sha256::digest(std::fs::read(&busy).unwrap()));
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
}

#[test]
fn connections_above_the_cap_are_refused_and_the_others_keep_working() {
    let server = Server::start(
        r#"
        [sip]
        udp = ["127.0.0.1:0"]
        tcp = ["127.0.0.1:0"]
        max_connections = 2
        [http]
        listen = "127.0.0.1:0"
        "#,
    );
    let mut open = Vec::new();
    for i in 0..2 {
        let mut stream = tcp_client(server.tcp);
        let local = stream.local_addr().unwrap();
        stream
            .write_all(options("TCP", local, &format!("cap{i}")).as_bytes())
            .unwrap();
        assert_eq!(read_status(&mut stream).as_deref(), Some("SIP/2.0 200 OK"));
        open.push(stream);
    }
    let mut third = tcp_client(server.tcp);
    let mut byte = [0u8; 1];
    assert_eq!(
        third.read(&mut byte).ok(),
        Some(0),
        "the third connection is closed at once"
    );
    let first = &mut open[0];
    let local = first.local_addr().unwrap();
    first
        .write_all(options("TCP", local, "cap-again").as_bytes())
        .unwrap();
    assert_eq!(read_status(first).as_deref(), Some("SIP/2.0 200 OK"));
}

#[test]
fn an_idle_connection_is_closed() {
    let server = Server::start(
        r#"
        [sip]
        udp = ["127.0.0.1:0"]
        tcp = ["127.0.0.1:0"]
        idle_secs = 1
        [http]
        listen = "127.0.0.1:0"
        "#,
    );
    let mut stream = tcp_client(server.tcp);
    let mut byte = [0u8; 1];
    assert_eq!(
        stream.read(&mut byte).ok(),
        Some(0),
        "closed after 1 s idle"
    );
}

#[test]
fn an_oversized_tcp_message_closes_the_connection_and_the_server_lives_on() {
    let mut server = Server::start(
        r#"
        [sip]
        udp = ["127.0.0.1:0"]
        tcp = ["127.0.0.1:0"]
        max_message_bytes = 2048
        [http]
        listen = "127.0.0.1:0"
        "#,
    );
    let mut stream = tcp_client(server.tcp);
    let huge = format!(
        "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nX-Pad: {}\r\n",
        "a".repeat(8192)
    );
    let _ = stream.write_all(huge.as_bytes());
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    server.assert_alive();
    let mut again = tcp_client(server.tcp);
    let local = again.local_addr().unwrap();
    again
        .write_all(options("TCP", local, "after-huge").as_bytes())
        .unwrap();
    assert_eq!(read_status(&mut again).as_deref(), Some("SIP/2.0 200 OK"));
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
