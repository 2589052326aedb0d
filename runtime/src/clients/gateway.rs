//! The IO edge of the clients' gateway: one UDP socket speaking SIP to
//! the endpoint (the sans-IO [`switchyard_sip::gateway::Gateway`] decides
//! what), the media relay of each call, and the notices each client's
//! signalling session must pass on.
//!
//! ```text
//!  session ─Command─► gateway task ─► Gateway (sans-IO) ─UDP─► endpoint
//!     ▲                   │  events: Ringing, Connected, Incoming, Ended
//!     └──── Notice ◄──────┘  Connected → relay Control::Remote, presence busy
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use switchyard_sip::gateway::{CallKey, EndReason, Gateway, GatewayEvent, Placement};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::Clients;
use super::presence::DeviceId;
use super::relay::{Control, Relay};
use crate::media::engine::Engine;

/// What a client's session hears about one of its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Ringing,
    Connected,
    /// A call for the device, from `from`, with its caller's screening
    /// label when it has one.
    Incoming {
        from: String,
        label: Option<String>,
    },
    Ended {
        reason: EndReason,
        status: Option<u16>,
    },
}

/// Where a session takes its notices.
pub type Outbox = mpsc::UnboundedSender<(CallKey, Notice)>;

pub(super) enum Command {
    Place {
        placement: Placement,
        device: DeviceId,
        relay: Relay,
        reply: oneshot::Sender<Result<CallKey, String>>,
    },
    Accept {
        call: CallKey,
        relay: Relay,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Reject(CallKey),
    Hangup(CallKey),
    Dtmf {
        call: CallKey,
        digits: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Candidate(CallKey, String),
    /// The client's media went away (the relay on `rtp` saw ICE end).
    MediaClosed(SocketAddr),
    /// Another region's endpoint may ring clients here.
    Trust(SocketAddr),
}

/// The gateway as sessions and the endpoint see it. Cheap to clone.
#[derive(Clone)]
pub struct GatewayHandle {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// The gateway's SIP address (devices are `sip:DV7@addr`).
    pub addr: SocketAddr,
    /// Where call media sockets are opened.
    pub media_ip: std::net::IpAddr,
    /// The endpoint the gateway places calls into.
    pub endpoint: SocketAddr,
    /// The clients' share of `[media] ports`.
    pub ports: super::relay::Ports,
    /// Where client media is attached when a call's media is anchored here.
    pub engine: Engine,
}

/// One call as the gateway task keeps it.
struct Leg {
    device: DeviceId,
    relay: Option<Relay>,
    /// The call is with this runtime's endpoint (not another region's).
    local: bool,
    /// The device is marked in a call (presence busy).
    busy: bool,
}

/// Binds the gateway's SIP socket next to `endpoint` and starts its task;
/// call media is relayed on `media_ip` (the browser's host candidate).
pub async fn start(
    clients: Clients,
    endpoint: SocketAddr,
    (media_ip, engine): (std::net::IpAddr, Engine),
    (first, last): (u16, u16),
) -> anyhow::Result<GatewayHandle> {
    let ip = match endpoint.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    let endpoint = SocketAddr::new(ip, endpoint.port());
    let ports = std::sync::Arc::new(std::sync::Mutex::new(
        switchyard_media::ports::PortPool::new(first, last),
    ));
    // The gateway's own socket is in the range too: other regions'
    // runtimes reach it.
    let (socket, _, _) = super::relay::bind_pair(ip, &ports).map_err(anyhow::Error::msg)?;
    let socket = UdpSocket::from_std(socket)?;
    let addr = socket.local_addr()?;
    let core = Gateway::new(addr, endpoint, Vec::new(), rand::SeedableRng::from_os_rng());
    let (commands, queue) = mpsc::unbounded_channel();
    let handle = GatewayHandle {
        commands,
        addr,
        media_ip,
        endpoint,
        ports,
        engine,
    };
    let task = Task {
        core,
        socket,
        clients,
        legs: HashMap::new(),
    };
    tokio::spawn(task.run(queue));
    Ok(handle)
}

struct Task {
    core: Gateway,
    socket: UdpSocket,
    clients: Clients,
    legs: HashMap<CallKey, Leg>,
}

impl Task {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let wake = self.core.poll_timeout();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = queue.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                got = self.socket.recv_from(&mut buf) => {
                    if let Ok((len, from)) = got {
                        self.core.handle_datagram(Instant::now(), from, &buf[..len]);
                    }
                }
                () = sleep => self.core.handle_timeout(Instant::now()),
            }
            self.flush().await;
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Place {
                placement,
                device,
                relay,
                reply,
            } => {
                let placed = self.core.place(now, &placement);
                match &placed {
                    Ok(call) => {
                        let leg = Leg {
                            device,
                            relay: Some(relay),
                            local: true,
                            busy: false,
                        };
                        self.legs.insert(*call, leg);
                        self.busy(*call);
                    }
                    Err(_) => {
                        let _ = relay.control.send(Control::Stop);
                    }
                }
                let _ = reply.send(placed);
            }
            Command::Accept { call, relay, reply } => {
                let accepted = self.core.accept(now, call, relay.rtp);
                match (&accepted, self.legs.get_mut(&call)) {
                    (Ok(()), Some(leg)) => leg.relay = Some(relay),
                    _ => {
                        let _ = relay.control.send(Control::Stop);
                    }
                }
                let _ = reply.send(accepted);
            }
            Command::Reject(call) => self.core.reject(now, call),
            Command::Hangup(call) => {
                self.core.hangup(now, call);
                self.release(call);
            }
            Command::Dtmf {
                call,
                digits,
                reply,
            } => {
                let _ = reply.send(self.core.dtmf(now, call, &digits));
            }
            Command::Trust(endpoint) => self.core.trust(endpoint),
            Command::Candidate(call, candidate) => {
                if let Some(relay) = self.legs.get(&call).and_then(|l| l.relay.as_ref()) {
                    let _ = relay.control.send(Control::Candidate(candidate));
                }
            }
            Command::MediaClosed(rtp) => {
                let gone = (self.legs.iter())
                    .find(|(_, leg)| leg.relay.as_ref().is_some_and(|r| r.rtp == rtp))
                    .map(|(call, _)| *call);
                if let Some(call) = gone {
                    self.core.hangup(now, call);
                    let ended = Notice::Ended {
                        reason: EndReason::Failed,
                        status: None,
                    };
                    self.tell(call, ended);
                    self.release(call);
                }
            }
        }
    }

    /// Sends what the core wrote and acts on what it said.
    async fn flush(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            let _ = self
                .socket
                .send_to(&transmit.bytes, transmit.peer.addr)
                .await;
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                GatewayEvent::Ringing(call) => self.tell(call, Notice::Ringing),
                GatewayEvent::Connected { call, remote } => {
                    if let Some(leg) = self.legs.get(&call)
                        && let Some(relay) = &leg.relay
                    {
                        let _ = relay.control.send(Control::Remote(remote, leg.local));
                    }
                    self.tell(call, Notice::Connected);
                }
                GatewayEvent::Incoming {
                    call,
                    device,
                    from,
                    local,
                    label,
                } => self.incoming(call, &device, Notice::Incoming { from, label }, local),
                GatewayEvent::Ended {
                    call,
                    reason,
                    status,
                } => {
                    self.tell(call, Notice::Ended { reason, status });
                    self.release(call);
                }
            }
        }
        // Rejections and hangups the events caused.
        while let Some(transmit) = self.core.poll_transmit() {
            let _ = self
                .socket
                .send_to(&transmit.bytes, transmit.peer.addr)
                .await;
        }
    }

    fn incoming(&mut self, call: CallKey, device: &str, notice: Notice, local: bool) {
        let id = device.strip_prefix("DV").and_then(|d| d.parse().ok());
        let Some(device) = id.filter(|d| self.clients.outbox(*d).is_some()) else {
            // The device left after the endpoint looked it up.
            return self.core.reject(Instant::now(), call);
        };
        let leg = Leg {
            device,
            relay: None,
            local,
            busy: false,
        };
        self.legs.insert(call, leg);
        self.busy(call);
        self.tell(call, notice);
    }

    /// A call on the device makes its identity busy until it ends.
    fn busy(&mut self, call: CallKey) {
        if let Some(leg) = self.legs.get_mut(&call) {
            leg.busy = true;
            self.clients.in_call(leg.device, true);
        }
    }

    fn tell(&self, call: CallKey, notice: Notice) {
        if let Some(leg) = self.legs.get(&call)
            && let Some(outbox) = self.clients.outbox(leg.device)
        {
            let _ = outbox.send((call, notice));
        }
    }

    fn release(&mut self, call: CallKey) {
        let Some(leg) = self.legs.remove(&call) else {
            return;
        };
        if let Some(relay) = leg.relay {
            let _ = relay.control.send(Control::Stop);
        }
        if leg.busy {
            self.clients.in_call(leg.device, false);
        }
    }
}
