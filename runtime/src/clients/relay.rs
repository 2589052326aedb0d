//! One client call's media: the WebRTC peer (DTLS-SRTP with the browser)
//! on one socket, the address offered to the call's SIP leg on another,
//! and G.711 passed between them without decoding (a PCMU/PCMA mismatch
//! between the two sides is converted sample by sample): a
//! [`PeerLeg`].
//!
//! A task per call holds it. Until the SIP leg answers, and whenever the
//! leg's media is not on this runtime's engine (another region's runtime,
//! a transfer's new party), the task drives the peer on the tokio clock
//! and relays plain RTP over loopback. When the SIP leg's media is an
//! engine stream here, the task hands the leg to that stream's worker,
//! which drives it in place of the stream's RTP socket (see
//! `media::engine::peer`), and waits to take it back if the media moves.
//! It ends when told to, or when the client's ICE goes away (`Closed`,
//! which ends the call).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use switchyard_media::ports::PortPool;
use switchyard_sip::sdp::Negotiated;
use switchyard_webrtc::Peer;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::media::StreamId;
use crate::media::engine::{Command, Engine, PeerLeg};

/// What the call's signalling tells its media.
#[derive(Debug)]
pub enum Control {
    /// Where the SIP leg takes the call's RTP, and in which codec; `true`
    /// when the leg is with this runtime's endpoint (so the address may
    /// be one of this engine's streams).
    Remote(Negotiated, bool),
    /// A candidate the client trickled.
    Candidate(String),
    Stop,
}

/// A call's media task, as its signalling holds it.
pub struct Relay {
    pub control: mpsc::UnboundedSender<Control>,
    /// The plain-RTP side's address (the SDP offered to the engine).
    pub rtp: SocketAddr,
}

/// The clients' share of `[media] ports`, shared by the calls' relays.
pub type Ports = Arc<Mutex<PortPool>>;

/// Binds a pair of UDP sockets on `ip` at ports `p` and `p + 1` from
/// `ports` (so every socket is in the range the operator opened); the
/// port to give back when done.
pub fn bind_pair(
    ip: IpAddr,
    ports: &Ports,
) -> Result<(std::net::UdpSocket, std::net::UdpSocket, u16), String> {
    let mut pool = ports.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..32 {
        let port = pool
            .allocate()
            .ok_or("no free port in the clients' share of [media] ports")?;
        let bind = |p: u16| {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, p))?;
            socket.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(socket)
        };
        match (bind(port), bind(port + 1)) {
            (Ok(a), Ok(b)) => return Ok((a, b, port)),
            _ => pool.release(port), // another process has it: the next
        }
    }
    Err(format!(
        "no port pair of the clients' share of [media] ports is free on {ip}"
    ))
}

/// Binds both sockets on `ip` from `ports`, answers the client's
/// `offer`, and starts relaying; returns the relay and the SDP answer for
/// the client. `closed` is called once if the client goes away on its own.
pub async fn start(
    ip: IpAddr,
    ports: &Ports,
    engine: Engine,
    offer: &str,
    closed: impl FnOnce() + Send + 'static,
) -> Result<(Relay, String), String> {
    let (webrtc, plain, port) = bind_pair(ip, ports)?;
    let release = {
        let ports = Arc::clone(ports);
        move || (ports.lock().unwrap_or_else(PoisonError::into_inner)).release(port)
    };
    let local = webrtc.local_addr().map_err(|e| e.to_string());
    let answered = local
        .and_then(|local| Peer::answer(Instant::now(), local, offer).map_err(|e| e.to_string()));
    let (peer, answer) = match answered {
        Ok(answered) => answered,
        Err(e) => {
            release();
            return Err(e);
        }
    };
    let leg = PeerLeg::new(peer, (webrtc, plain), Box::new(closed), Box::new(release))
        .map_err(|e| format!("cannot use the media sockets: {e}"))?;
    let rtp = leg.plain_addr();
    let (control, commands) = mpsc::unbounded_channel();
    tokio::spawn(run(Box::new(leg), commands, engine));
    Ok((Relay { control, rtp }, answer))
}

/// The call's media until it ends: relayed here, or attached to the
/// engine stream the SIP leg's media is anchored on (and taken back
/// when the media moves elsewhere).
async fn run(
    mut leg: Box<PeerLeg>,
    mut commands: mpsc::UnboundedReceiver<Control>,
    engine: Engine,
) {
    let mut attach = None;
    loop {
        if let Some(stream) = attach.take() {
            engine.command(stream, Command::Attach(leg));
            match attached(&mut commands, &engine, stream).await {
                Some((back, next)) => (leg, attach) = (back, next),
                None => return,
            }
            continue;
        }
        match relay(&mut leg, &mut commands, &engine).await {
            Until::Attach(stream) => attach = Some(stream),
            Until::Ended => return,
        }
    }
}

enum Until {
    /// The SIP leg's media is on this engine's `stream`.
    Attach(StreamId),
    /// Stopped, or the client left (`closed` ran).
    Ended,
}

/// Relays between the peer and the SIP leg's remote over loopback until
/// the media can be attached to an engine stream.
async fn relay(
    leg: &mut PeerLeg,
    commands: &mut mpsc::UnboundedReceiver<Control>,
    engine: &Engine,
) -> Until {
    let sockets = (leg.webrtc.try_clone())
        .and_then(UdpSocket::from_std)
        .and_then(|w| Ok((w, UdpSocket::from_std(leg.plain.try_clone()?)?)));
    let (webrtc, plain) = match sockets {
        Ok(sockets) => sockets,
        Err(e) => {
            tracing::warn!(error = %e, "client media sockets unusable");
            return Until::Ended;
        }
    };
    let mut from_client = vec![0u8; 2048];
    let mut from_engine = vec![0u8; 2048];
    loop {
        let target = leg.remote.and_then(|r| r.remote);
        let Some(deadline) = leg.drive(Instant::now(), |packet| {
            if let Some(to) = target {
                let _ = plain.try_send_to(packet, to);
            }
        }) else {
            return Until::Ended;
        };
        tokio::select! {
            command = commands.recv() => match command {
                Some(Control::Remote(remote, local)) => {
                    leg.remote = Some(remote);
                    if let Some(stream) = local.then(|| engine_stream(engine, &remote)).flatten() {
                        return Until::Attach(stream);
                    }
                }
                Some(Control::Candidate(candidate)) => leg.add_candidate(&candidate),
                Some(Control::Stop) | None => return Until::Ended,
            },
            got = webrtc.recv_from(&mut from_client) => {
                if let Ok((len, source)) = got {
                    leg.handle_datagram(Instant::now(), source, &from_client[..len]);
                }
            }
            got = plain.recv_from(&mut from_engine) => {
                if let Ok((len, _)) = got {
                    leg.to_client(Instant::now(), &from_engine[..len]);
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

/// Waits while `stream`'s worker drives the leg; when the SIP leg's
/// media moves, the leg back and the stream it moves to, if any.
async fn attached(
    commands: &mut mpsc::UnboundedReceiver<Control>,
    engine: &Engine,
    stream: StreamId,
) -> Option<(Box<PeerLeg>, Option<StreamId>)> {
    loop {
        match commands.recv().await? {
            Control::Remote(remote, local) => {
                let next = local.then(|| engine_stream(engine, &remote)).flatten();
                if next == Some(stream) {
                    continue;
                }
                let (reply, back) = oneshot::channel();
                engine.command(stream, Command::Detach(reply));
                // The stream closed meanwhile: the leg went with it.
                let mut leg = back.await.ok()?;
                leg.remote = Some(remote);
                return Some((leg, next));
            }
            // ICE-lite: the client's checks find us; its candidates
            // only matter to a full agent.
            Control::Candidate(_) => {}
            Control::Stop => return None,
        }
    }
}

/// The engine stream `remote` points at, when the SIP leg is with this
/// runtime's endpoint.
fn engine_stream(engine: &Engine, remote: &Negotiated) -> Option<StreamId> {
    engine.stream_at(remote.remote?)
}
