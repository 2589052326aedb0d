//! Browser and app clients (C2, C3): the signalling WebSocket at
//! `/v1/client` on the HTTP listener, and who is present.
//!
//! ```text
//!   client ──GET /v1/client (Upgrade: websocket)──► upgrade() ─► session task
//!      register {token} ─► tokens::check (key live, signature, times)
//!                       ─► Presence::connect(account, identity) ─► registered
//!      heartbeat        ─► token checked again (a revoked key ends it) ─► heartbeat
//!      presence {...}   ─► Presence::set ─► presence (the identity's sum)
//!      silence > 2 × heartbeat, close, bad token ─► Presence::disconnect
//!   REST GET /v1/presence[/{identity}] ─► Clients::view / list
//!   tenant's server ──GET /v1/events/presence (WebSocket, Basic auth)──►
//!      every present identity, then each change of an identity's presence
//! ```
//!
//! Calls: a client's `invite` opens a media [`relay`] (its WebRTC peer
//! answers the client's offer) and the [`gateway`] places a SIP call into
//! the endpoint, decided by the handler of the token's grant. `dial
//! client:alice` asks [`Clients`] (the endpoint's `ClientLocator`) which
//! devices may ring; the endpoint's INVITE to `sip:DV7@gateway` becomes an
//! `incoming` notice, and the client's `answer` (with its offer) a 200.
//! Runtimes of a region set tell each other where their clients are
//! ([`regions`]): a call in one region rings a client through its own
//! region's gateway.
//!
//! The protocol is in [`message`]; presence is sans-IO in [`presence`].

pub mod gateway;
pub mod message;
pub mod presence;
pub mod regions;
pub mod relay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::Request;
use hyper::body::Incoming;
use hyper_tungstenite::tungstenite::Message;
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use hyper_tungstenite::tungstenite::protocol::frame::CloseFrame;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::{ApiError, Reply};
use crate::tenancy::Accounts;
use crate::tokens::{self, Verified};
use gateway::{Command, GatewayHandle, Notice, Outbox};
use message::{ClientMessage, MAX_MESSAGE, ServerMessage};
use presence::{DeviceId, NotRung, Presence, View};
use switchyard_sip::gateway::{CallKey, ClientLocator, Placement, Unreachable};

/// The client SDK (one ES module, served at `/switchyard.js`).
pub const SDK: &str = include_str!("web/switchyard.js");
/// The softphone page (served at `/phone`).
pub const PHONE: &str = include_str!("web/phone.html");

/// How often clients must send something, unless the config says.
pub const HEARTBEAT: Duration = Duration::from_secs(25);
/// How long a new connection may take to register.
const REGISTER_WITHIN: Duration = Duration::from_secs(10);

/// Presence changes a watcher may fall behind by before it is told to
/// read the snapshot again.
const EVENTS: usize = 1024;

/// The clients of every account. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    presence: Arc<Mutex<Presence>>,
    accounts: Accounts,
    heartbeat: Duration,
    /// (account, the identity's new presence) on every change.
    events: tokio::sync::broadcast::Sender<(String, View)>,
    /// Set once the gateway runs (it needs a SIP listener).
    gateway: Arc<OnceLock<GatewayHandle>>,
    /// Each registered device's session, for notices about its calls.
    outboxes: Arc<Mutex<HashMap<DeviceId, Outbox>>>,
    /// Identities connected to other regions' runtimes.
    remote: Arc<Mutex<regions::Remote>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl Clients {
    pub fn new(accounts: Accounts, heartbeat: Duration) -> Self {
        Self {
            presence: Arc::default(),
            accounts,
            heartbeat,
            events: tokio::sync::broadcast::channel(EVENTS).0,
            gateway: Arc::default(),
            outboxes: Arc::default(),
            remote: Arc::default(),
        }
    }

    /// What another region's runtime says about some of its identities;
    /// its endpoint may ring this runtime's clients from now on. The
    /// answer says where this runtime's endpoint is, for the same.
    pub fn seen_there(&self, seen: Vec<regions::Seen>) -> regions::Peer {
        let endpoints: std::collections::BTreeSet<_> = seen.iter().map(|s| s.endpoint).collect();
        for endpoint in endpoints {
            self.trust(endpoint);
        }
        let now = std::time::Instant::now();
        let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
        for seen in seen {
            remote.update(now, seen);
        }
        regions::Peer {
            endpoint: self.gateway.get().map(|g| g.endpoint),
        }
    }

    fn trust(&self, endpoint: std::net::SocketAddr) {
        if let Some(gateway) = self.gateway.get() {
            let _ = gateway.commands.send(Command::Trust(endpoint));
        }
    }

    /// Tells the other regions' runtimes (the cascade's peers) every change
    /// of an identity's presence here, and which devices a call may ring;
    /// every [`regions::RESYNC`], every identity connected here again.
    pub fn tell_regions(&self, cascade: Arc<crate::cascade::Cascade>, region: String) {
        let Some(gateway) = self.gateway.get().cloned() else {
            return;
        };
        let clients = self.clone();
        let mut changes = self.events.subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            let mut resync = tokio::time::interval(regions::RESYNC);
            resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let told = tokio::select! {
                    change = changes.recv() => match change {
                        Ok((tenant, view)) => vec![(tenant, view.identity)],
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "presence changes not told to other regions yet (the next resync tells them)");
                            continue;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = resync.tick() => clients.presence().present(),
                };
                let seen: Vec<regions::Seen> = (told.into_iter())
                    .map(|(tenant, identity)| regions::Seen {
                        region: region.clone(),
                        gateway: gateway.addr,
                        endpoint: gateway.endpoint,
                        ring: clients.presence().ringable(&tenant, &identity),
                        tenant,
                        identity,
                    })
                    .collect();
                for batch in seen.chunks(regions::BATCH) {
                    clients.tell(&cascade, batch).await;
                }
            }
        });
    }

    /// Pushes `seen` to every peer, trusting the endpoints they answer with.
    async fn tell(&self, cascade: &crate::cascade::Cascade, seen: &[regions::Seen]) {
        for answer in cascade.tell_peers("clients", seen).await {
            let peer = serde_json::from_slice::<regions::Peer>(&answer);
            if let Ok(regions::Peer {
                endpoint: Some(endpoint),
            }) = peer
            {
                self.trust(endpoint);
            }
        }
    }

    /// Starts the clients' gateway, placing calls into the endpoint at
    /// `endpoint` (a UDP SIP listener); its address is what the endpoint
    /// must trust.
    pub async fn start_gateway(
        &self,
        endpoint: std::net::SocketAddr,
        media: (std::net::IpAddr, crate::media::engine::Engine),
        ports: (u16, u16),
    ) -> anyhow::Result<std::net::SocketAddr> {
        let handle = gateway::start(self.clone(), endpoint, media, ports).await?;
        let addr = handle.addr;
        let _ = self.gateway.set(handle);
        Ok(addr)
    }

    /// Whether a call on one device makes the tenant's client busy as a
    /// whole (`[[tenant]] busy_in_call`, default true).
    pub fn set_busy_in_call(&self, tenant: &str, busy: bool) {
        self.presence().set_busy_in_call(tenant, busy);
    }

    fn outbox(&self, device: DeviceId) -> Option<Outbox> {
        let outboxes = self.outboxes.lock().unwrap_or_else(PoisonError::into_inner);
        outboxes.get(&device).cloned()
    }

    fn set_outbox(&self, device: DeviceId, outbox: Option<Outbox>) {
        let mut outboxes = self.outboxes.lock().unwrap_or_else(PoisonError::into_inner);
        match outbox {
            Some(outbox) => outboxes.insert(device, outbox),
            None => outboxes.remove(&device),
        };
    }

    /// A call on `device` began or ended (presence busy).
    fn in_call(&self, device: DeviceId, on: bool) {
        let owner = self.presence().owner(device);
        if let Some((tenant, identity)) = owner {
            self.change(&tenant, &identity, |p| p.in_call(device, on));
        }
    }

    /// Runs `change` on the registry and tells watchers if the presence
    /// of (`tenant`, `identity`) changed.
    fn change<T>(
        &self,
        tenant: &str,
        identity: &str,
        change: impl FnOnce(&mut Presence) -> T,
    ) -> T {
        let mut presence = self.presence();
        let before = presence.view(tenant, identity);
        let out = change(&mut presence);
        let after = presence.view(tenant, identity);
        if after != before {
            // No watcher is no error.
            let _ = self.events.send((tenant.to_owned(), after));
        }
        out
    }

    fn presence(&self) -> MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The identity's presence (offline when no device is connected).
    pub fn view(&self, tenant: &str, identity: &str) -> View {
        self.presence().view(tenant, identity)
    }

    /// The tenant's identities with a device connected.
    pub fn list(&self, tenant: &str) -> Vec<View> {
        self.presence().list(tenant)
    }

    /// Answers `GET /v1/client`: the WebSocket handshake, and a session
    /// task once the client has it.
    pub fn upgrade(&self, req: Request<Incoming>) -> Reply {
        let clients = self.clone();
        handshake(req, "/v1/client", |socket| clients.session(socket))
    }

    /// Answers `GET /v1/events/presence` for `account` (authenticated by
    /// the caller): the presence of its identities now, then every change.
    pub fn watch(&self, req: Request<Incoming>, account: String) -> Reply {
        let clients = self.clone();
        handshake(req, "/v1/events/presence", |socket| {
            clients.watcher(socket, account)
        })
    }

    async fn watcher(self, mut socket: hyper_tungstenite::HyperWebsocketStream, account: String) {
        use tokio::sync::broadcast::error::RecvError;
        let mut events = self.events.subscribe();
        // Subscribed first: a change while the snapshot is read shows in
        // both, never in neither.
        let snapshot = |clients: &Self| {
            let present = clients.list(&account);
            let watching = ServerMessage::Watching {
                present: present.len(),
            };
            let views = present.into_iter().map(ServerMessage::Presence);
            views.chain(std::iter::once(watching)).collect::<Vec<_>>()
        };
        for message in snapshot(&self) {
            if send(&mut socket, &message).await.is_err() {
                return;
            }
        }
        loop {
            let messages: Vec<ServerMessage> = tokio::select! {
                event = events.recv() => match event {
                    Ok((tenant, view)) if tenant == account => vec![ServerMessage::Presence(view)],
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        let said = format!("{missed} presence changes missed: the snapshot follows");
                        std::iter::once(ServerMessage::error("lagged", said))
                            .chain(snapshot(&self))
                            .collect()
                    }
                    Err(RecvError::Closed) => break,
                },
                frame = socket.next() => match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => continue,
                },
            };
            for message in &messages {
                if send(&mut socket, message).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn session(self, mut socket: hyper_tungstenite::HyperWebsocketStream) {
        let (outbox, mut notices) = tokio::sync::mpsc::unbounded_channel();
        let mut session = Session {
            clients: self.clone(),
            registered: None,
            outbox,
            calls: HashMap::new(),
            next_incoming: 0,
        };
        // A quiet client gets two heartbeats' time before it is offline;
        // one that has not registered yet, less (it holds a socket for
        // nobody).
        let quiet = self.heartbeat * 2;
        loop {
            let silence = match session.registered {
                Some(_) => quiet,
                None => quiet.min(REGISTER_WITHIN),
            };
            let next = tokio::select! {
                frame = tokio::time::timeout(silence, socket.next()) => frame,
                Some((call, notice)) = notices.recv() => {
                    let message = session.on_notice(call, notice);
                    if let Some(message) = message
                        && send(&mut socket, &message).await.is_err()
                    {
                        break;
                    }
                    continue;
                }
            };
            let frame = match next {
                Err(_) => {
                    let said = format!("nothing received for {} s", silence.as_secs());
                    let _ = send(&mut socket, &ServerMessage::error("timeout", said)).await;
                    let _ = close(&mut socket, CloseCode::Normal, "timeout").await;
                    break;
                }
                Ok(None | Some(Err(_))) => break,
                Ok(Some(Ok(frame))) => frame,
            };
            let reply = match frame {
                Message::Text(text) => session.on_text(&text).await,
                Message::Binary(_) => Step::Reply(ServerMessage::error(
                    "bad_message",
                    "messages are JSON text frames",
                )),
                Message::Close(_) => break,
                // Pings are answered by the library and count as life.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            match reply {
                Step::Quiet => {}
                Step::Reply(message) => {
                    if send(&mut socket, &message).await.is_err() {
                        break;
                    }
                }
                Step::End(message) => {
                    let _ = send(&mut socket, &message).await;
                    let _ = close(&mut socket, CloseCode::Policy, "unauthorized").await;
                    break;
                }
            }
        }
        if let Some((device, _)) = session.registered {
            // Its calls end with it.
            if let Some(gateway) = self.gateway.get() {
                for (key, _) in session.calls.values() {
                    let _ = gateway.commands.send(Command::Hangup(*key));
                }
            }
            self.set_outbox(device, None);
            let gone = self.presence().owner(device);
            if let Some((tenant, identity)) = gone {
                self.change(&tenant, &identity, |p| p.disconnect(device));
            }
        }
    }
}

/// Guests' `presence.lookup`: the registry's view in WIT terms.
impl crate::wasm::presence::PresenceBackend for Clients {
    fn lookup(
        &self,
        tenant: &str,
        identity: &str,
    ) -> crate::contract::imports::presence::ClientPresence {
        use crate::contract::imports::presence::{ClientPresence, Status as Wit};
        let view = self.view(tenant, identity);
        ClientPresence {
            identity: view.identity,
            status: match view.status {
                presence::Status::Available => Wit::Available,
                presence::Status::Busy => Wit::Busy,
                presence::Status::Away => Wit::Away,
                presence::Status::Offline => Wit::Offline,
            },
            text: view.text,
            devices: u32::try_from(view.devices).unwrap_or(u32::MAX),
        }
    }
}

/// What a session does after a message.
enum Step {
    /// Nothing to say.
    Quiet,
    Reply(ServerMessage),
    /// Say this, then close: the client may not go on.
    End(ServerMessage),
}

/// One connection's state.
struct Session {
    clients: Clients,
    /// The device and its token, once registered.
    registered: Option<(DeviceId, String)>,
    /// Where the gateway sends notices of this device's calls.
    outbox: Outbox,
    /// The device's calls by the name the client knows them by, with
    /// whether the client placed them.
    calls: HashMap<String, (CallKey, bool)>,
    next_incoming: u64,
}

impl Session {
    async fn on_text(&mut self, text: &str) -> Step {
        let message = match message::parse(text) {
            Ok(message) => message,
            Err(why) => return Step::Reply(ServerMessage::error("bad_message", why)),
        };
        let registered = self.registered.clone();
        match (message, registered) {
            (ClientMessage::Register { .. }, Some(_)) => Step::Reply(ServerMessage::error(
                "bad_message",
                "this connection is registered already",
            )),
            (ClientMessage::Register { token }, None) => match self.check(&token).await {
                Ok(verified) => {
                    let (account, identity) = (&verified.account, &verified.grants.identity);
                    let incoming = verified.grants.incoming;
                    let connected = (self.clients).change(account, identity, |p| {
                        let device = p.connect(account, identity)?;
                        p.set_incoming(device, incoming);
                        Ok::<_, presence::PresenceError>(device)
                    });
                    let device = match connected {
                        Ok(device) => device,
                        Err(e) => {
                            return Step::End(ServerMessage::error("too_many", e.to_string()));
                        }
                    };
                    self.registered = Some((device, token));
                    self.clients.set_outbox(device, Some(self.outbox.clone()));
                    tracing::info!(account = %verified.account, identity = %verified.grants.identity, device, "client registered");
                    Step::Reply(ServerMessage::Registered {
                        identity: verified.grants.identity,
                        device: format!("DV{device}"),
                        heartbeat_secs: self.clients.heartbeat.as_secs(),
                        expires: verified.expires,
                    })
                }
                Err(step) => step,
            },
            (_, None) => Step::Reply(ServerMessage::error(
                "bad_message",
                "register first: {\"type\":\"register\",\"token\":\"…\"}",
            )),
            // Every use checks the token again: a revoked key or an
            // expired token ends the session.
            (message, Some((device, token))) => match self.check(&token).await {
                Err(step) => step,
                Ok(verified) => self.on_registered(message, device, &verified).await,
            },
        }
    }

    async fn on_registered(
        &mut self,
        message: ClientMessage,
        device: DeviceId,
        who: &Verified,
    ) -> Step {
        let rejected = matches!(message, ClientMessage::Reject { .. });
        match message {
            ClientMessage::Heartbeat => Step::Reply(ServerMessage::Heartbeat),
            ClientMessage::Presence { status, text } => {
                let (account, identity) = (&who.account, &who.grants.identity);
                let set = (self.clients).change(account, identity, |p| {
                    p.set(device, status, text)
                        .map(|()| p.view(account, identity))
                });
                match set {
                    Ok(view) => Step::Reply(ServerMessage::Presence(view)),
                    Err(e) => Step::Reply(ServerMessage::error("bad_message", e.to_string())),
                }
            }
            ClientMessage::Invite { call, to, sdp } => {
                let reply = self.invite(device, who, &call, to, &sdp).await;
                Step::Reply(
                    reply.unwrap_or_else(|(code, message)| ServerMessage::CallError {
                        code,
                        message,
                        call,
                    }),
                )
            }
            ClientMessage::Answer { call, sdp } => {
                let reply = self.answer(&call, &sdp).await;
                Step::Reply(
                    reply.unwrap_or_else(|(code, message)| ServerMessage::CallError {
                        code,
                        message,
                        call,
                    }),
                )
            }
            ClientMessage::Reject { call }
            | ClientMessage::Hangup { call }
            | ClientMessage::Candidate { call, .. }
            | ClientMessage::Dtmf { call, .. }
                if !self.calls.contains_key(&call) =>
            {
                Step::Reply(ServerMessage::CallError {
                    code: "no_call",
                    message: format!("no call {call:?} on this connection"),
                    call,
                })
            }
            ClientMessage::Reject { call } | ClientMessage::Hangup { call } => {
                if let Some((key, _)) = self.calls.remove(&call)
                    && let Some(gateway) = self.clients.gateway.get()
                {
                    let command = if rejected {
                        Command::Reject(key)
                    } else {
                        Command::Hangup(key)
                    };
                    let _ = gateway.commands.send(command);
                }
                let (reason, said) = match rejected {
                    true => ("rejected", "you declined"),
                    false => ("hangup", "you hung up"),
                };
                Step::Reply(ServerMessage::Ended {
                    call,
                    reason,
                    status: None,
                    message: Some(said.into()),
                })
            }
            ClientMessage::Candidate { call, candidate } => {
                if let (Some((key, _)), Some(gateway)) =
                    (self.calls.get(&call), self.clients.gateway.get())
                {
                    let _ = gateway.commands.send(Command::Candidate(*key, candidate));
                }
                Step::Quiet
            }
            ClientMessage::Dtmf { call, digits } => match self.dtmf(&call, digits).await {
                Ok(()) => Step::Quiet,
                Err(message) => Step::Reply(ServerMessage::CallError {
                    code: "bad_call",
                    message,
                    call,
                }),
            },
            ClientMessage::Register { .. } => Step::Reply(ServerMessage::error(
                "bad_message",
                "this connection is registered already",
            )),
        }
    }

    /// Places a call: the relay answers the client's offer, then the
    /// gateway calls the handler of the token's grant.
    async fn invite(
        &mut self,
        device: DeviceId,
        who: &Verified,
        call: &str,
        to: String,
        offer: &str,
    ) -> Result<ServerMessage, (&'static str, String)> {
        let Some(outgoing) = &who.grants.outgoing else {
            let said = "this token may not place calls (its grant has no outgoing handler)";
            return Err(("forbidden", said.into()));
        };
        if self.calls.contains_key(call) {
            return Err(("bad_message", format!("call id {call:?} is in use")));
        }
        let gateway = self.gateway()?;
        let (relay, answer) = self.relay(&gateway, offer).await?;
        let placement = Placement {
            tenant: who.account.clone(),
            identity: who.grants.identity.clone(),
            handler: outgoing.handler.clone(),
            params: (outgoing.params.iter())
                .map(|(name, value)| (param_header(name), value.clone()))
                .collect(),
            to,
            rtp: relay.rtp,
        };
        let (reply, placed) = tokio::sync::oneshot::channel();
        let command = Command::Place {
            placement,
            device,
            relay,
            reply,
        };
        let key = match gateway.commands.send(command) {
            Ok(()) => placed.await.map_err(|_| gone())?,
            Err(_) => return Err(gone()),
        }
        .map_err(|e| ("bad_call", e))?;
        self.calls.insert(call.to_owned(), (key, true));
        Ok(ServerMessage::Media {
            call: call.to_owned(),
            sdp: answer,
        })
    }

    /// Takes an incoming call with the client's offer.
    async fn answer(
        &mut self,
        call: &str,
        offer: &str,
    ) -> Result<ServerMessage, (&'static str, String)> {
        let Some(&(key, placed)) = self.calls.get(call) else {
            return Err(("no_call", format!("no call {call:?} on this connection")));
        };
        if placed {
            return Err(("bad_call", "only an incoming call is answered".into()));
        }
        let gateway = self.gateway()?;
        let (relay, answer) = self.relay(&gateway, offer).await?;
        let (reply, accepted) = tokio::sync::oneshot::channel();
        let command = Command::Accept {
            call: key,
            relay,
            reply,
        };
        match gateway.commands.send(command) {
            Ok(()) => accepted.await.map_err(|_| gone())?,
            Err(_) => return Err(gone()),
        }
        .map_err(|e| {
            self.calls.remove(call);
            ("bad_call", e)
        })?;
        Ok(ServerMessage::Media {
            call: call.to_owned(),
            sdp: answer,
        })
    }

    async fn dtmf(&mut self, call: &str, digits: String) -> Result<(), String> {
        let (gateway, key) = match (self.clients.gateway.get(), self.calls.get(call)) {
            (Some(gateway), Some((key, _))) => (gateway.clone(), *key),
            _ => return Err(format!("no call {call:?} on this connection")),
        };
        let (reply, sent) = tokio::sync::oneshot::channel();
        let command = Command::Dtmf {
            call: key,
            digits,
            reply,
        };
        gateway.commands.send(command).map_err(|_| gone().1)?;
        sent.await.map_err(|_| gone().1)?
    }

    fn gateway(&self) -> Result<GatewayHandle, (&'static str, String)> {
        let said = "this runtime places no client calls (it has no UDP SIP listener)";
        (self.clients.gateway.get().cloned()).ok_or(("unavailable", said.into()))
    }

    /// The call's media relay, answering the client's offer.
    async fn relay(
        &self,
        gateway: &GatewayHandle,
        offer: &str,
    ) -> Result<(relay::Relay, String), (&'static str, String)> {
        let commands = gateway.commands.clone();
        let rtp = std::sync::Arc::new(OnceLock::new());
        let closed = {
            let rtp = Arc::clone(&rtp);
            move || {
                if let Some(addr) = rtp.get() {
                    let _ = commands.send(Command::MediaClosed(*addr));
                }
            }
        };
        let engine = gateway.engine.clone();
        let (relay, answer) = relay::start(gateway.media_ip, &gateway.ports, engine, offer, closed)
            .await
            .map_err(|e| ("bad_sdp", e))?;
        let _ = rtp.set(relay.rtp);
        Ok((relay, answer))
    }

    /// What the client hears of a gateway notice about one of its calls.
    fn on_notice(&mut self, key: CallKey, notice: Notice) -> Option<ServerMessage> {
        if let Notice::Incoming { from, label } = notice {
            self.next_incoming += 1;
            let call = format!("in-{}", self.next_incoming);
            self.calls.insert(call.clone(), (key, false));
            let to = self.registered_identity()?;
            return Some(ServerMessage::Incoming {
                call,
                from,
                to: format!("client:{to}"),
                label,
            });
        }
        let call =
            (self.calls.iter()).find_map(|(name, (k, _))| (*k == key).then(|| name.clone()))?;
        Some(match notice {
            Notice::Ringing => ServerMessage::Ringing { call },
            Notice::Connected => ServerMessage::Connected { call },
            Notice::Ended { reason, status } => {
                self.calls.remove(&call);
                ServerMessage::Ended {
                    call,
                    reason: reason.as_str(),
                    status,
                    message: None,
                }
            }
            Notice::Incoming { .. } => return None,
        })
    }

    fn registered_identity(&self) -> Option<String> {
        let (device, _) = self.registered.as_ref()?;
        self.clients
            .presence()
            .owner(*device)
            .map(|(_, identity)| identity)
    }

    /// The token as the runtime judges it now; a refusal ends the session.
    async fn check(&self, token: &str) -> Result<Verified, Step> {
        let (accounts, token) = (self.clients.accounts.clone(), token.to_owned());
        let checked = tokio::task::spawn_blocking(move || {
            tokens::check(&accounts, &token, tokens::unix_now(), None)
        })
        .await;
        match checked {
            Ok(Ok(Ok(verified))) => Ok(verified),
            Ok(Ok(Err(refused))) => Err(Step::End(ServerMessage::error(
                "unauthorized",
                refused.to_string(),
            ))),
            Ok(Err(e)) => Err(Step::Reply(ServerMessage::error(
                "unavailable",
                format!("tokens cannot be checked now: {e:#}"),
            ))),
            Err(e) => Err(Step::Reply(ServerMessage::error(
                "unavailable",
                format!("tokens cannot be checked now: {e}"),
            ))),
        }
    }
}

fn gone() -> (&'static str, String) {
    ("unavailable", "the clients' gateway stopped".into())
}

/// A grant parameter as the header the handler sees it in: `X-` and the
/// name, unless the name starts with `X-` already.
fn param_header(name: &str) -> String {
    if name.len() >= 2 && name[..2].eq_ignore_ascii_case("x-") {
        name.to_owned()
    } else {
        format!("X-{name}")
    }
}

/// The endpoint's `dial client:…`: the devices the registry says may
/// ring, at the gateway.
impl ClientLocator for Clients {
    fn ring(
        &self,
        tenant: &str,
        identity: &str,
    ) -> Result<Vec<(String, switchyard_sip::Peer)>, Unreachable> {
        use switchyard_contract::DialStatus;
        let Some(gateway) = self.gateway.get() else {
            return Err(Unreachable {
                status: DialStatus::Failed,
                reason: "this runtime's clients' gateway is not running".into(),
            });
        };
        let here = self.presence().ringable(tenant, identity);
        let there = (self.remote.lock().unwrap_or_else(PoisonError::into_inner)).lookup(
            std::time::Instant::now(),
            tenant,
            identity,
        );
        // Every region's devices ring, through that region's gateway; a
        // device in a call anywhere makes the identity busy.
        let mut devices = Vec::new();
        let mut why: Option<NotRung> = None;
        let answers = std::iter::once((gateway.addr, here))
            .chain(there.into_iter().map(|seen| (seen.gateway, seen.ring)));
        for (at, ring) in answers {
            match ring {
                Ok(ids) => {
                    let peer = switchyard_sip::Peer::new(switchyard_sip::Transport::Udp, at);
                    devices.extend(ids.into_iter().map(|id| (format!("sip:DV{id}@{at}"), peer)));
                }
                Err(not) => why = Some(why.map_or(not.clone(), |w| regions::stronger(w, not))),
            }
        }
        match why {
            Some(busy @ NotRung::Busy(_)) => Err(busy),
            _ if !devices.is_empty() => return Ok(devices),
            why => Err(why.unwrap_or_else(|| NotRung::Offline(identity.to_owned()))),
        }
        .map_err(|why| Unreachable {
            status: match why {
                NotRung::Busy(_) => DialStatus::Busy,
                NotRung::Offline(_) | NotRung::Away(_) => DialStatus::NoAnswer,
                NotRung::NotAllowed(_) => DialStatus::Failed,
            },
            reason: why.to_string(),
        })
    }
}

/// The WebSocket handshake of `req` for endpoint `path`; `serve` runs on
/// the socket once the client has the answer.
fn handshake<F>(
    mut req: Request<Incoming>,
    path: &str,
    serve: impl FnOnce(hyper_tungstenite::HyperWebsocketStream) -> F + Send + 'static,
) -> Reply
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return ApiError::BadRequest(format!(
            "{path} is a WebSocket endpoint: connect with Upgrade: websocket"
        ))
        .into_reply();
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_MESSAGE);
    config.max_frame_size = Some(MAX_MESSAGE);
    match hyper_tungstenite::upgrade(&mut req, Some(config)) {
        Ok((response, socket)) => {
            tokio::spawn(async move {
                match socket.await {
                    Ok(socket) => serve(socket).await,
                    Err(e) => tracing::debug!(error = %e, "WebSocket handshake failed"),
                }
            });
            response
        }
        Err(e) => ApiError::BadRequest(format!("not a WebSocket handshake: {e}")).into_reply(),
    }
}

async fn send(
    socket: &mut hyper_tungstenite::HyperWebsocketStream,
    message: &ServerMessage,
) -> Result<(), hyper_tungstenite::tungstenite::Error> {
    socket.send(Message::text(message.to_json())).await
}

async fn close(
    socket: &mut hyper_tungstenite::HyperWebsocketStream,
    code: CloseCode,
    reason: &'static str,
) -> Result<(), hyper_tungstenite::tungstenite::Error> {
    socket
        .close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
        .await
}
