//! SIP sockets: UDP readers, TCP/TLS connections, the connection cap and
//! idle reaping. Messages are parsed here, off the core task; a message
//! that fails validation is answered (or dropped) here and never reaches it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::sip::message::{self, Inbound, Rejection, StreamError, StreamFramer};
use crate::sip::{Peer, Transport};

use super::Input;
use super::config::SipSection;

#[derive(Clone)]
pub struct Limits {
    pub message: message::Limits,
    pub max_connections: usize,
    pub idle: Duration,
    connections: Arc<AtomicUsize>,
}

impl From<&SipSection> for Limits {
    fn from(sip: &SipSection) -> Self {
        Self {
            message: message::Limits {
                max_message: sip.max_message_bytes,
                ..message::Limits::default()
            },
            max_connections: sip.max_connections,
            idle: Duration::from_secs(sip.idle_secs),
            connections: Arc::new(AtomicUsize::new(0)),
        }
    }
}

pub async fn bind_udp(
    addr: SocketAddr,
    limits: &Limits,
    inputs: mpsc::UnboundedSender<Input>,
) -> anyhow::Result<Arc<UdpSocket>> {
    let socket = Arc::new(udp_socket(addr).with_context(|| format!("binding SIP UDP on {addr}"))?);
    let reader = Arc::clone(&socket);
    let limits = limits.message;
    tokio::spawn(async move {
        // One byte more than allowed, so an oversized datagram is seen as such.
        let mut buf = vec![0u8; limits.max_message + 1];
        loop {
            let (len, from) = match reader.recv_from(&mut buf).await {
                Ok(received) => received,
                // ICMP errors surface here on some systems; the socket lives on.
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            };
            let peer = Peer::new(Transport::Udp, from);
            match message::parse_datagram(&buf[..len], &limits) {
                Ok(Inbound::Message(msg)) => {
                    if inputs.send(Input::Message(peer, msg)).is_err() {
                        return;
                    }
                }
                Ok(Inbound::KeepAlive) => {}
                Err(rejection) => {
                    if let Some(reply) = answer(&peer, rejection) {
                        let _ = reader.send_to(&reply, from).await;
                    }
                }
            }
        }
    });
    Ok(socket)
}

/// Socket buffers asked for; the kernel caps them at net.core.rmem_max /
/// wmem_max. The 208 KiB default overflows in bursts of a few thousand
/// calls per second (RcvbufErrors), and every lost INVITE costs a 500 ms
/// retransmission.
const UDP_BUFFER: usize = 8 * 1024 * 1024;

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// What to send back for a rejected message (logged either way).
fn answer(peer: &Peer, rejection: Rejection) -> Option<Bytes> {
    match rejection {
        Rejection::Reply {
            status,
            reason,
            response,
        } => {
            tracing::info!(%peer, status, %reason, "bad SIP message answered");
            Some(response)
        }
        Rejection::Drop { reason } => {
            tracing::info!(%peer, %reason, "bad SIP message dropped");
            None
        }
        other => {
            tracing::info!(%peer, rejection = ?other, "bad SIP message dropped");
            None
        }
    }
}

/// The UDP sockets, with their address family looked up once (not per
/// datagram: `getsockname` showed up in profiles).
pub struct UdpSockets(Vec<(bool, Arc<UdpSocket>)>);

impl UdpSockets {
    pub fn new(sockets: Vec<Arc<UdpSocket>>) -> Self {
        Self(
            sockets
                .into_iter()
                .map(|s| (s.local_addr().is_ok_and(|a| a.is_ipv4()), s))
                .collect(),
        )
    }

    /// Sends from the socket of the destination's address family; a full
    /// send buffer drops the datagram (the transaction layer retransmits).
    pub fn send(&self, to: SocketAddr, bytes: &[u8]) {
        let socket = self
            .0
            .iter()
            .find(|(v4, _)| *v4 == to.is_ipv4())
            .or(self.0.first());
        if let Some((_, socket)) = socket
            && let Err(e) = socket.try_send_to(bytes, to)
        {
            tracing::debug!(%to, error = %e, "UDP send failed");
        }
    }
}

pub async fn listen_tcp(
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    inputs: mpsc::UnboundedSender<Input>,
) -> anyhow::Result<SocketAddr> {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding SIP {transport} on {addr}"))?;
    let bound = listener.local_addr()?;
    let limits = limits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                continue;
            };
            let open = limits.connections.fetch_add(1, Ordering::SeqCst);
            if open >= limits.max_connections {
                limits.connections.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(%from, max = limits.max_connections, "connection refused: too many open");
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let peer = Peer::new(transport, from);
            let (limits, inputs, tls) = (limits.clone(), inputs.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => connection(stream, peer, &limits, inputs).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(limits.idle, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => connection(stream, peer, &limits, inputs).await,
                            Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
                limits.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(bound)
}

/// Opens an outbound TCP connection for messages to `peer`; bytes sent
/// before it is up wait in the channel.
pub fn connect_tcp(
    peer: Peer,
    inputs: mpsc::UnboundedSender<Input>,
) -> mpsc::UnboundedSender<Bytes> {
    let (writer, mut pending) = mpsc::unbounded_channel::<Bytes>();
    let limits = Limits {
        message: message::Limits::default(),
        max_connections: usize::MAX,
        idle: Duration::from_secs(300),
        connections: Arc::new(AtomicUsize::new(0)),
    };
    tokio::spawn(async move {
        match TcpStream::connect(peer.addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (reader, mut write) = tokio::io::split(stream);
                tokio::spawn(async move {
                    while let Some(bytes) = pending.recv().await {
                        if write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                });
                read_loop(reader, peer, &limits, &inputs, None).await;
            }
            Err(e) => tracing::info!(%peer, error = %e, "cannot connect"),
        }
        let _ = inputs.send(Input::Disconnected(peer));
    });
    writer
}

/// How long a closing connection waits for its last answers.
const FLUSH_GRACE: Duration = Duration::from_millis(500);

async fn connection<S>(stream: S, peer: Peer, limits: &Limits, inputs: mpsc::UnboundedSender<Input>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut write) = tokio::io::split(stream);
    let (writer, mut outgoing) = mpsc::unbounded_channel::<Bytes>();
    if inputs.send(Input::Connected(peer, writer.clone())).is_err() {
        return;
    }
    let sender = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    read_loop(reader, peer, limits, &inputs, Some(writer)).await;
    // Answers to what was read last (a 400, a 404) are still on their way
    // from the core: give them a moment before the connection goes.
    let _ = tokio::time::timeout(FLUSH_GRACE, sender).await;
    let _ = inputs.send(Input::Disconnected(peer));
}

/// Reads until EOF, an error, a fatal framing error or `idle` without data.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    peer: Peer,
    limits: &Limits,
    inputs: &mpsc::UnboundedSender<Input>,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
) {
    let mut framer = StreamFramer::new(limits.message);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = match tokio::time::timeout(limits.idle, reader.read(&mut buf)).await {
            Err(_) => {
                tracing::info!(%peer, "closing idle connection");
                return;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..read]);
        while let Some(frame) = framer.next() {
            match frame {
                Ok(Inbound::Message(msg)) => {
                    if inputs.send(Input::Message(peer, msg)).is_err() {
                        return;
                    }
                }
                // RFC 5626 §3.5.1: a CRLF pong for each double-CRLF ping.
                Ok(Inbound::KeepAlive) => send(&writer, Bytes::from_static(b"\r\n")),
                Err(StreamError::Rejected(rejection)) => {
                    if let Some(reply) = answer(&peer, rejection) {
                        send(&writer, reply);
                    }
                }
                Err(StreamError::Fatal(reason)) => {
                    tracing::info!(%peer, %reason, "closing connection: unframeable input");
                    return;
                }
                Err(other) => {
                    tracing::info!(%peer, error = %other, "closing connection");
                    return;
                }
            }
        }
    }
}

fn send(writer: &Option<mpsc::UnboundedSender<Bytes>>, bytes: Bytes) {
    if let Some(writer) = writer {
        let _ = writer.send(bytes);
    }
}

pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use tokio_rustls::rustls;
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("reading {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("reading {}", key.display()))?,
    ))
    .with_context(|| format!("parsing the key in {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
