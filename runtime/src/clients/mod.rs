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
//! The protocol is in [`message`]; presence is sans-IO in [`presence`].
//! Call signalling and WebRTC media come next: their messages are answered
//! `not_built` today.

pub mod message;
pub mod presence;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
use message::{ClientMessage, MAX_MESSAGE, ServerMessage};
use presence::{DeviceId, Presence, View};

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
        let mut session = Session {
            clients: self.clone(),
            registered: None,
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
            let frame = match tokio::time::timeout(silence, socket.next()).await {
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
    Reply(ServerMessage),
    /// Say this, then close: the client may not go on.
    End(ServerMessage),
}

/// One connection's state.
struct Session {
    clients: Clients,
    /// The device and its token, once registered.
    registered: Option<(DeviceId, String)>,
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
                    let connected =
                        (self.clients).change(account, identity, |p| p.connect(account, identity));
                    let device = match connected {
                        Ok(device) => device,
                        Err(e) => {
                            return Step::End(ServerMessage::error("too_many", e.to_string()));
                        }
                    };
                    self.registered = Some((device, token));
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
                Ok(verified) => self.on_registered(message, device, &verified),
            },
        }
    }

    fn on_registered(&mut self, message: ClientMessage, device: DeviceId, who: &Verified) -> Step {
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
            ClientMessage::NotBuilt(kind) => Step::Reply(ServerMessage::error(
                "not_built",
                format!(
                    "`{kind}` is not built yet: calls from browser and app clients come with WebRTC media"
                ),
            )),
            ClientMessage::Register { .. } => Step::Reply(ServerMessage::error(
                "bad_message",
                "this connection is registered already",
            )),
        }
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
