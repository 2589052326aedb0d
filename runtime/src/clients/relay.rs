//! One client call's media: the WebRTC peer (DTLS-SRTP with the browser)
//! on one socket, plain RTP with the runtime's media engine on another,
//! and G.711 passed between them without decoding (a PCMU/PCMA mismatch
//! between the two sides is converted sample by sample).
//!
//! ```text
//!  browser ══SRTP══ webrtc socket ─ Peer ─ audio ─► rtp socket ──RTP──► engine (remote)
//!                                       ◄─ send_audio ◄─ RTP ◄──────────┘
//! ```
//!
//! A task per call: the sans-IO [`Peer`] is driven here, on the tokio
//! clock. It ends when told to, or when the client's ICE goes away
//! (`Closed`, which ends the call).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use switchyard_media::g711::Law;
use switchyard_media::ports::PortPool;
use switchyard_media::rtp;
use switchyard_sip::sdp::Negotiated;
use switchyard_webrtc::{Peer, PeerEvent, Poll};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What the call's signalling tells its media.
#[derive(Debug)]
pub enum Control {
    /// Where the engine takes the call's RTP, and in which codec.
    Remote(Negotiated),
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
    offer: &str,
    closed: impl FnOnce() + Send + 'static,
) -> Result<(Relay, String), String> {
    let (webrtc, plain, port) = bind_pair(ip, ports)?;
    let release = {
        let ports = Arc::clone(ports);
        move || (ports.lock().unwrap_or_else(PoisonError::into_inner)).release(port)
    };
    let sockets = UdpSocket::from_std(webrtc).and_then(|w| Ok((w, UdpSocket::from_std(plain)?)));
    let (webrtc, plain) = match sockets {
        Ok(sockets) => sockets,
        Err(e) => {
            release();
            return Err(format!("cannot use the media sockets: {e}"));
        }
    };
    let local = webrtc.local_addr().map_err(|e| e.to_string())?;
    let rtp = plain.local_addr().map_err(|e| e.to_string())?;
    let (peer, answer) = match Peer::answer(Instant::now(), local, offer) {
        Ok(answered) => answered,
        Err(e) => {
            release();
            return Err(e.to_string());
        }
    };
    let (control, commands) = mpsc::unbounded_channel();
    let run = Run {
        peer,
        webrtc,
        plain,
        remote: None,
        out: OutStream::default(),
    };
    tokio::spawn(async move {
        let ending = run.relay(commands).await;
        release();
        if ending == Ending::Closed {
            closed();
        }
    });
    Ok((Relay { control, rtp }, answer))
}

#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Stopped,
    Closed,
}

/// Our RTP stream to the engine: one SSRC, sequence and timestamps of our
/// own (the browser's may jump; the engine's jitter buffer wants a steady
/// stream).
#[derive(Default)]
struct OutStream {
    seq: u16,
    ts: u32,
    ssrc: u32,
    started: bool,
    buf: Vec<u8>,
}

struct Run {
    peer: Peer,
    webrtc: UdpSocket,
    plain: UdpSocket,
    remote: Option<Negotiated>,
    out: OutStream,
}

impl Run {
    async fn relay(mut self, mut commands: mpsc::UnboundedReceiver<Control>) -> Ending {
        let mut from_client = vec![0u8; 2048];
        let mut from_engine = vec![0u8; 2048];
        self.out.ssrc = rand::random();
        loop {
            let deadline = match self.drive() {
                Ok(Some(at)) => at,
                Ok(None) => return Ending::Closed,
                Err(e) => {
                    tracing::warn!(error = %e, "client media failed");
                    return Ending::Closed;
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Control::Remote(remote)) => self.remote = Some(remote),
                    Some(Control::Candidate(candidate)) => {
                        if let Err(e) = self.peer.add_candidate(&candidate) {
                            tracing::debug!(error = %e, "client candidate ignored");
                        }
                    }
                    Some(Control::Stop) | None => return Ending::Stopped,
                },
                got = self.webrtc.recv_from(&mut from_client) => {
                    if let Ok((len, source)) = got {
                        let _ = self.peer.handle_packet(Instant::now(), source, &from_client[..len]);
                    }
                }
                got = self.plain.recv_from(&mut from_engine) => {
                    if let Ok((len, _)) = got {
                        self.send_client(&from_engine[..len]);
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    let _ = self.peer.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Does what the peer asks until it waits; `None` once the client left.
    fn drive(&mut self) -> Result<Option<Instant>, String> {
        loop {
            match self.peer.poll().map_err(|e| e.to_string())? {
                Poll::Timeout(at) => return Ok(Some(at)),
                Poll::Transmit(t) => {
                    let _ = self.webrtc.try_send_to(&t.contents, t.destination);
                }
                Poll::Event(PeerEvent::Audio { law, payload, .. }) => {
                    self.send_engine(law, &payload)
                }
                Poll::Event(PeerEvent::Closed) => return Ok(None),
                Poll::Event(PeerEvent::Connected) => tracing::debug!("client media connected"),
            }
        }
    }

    fn send_engine(&mut self, law: Law, payload: &[u8]) {
        let Some(remote) = self.remote else {
            return;
        };
        let Some(addr) = remote.remote.filter(|_| remote.direction.sends()) else {
            return;
        };
        let want = Law::of(remote.codec);
        let out = &mut self.out;
        let header = rtp::Header {
            marker: !out.started,
            pt: remote.codec.pt,
            seq: out.seq,
            ts: out.ts,
            ssrc: out.ssrc,
        };
        out.started = true;
        out.seq = out.seq.wrapping_add(1);
        out.ts = out.ts.wrapping_add(payload.len() as u32);
        let room = header.build(&mut out.buf, payload.len());
        transcode(law, want, payload, room);
        let _ = self.plain.try_send_to(&out.buf, addr);
    }

    fn send_client(&mut self, datagram: &[u8]) {
        let (Some(remote), Some(law)) = (self.remote, self.peer.law()) else {
            return;
        };
        let Ok(packet) = rtp::parse(datagram) else {
            return; // RTCP, or not RTP
        };
        if packet.header.pt != remote.codec.pt {
            return; // telephone-event and comfort noise stay on the SIP side
        }
        let mut payload = vec![0u8; packet.payload.len()];
        transcode(Law::of(remote.codec), law, packet.payload, &mut payload);
        let _ = self
            .peer
            .send_audio(Instant::now(), packet.header.ts, &payload);
    }
}

/// G.711 from one law into the other (a copy when they agree).
fn transcode(from: Law, to: Law, input: &[u8], out: &mut [u8]) {
    if from == to {
        out.copy_from_slice(input);
    } else {
        for (o, &i) in out.iter_mut().zip(input) {
            *o = to.encode_sample(from.decode_sample(i));
        }
    }
}
