//! Cascaded regional mixers (issue 15): a conference with participants on
//! runtimes of several regions runs one mixer per region, and the mixers
//! exchange their local mix as one RTP stream each way.
//!
//! ```text
//!   first local participant ─► opened(key) ─► directory: join(key, region)
//!        ◄─ [Open(me), Link(me, eu), ...] ─┘
//!   for each Link: open a link stream ─► POST eu/internal/v1/cascade/link
//!        {key, region, rtp} ◄─ {rtp}: eu opened its own, aimed at ours;
//!        both streams join their room as `link` participants (they hear
//!        their region only, so no region gets its own audio back)
//!   a mixer starts (its moderator entered) ─► POST cascade/start to the
//!        linked regions, and a new link carries whether either side started:
//!        a conference waiting for its moderator waits in every region
//!   last local participant gone (room closed) ─► closed(key)
//!        ─► directory: leave(key, region) ─► [Unlink(me, eu), Close(me)]
//!        ─► POST eu/internal/v1/cascade/unlink: eu drops its link stream
//! ```
//!
//! The directory (the conference orchestrator) is
//! [`switchyard_conference::placement::Placements`]: in this runtime when
//! it is the `[conference] directory` region, else the directory runtime's
//! over HTTP. Runtimes authenticate to each other with the shared
//! `[conference] secret` as a bearer token; the peers' URLs come from the
//! operator's config, so they are not tenant destinations and the egress
//! policy does not apply to them. Link streams carry L16 on a port pair
//! from the top of `[media] ports` (`[conference] link_ports`), which
//! calls do not use.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::{Deserialize, Serialize};
use switchyard_conference::placement::{Change, ConferenceKey, LocalPlacements, Placements};

use crate::api::{ApiError, Reply, json};
use crate::conferences::Conferences;
use crate::media::codec::{Codec, Direction};
use crate::media::engine::{Command, Engine};
use crate::media::mixer::Join;
use crate::media::ports::PortPool;
use crate::media::{StreamId, StreamParams};
use crate::tenancy::{constant_time_eq, sha256};

/// Link streams' ids start here, far above the endpoint's.
const LINK_IDS: StreamId = 1 << 62;
/// How long a peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest internal request body.
const BODY_LIMIT: usize = 4 * 1024;

/// Who keeps the placements.
enum Directory {
    Here(Mutex<LocalPlacements>),
    /// The directory runtime's base URL.
    There(String),
}

/// This runtime's part of the cascade.
pub struct Cascade {
    region: String,
    /// Region → base URL.
    peers: BTreeMap<String, String>,
    secret: String,
    directory: Directory,
    client: Client<HttpConnector, Full<Bytes>>,
    conferences: Conferences,
    engine: Engine,
    /// Link streams by (conference, the other region).
    links: Mutex<HashMap<(ConferenceKey, String), StreamId>>,
    /// Free link ports, and the port of each open link stream.
    ports: Mutex<(PortPool, HashMap<StreamId, u16>)>,
    next: AtomicU64,
    /// The clients of this runtime, told about other regions' clients.
    clients: std::sync::OnceLock<crate::clients::Clients>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementRequest {
    /// `join` or `leave`.
    op: String,
    tenant: String,
    name: String,
    region: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    tenant: String,
    name: String,
    /// The asking runtime's region.
    region: String,
    /// Where the asker's link stream listens; absent to unlink or start.
    rtp: Option<SocketAddr>,
    /// The asker's mixer of the conference has started.
    #[serde(default)]
    started: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinkAnswer {
    rtp: SocketAddr,
    #[serde(default)]
    started: bool,
}

impl Cascade {
    /// `None` without peers: conferences stay in this runtime.
    pub fn new(
        config: &crate::serve::Config,
        ports: Option<(u16, u16)>,
        conferences: Conferences,
        engine: Engine,
    ) -> Option<Arc<Cascade>> {
        let c = &config.conference;
        let (first, last) = ports?;
        let mut pool = PortPool::new(first, last);
        let holder = engine.clone();
        pool.set_reserve(Box::new(move |port| holder.reserve(port)));
        let region = config.region.clone();
        let directory = match c.directory.as_ref().filter(|d| **d != region) {
            Some(d) => Directory::There(c.peers.get(d)?.clone()),
            None => Directory::Here(Mutex::new(LocalPlacements::new())),
        };
        Some(Arc::new(Cascade {
            region,
            peers: c.peers.clone(),
            secret: c.secret.clone().unwrap_or_default(),
            directory,
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            conferences,
            engine,
            links: Mutex::default(),
            ports: Mutex::new((pool, HashMap::new())),
            next: AtomicU64::new(LINK_IDS),
            clients: std::sync::OnceLock::new(),
        }))
    }

    fn links(&self) -> MutexGuard<'_, HashMap<(ConferenceKey, String), StreamId>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This region's mixer for `key` opened: link it to the regions
    /// already in the conference.
    pub async fn opened(self: Arc<Self>, key: ConferenceKey) {
        let changes = match self.place("join", &key).await {
            Ok(changes) => changes,
            Err(e) => {
                return tracing::warn!(conference = %key.name, error = %e, "the conference directory did not answer; this region's mixer stays alone");
            }
        };
        for change in changes {
            if let Change::Link(a, b) = change {
                let other = if a == self.region { b } else { a };
                if let Err(e) = self.link(&key, &other).await {
                    tracing::warn!(conference = %key.name, region = %other, error = %e, "no cascade link");
                }
            }
        }
    }

    /// This region's mixer for `key` closed (its links closed with it):
    /// the directory forgets it, and the other regions drop their links.
    pub async fn closed(self: Arc<Self>, key: ConferenceKey) {
        let changes = match self.place("leave", &key).await {
            Ok(changes) => changes,
            Err(e) => {
                return tracing::warn!(conference = %key.name, error = %e, "the conference directory did not answer");
            }
        };
        for change in changes {
            if let Change::Unlink(a, b) = change {
                let other = if a == self.region { b } else { a };
                let request = self.request(&key, None);
                if let Err(e) = self.post(&other, "cascade/unlink", &request).await {
                    tracing::warn!(conference = %key.name, region = %other, error = %e, "unlinking");
                }
            }
        }
    }

    /// This region's mixer for `key` started: so do the linked regions'
    /// (a conference waiting for its moderator waits in every region).
    pub async fn started(self: Arc<Self>, key: ConferenceKey) {
        let linked: Vec<String> = (self.links().keys())
            .filter(|(k, _)| *k == key)
            .map(|(_, region)| region.clone())
            .collect();
        for other in linked {
            self.start_there(&key, &other).await;
        }
    }

    /// Asks `other` to start its mixer of `key`, as ours has.
    async fn start_there(&self, key: &ConferenceKey, other: &str) {
        let request = self.request(key, None);
        if let Err(e) = self.post(other, "cascade/start", &request).await {
            tracing::warn!(conference = %key.name, region = %other, error = %e, "starting a linked mixer");
        }
    }

    fn request(&self, key: &ConferenceKey, rtp: Option<SocketAddr>) -> LinkRequest {
        LinkRequest {
            tenant: key.tenant.clone(),
            name: key.name.clone(),
            region: self.region.clone(),
            rtp,
            started: self.conferences.is_started(&key.tenant, &key.name),
        }
    }

    /// Starts this region's mixer of `key` when the other region's has.
    fn start_if(&self, key: &ConferenceKey, started: bool) {
        if let Some(room) = self.conferences.room(&key.tenant, &key.name)
            && started
        {
            self.engine
                .room(room, crate::media::engine::RoomCommand::Start);
        }
    }

    /// A stream is out of its room: a link stream is closed.
    pub fn out(&self, stream: StreamId) {
        if stream < LINK_IDS {
            return;
        }
        let mut links = self.links();
        let gone: Vec<_> = (links.iter())
            .filter(|(_, s)| **s == stream)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            links.remove(&key);
            self.conferences
                .set_link(&key.0.tenant, &key.0.name, &key.1, false);
        }
        drop(links);
        self.close_link(stream);
    }

    async fn place(&self, op: &str, key: &ConferenceKey) -> Result<Vec<Change>, String> {
        let url = match &self.directory {
            Directory::Here(_) => return Ok(self.place_here(op, key, &self.region)),
            Directory::There(url) => url,
        };
        let request = PlacementRequest {
            op: op.to_string(),
            tenant: key.tenant.clone(),
            name: key.name.clone(),
            region: self.region.clone(),
        };
        let body = self.send(url, "placements", &request).await?;
        serde_json::from_slice(&body).map_err(|e| format!("directory answer: {e}"))
    }

    fn place_here(&self, op: &str, key: &ConferenceKey, region: &str) -> Vec<Change> {
        let Directory::Here(placements) = &self.directory else {
            return Vec::new();
        };
        let mut p = placements.lock().unwrap_or_else(PoisonError::into_inner);
        match op {
            "join" => p.join(key, region),
            _ => p.leave(key, region),
        }
    }

    /// Opens our side of the link to `other` and asks `other` for its side.
    async fn link(&self, key: &ConferenceKey, other: &str) -> Result<(), String> {
        let (stream, local) = self.open_link()?;
        let request = self.request(key, Some(local));
        let answer = match self.post(other, "cascade/link", &request).await {
            Ok(body) => {
                serde_json::from_slice::<LinkAnswer>(&body).map_err(|e| format!("link answer: {e}"))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => {
                self.seat_link(key, other, stream, answer.rtp)?;
                self.start_if(key, answer.started);
                // Our mixer may have started after `request` said it had
                // not and before the link was seated, where `started`
                // would have found it: tell the other region now.
                if !request.started && self.conferences.is_started(&key.tenant, &key.name) {
                    self.start_there(key, other).await;
                }
                Ok(())
            }
            Err(e) => {
                self.close_link(stream);
                Err(e)
            }
        }
    }

    fn open_link(&self) -> Result<(StreamId, SocketAddr), String> {
        let stream = self.next.fetch_add(1, Ordering::Relaxed);
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let (pool, open) = &mut *ports;
        // The pool hands out a pair the engine already holds (as for calls).
        let port = (pool.allocate())
            .ok_or("opening a link stream: no link port free ([conference] link_ports)")?;
        match self.engine.open(stream, stream, port) {
            Ok(local) => {
                open.insert(stream, port);
                Ok((stream, local))
            }
            Err(e) => {
                pool.release(port);
                Err(format!("opening a link stream on port {port}: {e}"))
            }
        }
    }

    /// Closes a link stream and gives its port back.
    fn close_link(&self, stream: StreamId) {
        self.engine.command(stream, Command::Close);
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let (pool, open) = &mut *ports;
        if let Some(port) = open.remove(&stream) {
            pool.release(port);
        }
    }

    /// Aims `stream` at the other region's and seats it in the room.
    fn seat_link(
        &self,
        key: &ConferenceKey,
        other: &str,
        stream: StreamId,
        remote: SocketAddr,
    ) -> Result<(), String> {
        let Some(room) = self.conferences.room(&key.tenant, &key.name) else {
            self.close_link(stream);
            return Err("the conference is not open in this region".into());
        };
        let params = StreamParams {
            // Lossless between mixers: the mix is G.711-encoded once, for
            // each participant, not once more on the way between regions.
            codec: Codec::L16,
            dtmf_pt: None,
            remote: Some(remote),
            direction: Direction::SendRecv,
        };
        self.engine.command(stream, Command::Start(params));
        let join = Join {
            start_on_enter: false,
            end_on_exit: false,
            muted: false,
            coach: None,
            beep: false,
            link: true,
        };
        let command = Command::Join {
            room,
            config: Box::default(),
            join,
            record: false,
        };
        self.engine.command(stream, command);
        let old = (self.links()).insert((key.clone(), other.to_string()), stream);
        if let Some(old) = old {
            self.close_link(old);
        }
        self.conferences
            .set_link(&key.tenant, &key.name, other, true);
        Ok(())
    }

    /// Sends `body` to `/internal/v1/{path}` of every other region's
    /// runtime; their answers. A peer that does not answer is logged and
    /// skipped.
    pub async fn tell_peers<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Vec<Bytes> {
        let mut answers = Vec::new();
        for (region, base) in &self.peers {
            if *region == self.region {
                continue;
            }
            match self.send(base, path, body).await {
                Ok(answer) => answers.push(answer),
                Err(e) => tracing::warn!(%region, error = %e, "a peer runtime was not told"),
            }
        }
        answers
    }

    /// Where what other runtimes say about their clients goes.
    pub fn set_clients(&self, clients: crate::clients::Clients) {
        let _ = self.clients.set(clients);
    }

    async fn post<T: Serialize>(
        &self,
        region: &str,
        path: &str,
        body: &T,
    ) -> Result<Bytes, String> {
        let base = (self.peers.get(region))
            .ok_or_else(|| format!("no [conference] peer for region {region:?}"))?;
        self.send(base, path, body).await
    }

    async fn send<T: Serialize + ?Sized>(
        &self,
        base: &str,
        path: &str,
        body: &T,
    ) -> Result<Bytes, String> {
        let url = format!("{}/internal/v1/{path}", base.trim_end_matches('/'));
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let request = Request::post(&url)
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, format!("Bearer {}", self.secret))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{url}: {e}"))?;
        let response = tokio::time::timeout(PEER_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within {PEER_TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = tokio::time::timeout(PEER_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| format!("{url}: the answer did not finish"))?
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{url}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body)
    }

    /// `/internal/v1/...` from another runtime of the set.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Reply
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.respond(req).await.unwrap_or_else(ApiError::into_reply)
    }

    async fn respond<B>(&self, req: Request<B>) -> Result<Reply, ApiError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let token = (req.headers().get(AUTHORIZATION))
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(&sha256(token.as_bytes()), &sha256(self.secret.as_bytes())) {
            return Err(ApiError::Unauthorized(
                "internal routes take the [conference] secret as a bearer token".into(),
            ));
        }
        if req.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed {
                allow: "POST".into(),
            });
        }
        let path = req.uri().path().to_string();
        let body = Limited::new(req.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?
            .to_bytes();
        match path.as_str() {
            "/internal/v1/placements" => {
                let r: PlacementRequest = crate::api::parse_json(&body)?;
                if !matches!(self.directory, Directory::Here(_)) {
                    return Err(ApiError::Conflict(format!(
                        "region {} does not keep the conference directory",
                        self.region
                    )));
                }
                if r.op != "join" && r.op != "leave" {
                    return Err(ApiError::BadRequest("op is join or leave".into()));
                }
                let key = ConferenceKey::new(r.tenant, r.name);
                let changes = self.place_here(&r.op, &key, &r.region);
                Ok(json(StatusCode::OK, &changes))
            }
            "/internal/v1/cascade/link" => {
                let r: LinkRequest = crate::api::parse_json(&body)?;
                let remote = r
                    .rtp
                    .ok_or_else(|| ApiError::BadRequest("a link needs rtp".into()))?;
                let key = ConferenceKey::new(r.tenant, r.name);
                if self.conferences.room(&key.tenant, &key.name).is_none() {
                    return Err(ApiError::NotFound(format!(
                        "conference {} is not open in region {}",
                        key.name, self.region
                    )));
                }
                let (stream, local) = self.open_link().map_err(ApiError::Unavailable)?;
                self.seat_link(&key, &r.region, stream, remote)
                    .map_err(ApiError::NotFound)?;
                self.start_if(&key, r.started);
                let started = self.conferences.is_started(&key.tenant, &key.name);
                Ok(json(
                    StatusCode::OK,
                    &LinkAnswer {
                        rtp: local,
                        started,
                    },
                ))
            }
            "/internal/v1/cascade/start" => {
                let r: LinkRequest = crate::api::parse_json(&body)?;
                self.start_if(&ConferenceKey::new(r.tenant, r.name), true);
                Ok(json(StatusCode::OK, &serde_json::json!({})))
            }
            "/internal/v1/cascade/unlink" => {
                let r: LinkRequest = crate::api::parse_json(&body)?;
                let key = (ConferenceKey::new(r.tenant, r.name), r.region);
                if let Some(stream) = self.links().get(&key).copied() {
                    // Its room reports it out, and `out` closes it.
                    self.engine.command(stream, Command::Leave);
                }
                Ok(json(StatusCode::OK, &serde_json::json!({})))
            }
            "/internal/v1/clients" => {
                let seen: Vec<crate::clients::regions::Seen> = crate::api::parse_json(&body)?;
                let clients = (self.clients.get()).ok_or_else(|| {
                    ApiError::Unavailable("this runtime serves no clients".into())
                })?;
                let here = clients.seen_there(seen);
                Ok(json(StatusCode::OK, &here))
            }
            _ => Err(ApiError::NotImplemented(crate::api::UNKNOWN_PATH)),
        }
    }
}

impl std::fmt::Debug for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cascade")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}
